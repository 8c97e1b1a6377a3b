/* smtp_data.c — fuzz target for the DATA decoder (src/proto/smtp_data.h).
 *
 * Input: one byte of policy (bare CR/LF, long lines, line limit), eight
 * bytes that seed the chunk sizes, then the bytes after DATA. The stream is
 * decoded in one piece, in random chunks (empty ones included), and byte by
 * byte; every way must give the same message bytes, the same end of data,
 * the same flags and the same verdict as a plain byte-at-a-time model of
 * the rules written down in smtp_data.h. The BDAT scan is checked the same
 * way against its own model. */
#include "fuzz.h"
#include "proto/smtp_data.h"

#include <string.h>

/* What one decoding produced. */
struct out {
    char *buf;
    size_t len, cap;
    size_t consumed;
    int done;
    unsigned flags;
    int code;
    const char *enh, *why;
};

static void out_emit(void *ctx, const char *p, size_t n)
{
    struct out *o = ctx;
    FUZZ_CHECK(n > 0);      /* runs are never empty */
    if (o->len + n > o->cap) {
        o->cap = (o->len + n) * 2;
        o->buf = realloc(o->buf, o->cap);
        FUZZ_CHECK(o->buf != NULL);
    }
    memcpy(o->buf + o->len, p, n);
    o->len += n;
}

static void out_byte(struct out *o, char c)
{
    out_emit(o, &c, 1);
}

struct policy {
    size_t max_line;
    enum data_bare_policy bare;
    enum data_long_policy longl;
};

static struct policy policy_of(uint8_t b)
{
    static const size_t lines[8] = { 998, 1, 2, 3, 5, 8, 16, 76 };
    struct policy p = { lines[b & 7],
                        (b & 8) ? DATA_BARE_ACCEPT : DATA_BARE_REJECT,
                        (b & 16) ? DATA_LONG_WRAP : DATA_LONG_REJECT };
    return p;
}

/* One more data octet joins the line (the model of line_grow). */
static void model_octet(const struct policy *p, struct out *o, size_t *line,
                        char c)
{
    if (*line >= p->max_line) {
        if (p->longl == DATA_LONG_WRAP) {
            out_emit(o, "\r\n", 2);
            *line = 0;
        } else {
            o->flags |= DATA_F_LONG_LINE;
        }
    }
    (*line)++;
    out_byte(o, c);
}

/* The rules, one octet at a time: only CR LF ends a line; a line that is
 * "." ends the data; a leading dot is removed; a bare LF is data and
 * restarts the count; a bare CR is data; a CR at the very end of the input
 * is held back (not emitted yet). */
static void model_decode(const struct policy *p, const char *in, size_t n,
                         struct out *o)
{
    size_t i = 0, line = 0;
    int bol = 1;
    while (i < n) {
        char c = in[i];
        if (bol) {
            bol = 0;
            if (c == '.') {
                if (n - i >= 3 && in[i + 1] == '\r' && in[i + 2] == '\n') {
                    o->done = 1;
                    o->consumed = i + 3;
                    return;
                }
                i++;
                continue;
            }
        }
        if (c == '\r' && i + 1 == n)
            break;                      /* held back */
        if (c == '\r' && in[i + 1] == '\n') {
            out_emit(o, "\r\n", 2);
            i += 2;
            line = 0;
            bol = 1;
            continue;
        }
        if (c == '\n') {
            o->flags |= DATA_F_BARE_LF;
            out_byte(o, c);
            line = 0;
            i++;
            continue;
        }
        if (c == '\r')
            o->flags |= DATA_F_BARE_CR;
        if (c == '\0')
            o->flags |= DATA_F_NUL;
        model_octet(p, o, &line, c);
        i++;
    }
    o->consumed = n;
}

/* The verdict the header promises for a set of flags. */
static void model_verdict(const struct policy *p, struct out *o)
{
    o->code = 550;
    if ((o->flags & (DATA_F_BARE_CR | DATA_F_BARE_LF)) && p->bare == DATA_BARE_REJECT)
        o->enh = "5.5.2";
    else if ((o->flags & DATA_F_LONG_LINE) && p->longl == DATA_LONG_REJECT)
        o->enh = "5.6.0";
    else if (o->flags & DATA_F_NUL)
        o->enh = "5.6.0";
    else
        o->code = 0, o->enh = NULL;
}

