/* snapshot.c — copying a generation's files and its manifest (see
 * snapshot.h). Only regular files and directories are copied, following
 * symbolic links (a config directory often links its certificates); the
 * copy is bounded in depth, number of files and bytes. The copy is for
 * the workers to read through their group (core/privs.h): directories
 * 0750, files 0640, whatever the umask and the originals' modes. */
#include "core/snapshot.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SNAP_MAX_DEPTH 16
#define SNAP_MAX_FILES 20000
#define SNAP_MAX_BYTES (256u << 20)

static int snap_fail(char *err, size_t errlen, const char *what, const char *path)
{
    snprintf(err, errlen, "snapshot: %s %s: %s", what, path, strerror(errno));
    return -1;
}

#define SNAP_DIR_MODE 0750
#define SNAP_FILE_MODE 0640

int snap_begin(struct snap *s, const char *dir, const char *skip, char *err,
               size_t errlen)
{
    struct stat st;
    memset(s, 0, sizeof *s);
    if (skip && stat(skip, &st) == 0) {
        s->skip_dev = st.st_dev;
        s->skip_ino = st.st_ino;
    }
    s->dir = strdup(dir);
    if (!s->dir)
        return snap_fail(err, errlen, "out of memory for", dir);
    if (mkdir(dir, SNAP_DIR_MODE) < 0 || chmod(dir, SNAP_DIR_MODE) < 0)
        return snap_fail(err, errlen, "cannot create", dir);
    return 0;
}

/* The manifest entry for rel, added when new. */
static struct snap_file *snap_entry(struct snap *s, const char *rel)
{
    for (size_t i = 0; i < s->n; i++)
        if (!strcmp(s->files[i].rel, rel))
            return &s->files[i];
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        struct snap_file *f = realloc(s->files, cap * sizeof *f);
        if (!f)
            return NULL;
        s->files = f;
        s->cap = cap;
    }
    struct snap_file *f = &s->files[s->n];
    f->rel = strdup(rel);
    f->origin = NULL;
    f->hash = 0;
    if (!f->rel)
        return NULL;
    s->n++;
    return f;
}

/* Copy one file, hashing it (FNV-1a 64). */
static int snap_copy_fd(int in, int out, unsigned long long *hash, size_t *bytes)
{
    unsigned long long h = 1469598103934665603ULL;
    char buf[65536];
    ssize_t n;
    while ((n = read(in, buf, sizeof buf)) > 0) {
        for (ssize_t i = 0; i < n; i++)
            h = (h ^ (unsigned char)buf[i]) * 1099511628211ULL;
        *bytes += (size_t)n;
        if (*bytes > SNAP_MAX_BYTES) {
            errno = EFBIG;
            return -1;
        }
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(out, buf + off, (size_t)(n - off));
            if (w < 0)
                return -1;
            off += w;
        }
    }
    *hash = h;
    return n < 0 ? -1 : 0;
}

static int snap_file(struct snap *s, const char *src, const char *rel, char *err,
                     size_t errlen)
{
    char dst[PATH_MAX];
    snprintf(dst, sizeof dst, "%s/%s", s->dir, rel);
    struct snap_file *f = snap_entry(s, rel);
    if (!f || s->n > SNAP_MAX_FILES) {
        errno = f ? EMFILE : ENOMEM;
        return snap_fail(err, errlen, "too many files at", src);
    }
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return snap_fail(err, errlen, "cannot read", src);
    unlink(dst);
    int out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, SNAP_FILE_MODE);
    int rc = out < 0 || fchmod(out, SNAP_FILE_MODE) < 0
                 ? -1 : snap_copy_fd(in, out, &f->hash, &s->bytes);
    int saved = errno;
    close(in);
    if (out >= 0 && close(out) < 0 && rc == 0)
        rc = -1, saved = errno;
    errno = saved;
    if (rc < 0)
        return snap_fail(err, errlen, "cannot copy", src);
    free(f->origin);
    f->origin = strdup(src);
    return 0;
}

static int snap_tree(struct snap *s, const char *src, const char *rel, int depth,
                     char *err, size_t errlen);

