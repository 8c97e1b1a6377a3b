/* spool.h — the local spool: each accepted message becomes two files in
 * spool_dir, written safely (unnamed or temporary files, synced, named,
 * synced again: msg/spool_io.c) before the client hears 250:
 *   <id>.eml  the message as delivered (headers + body)
 *   <id>.env  its envelope as one JSON object
 * A message is complete when its .env exists; temporary files start with
 * a dot. */
#ifndef KASI_SPOOL_H
#define KASI_SPOOL_H

#include <stddef.h>

#include "msg/msg_store.h"

struct conn;
struct txn;

/* Create the directory (and parents) if missing. 0 or -1 (errno). */
int spool_prepare(const char *dir);

/* The steps of a spool write, for msg/spool_io.c, which waits for the
 * disk on its own threads. spool_item_new, on the thread that owns t,
 * copies what the files will hold: the header section, the envelope,
 * and a snapshot of the body (msg_store.h); the item then needs neither
 * t nor c. The rest is safe on any thread, one thread per file at a time:
 * spool_item_write creates and fills one file, not synced (its
 * descriptor, or -1 with errno): unnamed when tmpfile is set (O_TMPFILE,
 * where spool_tmpfile_works says the directory takes it: nothing is left
 * behind by a crash), else under its temporary name; spool_item_publish
 * gives it its final name (0 or -1), from the descriptor the write
 * returned; spool_item_discard removes what a failed write left. */
enum { SPOOL_EML = 0, SPOOL_ENV = 1 };

struct spool_item {
    char *dir;
    char id[48];
    char *head;                 /* header section */
    size_t head_len;
    struct msg_snap body;
    char *env;                  /* envelope JSON */
    size_t env_len;
};

struct spool_item *spool_item_new(const char *dir, const struct conn *c, struct txn *t,
                                  char *err, size_t errlen);
int spool_item_write(const struct spool_item *it, int file, int tmpfile);
int spool_item_publish(const struct spool_item *it, int file, int fd, int tmpfile);
/* Can files of dir be made unnamed and named later (O_TMPFILE, and a link
 * through /proc/self/fd)? Tries it once: 1 or 0. */
int spool_tmpfile_works(const char *dir);
/* Remove the temporary files of writes that a crash cut short (made
 * where there is no O_TMPFILE) and last changed over an hour ago (a
 * write still running, of another kasi on the same directory, is newer);
 * logs what it did. At start, before any worker writes: supervisor.c,
 * main.c (--no-supervisor). */
void spool_sweep(const char *dir);
void spool_item_discard(const struct spool_item *it);
void spool_item_free(struct spool_item *it);

#endif
