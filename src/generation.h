/* generation.h — what one generation of workers serves: the core config
 * as loaded, the files of the config directory and plugin trees frozen in
 * a snapshot, the TLS contexts, the user to run as and the listening
 * sockets. The supervisor (supervisor.c) prepares one at start and on
 * every SIGHUP; preparing runs every check that can be run without
 * starting a worker (smtp.yaml, user/group, TLS files, binding new
 * listeners, the snapshot), and the workers' own start (plugins) is the
 * rest of the check. A generation that fails changes nothing.
 *
 * The listening sockets live in a table shared by the generations: one
 * that a new generation keeps (same address) is the same socket, so no
 * connection is refused across a reload. The stats page's socket
 * (http.listen) is in the table too. */
#ifndef KASI_GENERATION_H
#define KASI_GENERATION_H

#include <limits.h>
#include <stddef.h>

#include "core/config.h"
#include "core/privs.h"
#include "core/snapshot.h"

struct ssl_ctx_st;

struct sgen {
    unsigned id;                /* 1, 2, ... in this run */
    struct kasi_config cfg;     /* cfg.dir is the snapshot's config dir */
    char *confdir;              /* the operator's config dir */
    struct snap snap;
    struct ssl_ctx_st *tls;     /* NULL: no certificates */
    unsigned long long tls_hash;  /* of the certificate and key files */
    struct priv_ids ids;
    int *lfd;                   /* one socket per cfg.listen (borrowed) */
    int http_fd;                /* http.listen's socket (borrowed), -1: none */
    unsigned nworkers;          /* workers: resolved */
    int refs;                   /* workers alive, +1 while current or pending */
};

struct sgen_env {
    const char *confdir;
    char *const *listen;        /* --listen overrides */
    size_t nlisten;
    const char *user;           /* --user override, NULL none */
    const char *http_listen;    /* --http-listen override, NULL none */
    char state[PATH_MAX];       /* <spool>/.gen, set by the first prepare */
    unsigned attempts;          /* snapshots made: their directory names */
};

/* Load, check and snapshot generation id. 0, or -1 with why in err (the
 * file and line for config errors) and nothing changed. */
int sgen_prepare(struct sgen *g, unsigned id, struct sgen_env *env, char *err,
                 size_t errlen);
/* g is no longer current or pending: close the listeners only it used,
 * the stats page's too (its workers keep their own copies until they stop). */
void sgen_drop_listeners(struct sgen *g);
/* Free g and remove its snapshot (after sgen_drop_listeners). */
void sgen_free(struct sgen *g);
/* What changed from old (may be NULL) to g, for the log. */
void sgen_diff(const struct sgen *old, const struct sgen *g, char *out, size_t outlen);
/* "listening on" for each listener of g that old did not have. */
void sgen_log_listeners(const struct sgen *old, const struct sgen *g);
/* In a new worker: close the listening sockets that are not g's. */
void sgen_close_others(const struct sgen *g);
/* Stopping: close every listening socket the supervisor holds. */
void sgen_close_all(void);
/* Take the sockets passed by socket activation (before the first
 * prepare). A listen: entry gets the passed socket with its very address
 * (all entries first), else, for 0.0.0.0:P, a dual-stack [::]:P one (an
 * IPV6_V6ONLY socket serves no IPv4). One socket per entry, as kasi binds
 * them itself; those no generation claims are closed by sgen_prune(). */
void sgen_adopt_activated(void);
void sgen_prune(void);
/* The state directory: create it (the supervisor's, with the workers'
 * group, 0710: they read their generation's copy there, and nothing in it
 * is theirs to change), lock it against a second kasi and clear what an
 * earlier run left. 0 or -1. Called between priv_share_begin and _end. */
int sgen_state_open(struct sgen_env *env, const struct priv_ids *ids, char *err,
                    size_t errlen);
/* At exit (every generation freed): remove the status file, the lock and
 * the directory, so an empty spool stays empty. */
void sgen_state_close(const struct sgen_env *env);

#endif
