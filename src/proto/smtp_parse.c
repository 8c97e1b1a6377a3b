/* smtp_parse.c — pure parsers for SMTP command lines: the verb split, the
 * RFC 5321 §4.1.2 path grammar (with RFC 6531 UTF-8 addresses), the ESMTP
 * parameters of MAIL and RCPT, BDAT and HELO/EHLO arguments.
 *
 * Everything works on NUL-terminated strings and reports failures as an
 * smtp_status the session can send as is. */
#include "proto/smtp_parse.h"

#include <arpa/inet.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define LOCAL_MAX  64
#define DOMAIN_MAX 255
#define PATH_MAX_OCTETS 256

static int st_set(smtp_status *st, int code, const char *enh, const char *text)
{
    st->code = code;
    st->enh = enh;
    st->text = text;
    return -1;
}

static void st_ok(smtp_status *st)
{
    st_set(st, 0, NULL, NULL);
}

static int is_alpha(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static int is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static int is_alnum(unsigned char c)
{
    return is_alpha(c) || is_digit(c);
}

static int is_wsp(unsigned char c)
{
    return c == ' ' || c == '\t';
}

static const char *skip_wsp(const char *p)
{
    while (is_wsp((unsigned char)*p))
        p++;
    return p;
}

/* End of s after trimming trailing SP/HTAB, never before `from`. */
static const char *trim_end(const char *from, const char *end)
{
    while (end > from && is_wsp((unsigned char)end[-1]))
        end--;
    return end;
}

static char *dup_range(const char *p, size_t n)
{
    char *s = malloc(n + 1);
    if (s) {
        memcpy(s, p, n);
        s[n] = '\0';
    }
    return s;
}

/* ---- command split ------------------------------------------------------ */

static const char *const verb_names[SMTP_VERB_COUNT] = {
    [SMTP_UNKNOWN] = "UNKNOWN", [SMTP_HELO] = "HELO", [SMTP_EHLO] = "EHLO",
    [SMTP_MAIL] = "MAIL", [SMTP_RCPT] = "RCPT", [SMTP_DATA] = "DATA",
    [SMTP_BDAT] = "BDAT", [SMTP_RSET] = "RSET", [SMTP_NOOP] = "NOOP",
    [SMTP_QUIT] = "QUIT", [SMTP_VRFY] = "VRFY", [SMTP_EXPN] = "EXPN",
    [SMTP_HELP] = "HELP", [SMTP_STARTTLS] = "STARTTLS", [SMTP_AUTH] = "AUTH",
    [SMTP_XCLIENT] = "XCLIENT",
};

const char *smtp_verb_name(enum smtp_verb v)
{
    if ((int)v < 0 || v >= SMTP_VERB_COUNT)
        return verb_names[SMTP_UNKNOWN];
    return verb_names[v];
}

static enum smtp_verb verb_lookup(const char *p, size_t n)
{
    for (int v = SMTP_UNKNOWN + 1; v < SMTP_VERB_COUNT; v++) {
        const char *name = verb_names[v];
        if (strlen(name) == n && strncasecmp(p, name, n) == 0)
            return (enum smtp_verb)v;
    }
    return SMTP_UNKNOWN;
}

/* Only printable ASCII letters can form a verb we know; anything else
 * (controls, 8-bit bytes) is refused up front. */
static int verb_chars_ok(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!is_alpha((unsigned char)p[i]))
            return 0;
    return n > 0;
}

static void cmd_set_arg(struct smtp_cmd *cmd, const char *p, const char *end)
{
    p = skip_wsp(p);
    if (p > end)
        p = end;
    cmd->arg = p;
    cmd->arg_len = (size_t)(trim_end(p, end) - p);
}

