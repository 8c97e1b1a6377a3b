/* smtp_data.c — unit tests for the DATA decoder: end of data, dot
 * unstuffing, SMTP smuggling variants, NUL bytes, line limits, and the same
 * results whatever way the input is split into chunks. */
#include "proto/smtp_data.h"
#include "tap.h"

#include <stdint.h>
#include <stdlib.h>

/* Growing output buffer the decoder emits into. */
struct sink {
    char *buf;
    size_t len, cap;
    size_t calls;
};

static void sink_emit(void *ctx, const char *p, size_t n)
{
    struct sink *s = ctx;

    if (s->len + n + 1 > s->cap) {
        s->cap = (s->len + n + 1) * 2;
        s->buf = realloc(s->buf, s->cap);
        if (!s->buf)
            abort();
    }
    memcpy(s->buf + s->len, p, n);
    s->len += n;
    s->buf[s->len] = '\0';
    s->calls++;
}

/* The result of decoding one input. */
struct res {
    struct sink out;
    size_t consumed;
    int done;
    unsigned flags;
    int code;
    const char *enh, *reason;
};

struct cfg {
    size_t max_line;
    enum data_bare_policy bare;
    enum data_long_policy longl;
};

static const struct cfg DEF = { 998, DATA_BARE_REJECT, DATA_LONG_REJECT };

static void res_free(struct res *r)
{
    free(r->out.buf);
    memset(r, 0, sizeof *r);
}

/* Feed `in` in chunks that end at the given cut offsets (ascending), as a
 * session would: stop at the end of data. */
static void run_cuts(const struct cfg *c, const char *in, size_t n,
                     const size_t *cuts, size_t ncuts, struct res *r)
{
    struct data_decoder d;
    size_t off = 0;

    memset(r, 0, sizeof *r);
    data_decoder_init(&d, c->max_line, c->bare, c->longl, sink_emit, &r->out);
    for (size_t i = 0; i <= ncuts && !r->done; i++) {
        size_t stop = i < ncuts ? cuts[i] : n;
        size_t got = data_decoder_feed(&d, in + off, stop - off, &r->done);
        if (!r->done && got != stop - off)
            printf("# short consume without done\n");
        off += got;
        if (!r->done)
            off = stop;
    }
    r->consumed = off;
    r->flags = d.flags;
    r->reason = data_decoder_verdict(&d, &r->code, &r->enh);
}

static void run_whole(const struct cfg *c, const char *in, size_t n,
                      struct res *r)
{
    run_cuts(c, in, n, NULL, 0, r);
}

static int res_same(const struct res *a, const struct res *b)
{
    return a->out.len == b->out.len &&
           (a->out.len == 0 || memcmp(a->out.buf, b->out.buf, a->out.len) == 0)
           && a->consumed == b->consumed && a->done == b->done &&
           a->flags == b->flags && a->code == b->code;
}

/* Every single split point, and byte by byte, must give the whole result. */
static int splits_agree(const struct cfg *c, const char *in, size_t n)
{
    struct res whole, part;
    size_t *cuts = malloc((n + 1) * sizeof *cuts);
    int same = 1;

    run_whole(c, in, n, &whole);
    for (size_t i = 0; i <= n && same; i++) {
        run_cuts(c, in, n, &i, 1, &part);
        same = res_same(&whole, &part);
        res_free(&part);
    }
    for (size_t i = 0; i < n; i++)
        cuts[i] = i;
    if (same) {
        run_cuts(c, in, n, cuts, n, &part);
        same = res_same(&whole, &part);
        res_free(&part);
    }
    free(cuts);
    res_free(&whole);
    return same;
}

#define S(lit) lit, sizeof(lit) - 1
#define ALL ((size_t)-1)   /* consumed: the whole input */

/* Decode in one piece; check output, consumed count, done and flags. */
static void check(const struct cfg *c, const char *in, size_t n,
                  const char *want, size_t wlen, size_t consumed, int done,
                  unsigned flags, const char *name)
{
    struct res r;

    if (consumed == ALL)
        consumed = n;
    run_whole(c, in, n, &r);
    ok(r.out.len == wlen && (wlen == 0 || memcmp(r.out.buf, want, wlen) == 0),
       "%s: output", name);
    is_int(r.consumed, consumed, "%s: consumed", name);
    is_int(r.done, done, "%s: done", name);
    is_int(r.flags, flags, "%s: flags", name);
    ok(splits_agree(c, in, n), "%s: identical at every split", name);
    res_free(&r);
}


