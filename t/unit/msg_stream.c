/* msg_stream.c (unit) — the message stream (msg/msg_stream.h) and the
 * dot-stuffer under it (proto/smtp_stuff.h): stuffing across chunk
 * boundaries and resumed at an offset; output of in-memory and spilled
 * stores with edited headers, read into a buffer from any offset and in
 * pieces of any size; the SMTP mode against a byte-at-a-time reference
 * (dots at line starts, at offset 0, at the 16 KB and 64 KB boundaries of
 * the copying steps and at the file-segment boundaries, the end-of-data
 * line for bodies with and without a final CRLF); the evbuffer fill's
 * limit; and the file-segment path equal byte for byte to the copying path,
 * both read out of the evbuffer and written to a file with sendfile. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "msg/message.h"
#include "msg/msg_store.h"
#include "msg/msg_stream.h"
#include "proto/smtp_stuff.h"
#include "tap.h"

static char dir[256];

/* ---------------------------------------------------------------- helpers */

struct bytes {
    char *p;
    size_t n;
};

static void bytes_add(struct bytes *b, const void *p, size_t n)
{
    b->p = realloc(b->p, b->n + n + 1);
    memcpy(b->p + b->n, p, n);
    b->n += n;
}

/* The reference: one byte at a time, then the end-of-data line. */
static struct bytes ref_stuff(const char *in, size_t n, int with_end)
{
    struct bytes b = { malloc(2 * n + 6), 0 };
    int bol = 1;
    for (size_t i = 0; i < n; i++) {
        if (bol && in[i] == '.')
            b.p[b.n++] = '.';
        b.p[b.n++] = in[i];
        bol = in[i] == '\n';
    }
    if (with_end) {
        const char *e = n == 0 || (n >= 2 && in[n - 2] == '\r' && in[n - 1] == '\n')
                        ? ".\r\n" : "\r\n.\r\n";
        memcpy(b.p + b.n, e, strlen(e));
        b.n += strlen(e);
    }
    return b;
}

static int same(struct bytes got, const char *want, size_t n)
{
    int r = got.n == n && (n == 0 || memcmp(got.p, want, n) == 0);
    if (!r)
        printf("#   got %zu bytes, want %zu\n", got.n, n);
    return r;
}

/* A message of n bytes, appended in pieces of piece bytes to a store that
 * keeps mem_limit in RAM, headers parsed. */
static struct msg *mk(const char *p, size_t n, size_t mem_limit, size_t piece)
{
    struct msg_store *st = msg_store_new(mem_limit, dir);
    for (size_t o = 0; o < n; o += piece)
        msg_store_append(st, p + o, n - o < piece ? n - o : piece);
    struct msg *m = msg_new(st);
    msg_parse_headers(m);
    return m;
}

/* Everything the stream gives from off, read n bytes at a time. */
static struct bytes read_all(struct msg *m, size_t off, unsigned flags, size_t n)
{
    struct bytes b = { NULL, 0 };
    char *buf = malloc(n);
    struct msg_stream s;
    if (msg_stream_init(&s, m, off, flags) < 0)
        return b;
    ssize_t r;
    while ((r = msg_stream_read(&s, buf, n)) > 0)
        bytes_add(&b, buf, (size_t)r);
    if (r < 0 || !msg_stream_done(&s))
        printf("#   read %zd, done %d\n", r, msg_stream_done(&s));
    free(buf);
    return b;
}

/* Drain an evbuffer into memory (file segments are mapped in). */
static void drain(struct evbuffer *ev, struct bytes *b)
{
    size_t n = evbuffer_get_length(ev);
    char *p = malloc(n ? n : 1);
    evbuffer_remove(ev, p, n);
    bytes_add(b, p, n);
    free(p);
}

/* Drain an evbuffer the way a socket does: evbuffer_write to a file
 * (sendfile for the file segments of a buffer that drains to an fd). */
static void drain_fd(struct evbuffer *ev, int fd, struct bytes *b)
{
    off_t at = lseek(fd, 0, SEEK_END);
    while (evbuffer_get_length(ev) > 0)
        if (evbuffer_write(ev, fd) <= 0)
            break;
    off_t end = lseek(fd, 0, SEEK_END);
    char *p = malloc((size_t)(end - at) + 1);
    ssize_t r = pread(fd, p, (size_t)(end - at), at);
    bytes_add(b, p, r > 0 ? (size_t)r : 0);
    free(p);
}

