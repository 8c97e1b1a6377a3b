/* xclient.c — parsing the XCLIENT argument (see xclient.h): split on
 * blanks, NAME=VALUE pairs, xtext decoding, and each attribute's checks. */
#include "proto/xclient.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define XC_VALUE_MAX 255

static const char *const xc_names[XC_COUNT] = {
    [XC_ADDR] = "ADDR", [XC_PORT] = "PORT", [XC_NAME] = "NAME", [XC_HELO] = "HELO",
    [XC_PROTO] = "PROTO", [XC_LOGIN] = "LOGIN", [XC_DESTADDR] = "DESTADDR",
    [XC_DESTPORT] = "DESTPORT",
};

static int bad(smtp_status *st, const char *text)
{
    st->code = 501;
    st->enh = "5.5.4";
    st->text = text;
    return -1;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* xtext p[0..n) into out (NUL-terminated). 0, or -1 when it is not xtext,
 * decodes to more than XC_VALUE_MAX bytes, or to a byte that is not
 * printable ASCII (no attribute takes one). */
static int xtext_decode(const char *p, size_t n, char out[XC_VALUE_MAX + 1])
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)p[i];
        if (c == '=')
            return -1;
        if (c == '+') {
            int hi = i + 2 < n ? hexval(p[i + 1]) : -1;
            int lo = hi >= 0 ? hexval(p[i + 2]) : -1;
            if (lo < 0)
                return -1;
            c = hi << 4 | lo;
            i += 2;
        }
        if (c < 33 || c > 126 || o == XC_VALUE_MAX)
            return -1;
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return 0;
}

static int is_unavailable(const char *v, enum xclient_attr a)
{
    return !strcmp(v, "[UNAVAILABLE]") || (a == XC_NAME && !strcmp(v, "[TEMPUNAVAIL]"));
}

/* Printable ASCII without spaces, not empty. */
static int printable_word(const char *v)
{
    if (!*v)
        return 0;
    for (; *v; v++)
        if (*v < 33 || *v > 126)
            return 0;
    return 1;
}

static int host_name(const char *v)
{
    if (!*v)
        return 0;
    for (; *v; v++)
        if (!isalnum((unsigned char)*v) && *v != '.' && *v != '-' && *v != '_')
            return 0;
    return 1;
}

/* ADDR / DESTADDR: IPv4, or IPV6: and IPv6, normalised into out. */
static int xc_addr(const char *v, char out[64])
{
    unsigned char bin[16];
    int v6 = !strncasecmp(v, "IPV6:", 5);
    int af = v6 ? AF_INET6 : AF_INET;
    if (inet_pton(af, v6 ? v + 5 : v, bin) != 1)
        return -1;
    return inet_ntop(af, bin, out, 64) ? 0 : -1;
}

static int xc_port(const char *v, int *out)
{
    size_t n = strlen(v);
    int p = 0;
    if (n == 0 || n > 5)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)v[i]))
            return -1;
        p = p * 10 + (v[i] - '0');
    }
    if (p > 65535)
        return -1;
    *out = p;
    return 0;
}

/* Check and store one decoded value. */
static int xc_set(enum xclient_attr a, const char *v, struct xclient_args *x, smtp_status *st)
{
    x->given |= XC_BIT(a);
    if (is_unavailable(v, a)) {
        x->unavailable |= XC_BIT(a);
        return 0;
    }
    x->unavailable &= ~XC_BIT(a);
    switch (a) {
    case XC_ADDR:
        return xc_addr(v, x->addr) < 0 ? bad(st, "Bad XCLIENT ADDR syntax") : 0;
    case XC_DESTADDR:
        return xc_addr(v, x->destaddr) < 0 ? bad(st, "Bad XCLIENT DESTADDR syntax") : 0;
    case XC_PORT:
        return xc_port(v, &x->port) < 0 ? bad(st, "Bad XCLIENT PORT syntax") : 0;
    case XC_DESTPORT:
        return xc_port(v, &x->destport) < 0 ? bad(st, "Bad XCLIENT DESTPORT syntax") : 0;
    case XC_NAME:
        if (!host_name(v))
            return bad(st, "Bad XCLIENT NAME syntax");
        break;
    case XC_PROTO:
        if (strcasecmp(v, "SMTP") && strcasecmp(v, "ESMTP"))
            return bad(st, "Bad XCLIENT PROTO syntax");
        x->esmtp = !strcasecmp(v, "ESMTP");
        return 0;
    default:
        if (!printable_word(v))
            return bad(st, a == XC_HELO ? "Bad XCLIENT HELO syntax" : "Bad XCLIENT LOGIN syntax");
        break;
    }
    char *dst = a == XC_NAME ? x->name : a == XC_HELO ? x->helo : x->login;
    snprintf(dst, XC_VALUE_MAX + 1, "%s", v);
    return 0;
}

static int xc_lookup(const char *p, size_t n)
{
    for (int a = 0; a < XC_COUNT; a++)
        if (strlen(xc_names[a]) == n && !strncasecmp(p, xc_names[a], n))
            return a;
    return -1;
}

/* One NAME=VALUE word p[0..n). */
static int xc_word(const char *p, size_t n, struct xclient_args *x, smtp_status *st)
{
    const char *eq = memchr(p, '=', n);
    if (!eq)
        return bad(st, "Syntax: XCLIENT attribute=value ...");
    int a = xc_lookup(p, (size_t)(eq - p));
    if (a < 0)
        return bad(st, "Bad XCLIENT attribute name");
    char v[XC_VALUE_MAX + 1];
    if (xtext_decode(eq + 1, n - (size_t)(eq + 1 - p), v) < 0)
        return bad(st, "Bad XCLIENT attribute value (xtext)");
    return xc_set((enum xclient_attr)a, v, x, st);
}

int xclient_parse(const char *arg, struct xclient_args *out, smtp_status *st)
{
    memset(out, 0, sizeof *out);
    st->code = 0;
    st->enh = st->text = NULL;
    const char *p = arg;
    int words = 0;
    for (;;) {
        p += strspn(p, " \t");
        if (!*p)
            break;
        size_t n = strcspn(p, " \t");
        if (xc_word(p, n, out, st) < 0)
            return -1;
        words++;
        p += n;
    }
    return words ? 0 : bad(st, "Syntax: XCLIENT attribute=value ...");
}
