/* worker.h — a worker process: one event loop, one Lua VM and the SMTP
 * sessions it accepts on the listeners the supervisor bound
 * (src/supervisor.c forks it; main.c runs it in the foreground with
 * --no-supervisor), and kasi --inetd, one session on stdin/stdout.
 *
 * Supervised, a worker loads its plugins, reports ready in its watchdog
 * slot and accepts only once told to (SIGUSR1), so that a generation
 * starts all or nothing. SIGQUIT retires it (stop accepting, let open
 * sessions finish, exit); SIGTERM/SIGINT shut it down with the grace
 * period of timeouts.shutdown; SIGHUP is the supervisor's business. */
#ifndef KASI_WORKER_H
#define KASI_WORKER_H

struct kasi_config;
struct priv_ids;

#define WORKER_FATAL 3          /* exit code: could not start at all */

struct worker_opts {
    unsigned generation;        /* number of the generation served, 0: none */
    int slot;                   /* watchdog slot; -1: not supervised */
    const struct priv_ids *ids; /* who to become before loading plugins */
    int http_fd;                /* the stats page's listener, -1: none */
};

/* Serve fds (one per cfg->listen) until stopped. 0, or WORKER_FATAL. */
int worker_run(struct kasi_config *cfg, const int *fds, const struct worker_opts *o);
/* One session on fd 0 (a socket) or fds 0 and 1 (pipes). 0, or 1. */
int worker_inetd(struct kasi_config *cfg, const struct priv_ids *ids);

#endif