/* MAIL and RCPT: the verb runs up to the colon of " FROM:" / " TO:". */
static int cmd_split_path(struct smtp_cmd *cmd, const char *end,
                          const char *kw, smtp_status *st)
{
    size_t kwlen = strlen(kw);
    const char *p = cmd->verb_str + 4;

    if ((size_t)(end - p) < kwlen || strncasecmp(p, kw, kwlen) != 0)
        return st_set(st, 501, "5.5.4", cmd->verb == SMTP_MAIL
                      ? "Syntax: MAIL FROM:<address>"
                      : "Syntax: RCPT TO:<address>");
    cmd->verb_len = 4 + kwlen;
    cmd_set_arg(cmd, p + kwlen, end);
    return 0;
}

int smtp_cmd_split(const char *line, size_t len, struct smtp_cmd *cmd,
                   smtp_status *st)
{
    const char *end = line + len, *v = line;

    st_ok(st);
    while (v < end && !is_wsp((unsigned char)*v))
        v++;
    cmd->verb = SMTP_UNKNOWN;
    cmd->verb_str = line;
    cmd->verb_len = (size_t)(v - line);
    cmd_set_arg(cmd, v, end);
    if (memchr(line, '\0', len))
        return st_set(st, 500, "5.5.2", "NUL byte in command");
    if (!verb_chars_ok(line, cmd->verb_len))
        return st_set(st, 500, "5.5.2", "Command unrecognized");
    cmd->verb = verb_lookup(line, cmd->verb_len);
    if (cmd->verb == SMTP_UNKNOWN)
        return st_set(st, 500, "5.5.2", "Command unrecognized");
    if (cmd->verb == SMTP_MAIL)
        return cmd_split_path(cmd, end, " FROM:", st);
    if (cmd->verb == SMTP_RCPT)
        return cmd_split_path(cmd, end, " TO:", st);
    return 0;
}

/* ---- address grammar ---------------------------------------------------- */

/* Length of the well-formed UTF-8 sequence at p (lead byte >= 0x80), or 0. */
static int utf8_len(const unsigned char *p)
{
    unsigned char c = p[0], lo = 0x80, hi = 0xBF;
    int n;

    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c >= 0xE0 && c <= 0xEF)
        n = 3;
    else if (c >= 0xF0 && c <= 0xF4)
        n = 4;
    else
        return 0;
    if (c == 0xE0)
        lo = 0xA0;          /* overlong */
    else if (c == 0xED)
        hi = 0x9F;          /* surrogates */
    else if (c == 0xF0)
        lo = 0x90;          /* overlong */
    else if (c == 0xF4)
        hi = 0x8F;          /* above U+10FFFF */
    if (p[1] < lo || p[1] > hi)
        return 0;
    for (int i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xBF)
            return 0;
    return n;
}

/* Scan state for one address: where we are, and whether 8-bit was seen. */
struct ascan {
    const char *p;
    int utf8;
    int bad_utf8;
};

/* Consume one UTF-8 character at s->p if there is one. */
static int scan_utf8(struct ascan *s)
{
    int n;

    if ((unsigned char)*s->p < 0x80)
        return 0;
    s->utf8 = 1;
    n = utf8_len((const unsigned char *)s->p);
    if (n == 0) {
        s->bad_utf8 = 1;
        return 0;
    }
    s->p += n;
    return 1;
}

static int is_atext(unsigned char c)
{
    return is_alnum(c) || (c && strchr("!#$%&'*+-/=?^_`{|}~", c));
}

/* Atom = 1*atext (atext includes UTF-8 characters under RFC 6531). */
static int scan_atom(struct ascan *s)
{
    const char *start = s->p;

    for (;;) {
        if (is_atext((unsigned char)*s->p))
            s->p++;
        else if (!scan_utf8(s))
            break;
    }
    return s->p > start;
}

/* Dot-string = Atom *("." Atom) */
static int scan_dot_string(struct ascan *s)
{
    if (!scan_atom(s))
        return 0;
    while (*s->p == '.') {
        s->p++;
        if (!scan_atom(s))
            return 0;
    }
    return 1;
}

