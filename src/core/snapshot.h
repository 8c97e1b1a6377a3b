/* snapshot.h — a generation's files frozen on disk. On start and on every
 * reload the supervisor (src/supervisor.c) copies the config directory and
 * the plugin search trees into a new directory; the workers of that
 * generation read only the copy, so a worker restarted later sees the
 * files exactly as they were when the generation was validated. The
 * manifest (relative path, origin, content hash) tells what changed from
 * one generation to the next and turns paths of the copy in error
 * messages back into the operator's files. */
#ifndef KASI_SNAPSHOT_H
#define KASI_SNAPSHOT_H

#include <stddef.h>
#include <sys/stat.h>

struct snap_file {
    char *rel;                   /* "config/plugins", "plugins/x.lua" */
    char *origin;                /* the file copied */
    unsigned long long hash;     /* of its content */
};

struct snap {
    char *dir;                   /* the copy's root */
    struct snap_file *files;
    size_t n, cap;
    size_t bytes;                /* copied so far (bounded) */
    dev_t skip_dev;              /* a directory never copied (the spool) */
    ino_t skip_ino;
    struct { char *rel, *src; } trees[8];  /* what snap_copy_tree copied where */
    size_t ntrees;
};

/* Create dir (must not exist) as the root of an empty snapshot, readable
 * by the group it gets (the workers', core/privs.h). skip: a directory to
 * leave out wherever it appears (may be NULL). 0, or -1 with err. */
int snap_begin(struct snap *s, const char *dir, const char *skip, char *err,
               size_t errlen);
/* Copy the tree src to <dir>/<rel>, over what an earlier call copied
 * there. A missing src is no error when optional. 0, or -1 with err. */
int snap_copy_tree(struct snap *s, const char *src, const char *rel, int optional,
                   char *err, size_t errlen);
const struct snap_file *snap_find(const struct snap *s, const char *rel);
/* msg with every path inside the copy replaced by its origin. */
void snap_unmap(const struct snap *s, const char *msg, char *out, size_t outlen);
/* Free the manifest (the files stay). */
void snap_free(struct snap *s);
/* Remove a directory tree without following symbolic links. */
int snap_remove(const char *dir);

#endif
