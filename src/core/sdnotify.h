/* sdnotify.h — the service manager's side channels, spoken directly:
 *   - readiness: one datagram "READY=1", "RELOADING=1", "STOPPING=1",
 *     "STATUS=..." to the AF_UNIX socket named by $NOTIFY_SOCKET;
 *   - socket activation: listening sockets passed as fds 3.. with
 *     $LISTEN_FDS, for this process when $LISTEN_PID is our pid.
 * Both protocols are a few lines; linking libsystemd for them would add a
 * dependency that kasi needs nowhere else. Called by the supervisor only. */
#ifndef KASI_SDNOTIFY_H
#define KASI_SDNOTIFY_H

#include <stddef.h>

/* Read and unset $NOTIFY_SOCKET (children never see it). */
void sdn_setup(void);
/* Send one state message (lines "KEY=VALUE"); no-op without a socket. */
void sdn_notify(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The fds passed by socket activation (close-on-exec set, the variables
 * unset): how many, with *first the first fd; 0 when none. */
int sdn_listen_fds(int *first);

#endif
