/* fdio.h — small descriptor helpers: blocking writes to regular files,
 * and the listening socket every listener (SMTP, HTTP) is made with. */
#ifndef KASI_FDIO_H
#define KASI_FDIO_H

#include <stddef.h>

/* Write all n bytes (retrying on EINTR and short writes). 0 or -1/errno. */
int fdio_write_all(int fd, const void *p, size_t n);

struct addrinfo;

/* A non-blocking, close-on-exec listening TCP socket bound to ai
 * (SO_REUSEADDR; an IPv6 socket is IPv6-only). The fd, or -1/errno. */
int fdio_listen(const struct addrinfo *ai, int backlog);

#endif
