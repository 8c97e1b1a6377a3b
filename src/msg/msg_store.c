/* msg_store.c — message bytes in memory, spilled to an unlinked file. */
#include "msg/msg_store.h"

#include "core/fdio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define STORE_WBUF (64 * 1024)
#define STORE_MAX_DOTS 65536    /* listed line-starting dots, past that "dense" */

struct msg_store {
    char *mem;          /* all bytes while not spilled; write buffer after */
    size_t mem_len, mem_cap;
    size_t mem_limit;
    size_t size;        /* total bytes appended */
    int fd;             /* spill file, -1 while in memory */
    size_t fd_len;      /* bytes already in the file */
    int failed;
    char *spill_dir;
    size_t *dots;       /* offsets of '.' that start a line, ascending */
    size_t ndots, dots_cap;
    int dots_dense;     /* too many to list: readers scan instead */
    int at_bol;         /* the next byte appended starts a line */
};

struct msg_store *msg_store_new(size_t mem_limit, const char *spill_dir)
{
    struct msg_store *st = calloc(1, sizeof *st);
    if (!st)
        return NULL;
    st->fd = -1;
    st->at_bol = 1;
    st->mem_limit = mem_limit;
    st->spill_dir = strdup(spill_dir ? spill_dir : ".");
    if (!st->spill_dir) {
        free(st);
        return NULL;
    }
    return st;
}

void msg_store_free(struct msg_store *st)
{
    if (!st)
        return;
    if (st->fd >= 0)
        close(st->fd);
    free(st->mem);
    free(st->spill_dir);
    free(st->dots);
    free(st);
}

/* Remember a line-starting '.' at off (a forwarder must stuff it). */
static void store_note_dot(struct msg_store *st, size_t off)
{
    if (st->dots_dense)
        return;
    if (st->ndots == st->dots_cap) {
        size_t cap = st->dots_cap ? 2 * st->dots_cap : 16;
        size_t *d = cap <= STORE_MAX_DOTS ? realloc(st->dots, cap * sizeof *d) : NULL;
        if (!d) {
            st->dots_dense = 1;
            free(st->dots);
            st->dots = NULL;
            st->ndots = st->dots_cap = 0;
            return;
        }
        st->dots = d;
        st->dots_cap = cap;
    }
    st->dots[st->ndots++] = off;
}

/* The line-starting dots of n bytes about to be appended at st->size.
 * Looks for '.' (rare in text, absent from base64) rather than for line
 * ends (every 76 bytes of an attachment). */
static void store_scan_dots(struct msg_store *st, const char *p, size_t n)
{
    if (n == 0)
        return;
    const char *end = p + n, *q = p;
    while ((q = memchr(q, '.', (size_t)(end - q))) != NULL) {
        if (q == p ? st->at_bol : q[-1] == '\n')
            store_note_dot(st, st->size + (size_t)(q - p));
        q++;
    }
    st->at_bol = p[n - 1] == '\n';
}

