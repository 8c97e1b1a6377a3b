/* spool_io.h — durable spool writes that never wait for the disk on the
 * event loop.
 *
 * spool_io_write copies what the two files will hold (header section,
 * envelope, a snapshot of the body) on the calling (loop) thread and
 * hands it to a small pool of I/O threads. They write each file unnamed
 * (O_TMPFILE; where the file system cannot, under a temporary name),
 * sync it, give it its final name and sync again;
 * each sync is one syncfs of the spool's file system for every message
 * ready by then (group commit). Then done(arg, err) runs on the loop
 * thread of `base`, err 0 once the message and its directory entry are
 * on disk, else an errno.
 *
 * A slow disk delays only the writes waiting for it: the loop keeps
 * serving every other session. The pool starts at the first write of a
 * process (so each forked worker has its own threads) and lives as long
 * as the process; all writes of a process must use one event base.
 *
 * Callers: the plugin API's kasi.spool.write (lua/lua_api.c). */
#ifndef KASI_SPOOL_IO_H
#define KASI_SPOOL_IO_H

#include <stddef.h>

struct conn;
struct event_base;
struct spool_io_job;
struct txn;

typedef void (*spool_io_done_fn)(void *arg, int err);

/* Start writing t of connection c into dir. The job, or NULL with a
 * reason in err (then done is never called). */
struct spool_io_job *spool_io_write(struct event_base *base, const char *dir,
                                    const struct conn *c, struct txn *t,
                                    spool_io_done_fn done, void *arg,
                                    char *err, size_t errlen);

/* The caller no longer wants the answer (its session ended): done is not
 * called. The files are still finished (a sender that saw no 250 retries;
 * a duplicate is better than a loss). Loop thread only. */
void spool_io_forget(struct spool_io_job *j);

#endif
