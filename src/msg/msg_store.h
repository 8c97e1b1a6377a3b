/* msg_store.h — where the bytes of a message live while kasi holds it.
 *
 * Bytes are appended in memory up to a limit, then the store spills to an
 * anonymous (already unlinked) file in the spool directory, so a 100 MB
 * message costs one small buffer of RAM. Readers (spool, forwarders,
 * plugins) read by offset, whichever side the bytes are on. */
#ifndef KASI_MSG_STORE_H
#define KASI_MSG_STORE_H

#include <stddef.h>
#include <sys/types.h>

struct msg_store;

/* mem_limit: bytes kept in RAM before spilling; spill_dir: where the
 * temporary file goes (same file system as the spool). */
struct msg_store *msg_store_new(size_t mem_limit, const char *spill_dir);
void msg_store_free(struct msg_store *st);

/* Append bytes. Returns 0, or -1 on a write error (errno set); after an
 * error the store stays failed and every later append returns -1. */
int msg_store_append(struct msg_store *st, const void *p, size_t n);
size_t msg_store_size(const struct msg_store *st);
int msg_store_failed(const struct msg_store *st);

/* Copy up to n bytes at offset off into buf. Returns bytes copied (0 at
 * the end), or -1 on error. */
ssize_t msg_store_read(struct msg_store *st, size_t off, void *buf, size_t n);

/* Bytes [off, off+n) in memory, or NULL when they are not all in RAM. */
const char *msg_store_peek(struct msg_store *st, size_t off, size_t n);

/* Write bytes [off, end) to fd (kernel copy when spilled). 0 or -1. */
int msg_store_copy_to_fd(struct msg_store *st, size_t off, int fd);

/* For senders that hand the spilled part to the kernel (sendfile): the
 * spill file's descriptor (-1 while in memory; owned by the store) with
 * *fd_len, the bytes of [0, *fd_len) in it; and the ascending offsets of
 * every '.' that starts a line (after a LF, or at offset 0), which SMTP
 * must stuff, as *n entries, or NULL when there are too many to list
 * (then the sender scans the bytes itself). */
int msg_store_spilled(const struct msg_store *st, size_t *fd_len);
const size_t *msg_store_dots(const struct msg_store *st, size_t *n);

/* A read-only copy of bytes [off, end) that outlives the store and may
 * be read on another thread: the spilled part shares the file through its
 * own descriptor, the part still in memory is copied. */
struct msg_snap {
    int fd;                     /* -1: nothing spilled */
    size_t fd_off, fd_end;      /* file bytes [fd_off, fd_end) */
    char *mem;                  /* then these bytes */
    size_t mem_len;
};
int msg_store_snapshot(struct msg_store *st, size_t off, struct msg_snap *sn);
/* Write the snapshot's bytes to fd (kernel copy for the file part). 0 or
 * -1 (errno). */
int msg_snap_write_fd(const struct msg_snap *sn, int fd);
void msg_snap_free(struct msg_snap *sn);

#endif