/* Quoted-string = DQUOTE *(qtextSMTP / quoted-pairSMTP) DQUOTE */
static int scan_quoted(struct ascan *s)
{
    s->p++;
    for (;;) {
        unsigned char c = (unsigned char)*s->p;
        if (c == '"') {
            s->p++;
            return 1;
        }
        if (c == '\\') {
            unsigned char e = (unsigned char)s->p[1];
            if (e < 32 || e > 126)
                return 0;
            s->p += 2;
        } else if (c >= 32 && c <= 126) {
            s->p++;
        } else if (!scan_utf8(s)) {
            return 0;
        }
    }
}

static int scan_local(struct ascan *s)
{
    if (*s->p == '"')
        return scan_quoted(s);
    return scan_dot_string(s);
}

/* sub-domain = Let-dig [Ldh-str], or a U-label (UTF-8) under RFC 6531. */
static int scan_label(struct ascan *s)
{
    const char *start = s->p;
    char last = 0;

    for (;;) {
        unsigned char c = (unsigned char)*s->p;
        if (is_alnum(c) || c == '-') {
            if (s->p == start && c == '-')
                return 0;
            last = (char)c;
            s->p++;
        } else if (scan_utf8(s)) {
            last = 'u';
        } else {
            break;
        }
    }
    return s->p > start && last != '-';
}

/* Domain = sub-domain *("." sub-domain) */
static int scan_domain(struct ascan *s)
{
    if (!scan_label(s))
        return 0;
    while (*s->p == '.') {
        s->p++;
        if (!scan_label(s))
            return 0;
    }
    return 1;
}

/* Standardized-tag = Ldh-str: letters, digits, hyphens, not ending in '-'. */
static int ldh_str_ok(const char *p, size_t n)
{
    if (n == 0 || p[n - 1] == '-')
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!is_alnum((unsigned char)p[i]) && p[i] != '-')
            return 0;
    return 1;
}

static int inet_ok(int af, const char *p, size_t n)
{
    char buf[64];
    unsigned char addr[16];

    if (n == 0 || n >= sizeof buf)
        return 0;
    memcpy(buf, p, n);
    buf[n] = '\0';
    return inet_pton(af, buf, addr) == 1;
}

/* The inside of "[...]": IPv4, "IPv6:" address, or tag ":" dcontent. */
static int literal_ok(const char *p, size_t n)
{
    const char *colon = memchr(p, ':', n);
    size_t tag;

    if (!colon)
        return inet_ok(AF_INET, p, n);
    tag = (size_t)(colon - p);
    if (tag == 4 && strncasecmp(p, "IPv6", 4) == 0)
        return inet_ok(AF_INET6, colon + 1, n - tag - 1);
    return ldh_str_ok(p, tag) && n > tag + 1;
}

/* address-literal = "[" ... "]", content limited to dcontent (33-90, 94-126) */
static int scan_literal(struct ascan *s)
{
    const char *start = ++s->p;

    for (;;) {
        unsigned char c = (unsigned char)*s->p;
        if (c == ']')
            break;
        if (c < 33 || c > 126 || c == '[' || c == '\\')
            return 0;
        s->p++;
    }
    if (!literal_ok(start, (size_t)(s->p - start)))
        return 0;
    s->p++;
    return 1;
}

/* A-d-l = At-domain *( "," At-domain ) ":"; accepted and ignored. */
static int scan_route(struct ascan *s)
{
    for (;;) {
        if (*s->p != '@')
            return 0;
        s->p++;
        if (!scan_domain(s))
            return 0;
        if (*s->p == ':') {
            s->p++;
            return 1;
        }
        if (*s->p != ',')
            return 0;
        s->p++;
    }
}

/* Where the pieces of a parsed mailbox are in the input. */
struct mbox {
    const char *local, *at, *dom_end;
    int literal;
};

/* Mailbox = Local-part "@" ( Domain / address-literal ) */
static int scan_mailbox(struct ascan *s, struct mbox *m)
{
    m->local = s->p;
    if (!scan_local(s) || *s->p != '@')
        return 0;
    m->at = s->p++;
    m->literal = *s->p == '[';
    if (m->literal ? !scan_literal(s) : !scan_domain(s))
        return 0;
    m->dom_end = s->p;
    return 1;
}

