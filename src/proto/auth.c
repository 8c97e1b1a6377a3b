/* auth.c — the SASL exchange of SMTP AUTH: PLAIN (RFC 4616) and LOGIN,
 * with or without an initial response. Decoded secrets live only in the
 * auth_sasl struct and are wiped by auth_clear(). (Failures per client
 * network are counted by the session in the shared counters.) */
#include "proto/auth.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define AUTH_B64_USERNAME "VXNlcm5hbWU6"   /* "Username:" */
#define AUTH_B64_PASSWORD "UGFzc3dvcmQ6"   /* "Password:" */

/* ---------------------------------------------------------------- base64 */

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

long auth_base64_decode(const char *in, size_t len, char *out)
{
    size_t o = 0;
    if (len % 4)
        return -1;
    for (size_t i = 0; i < len; i += 4) {
        int v[4], pad = 0;
        for (int j = 0; j < 4; j++) {
            unsigned char c = (unsigned char)in[i + (size_t)j];
            if (c == '=' && i + 4 == len && j >= 2) {
                v[j] = 0;
                pad++;
                continue;
            }
            if (pad || (v[j] = b64_value(c)) < 0)
                return -1;      /* a bad byte, or data after '=' */
        }
        unsigned long w = (unsigned long)v[0] << 18 | (unsigned long)v[1] << 12 |
                          (unsigned long)v[2] << 6 | (unsigned long)v[3];
        out[o++] = (char)(w >> 16);
        if (pad < 2)
            out[o++] = (char)(w >> 8 & 0xff);
        if (pad < 1)
            out[o++] = (char)(w & 0xff);
    }
    out[o] = '\0';
    return (long)o;
}

/* ----------------------------------------------------------------- steps */

static void step_fail(struct auth_sasl *a, struct auth_step *out, int code,
                      const char *enh, const char *text)
{
    auth_clear(a);
    out->next = AUTH_FAIL;
    out->code = code;
    out->enh = enh;
    out->text = text;
    out->challenge = NULL;
}

static void step_challenge(struct auth_step *out, const char *challenge)
{
    out->next = AUTH_CHALLENGE;
    out->challenge = challenge;
}

static void step_complete(struct auth_sasl *a, struct auth_step *out)
{
    a->creds.mechanism = a->mech == AUTH_MECH_PLAIN ? "PLAIN" : "LOGIN";
    a->creds.user = a->user;
    a->creds.password = a->password;
    out->next = AUTH_COMPLETE;
    out->challenge = NULL;
}

/* Decode a response into a new string; "=" stands for an empty one when
 * it is an initial response. NULL: bad base64, or a NUL where none may be
 * (nul_ok: PLAIN, whose fields are NUL-separated). *n gets the length. */
static char *decode_response(const char *s, int initial, int nul_ok, size_t *n)
{
    size_t len = strlen(s);
    if (initial && len == 1 && s[0] == '=')
        len = 0;
    char *buf = malloc(len / 4 * 3 + 1);
    if (!buf)
        return NULL;
    long got = auth_base64_decode(s, len, buf);
    if (got < 0 || (!nul_ok && memchr(buf, '\0', (size_t)got))) {
        explicit_bzero(buf, len / 4 * 3 + 1);
        free(buf);
        return NULL;
    }
    *n = (size_t)got;
    return buf;
}

/* PLAIN: [authzid] NUL authcid NUL passwd. */
static void plain_response(struct auth_sasl *a, const char *resp, int initial,
                           struct auth_step *out)
{
    size_t n;
    char *buf = decode_response(resp, initial, 1, &n);
    if (!buf) {
        step_fail(a, out, 501, "5.5.2", "Invalid base64 data");
        return;
    }
    char *user = memchr(buf, '\0', n);
    char *pass = user ? memchr(user + 1, '\0', n - (size_t)(user + 1 - buf)) : NULL;
    int malformed = !pass || memchr(pass + 1, '\0', n - (size_t)(pass + 1 - buf));
    int proxy = !malformed && buf[0] && strcmp(buf, user + 1) != 0;
    if (!malformed && !proxy) {
        a->user = strdup(user + 1);
        a->password = strdup(pass + 1);
    }
    explicit_bzero(buf, n);
    free(buf);
    if (malformed)
        step_fail(a, out, 501, "5.5.2", "Invalid PLAIN response");
    else if (proxy)     /* acting for another identity: not supported */
        step_fail(a, out, 535, "5.7.8", "Authorization identity not supported");
    else if (!a->user || !a->password)
        step_fail(a, out, 454, "4.3.0", "Out of memory");
    else
        step_complete(a, out);
}