/* Everything msg_stream_fill gives, limit bytes at a time; *maxlen the
 * longest the buffer got; the buffer drains to fd when fd >= 0. */
static struct bytes fill_all(struct msg *m, unsigned flags, size_t limit, int fd,
                             size_t *maxlen)
{
    struct bytes b = { NULL, 0 };
    struct evbuffer *ev = evbuffer_new();
    struct msg_stream s;
    int r = 0;
    if (fd >= 0)
        evbuffer_set_flags(ev, EVBUFFER_FLAG_DRAINS_TO_FD);
    msg_stream_init(&s, m, 0, flags);
    *maxlen = 0;
    while (r == 0) {
        r = msg_stream_fill(&s, ev, limit);
        if (evbuffer_get_length(ev) > *maxlen)
            *maxlen = evbuffer_get_length(ev);
        if (fd >= 0)
            drain_fd(ev, fd, &b);
        else
            drain(ev, &b);
    }
    if (r < 0)
        printf("#   fill failed: %s\n", strerror(errno));
    evbuffer_free(ev);
    return b;
}

static void bfree(struct bytes *b)
{
    free(b->p);
    b->p = NULL;
    b->n = 0;
}

/* ------------------------------------------------------------- stuffer */

static char *stuff_all(const char *const *chunks, size_t n)
{
    static char out[1024];
    struct smtp_stuffer s;
    size_t o = 0;
    smtp_stuffer_init(&s);
    for (size_t i = 0; i < n; i++)
        o += smtp_stuff(&s, chunks[i], strlen(chunks[i]), out + o);
    strcpy(out + o, smtp_stuff_end(&s));
    return out;
}

static void test_stuffer(void)
{
    const char *one[] = { "a\r\n.b\r\n..\r\n.\r\n" };
    is_str(stuff_all(one, 1), "a\r\n..b\r\n...\r\n..\r\n.\r\n", "dots doubled at line starts");
    const char *first[] = { ".x\r\n" };
    is_str(stuff_all(first, 1), "..x\r\n.\r\n", "a dot on the very first line");
    const char *split[] = { "a\r", "\n", ".b\r\n" };
    is_str(stuff_all(split, 3), "a\r\n..b\r\n.\r\n", "CRLF split across chunks");
    const char *split2[] = { "a\r\n", ".", "b\r\n" };
    is_str(stuff_all(split2, 3), "a\r\n..b\r\n.\r\n", "dot alone in a chunk");
    const char *nocrlf[] = { "abc" };
    is_str(stuff_all(nocrlf, 1), "abc\r\n.\r\n", "CRLF added when missing");
    const char *barelf[] = { "a\n.\r\n" };
    is_str(stuff_all(barelf, 1), "a\n..\r\n.\r\n", "dot after a bare LF doubled too");
    const char *ones[] = { "a", "\r", "\n" };
    is_str(stuff_all(ones, 3), "a\r\n.\r\n", "one byte at a time: the end seen");
    is_str(stuff_all(NULL, 0), ".\r\n", "empty message");

    struct smtp_stuffer s;
    char out[8];
    smtp_stuffer_resume(&s, 10, "\r\n", 2);
    is_int(smtp_stuff(&s, ".x", 2, out), 3, "resumed after a CRLF: at a line start");
    smtp_stuffer_resume(&s, 10, "\r\n", 2);
    is_str(smtp_stuff_end(&s), ".\r\n", "resumed after a CRLF: short end");
    smtp_stuffer_resume(&s, 10, "ab", 2);
    is_int(smtp_stuff(&s, ".x", 2, out), 2, "resumed inside a line: no stuffing");
    smtp_stuffer_resume(&s, 1, "\n", 1);
    is_str(smtp_stuff_end(&s), "\r\n.\r\n", "resumed after one LF: long end");
    smtp_stuffer_resume(&s, 0, NULL, 0);
    is_str(smtp_stuff_end(&s), ".\r\n", "resumed at 0: empty");
}

/* ------------------------------------------------------ raw output */

static const char MSG1[] =
    "Subject: hi\r\n"
    "X-Drop: 1\r\n"
    "To: a@b\r\n"
    "\r\n"
    ".first body line\r\n"
    "second\r\n"
    "..\r\n"
    "last";

static const char OUT1[] =
    "X-Top: t\r\n"
    "Subject: hi\r\n"
    "To: a@b\r\n"
    "X-Bottom: b\r\n"
    "\r\n"
    ".first body line\r\n"
    "second\r\n"
    "..\r\n"
    "last";