static int addr_fill(struct smtp_addr *a, const struct mbox *m, int utf8,
                     smtp_status *st)
{
    a->local = dup_range(m->local, (size_t)(m->at - m->local));
    a->domain = dup_range(m->at + 1, (size_t)(m->dom_end - m->at - 1));
    a->is_literal = m->literal ? 1 : 0;
    a->is_utf8 = utf8 ? 1 : 0;
    if (!a->local || !a->domain) {
        smtp_addr_clear(a);
        return st_set(st, 451, "4.3.0", "Out of memory");
    }
    return 0;
}

static int mbox_check_lengths(const struct mbox *m, const char *enh,
                              smtp_status *st)
{
    if (m->at - m->local > LOCAL_MAX)
        return st_set(st, 501, enh, "Local part too long");
    if (m->dom_end - m->at - 1 > DOMAIN_MAX)
        return st_set(st, 501, enh, "Domain too long");
    return 0;
}

static int utf8_check(const struct ascan *s, int allow, const char *enh,
                      smtp_status *st)
{
    if (s->utf8 && !allow)
        return st_set(st, 553, "5.6.7",
                      "UTF-8 address requires SMTPUTF8");
    if (s->bad_utf8)
        return st_set(st, 501, enh, "Malformed UTF-8 in address");
    return 0;
}

void smtp_addr_clear(struct smtp_addr *a)
{
    free(a->local);
    free(a->domain);
    memset(a, 0, sizeof *a);
}

char *smtp_addr_format(const struct smtp_addr *a)
{
    size_t ll, dl;
    char *s;

    if (a->is_null)
        return dup_range("", 0);
    if (a->is_postmaster || !a->domain)
        return dup_range("postmaster", 10);
    ll = strlen(a->local);
    dl = strlen(a->domain);
    s = malloc(ll + dl + 2);
    if (s) {
        memcpy(s, a->local, ll);
        s[ll] = '@';
        memcpy(s + ll + 1, a->domain, dl + 1);
    }
    return s;
}

static int addr_special(const char *local, size_t n, struct smtp_addr *out,
                        int postmaster, smtp_status *st)
{
    memset(out, 0, sizeof *out);
    out->local = dup_range(local, n);
    if (!out->local)
        return st_set(st, 451, "4.3.0", "Out of memory");
    out->is_null = !postmaster;
    out->is_postmaster = postmaster ? 1 : 0;
    return 0;
}

int smtp_addr_parse(const char *s, int allow_utf8, struct smtp_addr *out,
                    smtp_status *st)
{
    struct ascan sc = { s, 0, 0 };
    struct mbox m;

    st_ok(st);
    memset(out, 0, sizeof *out);
    if (*s == '\0')
        return addr_special("", 0, out, 0, st);
    if (strcasecmp(s, "postmaster") == 0)
        return addr_special(s, 10, out, 1, st);
    if (!scan_mailbox(&sc, &m) || *sc.p != '\0')
        return utf8_check(&sc, allow_utf8, "5.1.3", st) ? -1
               : st_set(st, 501, "5.1.3", "Bad address syntax");
    if (utf8_check(&sc, allow_utf8, "5.1.3", st) ||
        mbox_check_lengths(&m, "5.1.3", st))
        return -1;
    if (strlen(s) + 2 > PATH_MAX_OCTETS)
        return st_set(st, 501, "5.1.3", "Path too long");
    return addr_fill(out, &m, sc.utf8, st);
}

/* ---- paths -------------------------------------------------------------- */

enum path_kind { PATH_MAIL, PATH_RCPT };

static const char *path_enh(enum path_kind k)
{
    return k == PATH_MAIL ? "5.1.7" : "5.1.3";
}

static int path_syntax(enum path_kind k, smtp_status *st)
{
    return st_set(st, 501, path_enh(k), k == PATH_MAIL
                  ? "Bad sender address syntax"
                  : "Bad recipient address syntax");
}

