/* auth.c — fuzz target for the SASL exchange (src/proto/auth.h).
 *
 * Input: lines separated by LF. The first is the AUTH argument, the others
 * the client's responses, fed while the exchange asks for more (as
 * session.c does; lines with a NUL never reach auth_continue there). A
 * complete exchange must carry a user and a password, and they must be
 * what decoding the responses by hand gives. Every failure is a complete
 * 4xx/5xx reply. The base64 decoder is checked on its own: what an encoder
 * makes of the input decodes back to it. */
#include "fuzz.h"
#include "proto/auth.h"

#include <string.h>

static void check_step(const struct auth_step *st)
{
    switch (st->next) {
    case AUTH_CHALLENGE:
        FUZZ_CHECK(st->challenge != NULL);
        break;
    case AUTH_COMPLETE:
        break;
    case AUTH_FAIL:
        FUZZ_CHECK(st->code >= 400 && st->code < 600);
        FUZZ_CHECK(st->enh && st->text && st->enh[0] == '0' + st->code / 100);
        break;
    default:
        FUZZ_CHECK(0);
    }
}

/* Decode one response by hand (NULL when not base64). */
static char *decode(const char *s, int initial, size_t *n)
{
    size_t len = strlen(s);
    if (initial && !strcmp(s, "="))
        len = 0;
    char *out = malloc(len / 4 * 3 + 1);
    FUZZ_CHECK(out != NULL);
    long got = auth_base64_decode(s, len, out);
    if (got < 0) {
        free(out);
        return NULL;
    }
    *n = (size_t)got;
    return out;
}

/* The credentials of a completed exchange match the responses. */
static void check_creds(const struct auth_sasl *a, char **resp, size_t nresp,
                        int initial)
{
    FUZZ_CHECK(a->creds.user && a->creds.password && a->creds.mechanism);
    size_t n;
    if (a->mech == AUTH_MECH_PLAIN) {
        FUZZ_CHECK(!strcmp(a->creds.mechanism, "PLAIN") && nresp == 1);
        char *d = decode(resp[0], initial, &n);
        FUZZ_CHECK(d != NULL);
        char *u = memchr(d, '\0', n);
        FUZZ_CHECK(u && (d[0] == '\0' || !strcmp(d, u + 1)));
        FUZZ_CHECK(!strcmp(a->creds.user, u + 1));
        FUZZ_CHECK(!strcmp(a->creds.password, u + strlen(u + 1) + 2));
        free(d);
        return;
    }
    FUZZ_CHECK(!strcmp(a->creds.mechanism, "LOGIN") && nresp == 2);
    char *u = decode(resp[0], initial, &n), *p = decode(resp[1], 0, &n);
    FUZZ_CHECK(u && p && !strcmp(a->creds.user, u) && !strcmp(a->creds.password, p));
    free(u);
    free(p);
}

static void b64_encode(const uint8_t *in, size_t n, char *out)
{
    static const char tab[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t w = (uint32_t)in[i] << 16;
        if (i + 1 < n)
            w |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n)
            w |= in[i + 2];
        out[o++] = tab[w >> 18 & 63];
        out[o++] = tab[w >> 12 & 63];
        out[o++] = i + 1 < n ? tab[w >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? tab[w & 63] : '=';
    }
    out[o] = '\0';
}

static void check_base64(const uint8_t *data, size_t size)
{
    char *enc = malloc((size + 2) / 3 * 4 + 1);
    char *dec = malloc(size + 1);
    FUZZ_CHECK(enc && dec);
    b64_encode(data, size, enc);
    long got = auth_base64_decode(enc, strlen(enc), dec);
    FUZZ_CHECK(got == (long)size && memcmp(dec, data, size) == 0);
    free(enc);
    free(dec);
    /* the raw input as base64: never more than len*3/4 bytes out */
    char *out = malloc(size / 4 * 3 + 1);
    FUZZ_CHECK(out != NULL);
    got = auth_base64_decode((const char *)data, size, out);
    FUZZ_CHECK(got == -1 || (size_t)got <= size / 4 * 3);
    free(out);
}

/* Split data into at most max NUL-terminated lines at LF; len[i] is the
 * real length (a NUL inside makes strlen shorter). */
static size_t split_lines(const uint8_t *data, size_t size, char **lines,
                          size_t *len, size_t max)
{
    size_t n = 0, start = 0;
    for (size_t i = 0; i <= size && n < max; i++) {
        if (i < size && data[i] != '\n')
            continue;
        lines[n] = malloc(i - start + 1);
        FUZZ_CHECK(lines[n] != NULL);
        memcpy(lines[n], data + start, i - start);
        lines[n][i - start] = '\0';
        len[n++] = i - start;
        start = i + 1;
    }
    return n;
}

/* The initial response of an AUTH argument as split_arg sees it, or NULL. */
static char *initial_response(const char *arg)
{
    const char *p = arg + strcspn(arg, " ");
    p += strspn(p, " ");
    size_t n = strlen(p);
    while (n && p[n - 1] == ' ')
        n--;
    return n ? strndup(p, n) : NULL;
}

static void run_exchange(char **lines, const size_t *len, size_t nlines)
{
    struct auth_sasl a = { 0 };
    struct auth_step st;
    char *ir = initial_response(lines[0]), *resp[2];
    size_t nresp = 0, i = 1;

    auth_start(&a, lines[0], &st);
    check_step(&st);
    if (ir && st.next != AUTH_FAIL)
        resp[nresp++] = ir;
    /* the session refuses a response line with a NUL before this point */
    while (st.next == AUTH_CHALLENGE && i < nlines && strlen(lines[i]) == len[i]) {
        FUZZ_CHECK(nresp < 2);
        resp[nresp++] = lines[i];
        auth_continue(&a, lines[i++], &st);
        check_step(&st);
    }
    if (st.next == AUTH_COMPLETE)
        check_creds(&a, resp, nresp, ir != NULL);
    /* after a failure, a response is "no authentication in progress" */
    if (st.next == AUTH_FAIL && i < nlines && strcmp(lines[i], "*") != 0) {
        auth_continue(&a, lines[i], &st);
        FUZZ_CHECK(st.next == AUTH_FAIL && st.code == 503);
    }
    auth_clear(&a);
    FUZZ_CHECK(a.user == NULL && a.password == NULL && a.mech == AUTH_MECH_NONE);
    free(ir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *lines[16];
    size_t len[16];
    size_t n = split_lines(data, size, lines, len, 16);

    run_exchange(lines, len, n);
    for (size_t i = 0; i < n; i++)
        free(lines[i]);
    check_base64(data, size);
    return 0;
}
