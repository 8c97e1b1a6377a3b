/* sdnotify.c — service manager notification and socket activation (see
 * sdnotify.h). */
#include "core/sdnotify.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/log.h"

static struct sockaddr_un sdn_addr;
static socklen_t sdn_len;

void sdn_setup(void)
{
    const char *p = getenv("NOTIFY_SOCKET");
    size_t n = p ? strlen(p) : 0;
    if (n > 0 && n < sizeof sdn_addr.sun_path && (p[0] == '/' || p[0] == '@')) {
        memset(&sdn_addr, 0, sizeof sdn_addr);
        sdn_addr.sun_family = AF_UNIX;
        memcpy(sdn_addr.sun_path, p, n);
        if (p[0] == '@')
            sdn_addr.sun_path[0] = '\0';       /* abstract namespace */
        sdn_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    }
    unsetenv("NOTIFY_SOCKET");
}

void sdn_notify(const char *fmt, ...)
{
    if (!sdn_len)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    size_t len = (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1;
    if (sendto(fd, msg, len, MSG_NOSIGNAL, (struct sockaddr *)&sdn_addr, sdn_len) < 0)
        log_msg(LOG_LVL_WARN, "service manager notification: %s", strerror(errno));
    close(fd);
}

int sdn_listen_fds(int *first)
{
    const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
    int n = 0;
    *first = 3;
    if (pid && fds && strtol(pid, NULL, 10) == (long)getpid()) {
        long v = strtol(fds, NULL, 10);
        n = v > 0 && v < 1024 ? (int)v : 0;
    }
    for (int fd = 3; fd < 3 + n; fd++)
        fcntl(fd, F_SETFD, FD_CLOEXEC);
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    return n;
}