/* "<>" and "<postmaster>": *after is set past the '>' when recognised. */
static int path_special(const char *p, enum path_kind k,
                        struct smtp_addr *out, const char **after,
                        smtp_status *st)
{
    if (p[1] == '>') {
        if (k == PATH_RCPT)
            return st_set(st, 501, "5.1.3", "Null recipient not allowed");
        *after = p + 2;
        return addr_special("", 0, out, 0, st);
    }
    if (k == PATH_RCPT && strncasecmp(p + 1, "postmaster>", 11) == 0) {
        *after = p + 12;
        return addr_special(p + 1, 10, out, 1, st);
    }
    return 0;
}

/* Path = "<" [ A-d-l ":" ] Mailbox ">". UTF-8 is always scanned here and
 * judged by the caller (MAIL only knows after its parameters). */
static int parse_path(const char *p, enum path_kind k, struct smtp_addr *out,
                      const char **after, int *utf8, smtp_status *st)
{
    struct ascan sc = { p + 1, 0, 0 };
    struct mbox m;

    *after = NULL;
    *utf8 = 0;
    if (*p != '<')
        return st_set(st, 501, "5.5.4", k == PATH_MAIL
                      ? "Syntax: MAIL FROM:<address>"
                      : "Syntax: RCPT TO:<address>");
    if (path_special(p, k, out, after, st) || *after)
        return st->code ? -1 : 0;
    if (*sc.p == '@' && !scan_route(&sc))
        return path_syntax(k, st);
    /* UTF-8 in the (ignored) route needs SMTPUTF8 too, but is_utf8
     * describes the mailbox that is kept */
    int route_utf8 = sc.utf8;
    sc.utf8 = 0;
    if (!scan_mailbox(&sc, &m) || *sc.p != '>')
        return sc.bad_utf8 ? utf8_check(&sc, 1, path_enh(k), st)
                           : path_syntax(k, st);
    if (sc.bad_utf8 && utf8_check(&sc, 1, path_enh(k), st))
        return -1;
    if (mbox_check_lengths(&m, path_enh(k), st))
        return -1;
    if (sc.p + 1 - p > PATH_MAX_OCTETS)
        return st_set(st, 501, path_enh(k), "Path too long");
    *after = sc.p + 1;
    *utf8 = route_utf8 || sc.utf8;
    return addr_fill(out, &m, sc.utf8, st);
}

/* ---- ESMTP parameters --------------------------------------------------- */

static int param_syntax(smtp_status *st)
{
    return st_set(st, 501, "5.5.4", "Syntax error in parameters");
}

static int param_unknown(smtp_status *st)
{
    return st_set(st, 555, "5.5.4", "Unsupported parameter");
}

/* esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-") */
static int keyword_ok(const char *p, size_t n)
{
    if (n == 0 || !is_alnum((unsigned char)p[0]))
        return 0;
    for (size_t i = 1; i < n; i++)
        if (!is_alnum((unsigned char)p[i]) && p[i] != '-')
            return 0;
    return 1;
}

/* esmtp-value = 1*(%d33-60 / %d62-126) */
static int value_ok(const char *p, size_t n)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c < 33 || c > 126 || c == '=')
            return 0;
    }
    return 1;
}

static int is_hexu(unsigned char c)
{
    return is_digit(c) || (c >= 'A' && c <= 'F');
}

/* xtext (RFC 3461): "+" HEX HEX, or any of 33-126 except "+" and "=". */
static int xtext_ok(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] != '+')
            continue;
        if (i + 2 >= n)
            return 0;
        if (!is_hexu((unsigned char)p[i + 1]) ||
            !is_hexu((unsigned char)p[i + 2]))
            return 0;
        i += 2;
    }
    return 1;
}

static int value_is(const char *v, size_t n, const char *word)
{
    return strlen(word) == n && strncasecmp(v, word, n) == 0;
}

/* One parameter as split from the argument. */
struct param {
    const char *key, *val;
    size_t klen, vlen;
    int has_val;
};

static int store_value(char **dst, const struct param *pa, smtp_status *st)
{
    *dst = dup_range(pa->val, pa->vlen);
    if (!*dst)
        return st_set(st, 451, "4.3.0", "Out of memory");
    return 0;
}

