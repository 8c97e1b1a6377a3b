/* spool.h — the local spool: each accepted message becomes two files in
 * spool_dir, written safely (temporary file, fsync, rename, fsync of the
 * directory) before the client hears 250:
 *   <id>.eml  the message as delivered (headers + body)
 *   <id>.env  its envelope as one JSON object
 * A message is complete when its .env exists; temporary files start with
 * a dot. */
#ifndef KASI_SPOOL_H
#define KASI_SPOOL_H

#include <stddef.h>

struct conn;
struct txn;

/* Create the directory (and parents) if missing. 0 or -1 (errno). */
int spool_prepare(const char *dir);

/* Write transaction t of connection c. 0, or -1 with a reason in err. */
int spool_write(const char *dir, const struct conn *c, struct txn *t,
                char *err, size_t errlen);

#endif
