/* msg_stream.c — the cursor over a message's output (msg_stream.h): the
 * copying path (msg_read, stuffed or raw) and the zero-copy path (file
 * segments of the spill file) live here and nowhere else. */
#include "msg/msg_stream.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "msg/message.h"
#include "msg/msg_store.h"

#define STREAM_STUFF_IN (16 * 1024)    /* raw bytes per stuffing pass */

/* Output bytes [off, off+n) into buf, across the pieces msg_read answers
 * in (headers, RAM, file). 0, or -1 when they cannot all be read. */
static int stream_copy(struct msg *m, size_t off, char *buf, size_t n)
{
    for (size_t got = 0; got < n;) {
        ssize_t r = msg_read(m, off + got, buf + got, n - got);
        if (r <= 0) {
            if (r == 0)
                errno = EIO;        /* the store ended early */
            return -1;
        }
        got += (size_t)r;
    }
    return 0;
}

/* The stuffer's state as of s->off, from the two bytes before it. */
static int stream_sync(struct msg_stream *s)
{
    char last[2];
    size_t n = s->off < 2 ? s->off : 2;
    if (n && stream_copy(s->m, s->off - n, last, n) < 0)
        return -1;
    smtp_stuffer_resume(&s->st, s->off, last, n);
    return 0;
}

int msg_stream_init(struct msg_stream *s, struct msg *m, size_t off,
                    unsigned flags)
{
    memset(s, 0, sizeof *s);
    s->m = m;
    s->off = off;
    s->flags = flags;
    smtp_stuffer_init(&s->st);
    return (flags & MSG_STREAM_SMTP) && off ? stream_sync(s) : 0;
}

static size_t stream_tail_len(const struct msg_stream *s)
{
    return s->flags & MSG_STREAM_SMTP ? strlen(smtp_stuff_end(&s->st)) : 0;
}

int msg_stream_done(const struct msg_stream *s)
{
    return s->off >= msg_size(s->m) && s->tail >= stream_tail_len(s);
}

int msg_stream_by_reference(const struct msg_stream *s)
{
    size_t fd_len;
    return (s->flags & MSG_STREAM_FILES) && msg_store_spilled(s->m->store, &fd_len) >= 0;
}

/* ------------------------------------------------------------ copying */

/* What is left of the end-of-data line, as much as fits. */
static ssize_t stream_tail(struct msg_stream *s, char *buf, size_t n)
{
    size_t len = stream_tail_len(s);
    size_t k = len - s->tail < n ? len - s->tail : n;
    memcpy(buf, smtp_stuff_end(&s->st) + s->tail, k);
    s->tail += k;
    return (ssize_t)k;
}

/* SMTP mode: up to n/2 message bytes, stuffed into buf. */
static ssize_t stream_stuffed(struct msg_stream *s, char *buf, size_t n,
                              size_t size)
{
    char in[STREAM_STUFF_IN];
    size_t want = n / 2 < size - s->off ? n / 2 : size - s->off, o = 0;
    if (want == 0) {
        errno = EINVAL;
        return -1;
    }
    while (want > 0) {
        size_t k = want < sizeof in ? want : sizeof in;
        if (stream_copy(s->m, s->off, in, k) < 0)
            return -1;
        o += smtp_stuff(&s->st, in, k, buf + o);
        s->off += k;
        want -= k;
    }
    return (ssize_t)o;
}

ssize_t msg_stream_read(struct msg_stream *s, void *buf, size_t n)
{
    size_t size = msg_size(s->m);
    if (s->off >= size)
        return stream_tail(s, buf, n);
    if (s->flags & MSG_STREAM_SMTP)
        return stream_stuffed(s, buf, n, size);
    size_t k = n < size - s->off ? n : size - s->off;
    if (stream_copy(s->m, s->off, buf, k) < 0)
        return -1;
    s->off += k;
    return (ssize_t)k;
}

/* One copying step of msg_stream_fill: a reservation read into. */
static int fill_copy(struct msg_stream *s, struct evbuffer *out)
{
    size_t size = msg_size(s->m), rest = s->off < size ? size - s->off : 0;
    size_t k = rest < MSG_STREAM_CHUNK ? rest : MSG_STREAM_CHUNK;
    size_t n = k == 0 ? 8 : s->flags & MSG_STREAM_SMTP ? 2 * k : k;
    struct evbuffer_iovec v;
    if (evbuffer_reserve_space(out, (ev_ssize_t)n, &v, 1) < 1) {
        errno = ENOMEM;
        return -1;
    }
    ssize_t r = msg_stream_read(s, v.iov_base, n);
    if (r < 0)
        return -1;              /* the reservation is dropped unused */
    v.iov_len = (size_t)r;
    return evbuffer_commit_space(out, &v, 1) < 0 ? -1 : 0;
}