/* SIZE=1*20DIGIT; values beyond long long are clamped (always "too big"). */
static int mail_size(void *t, const struct param *pa,
                     const struct smtp_parse_opts *o, smtp_status *st)
{
    struct smtp_mail *m = t;
    long long v = 0;

    if (!pa->has_val || pa->vlen > 20)
        return param_syntax(st);
    for (size_t i = 0; i < pa->vlen; i++) {
        int d = pa->val[i] - '0';
        if (!is_digit((unsigned char)pa->val[i]))
            return param_syntax(st);
        v = v > (LLONG_MAX - d) / 10 ? LLONG_MAX : v * 10 + d;
    }
    if (o->max_size > 0 && v > o->max_size)
        return st_set(st, 552, "5.3.4",
                      "Message size exceeds fixed maximum message size");
    m->size = v;
    return 0;
}

static int mail_body(void *t, const struct param *pa,
                     const struct smtp_parse_opts *o, smtp_status *st)
{
    struct smtp_mail *m = t;
    (void)o;
    if (!pa->has_val)
        return param_syntax(st);
    if (value_is(pa->val, pa->vlen, "7BIT"))
        m->body = SMTP_BODY_7BIT;
    else if (value_is(pa->val, pa->vlen, "8BITMIME"))
        m->body = SMTP_BODY_8BITMIME;
    else if (value_is(pa->val, pa->vlen, "BINARYMIME"))
        return st_set(st, 555, "5.5.4", "BODY=BINARYMIME not supported");
    else
        return param_syntax(st);
    return 0;
}

static int mail_smtputf8(void *t, const struct param *pa,
                         const struct smtp_parse_opts *o, smtp_status *st)
{
    struct smtp_mail *m = t;
    (void)o;
    if (pa->has_val)
        return param_syntax(st);
    m->smtputf8 = 1;
    return 0;
}

/* AUTH=<> or AUTH=xtext (RFC 4954) */
static int mail_auth(void *t, const struct param *pa,
                     const struct smtp_parse_opts *o, smtp_status *st)
{
    struct smtp_mail *m = t;
    (void)o;
    if (!pa->has_val || !xtext_ok(pa->val, pa->vlen))
        return param_syntax(st);
    return store_value(&m->auth, pa, st);
}

/* ENVID=xtext, at most 100 characters (RFC 3461) */
static int mail_envid(void *t, const struct param *pa,
                      const struct smtp_parse_opts *o, smtp_status *st)
{
    struct smtp_mail *m = t;
    (void)o;
    if (!pa->has_val || pa->vlen > 100 || !xtext_ok(pa->val, pa->vlen))
        return param_syntax(st);
    return store_value(&m->envid, pa, st);
}

static int mail_ret(void *t, const struct param *pa,
                    const struct smtp_parse_opts *o, smtp_status *st)
{
    struct smtp_mail *m = t;
    (void)o;
    if (!pa->has_val || (!value_is(pa->val, pa->vlen, "FULL") &&
                         !value_is(pa->val, pa->vlen, "HDRS")))
        return param_syntax(st);
    return store_value(&m->ret, pa, st);
}

/* NOTIFY=NEVER, or a comma list of SUCCESS, FAILURE, DELAY (RFC 3461) */
static int notify_ok(const char *v, size_t n)
{
    unsigned seen = 0;
    static const char *const words[] = { "SUCCESS", "FAILURE", "DELAY" };

    if (value_is(v, n, "NEVER"))
        return 1;
    while (n > 0) {
        const char *comma = memchr(v, ',', n);
        size_t w = comma ? (size_t)(comma - v) : n;
        unsigned bit = 0;
        for (unsigned i = 0; i < 3; i++)
            if (value_is(v, w, words[i]))
                bit = 1u << i;
        if (!bit || (seen & bit) || (comma && w + 1 == n))
            return 0;
        seen |= bit;
        v += comma ? w + 1 : w;
        n -= comma ? w + 1 : w;
    }
    return seen != 0;
}

