/* paths.h — where kasi's shipped files are: the data directory (lua/,
 * plugins/, config/ with the default configuration).
 *
 * The data directory is searched, in order, next to the running binary
 * (<bindir>/../share/kasi for an installed kasi, <bindir>/.. for the
 * source tree's build/kasi, <bindir> itself) and then in KASI_DATADIR,
 * compiled in from the Makefile's PREFIX. So an installed kasi, a kasi
 * moved with its tree, and a copied binary all find their files. Called
 * by the plugin loader (lua/lua_gen.c) and by `kasi init`; no state, no
 * allocation. (The compiled-in default spool is config.c's.) */
#ifndef KASI_PATHS_H
#define KASI_PATHS_H

#include <stddef.h>

/* Find `rel` ("lua/kasi.lua", "config/smtp.yaml") under the data
 * directory roots. 0 with the path in out, or -1 when no root has it. */
int paths_find_shipped(const char *rel, char *out, size_t outlen);

#endif
