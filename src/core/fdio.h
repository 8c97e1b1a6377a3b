/* fdio.h — small helpers for blocking writes to regular files. */
#ifndef KASI_FDIO_H
#define KASI_FDIO_H

#include <stddef.h>

/* Write all n bytes (retrying on EINTR and short writes). 0 or -1/errno. */
int fdio_write_all(int fd, const void *p, size_t n);

#endif