static int snap_dir(struct snap *s, const char *src, const char *rel, int depth,
                    char *err, size_t errlen)
{
    char dst[PATH_MAX];
    snprintf(dst, sizeof dst, "%s/%s", s->dir, rel);
    if ((mkdir(dst, SNAP_DIR_MODE) < 0 && errno != EEXIST) || chmod(dst, SNAP_DIR_MODE) < 0)
        return snap_fail(err, errlen, "cannot create", dst);
    DIR *d = opendir(src);
    if (!d)
        return snap_fail(err, errlen, "cannot list", src);
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char csrc[PATH_MAX], crel[PATH_MAX];
        snprintf(csrc, sizeof csrc, "%s/%s", src, e->d_name);
        snprintf(crel, sizeof crel, "%s/%s", rel, e->d_name);
        rc = snap_tree(s, csrc, crel, depth + 1, err, errlen);
    }
    closedir(d);
    return rc;
}

static int snap_tree(struct snap *s, const char *src, const char *rel, int depth,
                     char *err, size_t errlen)
{
    struct stat st;
    if (stat(src, &st) < 0)
        return errno == ENOENT && depth > 0 ? 0
                                            : snap_fail(err, errlen, "cannot read", src);
    if (st.st_dev == s->skip_dev && st.st_ino == s->skip_ino)
        return 0;
    if (S_ISREG(st.st_mode))
        return snap_file(s, src, rel, err, errlen);
    if (!S_ISDIR(st.st_mode))
        return 0;           /* sockets, fifos, devices: never configuration */
    if (depth >= SNAP_MAX_DEPTH) {
        errno = ELOOP;
        return snap_fail(err, errlen, "too deep at", src);
    }
    return snap_dir(s, src, rel, depth, err, errlen);
}

int snap_copy_tree(struct snap *s, const char *src, const char *rel, int optional,
                   char *err, size_t errlen)
{
    struct stat st;
    if (optional && stat(src, &st) < 0 && errno == ENOENT)
        return 0;
    if (s->ntrees < sizeof s->trees / sizeof s->trees[0]) {
        s->trees[s->ntrees].rel = strdup(rel);
        s->trees[s->ntrees].src = strdup(src);
        s->ntrees++;
    }
    return snap_tree(s, src, rel, 0, err, errlen);
}

const struct snap_file *snap_find(const struct snap *s, const char *rel)
{
    for (size_t i = 0; i < s->n; i++)
        if (!strcmp(s->files[i].rel, rel))
            return &s->files[i];
    return NULL;
}

/* One path that starts inside the copy: p points past "<dir>/". Writes
 * its origin and returns how many bytes of p it stood for. */
static size_t snap_unmap_one(const struct snap *s, const char *p, char *out, size_t outlen)
{
    size_t len = strcspn(p, ": \t\n'\"()");
    char rel[PATH_MAX];
    snprintf(rel, sizeof rel, "%.*s", (int)(len < sizeof rel ? len : sizeof rel - 1), p);
    const char *r = rel;
    if (!strncmp(r, "config/../", 10))
        r += 10;
    const struct snap_file *f = snap_find(s, r);
    if (f && f->origin) {
        snprintf(out, outlen, "%s", f->origin);
        return len;
    }
    /* a file that is not in the copy: where it would have come from */
    for (size_t i = s->ntrees; i-- > 0;) {
        size_t tl = s->trees[i].rel ? strlen(s->trees[i].rel) : 0;
        if (tl && s->trees[i].src && !strncmp(r, s->trees[i].rel, tl) && r[tl] == '/') {
            snprintf(out, outlen, "%s%s", s->trees[i].src, r + tl);
            return len;
        }
    }
    snprintf(out, outlen, "%s", r);
    return len;
}

void snap_unmap(const struct snap *s, const char *msg, char *out, size_t outlen)
{
    size_t dl = s->dir ? strlen(s->dir) : 0, used = 0;
    if (!outlen)
        return;
    out[0] = '\0';
    while (*msg && used + 1 < outlen) {
        if (dl && !strncmp(msg, s->dir, dl) && msg[dl] == '/') {
            char origin[PATH_MAX];
            msg += dl + 1;
            msg += snap_unmap_one(s, msg, origin, sizeof origin);
            used += (size_t)snprintf(out + used, outlen - used, "%s", origin);
            if (used >= outlen)
                used = outlen - 1;
            continue;
        }
        out[used++] = *msg++;
        out[used] = '\0';
    }
}

void snap_free(struct snap *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->files[i].rel);
        free(s->files[i].origin);
    }
    free(s->files);
    for (size_t i = 0; i < s->ntrees; i++) {
        free(s->trees[i].rel);
        free(s->trees[i].src);
    }
    free(s->dir);
    memset(s, 0, sizeof *s);
}

static int snap_rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    return flag == FTW_DP ? rmdir(path) : unlink(path);
}

int snap_remove(const char *dir)
{
    return nftw(dir, snap_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}
