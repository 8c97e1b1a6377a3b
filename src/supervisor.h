/* supervisor.h — the supervising process: it binds the listeners, runs
 * the generations of workers (src/worker.c), reloads on SIGHUP, restarts
 * a worker that dies or is stuck in plugin code, and stops them all on
 * SIGTERM/SIGINT. Called by main.c after the command line and the first
 * configuration check.
 *
 * Reload is all or nothing: a new generation is prepared (generation.h),
 * its workers are started and load their plugins, and only when every one
 * of them is ready do they start accepting while the old workers stop
 * accepting and finish their sessions. If anything fails, the error is
 * logged (file:line) and the running generation is untouched. A worker
 * restarted later runs the last generation that loaded, from its
 * snapshot. Once started, no configuration or plugin error stops kasi.
 *
 * State for `kasi status` (control.h) is written to <spool>/.gen/status;
 * systemd is told READY/RELOADING/STOPPING (sdnotify.h). */
#ifndef KASI_SUPERVISOR_H
#define KASI_SUPERVISOR_H

#include <stddef.h>

struct sup_opts {
    const char *confdir;
    char *const *listen;        /* --listen overrides */
    size_t nlisten;
    const char *user;           /* --user override, NULL none */
    const char *http_listen;    /* --http-listen override, NULL none */
    int ready_fd;               /* -d: "ok\n" or the error once started; -1 */
};

/* Run until stopped: 0 after a clean stop, 1 when kasi could not start
 * (or a worker failed to stop cleanly). */
int supervisor_run(const struct sup_opts *o);

#endif
