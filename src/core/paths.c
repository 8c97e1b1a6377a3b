/* paths.c — search roots of the shipped data directory (see paths.h).
 * KASI_DATADIR comes from the Makefile (PREFIX) and only this file sees it. */
#include "core/paths.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define PATHS_MAX_ROOTS 4

/* The directory of the running binary into dir; -1 when unknown. */
static int paths_bindir(char *dir, size_t len)
{
    ssize_t n = readlink("/proc/self/exe", dir, len - 1);
    if (n <= 0)
        return -1;
    dir[n] = '\0';
    char *slash = strrchr(dir, '/');
    if (!slash)
        return -1;
    *slash = '\0';
    return 0;
}

static size_t paths_roots(char roots[][PATH_MAX])
{
    size_t n = 0;
    char bin[PATH_MAX - 32];
    if (paths_bindir(bin, sizeof bin) == 0) {
        snprintf(roots[n++], PATH_MAX, "%s/../share/kasi", bin);
        snprintf(roots[n++], PATH_MAX, "%s/..", bin);
        snprintf(roots[n++], PATH_MAX, "%s", bin);
    }
#ifdef KASI_DATADIR
    snprintf(roots[n++], PATH_MAX, "%s", KASI_DATADIR);
#endif
    return n;
}

int paths_find_shipped(const char *rel, char *out, size_t outlen)
{
    char roots[PATHS_MAX_ROOTS][PATH_MAX];
    size_t n = paths_roots(roots);
    for (size_t i = 0; i < n; i++) {
        int len = snprintf(out, outlen, "%s/%s", roots[i], rel);
        if (len > 0 && (size_t)len < outlen && access(out, R_OK) == 0)
            return 0;
    }
    return -1;
}