static struct msg *mk_edited(size_t mem_limit)
{
    struct msg *m = mk(MSG1, sizeof MSG1 - 1, mem_limit, 5);
    msg_header_remove(m, "X-Drop");
    msg_header_prepend(m, "X-Top", "t");
    msg_header_add(m, "X-Bottom", "b");
    return m;
}

static void test_raw(void)
{
    const size_t n = sizeof OUT1 - 1;
    for (int spill = 0; spill < 2; spill++) {
        struct msg *m = mk_edited(spill ? 40 : 1 << 20);
        size_t fd_len;
        is_int(msg_store_spilled(m->store, &fd_len) >= 0, spill,
               "%s store", spill ? "spilled" : "in-memory");
        int all = 1;
        for (size_t piece = 1; piece <= n + 1; piece++) {
            struct bytes b = read_all(m, 0, 0, piece);
            all &= same(b, OUT1, n);
            bfree(&b);
        }
        ok(all, "edited headers then the body, read in pieces of 1..%zu bytes", n + 1);
        all = 1;
        for (size_t off = 0; off <= n; off++) {
            struct bytes b = read_all(m, off, 0, 7);
            all &= same(b, OUT1 + off, n - off);
            bfree(&b);
        }
        ok(all, "from every offset 0..%zu", n);
        struct msg_stream s;
        char c;
        msg_stream_init(&s, m, n + 3, 0);
        ok(msg_stream_read(&s, &c, 1) == 0 && msg_stream_done(&s), "past the end: done");
        msg_free(m);
    }
}

/* ------------------------------------------------------ SMTP mode */

static void smtp_case(const char *body, size_t n, const char *what)
{
    struct bytes want = ref_stuff(body, n, 1);
    for (int spill = 0; spill < 2; spill++) {
        struct msg *m = mk(body, n, spill ? 3 : 1 << 20, 4);
        int all = 1;
        for (size_t piece = 2; piece <= 2 * n + 8; piece++) {
            struct bytes b = read_all(m, 0, MSG_STREAM_SMTP, piece);
            all &= same(b, want.p, want.n);
            bfree(&b);
        }
        ok(all, "%s (%s): stuffed, every read size", what, spill ? "spilled" : "in memory");
        all = 1;
        for (size_t off = 0; off <= n; off++) {
            struct bytes pre = ref_stuff(body, off, 0);
            struct bytes b = read_all(m, off, MSG_STREAM_SMTP, 3);
            all &= same(b, want.p + pre.n, want.n - pre.n);
            bfree(&b);
            bfree(&pre);
        }
        ok(all, "%s (%s): from every offset", what, spill ? "spilled" : "in memory");
        msg_free(m);
    }
    bfree(&want);
}