static int rcpt_notify(void *t, const struct param *pa,
                       const struct smtp_parse_opts *o, smtp_status *st)
{
    struct smtp_rcpt *r = t;
    (void)o;
    if (!pa->has_val || !notify_ok(pa->val, pa->vlen))
        return param_syntax(st);
    return store_value(&r->notify, pa, st);
}

/* ORCPT=addr-type ";" xtext, at most 500 characters (RFC 3461) */
static int rcpt_orcpt(void *t, const struct param *pa,
                      const struct smtp_parse_opts *o, smtp_status *st)
{
    struct smtp_rcpt *r = t;
    const char *semi;
    size_t tlen;

    (void)o;
    if (!pa->has_val || pa->vlen > 500)
        return param_syntax(st);
    semi = memchr(pa->val, ';', pa->vlen);
    if (!semi)
        return param_syntax(st);
    tlen = (size_t)(semi - pa->val);
    if (!keyword_ok(pa->val, tlen) || tlen + 1 == pa->vlen ||
        !xtext_ok(semi + 1, pa->vlen - tlen - 1))
        return param_syntax(st);
    return store_value(&r->orcpt, pa, st);
}

typedef int (*param_fn)(void *target, const struct param *pa,
                        const struct smtp_parse_opts *o, smtp_status *st);

struct param_def {
    const char *name;
    param_fn fn;
};

#define PARAM_DEF(n, f) { n, f }

static const struct param_def mail_params[] = {
    PARAM_DEF("SIZE", mail_size), PARAM_DEF("BODY", mail_body),
    PARAM_DEF("SMTPUTF8", mail_smtputf8), PARAM_DEF("AUTH", mail_auth),
    PARAM_DEF("ENVID", mail_envid), PARAM_DEF("RET", mail_ret),
    { NULL, NULL }
};

static const struct param_def rcpt_params[] = {
    PARAM_DEF("NOTIFY", rcpt_notify), PARAM_DEF("ORCPT", rcpt_orcpt),
    { NULL, NULL }
};

/* Split "KEY[=VALUE]" at p..end into *pa and check its syntax. */
static int param_split(const char *p, const char *end, struct param *pa,
                       smtp_status *st)
{
    const char *eq = memchr(p, '=', (size_t)(end - p));

    pa->key = p;
    pa->klen = (size_t)((eq ? eq : end) - p);
    pa->has_val = eq != NULL;
    pa->val = eq ? eq + 1 : end;
    pa->vlen = (size_t)(end - pa->val);
    if (!keyword_ok(pa->key, pa->klen))
        return param_syntax(st);
    if (pa->has_val && !value_ok(pa->val, pa->vlen))
        return param_syntax(st);
    return 0;
}

static int param_apply(const struct param_def *defs, void *target,
                       const struct param *pa, unsigned *seen,
                       const struct smtp_parse_opts *o, smtp_status *st)
{
    for (unsigned i = 0; defs[i].name; i++) {
        if (!value_is(pa->key, pa->klen, defs[i].name))
            continue;
        if (*seen & (1u << i))
            return st_set(st, 501, "5.5.4", "Duplicate parameter");
        *seen |= 1u << i;
        return defs[i].fn(target, pa, o, st);
    }
    return param_unknown(st);
}

/* Parameters after the closing '>': SP-separated, up to SMTP_MAX_PARAMS. */
static int parse_params(const char *p, const struct param_def *defs,
                        void *target, const struct smtp_parse_opts *o,
                        smtp_status *st)
{
    const char *end = trim_end(p, p + strlen(p));
    unsigned seen = 0, count = 0;
    struct param pa;

    if (p < end && *p != ' ')
        return param_syntax(st);
    for (;;) {
        const char *tok;
        while (p < end && *p == ' ')
            p++;
        if (p == end)
            return 0;
        if (!o->esmtp)
            return st_set(st, 555, "5.5.4",
                          "Parameters not allowed without EHLO");
        if (++count > SMTP_MAX_PARAMS)
            return st_set(st, 501, "5.5.4", "Too many parameters");
        tok = p;
        while (p < end && *p != ' ')
            p++;
        if (param_split(tok, p, &pa, st) ||
            param_apply(defs, target, &pa, &seen, o, st))
            return -1;
    }
}

