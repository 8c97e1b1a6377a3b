/* proxyhdr.h — the PROXY header phase of a listener with proxy_protocol.
 *
 * After accept, before any session and before the banner (or the TLS
 * handshake of an implicit-TLS listener), the balancer's header is read
 * from the socket: never a byte past it, within timeouts.proxy_header of
 * the accept, without blocking the loop. Then the connection goes to
 * server_client() as the client the header names, so its address and port
 * are what the limits, the reverse DNS, the plugins, the logs, Received:
 * and XFORWARD see. A connection from outside the listener's proxy_from, a
 * malformed header and one that does not come in time get a 421 line and
 * are closed. Called by server.c; pending headers hang on the server
 * (srv->proxy_pending) so shutdown ends them. */
#ifndef KASI_PROXYHDR_H
#define KASI_PROXYHDR_H

#include <sys/socket.h>

struct server;
struct listen_cfg;

/* Take over fd, accepted on lc from sa. */
void proxyhdr_start(struct server *srv, const struct listen_cfg *lc, int fd,
                    const struct sockaddr *sa, socklen_t salen);

/* Close every connection still in its header phase (shutdown, exit). */
void proxyhdr_close_all(struct server *srv);

#endif