static void test_smtp(void)
{
    static const char *const cases[][2] = {
        { ".starts with a dot\r\n.\r\nx.y\r\n..\r\n", "a dot at offset 0, CRLF at the end" },
        { "Subject: s\r\n\r\n.a\r\nb\r\n.", "headers, a dot on the last line, no CRLF" },
        { "Subject: s\r\n\r\nbody\n.bare\n", "bare LF line ends: dots after them" },
        { "Subject: s\r\n\r\nno end", "no CRLF at the end" },
        { "Subject: s\r\n\r\n", "an empty body" },
        { "", "an empty message" },
        { "\r\n", "just CRLF" },
        { ".", "a lone dot" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        smtp_case(cases[i][0], strlen(cases[i][0]), cases[i][1]);

    struct msg *m = mk("abc", 3, 1 << 20, 3);
    struct msg_stream s;
    char buf[8];
    msg_stream_init(&s, m, 0, MSG_STREAM_SMTP);
    errno = 0;
    ok(msg_stream_read(&s, buf, 1) == -1 && errno == EINVAL, "SMTP: a 1-byte read is refused");
    is_int(msg_stream_read(&s, buf, 8), 3, "message bytes alone...");
    is_int(msg_stream_read(&s, buf, 2), 2, "... then the end line, as much as fits");
    is_int(msg_stream_read(&s, buf, 8), 3, "... and its rest");
    ok(memcmp(buf, ".\r\n", 3) == 0 && msg_stream_done(&s), "done after \"\\r\\n.\\r\\n\"");
    is_int(msg_stream_read(&s, buf, 8), 0, "then 0");
    msg_free(m);
}

/* ------------------------------------------------- large, evbuffer */

/* A body of about n bytes: lines of 1..120 bytes, a fifth of them starting
 * with '.', some ending with a bare LF, and dots forced at the line
 * starts on and beside the boundaries of the copying steps (16 KB, 64 KB)
 * and of the file segments (4 MB, counted from the message start or from
 * the end of a first copying step). */
static char *big_message(size_t n, size_t *len, unsigned dot_every)
{
    static const char hdr[] = "Subject: big\r\nX-A: 1\r\n\r\n";
    char *p = malloc(n + 200);
    uint32_t x = 12345;
    size_t o = sizeof hdr - 1;
    memcpy(p, hdr, o);
    while (o < n) {
        x = x * 1103515245u + 12345u;
        size_t ll = 1 + (x >> 16) % 120;
        if ((x >> 8) % dot_every == 0)
            p[o++] = '.';
        for (size_t i = 0; i < ll; i++)
            p[o++] = (char)('a' + (x + i) % 26);
        if ((x >> 4) % 7 == 0)
            p[o++] = '\n';
        else {
            p[o++] = '\r';
            p[o++] = '\n';
        }
    }
    for (size_t b = 16384; b + 2 < o; b += 16384) {
        /* b-1, b or b+1; on each 64 KB, where the spill file may end */
        size_t at = b % 65536 == 0 ? b : b + (b / 16384) % 3 - 1;
        p[at - 1] = '\n';
        p[at] = '.';
    }
    for (size_t b = MSG_STREAM_FILE_AHEAD; b + 2 < o; b += MSG_STREAM_FILE_AHEAD)
        for (size_t at = b; at <= b + MSG_STREAM_CHUNK; at += MSG_STREAM_CHUNK) {
            p[at - 1] = '\n';  /* after a first copying step of 64 KB too */
            p[at] = '.';
            p[at + 1] = '\n';
            p[at + 2] = '.';
        }
    *len = o;
    return p;
}

static int tmp_file(void)
{
    char path[300];
    snprintf(path, sizeof path, "%s/out-XXXXXX", dir);
    int fd = mkstemp(path);
    unlink(path);
    return fd;
}

static void fill_case(struct msg *m, const char *raw, size_t n, const char *what)
{
    struct bytes want = ref_stuff(raw, n, 1), b;
    size_t maxlen;
    int fd = tmp_file();

    b = fill_all(m, MSG_STREAM_SMTP, 256 * 1024, -1, &maxlen);
    ok(same(b, want.p, want.n), "%s: copying fill, stuffed", what);
    ok(maxlen < 256 * 1024 + 2 * MSG_STREAM_CHUNK, "... the buffer stays below limit + one step (%zu)", maxlen);
    bfree(&b);
    b = fill_all(m, 0, 256 * 1024, -1, &maxlen);
    ok(same(b, raw, n), "%s: copying fill, raw", what);
    bfree(&b);
    b = fill_all(m, MSG_STREAM_SMTP | MSG_STREAM_FILES, 256 * 1024, -1, &maxlen);
    ok(same(b, want.p, want.n), "%s: fill with file segments, stuffed, read out", what);
    bfree(&b);
    b = fill_all(m, MSG_STREAM_SMTP | MSG_STREAM_FILES, 256 * 1024, fd, &maxlen);
    ok(same(b, want.p, want.n), "%s: ... and sent with sendfile", what);
    ok(maxlen < 256 * 1024 + 2 * MSG_STREAM_FILE_AHEAD, "... the buffer stays below limit + one step (%zu)", maxlen);
    bfree(&b);
    b = fill_all(m, MSG_STREAM_FILES, 256 * 1024, fd, &maxlen);
    ok(same(b, raw, n), "%s: raw with file segments, sent with sendfile", what);
    bfree(&b);
    b = fill_all(m, MSG_STREAM_FILES, 1, -1, &maxlen);
    ok(same(b, raw, n), "%s: raw with file segments, a step at a time", what);
    bfree(&b);
    close(fd);
    bfree(&want);
}

/* Whether one fill from the body's start queues by reference: far more
 * than a copying step at once. */
static size_t first_fill(struct msg *m, unsigned flags)
{
    struct evbuffer *ev = evbuffer_new();
    struct msg_stream s;
    msg_stream_init(&s, m, m->hdr_bytes, flags);
    msg_stream_fill(&s, ev, 1);
    size_t n = evbuffer_get_length(ev);
    evbuffer_free(ev);
    return n;
}

static void test_large(void)
{
    size_t n;
    char *raw = big_message(9 * 1024 * 1024, &n, 5);
    struct msg *m = mk(raw, n, 1 << 20, 65536);
    size_t nd, fd_len;
    ok(msg_store_dots(m->store, &nd) != NULL && nd > 1000, "9 MB spilled, %zu dots listed", nd);
    ok(msg_store_spilled(m->store, &fd_len) >= 0, "spilled");
    struct msg_stream s;
    msg_stream_init(&s, m, 0, MSG_STREAM_FILES);
    ok(msg_stream_by_reference(&s), "by reference: FILES and spilled");
    size_t f = first_fill(m, MSG_STREAM_SMTP | MSG_STREAM_FILES);
    ok(f > 2 * MSG_STREAM_CHUNK && f <= MSG_STREAM_FILE_AHEAD + nd,
       "one step with file segments queues up to 4 MB (%zu)", f);
    f = first_fill(m, MSG_STREAM_SMTP);
    ok(f <= 2 * MSG_STREAM_CHUNK, "one copying step: at most 2 x 64 KB (%zu)", f);
    fill_case(m, raw, n, "9 MB, listed dots");
    /* the part still in RAM, shorter than a step: copied at the end */
    ok(fd_len < n && n - fd_len < MSG_STREAM_CHUNK, "a short rest in RAM (%zu)", n - fd_len);
    msg_free(m);

    m = mk(raw, n, 16 << 20, 65536);
    msg_stream_init(&s, m, 0, MSG_STREAM_FILES);
    ok(!msg_stream_by_reference(&s), "in memory: not by reference");
    fill_case(m, raw, n, "9 MB in memory");
    msg_free(m);

    /* headers edited: the body's dots keep their store offsets */
    m = mk(raw, n, 1 << 20, 65536);
    msg_header_prepend(m, "X-New", "a longer header, moving the body");
    msg_header_remove(m, "X-A");
    struct bytes out = read_all(m, 0, 0, 100000);
    fill_case(m, out.p, out.n, "9 MB, edited headers");
    bfree(&out);
    msg_free(m);
    free(raw);

    raw = big_message(6 * 1024 * 1024, &n, 1);     /* more dots than listed */
    m = mk(raw, n, 1 << 20, 65536);
    ok(msg_store_dots(m->store, &nd) == NULL, "dense dots: not listed");
    f = first_fill(m, MSG_STREAM_SMTP | MSG_STREAM_FILES);
    ok(f <= 2 * MSG_STREAM_CHUNK, "SMTP without a dot list: copied (%zu)", f);
    ok(first_fill(m, MSG_STREAM_FILES) > 2 * MSG_STREAM_CHUNK, "raw: by reference still");
    fill_case(m, raw, n, "6 MB, dense dots");
    msg_free(m);
    free(raw);
}

/* The limit: nothing added once the buffer holds it; a step past it. */
static void test_limit(void)
{
    size_t n;
    char *raw = big_message(600 * 1024, &n, 5);
    struct msg *m = mk(raw, n, 1 << 20, 65536);
    struct evbuffer *ev = evbuffer_new();
    struct msg_stream s;
    msg_stream_init(&s, m, 0, MSG_STREAM_SMTP);
    is_int(msg_stream_fill(&s, ev, 0), 0, "limit 0: nothing to do, not done");
    is_int(evbuffer_get_length(ev), 0, "... nothing added");
    is_int(msg_stream_fill(&s, ev, 100000), 0, "limit 100000: not done");
    size_t len = evbuffer_get_length(ev);
    ok(len >= 100000 && len < 100000 + 2 * MSG_STREAM_CHUNK, "... %zu bytes: past the limit by less than a step", len);
    is_int(msg_stream_fill(&s, ev, 100000), 0, "again: the buffer is full");
    is_int(evbuffer_get_length(ev), len, "... nothing added");
    is_int(msg_stream_fill(&s, ev, SIZE_MAX), 1, "no limit: done");
    struct bytes want = ref_stuff(raw, n, 1), got = { NULL, 0 };
    drain(ev, &got);
    ok(same(got, want.p, want.n), "the bytes");
    is_int(msg_stream_fill(&s, ev, SIZE_MAX), 1, "done stays done");
    is_int(evbuffer_get_length(ev), 0, "... and adds nothing");
    bfree(&want);
    bfree(&got);
    evbuffer_free(ev);
    msg_free(m);
    free(raw);
}

int main(void)
{
    const char *t = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/kasi-unit-stream-XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(dir))
        return 1;
    test_stuffer();
    test_raw();
    test_smtp();
    test_limit();
    test_large();
    rmdir(dir);
    return done_testing();
}