/* LOGIN: the user name, then the password, each its own response. */
static void login_response(struct auth_sasl *a, const char *resp, int initial,
                           struct auth_step *out)
{
    size_t n;
    char *s = decode_response(resp, initial, 0, &n);
    if (!s) {
        step_fail(a, out, 501, "5.5.2", "Invalid base64 data");
        return;
    }
    if (a->step == 0) {
        a->user = s;
        a->step = 1;
        step_challenge(out, AUTH_B64_PASSWORD);
        return;
    }
    a->password = s;
    step_complete(a, out);
}

/* Split "MECH [initial-response]"; 0 or -1 on a syntax error. */
static int split_arg(const char *arg, char *mech, size_t mlen, const char **ir,
                     size_t *irlen)
{
    size_t n = strcspn(arg, " ");
    if (n == 0)
        return -1;
    /* a name too long for any mechanism becomes "", which none matches */
    snprintf(mech, mlen, "%.*s", (int)(n < mlen ? n : 0), arg);
    const char *p = arg + n;
    while (*p == ' ')
        p++;
    size_t len = strlen(p);
    while (len && p[len - 1] == ' ')
        len--;
    if (memchr(p, ' ', len))
        return -1;
    *ir = len ? p : NULL;
    *irlen = len;
    return 0;
}

void auth_start(struct auth_sasl *a, const char *arg, struct auth_step *out)
{
    char mech[32], *ir_copy = NULL;
    const char *ir = NULL;
    size_t irlen = 0;
    auth_clear(a);
    if (split_arg(arg, mech, sizeof mech, &ir, &irlen) < 0) {
        step_fail(a, out, 501, "5.5.4", "Syntax: AUTH mechanism [initial-response]");
        return;
    }
    if (!strcasecmp(mech, "PLAIN"))
        a->mech = AUTH_MECH_PLAIN;
    else if (!strcasecmp(mech, "LOGIN"))
        a->mech = AUTH_MECH_LOGIN;
    else {
        step_fail(a, out, 504, "5.5.4", "Unrecognized authentication type");
        return;
    }
    if (!ir) {
        step_challenge(out, a->mech == AUTH_MECH_PLAIN ? "" : AUTH_B64_USERNAME);
        return;
    }
    ir_copy = strndup(ir, irlen);
    if (!ir_copy) {
        step_fail(a, out, 454, "4.3.0", "Out of memory");
        return;
    }
    if (a->mech == AUTH_MECH_PLAIN)
        plain_response(a, ir_copy, 1, out);
    else
        login_response(a, ir_copy, 1, out);
    explicit_bzero(ir_copy, irlen);
    free(ir_copy);
}

void auth_continue(struct auth_sasl *a, const char *line, struct auth_step *out)
{
    if (!strcmp(line, "*")) {
        step_fail(a, out, 501, "5.0.0", "Authentication cancelled");
        return;
    }
    if (a->mech == AUTH_MECH_PLAIN)
        plain_response(a, line, 0, out);
    else if (a->mech == AUTH_MECH_LOGIN)
        login_response(a, line, 0, out);
    else
        step_fail(a, out, 503, "5.5.1", "Error: no authentication in progress");
}

static void wipe_free(char *s)
{
    if (s) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

void auth_clear(struct auth_sasl *a)
{
    wipe_free(a->user);
    wipe_free(a->password);
    memset(a, 0, sizeof *a);
}