/* Feed in chunks: sizes from rng, or all at once (rng NULL), or one byte
 * at a time (step 1). Stops at the end of data like the session does. */
static void run_decoder(const struct policy *p, const char *in, size_t n,
                        struct fuzz_rng *rng, size_t step, struct out *o)
{
    struct data_decoder d;
    size_t off = 0;
    data_decoder_init(&d, p->max_line, p->bare, p->longl, out_emit, o);
    while (!o->done) {
        size_t want = n - off;
        if (step)
            want = want < step ? want : step;
        else if (rng)
            want = fuzz_rng_below(rng, 4) == 0 ? fuzz_rng_below(rng, want + 1)
                                               : fuzz_rng_below(rng, 9);
        if (want > n - off)
            want = n - off;
        size_t got = data_decoder_feed(&d, in + off, want, &o->done);
        FUZZ_CHECK(got <= want);
        FUZZ_CHECK(o->done || got == want);
        off += got;
        if (off == n && !o->done)
            break;
    }
    if (o->done) {      /* once done, always done and nothing consumed */
        int again = 0;
        FUZZ_CHECK(data_decoder_feed(&d, in, n, &again) == 0 && again);
    }
    o->consumed = off;
    o->flags = d.flags;
    o->why = data_decoder_verdict(&d, &o->code, &o->enh);
    FUZZ_CHECK((o->why != NULL) == (o->code != 0));
}

static void same(const struct out *a, const struct out *b)
{
    FUZZ_CHECK(a->len == b->len);
    FUZZ_CHECK(a->len == 0 || memcmp(a->buf, b->buf, a->len) == 0);
    FUZZ_CHECK(a->consumed == b->consumed);
    FUZZ_CHECK(a->done == b->done);
    FUZZ_CHECK(a->flags == b->flags);
    FUZZ_CHECK(a->code == b->code);
    FUZZ_CHECK((a->enh == NULL) == (b->enh == NULL));
    FUZZ_CHECK(!a->enh || strcmp(a->enh, b->enh) == 0);
}

/* ---- BDAT: the scan sees raw content, no stuffing, no end marker */

static unsigned model_scan(const char *in, size_t n)
{
    unsigned f = 0;
    for (size_t i = 0; i < n; i++) {
        if (in[i] == '\0')
            f |= DATA_F_NUL;
        if (in[i] == '\n' && (i == 0 || in[i - 1] != '\r'))
            f |= DATA_F_BARE_LF;
        if (in[i] == '\r' && (i + 1 == n || in[i + 1] != '\n'))
            f |= DATA_F_BARE_CR;
    }
    return f;
}

static unsigned run_scan(const struct policy *p, const char *in, size_t n,
                         struct fuzz_rng *rng)
{
    struct data_decoder d;
    data_decoder_init(&d, p->max_line, p->bare, p->longl, out_emit, NULL);
    for (size_t off = 0; off < n;) {
        size_t k = rng ? fuzz_rng_below(rng, n - off + 1) : n - off;
        data_decoder_scan(&d, in + off, k);
        off += k;
    }
    data_decoder_scan_end(&d);
    return d.flags;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 9)
        return 0;
    struct policy p = policy_of(data[0]);
    struct fuzz_rng rng;
    const char *in = (const char *)data + 9;
    size_t n = size - 9;
    struct out model = { 0 }, whole = { 0 }, chunks = { 0 }, bytes = { 0 };

    model_decode(&p, in, n, &model);
    model_verdict(&p, &model);
    model.why = model.code ? "" : NULL;
    run_decoder(&p, in, n, NULL, 0, &whole);
    fuzz_rng_seed(&rng, data + 1, 8);
    run_decoder(&p, in, n, &rng, 0, &chunks);
    run_decoder(&p, in, n, NULL, 1, &bytes);
    same(&model, &whole);
    same(&whole, &chunks);
    same(&whole, &bytes);

    unsigned scan = model_scan(in, n);
    FUZZ_CHECK(run_scan(&p, in, n, NULL) == scan);
    FUZZ_CHECK(run_scan(&p, in, n, &rng) == scan);

    free(model.buf);
    free(whole.buf);
    free(chunks.buf);
    free(bytes.buf);
    return 0;
}