static void test_basic(void)
{
    check(&DEF, S("Subject: x\r\n\r\nbody\r\n.\r\n"),
          S("Subject: x\r\n\r\nbody\r\n"), ALL, 1, 0, "simple message");
    check(&DEF, S(".\r\n"), S(""), 3, 1, 0, "empty message at start");
    check(&DEF, S(".\r\nQUIT\r\n"), S(""), 3, 1, 0,
          "empty message then pipelined QUIT");
    check(&DEF, S("a\r\n.\r\nQUIT\r\n"), S("a\r\n"), 6, 1, 0,
          "pipelined QUIT after end");
    check(&DEF, S("a\r\n.\r\nMAIL FROM:<>\r\nRCPT TO:<x@y>\r\n"),
          S("a\r\n"), 6, 1, 0, "pipelined transaction after end");
    check(&DEF, S("a\r\nb"), S("a\r\nb"), 4, 0, 0, "unfinished message");
    check(&DEF, S(""), S(""), 0, 0, 0, "no input");
    check(&DEF, S("\r\n.\r\n"), S("\r\n"), 5, 1, 0, "empty line then end");
}

static void test_stuffing(void)
{
    check(&DEF, S("..\r\n.\r\n"), S(".\r\n"), 7, 1, 0, "line of one dot");
    check(&DEF, S("..hidden\r\n.\r\n"), S(".hidden\r\n"), 13, 1, 0,
          "stuffed line");
    check(&DEF, S("...\r\n.\r\n"), S("..\r\n"), 8, 1, 0, "two dots kept");
    check(&DEF, S("a\r\n.b\r\n.\r\n"), S("a\r\nb\r\n"), 10, 1, 0,
          "unstuffed single dot (lenient)");
    check(&DEF, S("a.\r\n.\r\n"), S("a.\r\n"), 7, 1, 0,
          "dot in the middle is data");
    check(&DEF, S("a\r\n. \r\n.\r\n"), S("a\r\n \r\n"), ALL, 1, 0,
          "dot space is not the end");
    check(&DEF, S("x\r\n..\r\n..\r\n.\r\n"), S("x\r\n.\r\n.\r\n"), ALL, 1, 0,
          "several dot lines");
}

static void test_smuggling(void)
{
    const unsigned LF = DATA_F_BARE_LF, CR = DATA_F_BARE_CR;

    check(&DEF, S("a\n.\nb\r\n.\r\n"), S("a\n.\nb\r\n"), ALL, 1, LF,
          "\\n.\\n is not the end");
    check(&DEF, S("a\n.\r\nb\r\n.\r\n"), S("a\n.\r\nb\r\n"), ALL, 1, LF,
          "\\n.\\r\\n is not the end");
    check(&DEF, S("a\r.\r\nb\r\n.\r\n"), S("a\r.\r\nb\r\n"), ALL, 1, CR,
          "\\r.\\r\\n is not the end");
    check(&DEF, S("a\r\n.\rb\r\n.\r\n"), S("a\r\n\rb\r\n"), ALL, 1, CR,
          "\\r\\n.\\r is not the end");
    check(&DEF, S("a\r\n.\nb\r\n.\r\n"), S("a\r\n\nb\r\n"), ALL, 1, LF,
          "\\r\\n.\\n is not the end");
    check(&DEF, S("a\r\n.\r.\r\n"), S("a\r\n\r.\r\n"), 8, 0, CR,
          "\\r\\n.\\r.\\r\\n is not the end");
    check(&DEF, S("a\r\n.\r\r\n.\r\n"), S("a\r\n\r\r\n"), ALL, 1, CR,
          "\\r\\n.\\r\\r\\n is a bare CR line");
    check(&DEF, S("a\n\r\n.\r\n"), S("a\n\r\n"), 7, 1, LF,
          "bare LF before a real end");
    check(&DEF, S("a\r\r\n.\r\n"), S("a\r\r\n"), 7, 1, CR,
          "CR CR LF: first CR is bare");
    check(&DEF, S("\n.\n"), S("\n.\n"), 3, 0, LF, "only \\n.\\n");
    check(&DEF, S(".\n"), S("\n"), 2, 0, LF, "dot LF at start");
    check(&DEF, S(".\r"), S(""), 2, 0, 0, "dot CR held at the end");
    check(&DEF, S("a\r"), S("a"), 2, 0, 0, "CR held at the end");
}