static int store_open_spill(struct msg_store *st)
{
    st->fd = open(st->spill_dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (st->fd < 0) {   /* file systems without O_TMPFILE */
        char path[4096];
        snprintf(path, sizeof path, "%s/.spill-XXXXXX", st->spill_dir);
        st->fd = mkostemp(path, O_CLOEXEC);
        if (st->fd < 0)
            return -1;
        unlink(path);
    }
    return 0;
}

/* Move the memory buffer into the spill file. */
static int store_flush(struct msg_store *st)
{
    if (st->fd < 0 && store_open_spill(st) < 0)
        return -1;
    if (fdio_write_all(st->fd, st->mem, st->mem_len) < 0)
        return -1;
    st->fd_len += st->mem_len;
    st->mem_len = 0;
    return 0;
}

static int store_reserve(struct msg_store *st, size_t need)
{
    if (need <= st->mem_cap)
        return 0;
    size_t cap = st->mem_cap ? st->mem_cap : 4096;
    while (cap < need)
        cap *= 2;
    char *m = realloc(st->mem, cap);
    if (!m)
        return -1;
    st->mem = m;
    st->mem_cap = cap;
    return 0;
}

int msg_store_append(struct msg_store *st, const void *p, size_t n)
{
    if (st->failed)
        return -1;
    store_scan_dots(st, p, n);
    int spilled = st->fd >= 0;
    if (!spilled && st->size + n > st->mem_limit) {
        if (store_flush(st) < 0)
            goto fail;
        spilled = 1;
        if (st->mem_cap > STORE_WBUF) {   /* give the big buffer back */
            free(st->mem);
            st->mem = NULL;
            st->mem_cap = 0;
        }
    }
    if (spilled && st->mem_len + n > STORE_WBUF) {
        if (store_flush(st) < 0)
            goto fail;
        if (n >= STORE_WBUF) {
            if (fdio_write_all(st->fd, p, n) < 0)
                goto fail;
            st->fd_len += n;
            st->size += n;
            return 0;
        }
    }
    if (store_reserve(st, st->mem_len + n) < 0)
        goto fail;
    memcpy(st->mem + st->mem_len, p, n);
    st->mem_len += n;
    st->size += n;
    return 0;
fail:
    st->failed = 1;
    return -1;
}

size_t msg_store_size(const struct msg_store *st)
{
    return st->size;
}

int msg_store_failed(const struct msg_store *st)
{
    return st->failed;
}

const char *msg_store_peek(struct msg_store *st, size_t off, size_t n)
{
    if (off + n > st->size || off < st->fd_len)
        return NULL;
    return st->mem + (off - st->fd_len);
}

ssize_t msg_store_read(struct msg_store *st, size_t off, void *buf, size_t n)
{
    if (off >= st->size)
        return 0;
    if (n > st->size - off)
        n = st->size - off;
    if (off >= st->fd_len) {
        memcpy(buf, st->mem + (off - st->fd_len), n);
        return (ssize_t)n;
    }
    if (n > st->fd_len - off)
        n = st->fd_len - off;
    ssize_t r;
    do
        r = pread(st->fd, buf, n, (off_t)off);
    while (r < 0 && errno == EINTR);
    return r;
}

int msg_store_copy_to_fd(struct msg_store *st, size_t off, int fd)
{
    loff_t in_off = (loff_t)off;
    while ((size_t)in_off < st->fd_len) {
        ssize_t r = copy_file_range(st->fd, &in_off, fd, NULL,
                                    st->fd_len - (size_t)in_off, 0);
        if (r <= 0) {
            if (r < 0 && errno == EINTR)
                continue;
            if (r < 0 && (errno == EXDEV || errno == ENOSYS || errno == EINVAL))
                break;   /* fall back to read/write below */
            return -1;
        }
    }
    char buf[STORE_WBUF];
    size_t pos = (size_t)in_off;
    while (pos < st->size) {
        ssize_t r = msg_store_read(st, pos, buf, sizeof buf);
        if (r <= 0 || fdio_write_all(fd, buf, (size_t)r) < 0)
            return -1;
        pos += (size_t)r;
    }
    return 0;
}

/* ------------------------------------------------------------ snapshots */

int msg_store_snapshot(struct msg_store *st, size_t off, struct msg_snap *sn)
{
    memset(sn, 0, sizeof *sn);
    sn->fd = -1;
    if (off < st->fd_len) {
        sn->fd = fcntl(st->fd, F_DUPFD_CLOEXEC, 0);
        if (sn->fd < 0)
            return -1;
        sn->fd_off = off;
        sn->fd_end = st->fd_len;
        off = st->fd_len;
    }
    if (off < st->size) {
        sn->mem_len = st->size - off;
        sn->mem = malloc(sn->mem_len);
        if (!sn->mem) {
            msg_snap_free(sn);
            errno = ENOMEM;
            return -1;
        }
        memcpy(sn->mem, st->mem + (off - st->fd_len), sn->mem_len);
    }
    return 0;
}

/* Copy file bytes [off, end) of in to out: copy_file_range, else pread
 * and write. */
static int snap_copy_file(int in, size_t off, size_t end, int out)
{
    loff_t pos = (loff_t)off;
    while ((size_t)pos < end) {
        ssize_t r = copy_file_range(in, &pos, out, NULL, end - (size_t)pos, 0);
        if (r > 0)
            continue;
        if (r < 0 && errno == EINTR)
            continue;
        if (r == 0 || !(errno == EXDEV || errno == ENOSYS || errno == EINVAL))
            return -1;
        break;
    }
    char buf[STORE_WBUF];
    while ((size_t)pos < end) {
        size_t want = end - (size_t)pos < sizeof buf ? end - (size_t)pos : sizeof buf;
        ssize_t r = pread(in, buf, want, pos);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0 || fdio_write_all(out, buf, (size_t)r) < 0)
            return -1;
        pos += r;
    }
    return 0;
}

int msg_snap_write_fd(const struct msg_snap *sn, int fd)
{
    if (sn->fd >= 0 && snap_copy_file(sn->fd, sn->fd_off, sn->fd_end, fd) < 0)
        return -1;
    return sn->mem_len ? fdio_write_all(fd, sn->mem, sn->mem_len) : 0;
}

void msg_snap_free(struct msg_snap *sn)
{
    if (sn->fd >= 0)
        close(sn->fd);
    free(sn->mem);
    sn->fd = -1;
    sn->mem = NULL;
}

/* ------------------------------------------------------------ file runs */

int msg_store_spilled(const struct msg_store *st, size_t *fd_len)
{
    *fd_len = st->fd_len;
    return st->fd;
}

const size_t *msg_store_dots(const struct msg_store *st, size_t *n)
{
    static const size_t none[1];
    *n = st->ndots;
    return st->dots_dense ? NULL : st->dots ? st->dots : none;
}