/* ---- MAIL / RCPT -------------------------------------------------------- */

static void mail_reset(struct smtp_mail *m)
{
    memset(m, 0, sizeof *m);
    m->size = -1;
}

void smtp_mail_clear(struct smtp_mail *m)
{
    smtp_addr_clear(&m->addr);
    free(m->auth);
    free(m->envid);
    free(m->ret);
    mail_reset(m);
}

void smtp_rcpt_clear(struct smtp_rcpt *r)
{
    smtp_addr_clear(&r->addr);
    free(r->notify);
    free(r->orcpt);
    memset(r, 0, sizeof *r);
}

int smtp_parse_mail(const char *arg, const struct smtp_parse_opts *o,
                    struct smtp_mail *out, smtp_status *st)
{
    const char *after;
    int utf8;

    st_ok(st);
    mail_reset(out);
    if (parse_path(skip_wsp(arg), PATH_MAIL, &out->addr, &after, &utf8, st))
        goto fail;
    if (parse_params(after, mail_params, out, o, st))
        goto fail;
    if (utf8 && !out->smtputf8) {
        st_set(st, 553, "5.6.7", "UTF-8 address requires SMTPUTF8");
        goto fail;
    }
    return 0;
fail:
    smtp_mail_clear(out);
    return -1;
}

int smtp_parse_rcpt(const char *arg, const struct smtp_parse_opts *o,
                    struct smtp_rcpt *out, smtp_status *st)
{
    const char *after;
    int utf8;

    st_ok(st);
    memset(out, 0, sizeof *out);
    if (parse_path(skip_wsp(arg), PATH_RCPT, &out->addr, &after, &utf8, st))
        goto fail;
    if (utf8 && !o->smtputf8) {
        st_set(st, 553, "5.6.7", "UTF-8 address requires SMTPUTF8");
        goto fail;
    }
    if (parse_params(after, rcpt_params, out, o, st))
        goto fail;
    return 0;
fail:
    smtp_rcpt_clear(out);
    return -1;
}

/* ---- BDAT, HELO --------------------------------------------------------- */

static int bdat_syntax(smtp_status *st)
{
    return st_set(st, 501, "5.5.4", "Syntax: BDAT size [LAST]");
}

int smtp_parse_bdat(const char *arg, unsigned long long *size, int *last,
                    smtp_status *st)
{
    const char *p = skip_wsp(arg), *end = trim_end(p, p + strlen(p));
    unsigned long long v = 0;
    const char *d = p;

    st_ok(st);
    *size = 0;
    *last = 0;
    for (; p < end && is_digit((unsigned char)*p); p++) {
        unsigned dv = (unsigned)(*p - '0');
        if (v > (ULLONG_MAX - dv) / 10)
            return bdat_syntax(st);
        v = v * 10 + dv;
    }
    if (p == d || (p < end && *p != ' '))
        return bdat_syntax(st);
    p = skip_wsp(p);
    if (p < end && !value_is(p, (size_t)(end - p), "LAST"))
        return bdat_syntax(st);
    *size = v;
    *last = p < end;
    return 0;
}

int smtp_parse_helo(const char *arg, smtp_status *st)
{
    const char *p = skip_wsp(arg), *end = trim_end(p, p + strlen(p));

    st_ok(st);
    if (p == end)
        return st_set(st, 501, "5.5.4", "Syntax: EHLO hostname");
    while (p < end) {
        unsigned char c = (unsigned char)*p;
        if (c <= ' ' || c == 0x7f)
            return st_set(st, 501, "5.5.4", "Syntax: EHLO hostname");
        /* the name goes into Received:, logs and the JSON envelope */
        int n = c < 0x80 ? 1 : utf8_len((const unsigned char *)p);
        if (n == 0 || n > end - p)
            return st_set(st, 501, "5.5.4", "Malformed UTF-8 in the HELO/EHLO name");
        p += n;
    }
    return 0;
}