static void test_smuggling_verdicts(void)
{
    struct cfg acc = DEF;
    struct res r;

    run_whole(&DEF, S("a\n.\nb\r\n.\r\n"), &r);
    is_int(r.code, 550, "bare LF rejected: 550");
    is_str(r.enh, "5.5.2", "bare LF rejected: 5.5.2");
    is_str(r.reason, "Bare CR or LF in message", "bare LF reason");
    res_free(&r);

    run_whole(&DEF, S("a\rb\r\n.\r\n"), &r);
    is_int(r.code, 550, "bare CR rejected: 550");
    res_free(&r);

    acc.bare = DATA_BARE_ACCEPT;
    run_whole(&acc, S("a\n.\nb\r\n.\r\n"), &r);
    ok(r.reason == NULL, "bare LF accepted under ACCEPT");
    is_int(r.code, 0, "bare LF accepted: no code");
    is_int(r.flags, DATA_F_BARE_LF, "bare LF accepted: still flagged");
    is_str(r.out.buf, "a\n.\nb\r\n", "bare LF accepted: kept as data");
    res_free(&r);
    ok(splits_agree(&acc, S("a\n.\r\n\r.\r\n\n.\n.\r\n")),
       "ACCEPT: identical at every split");

    run_whole(&DEF, S("ok\r\n.\r\n"), &r);
    ok(r.reason == NULL && r.code == 0 && r.enh == NULL, "clean: no verdict");
    res_free(&r);
}

static void test_nul(void)
{
    struct cfg acc = DEF;
    struct res r;

    check(&DEF, S("a\0b\r\n.\r\n"), S("a\0b\r\n"), 8, 1, DATA_F_NUL,
          "NUL in a line");
    check(&DEF, S("\0\r\n.\r\n"), S("\0\r\n"), 6, 1, DATA_F_NUL,
          "NUL at line start");
    run_whole(&DEF, S("a\0b\r\n.\r\n"), &r);
    is_int(r.code, 550, "NUL: 550");
    is_str(r.enh, "5.6.0", "NUL: 5.6.0");
    is_str(r.reason, "NUL byte in message", "NUL: reason");
    res_free(&r);
    acc.bare = DATA_BARE_ACCEPT;
    acc.longl = DATA_LONG_WRAP;
    run_whole(&acc, S("a\0b\r\n.\r\n"), &r);
    is_int(r.code, 550, "NUL rejected under every policy");
    res_free(&r);
}

/* A message of one line of `n` x's, optionally dot-first. */
static char *long_msg(size_t n, int dot_first, size_t *len)
{
    char *m = malloc(n + 8);

    memset(m, 'x', n);
    if (dot_first && n)
        m[0] = '.';
    memcpy(m + n, "\r\n.\r\n", 5);
    *len = n + 5;
    return m;
}

static void check_long_reject(size_t n, int want_flag)
{
    size_t len;
    char *m = long_msg(n, 0, &len);
    struct res r;

    run_whole(&DEF, m, len, &r);
    is_int(r.flags, want_flag ? DATA_F_LONG_LINE : 0,
           "%zu-octet line: long flag %d", n, want_flag);
    is_int(r.code, want_flag ? 550 : 0, "%zu-octet line: verdict", n);
    if (want_flag)
        is_str(r.reason, "Line longer than 998 octets", "%zu: reason", n);
    is_int(r.out.len, n + 2, "%zu-octet line: all bytes emitted", n);
    ok(splits_agree(&DEF, m, len), "%zu-octet line: identical splits", n);
    res_free(&r);
    free(m);
}

static void check_wrap(size_t n)
{
    struct cfg w = DEF;
    size_t len, want_len = 0;
    char *m = long_msg(n, 0, &len);
    char *want = malloc(n + n / 998 * 2 + 8);
    struct res r;

    for (size_t i = 0; i < n; i++) {
        if (i && i % 998 == 0) {
            memcpy(want + want_len, "\r\n", 2);
            want_len += 2;
        }
        want[want_len++] = 'x';
    }
    memcpy(want + want_len, "\r\n", 2);
    want_len += 2;
    w.longl = DATA_LONG_WRAP;
    run_whole(&w, m, len, &r);
    ok(r.out.len == want_len && memcmp(r.out.buf, want, want_len) == 0,
       "WRAP %zu-octet line: wrapped at 998", n);
    is_int(r.code, 0, "WRAP %zu: no verdict", n);
    is_int(r.flags, 0, "WRAP %zu: not flagged", n);
    ok(splits_agree(&w, m, len), "WRAP %zu: identical splits", n);
    res_free(&r);
    free(want);
    free(m);
}