/* ------------------------------------------------------------ zero copy */

/* The first of the n ascending offsets in dots that is >= pos. */
static size_t dots_from(const size_t *dots, size_t n, size_t pos)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (dots[mid] < pos)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* A segment over the spill file's [0, fd_len), on a descriptor of its own
 * (the evbuffer may outlive the store); NULL when it cannot be made. */
static struct evbuffer_file_segment *file_segment(int fd, size_t fd_len)
{
    int dfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (dfd < 0)
        return NULL;
    struct evbuffer_file_segment *seg = evbuffer_file_segment_new(
        dfd, 0, (ev_off_t)fd_len, EVBUF_FS_CLOSE_ON_FREE | EVBUF_FS_DISABLE_LOCKING);
    if (!seg)
        close(dfd);
    return seg;
}

/* Store bytes [*pos, lim) of seg into out, a '.' more before each of the
 * ndots listed line-starting dots; *pos moves to where it stopped. -1 when
 * a '.' went in but its line did not (out of memory; out is unusable). */
static int add_segments(struct evbuffer *out, struct evbuffer_file_segment *seg,
                        size_t *pos, size_t lim, const size_t *dots, size_t ndots)
{
    size_t p = *pos;
    for (size_t i = ndots ? dots_from(dots, ndots, p) : 0; p < lim; p = *pos) {
        int dot = i < ndots && dots[i] == p;
        if (dot && evbuffer_add(out, ".", 1) < 0)
            break;
        i += dot;
        size_t end = i < ndots && dots[i] < lim ? dots[i] : lim;
        if (evbuffer_add_file_segment(out, seg, (ev_off_t)p, (ev_off_t)(end - p)) < 0)
            return dot ? -1 : 0;
        *pos = end;
    }
    return 0;
}

/* One zero-copy step of msg_stream_fill: body bytes in the spill file,
 * when at least MSG_STREAM_CHUNK of them follow (a short rest is copied)
 * and, in SMTP mode, the store knows every dot. At most
 * MSG_STREAM_FILE_AHEAD bytes. 1 when it queued anything, 0 when the
 * copying path must go on, -1 on an error. */
static int fill_file(struct msg_stream *s, struct evbuffer *out)
{
    struct msg *m = s->m;
    size_t fd_len, ndots = 0;
    int fd = msg_store_spilled(m->store, &fd_len);
    const size_t *dots = s->flags & MSG_STREAM_SMTP ? msg_store_dots(m->store, &ndots) : NULL;
    if (fd < 0 || s->off < m->hdr_bytes || (s->flags & MSG_STREAM_SMTP && !dots))
        return 0;
    size_t pos = m->body_off + (s->off - m->hdr_bytes);
    if (pos >= fd_len || fd_len - pos < MSG_STREAM_CHUNK)
        return 0;
    size_t lim = fd_len - pos > MSG_STREAM_FILE_AHEAD ? pos + MSG_STREAM_FILE_AHEAD : fd_len;
    struct evbuffer_file_segment *seg = file_segment(fd, fd_len);
    if (!seg)
        return 0;
    size_t end = pos;
    int rc = add_segments(out, seg, &end, lim, dots, ndots);
    evbuffer_file_segment_free(seg);    /* the chains keep their references */
    if (rc < 0) {
        errno = ENOMEM;
        return -1;
    }
    if (end == pos)
        return 0;
    s->off += end - pos;
    return s->flags & MSG_STREAM_SMTP && stream_sync(s) < 0 ? -1 : 1;
}

int msg_stream_fill(struct msg_stream *s, struct evbuffer *out, size_t limit)
{
    while (evbuffer_get_length(out) < limit && !msg_stream_done(s)) {
        int r = s->flags & MSG_STREAM_FILES ? fill_file(s, out) : 0;
        if (r == 0)
            r = fill_copy(s, out);
        if (r < 0)
            return -1;
    }
    return msg_stream_done(s);
}