static void test_long_lines(void)
{
    struct cfg small = { 4, DATA_BARE_REJECT, DATA_LONG_WRAP };
    struct res r;
    size_t len;
    char *m;

    check_long_reject(998, 0);
    check_long_reject(999, 1);
    check_long_reject(1000, 1);
    check_long_reject(1001, 1);
    check_wrap(998);
    check_wrap(999);
    check_wrap(1000);
    check_wrap(1001);
    check_wrap(2996);

    m = long_msg(999, 1, &len);   /* stuffed: 998 octets once unstuffed */
    run_whole(&DEF, m, len, &r);
    is_int(r.flags, 0, "stuffing dot does not count toward the limit");
    is_int(r.out.len, 1000, "stuffed 999-octet line emitted as 998 + CRLF");
    res_free(&r);
    free(m);

    check(&small, S("abcdefghij\r\n.\r\n"), S("abcd\r\nefgh\r\nij\r\n"), 15,
          1, 0, "wrap at 4");
    check(&small, S("abcd\r\n.\r\n"), S("abcd\r\n"), 9, 1, 0,
          "exactly 4 is not wrapped");
    check(&small, S("abcd\re\r\n.\r\n"), S("abcd\r\n\re\r\n"), 11, 1,
          DATA_F_BARE_CR, "bare CR after a full line wraps first");
    check(&small, S("ab\ncdef\r\n.\r\n"), S("ab\ncdef\r\n"), 12, 1,
          DATA_F_BARE_LF, "bare LF restarts the line count");
    check(&small, S("abcd.e\r\n.\r\n"), S("abcd\r\n.e\r\n"), 11, 1, 0,
          "dot after a wrap stays data");

    run_whole(&(struct cfg){ 4, DATA_BARE_REJECT, DATA_LONG_REJECT },
              S("abcde\r\n.\r\n"), &r);
    is_str(r.reason, "Line too long", "custom limit reason");
    res_free(&r);
}

/* Obvious byte-at-a-time model (no line limit) for random comparisons. */
static void ref_decode(const char *in, size_t n, struct res *r)
{
    size_t i = 0;
    int bol = 1;

    memset(r, 0, sizeof *r);
    while (i < n) {
        if (bol && in[i] == '.') {
            if (i + 2 < n && in[i + 1] == '\r' &&
                in[i + 2] == '\n') {
                r->done = 1;
                i += 3;
                break;
            }
            i++;
            bol = 0;
            continue;
        }
        bol = 0;
        if (in[i] == '\r' && i + 1 < n && in[i + 1] == '\n') {
            sink_emit(&r->out, "\r\n", 2);
            i += 2;
            bol = 1;
            continue;
        }
        if (in[i] == '\r' && i + 1 == n) {
            i++;
            break;
        }
        if (in[i] == '\r')
            r->flags |= DATA_F_BARE_CR;
        if (in[i] == '\n')
            r->flags |= DATA_F_BARE_LF;
        if (in[i] == '\0')
            r->flags |= DATA_F_NUL;
        sink_emit(&r->out, in + i, 1);
        i++;
    }
    r->consumed = i;
}

static uint32_t rng = 12345;

static uint32_t rnd(void)
{
    rng = rng * 1103515245u + 12345u;
    return rng >> 16;
}

static void test_random(void)
{
    static const char alpha[] = "a.\r\n\r\n.\r\n\0";
    struct cfg big = { 100000, DATA_BARE_REJECT, DATA_LONG_REJECT };
    int bad_ref = 0, bad_split = 0;
    char in[48];

    for (int t = 0; t < 3000; t++) {
        size_t n = rnd() % sizeof in;
        struct res a, b, c;
        size_t cuts[3];
        for (size_t i = 0; i < n; i++)
            in[i] = alpha[rnd() % (sizeof alpha - 1)];
        for (size_t i = 0; i < 3; i++)
            cuts[i] = n ? rnd() % (n + 1) : 0;
        if (cuts[0] > cuts[1]) { size_t x = cuts[0]; cuts[0] = cuts[1]; cuts[1] = x; }
        if (cuts[1] > cuts[2]) { size_t x = cuts[1]; cuts[1] = cuts[2]; cuts[2] = x; }
        if (cuts[0] > cuts[1]) { size_t x = cuts[0]; cuts[0] = cuts[1]; cuts[1] = x; }
        run_whole(&big, in, n, &a);
        ref_decode(in, n, &b);
        run_cuts(&big, in, n, cuts, 3, &c);
        bad_ref += a.out.len != b.out.len ||
                   (a.out.len && memcmp(a.out.buf, b.out.buf, a.out.len)) ||
                   a.consumed != b.consumed || a.done != b.done ||
                   a.flags != b.flags;
        bad_split += !res_same(&a, &c);
        res_free(&a);
        res_free(&b);
        res_free(&c);
    }
    is_int(bad_ref, 0, "3000 random inputs match the reference model");
    is_int(bad_split, 0, "3000 random inputs give the same result split");
}

/* Large input: output is correct and comes in few callbacks (runs). */
static void test_runs(void)
{
    const char line[] = "The quick brown fox jumps over the lazy dog\r\n";
    size_t nlines = 20000, ll = sizeof line - 1, n = nlines * ll + 3;
    char *in = malloc(n);
    struct res r;

    for (size_t i = 0; i < nlines; i++)
        memcpy(in + i * ll, line, ll);
    memcpy(in + nlines * ll, ".\r\n", 3);
    run_whole(&DEF, in, n, &r);
    is_int(r.out.len, nlines * ll, "large message: all bytes");
    ok(r.out.len == nlines * ll && memcmp(r.out.buf, in, r.out.len) == 0,
       "large message: bytes unchanged");
    ok(r.out.calls <= 2, "large message: emitted as one run (%zu calls)",
       r.out.calls);
    is_int(r.consumed, n, "large message: consumed to the end");
    res_free(&r);
    free(in);
}

static void test_after_done(void)
{
    struct data_decoder d;
    struct sink s = { 0 };
    int done = 0;
    size_t got;

    data_decoder_init(&d, 0, DATA_BARE_REJECT, DATA_LONG_REJECT, sink_emit, &s);
    is_int(d.max_line, 998, "max_line 0 means 998");
    got = data_decoder_feed(&d, "x\r\n.", 4, &done);
    is_int(got, 4, "partial end consumed");
    is_int(done, 0, "partial end: not done");
    got = data_decoder_feed(&d, "", 0, &done);
    is_int(got, 0, "empty feed");
    is_int(done, 0, "empty feed: not done");
    got = data_decoder_feed(&d, "\r", 1, &done);
    is_int(done, 0, "dot CR: not done yet");
    got = data_decoder_feed(&d, "\nQUIT\r\n", 7, &done);
    is_int(got, 1, "LF ends it, QUIT left over");
    is_int(done, 1, "done");
    got = data_decoder_feed(&d, "more", 4, &done);
    is_int(got, 0, "nothing consumed after the end");
    is_int(done, 1, "still done");
    is_str(s.buf, "x\r\n", "output");
    free(s.buf);
}

/* BDAT content: data_decoder_scan finds bare CR/LF and NUL wherever the
 * chunks are cut, and never flags a CRLF split across chunks. */
static unsigned scan_cut(const char *in, size_t n, size_t cut)
{
    struct data_decoder d;
    data_decoder_init(&d, 0, DATA_BARE_REJECT, DATA_LONG_WRAP, NULL, NULL);
    data_decoder_scan(&d, in, cut);
    data_decoder_scan(&d, in + cut, n - cut);
    data_decoder_scan_end(&d);
    return d.flags;
}

static void test_bdat_scan(void)
{
    static const struct { const char *in; size_t n; unsigned want; } t[] = {
        { "a\r\nb\r\n", 6, 0 },
        { "a\nb\r\n", 5, DATA_F_BARE_LF },
        { "a\rb\r\n", 5, DATA_F_BARE_CR },
        { "a\r\nb\r", 5, DATA_F_BARE_CR },
        { "\n", 1, DATA_F_BARE_LF },
        { "a\0b\r\n", 5, DATA_F_NUL },
        { "\r\r\n", 3, DATA_F_BARE_CR },
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        int same = 1;
        for (size_t cut = 0; cut <= t[i].n; cut++)
            same &= scan_cut(t[i].in, t[i].n, cut) == t[i].want;
        ok(same, "bdat scan case %zu: flags %#x at every cut", i, t[i].want);
    }
    struct data_decoder d;
    int code;
    const char *enh;
    data_decoder_init(&d, 0, DATA_BARE_ACCEPT, DATA_LONG_WRAP, NULL, NULL);
    data_decoder_scan(&d, "a\nb", 3);
    ok(data_decoder_verdict(&d, &code, &enh) == NULL, "bdat scan: accept policy keeps bare LF");
}

int main(void)
{
    test_bdat_scan();
    test_basic();
    test_stuffing();
    test_smuggling();
    test_smuggling_verdicts();
    test_nul();
    test_long_lines();
    test_random();
    test_runs();
    test_after_done();
    return done_testing();
}
