/* proxyhdr.c — reading a balancer's PROXY header before the session (see
 * proxyhdr.h).
 *
 * Each pending connection has a read event and a deadline timer. On each
 * read event the socket is peeked, proto/proxy_parse.c judges what has
 * arrived, and only bytes that belong to the header are taken off the
 * socket: all of them while the header is incomplete, exactly up to its
 * end once it is complete. Whatever the client sent after it (an early
 * talker, a TLS ClientHello) stays in the socket for the session. */
#include "smtp/proxyhdr.h"
#include "core/clock.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "core/config.h"
#include "core/log.h"
#include "core/netmask.h"
#include "proto/proxy_parse.h"
#include "proto/reply.h"
#include "smtp/server.h"

_Static_assert(LISTEN_PROXY_V1 == PROXY_ALLOW_V1 && LISTEN_PROXY_V2 == PROXY_ALLOW_V2,
               "listener proxy_protocol bits are the parser's");

struct proxyhdr {
    struct server *srv;
    const struct listen_cfg *lc;
    int fd;
    struct sockaddr_storage peer;       /* the balancer */
    socklen_t plen;
    char peer_text[80];                 /* "ip:port" for the log */
    struct event *rd, *deadline;
    size_t have;                        /* header bytes taken so far */
    unsigned char buf[PROXY_MAX_LEN];
    struct proxyhdr *prev, *next;       /* srv->proxy_pending */
};

static void addr_text(const struct sockaddr *sa, socklen_t len, char *out, size_t outlen)
{
    char host[64], serv[8];
    if (getnameinfo(sa, len, host, sizeof host, serv, sizeof serv,
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0)
        snprintf(out, outlen, "?");
    else
        snprintf(out, outlen, sa->sa_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host, serv);
}

/* Unlink and free p; its fd is the caller's to close or hand on. */
static void ph_free(struct proxyhdr *p)
{
    struct server *srv = p->srv;
    if (p->prev)
        p->prev->next = p->next;
    else
        srv->proxy_pending = p->next;
    if (p->next)
        p->next->prev = p->prev;
    srv->nproxy_pending--;
    if (p->rd)
        event_free(p->rd);
    if (p->deadline)
        event_free(p->deadline);
    free(p);
}

/* The end of a refused or failed header: the reply (when there is one),
 * then close. */
static void ph_fail(struct proxyhdr *p, const char *why, const struct reply_std *reply)
{
    log_msg(LOG_LVL_WARN, "PROXY header from %s refused: %s", p->peer_text, why);
    if (reply)
        server_refuse(p->fd, reply);
    else
        close(p->fd);
    ph_free(p);
}

static void ph_log(const struct proxyhdr *p, const struct proxy_hdr *h)
{
    char src[80], dst[80];
    if (h->local) {
        log_msg(LOG_LVL_DEBUG, "PROXY v%d from %s: the balancer's own connection",
                h->version, p->peer_text);
        return;
    }
    addr_text((const struct sockaddr *)&h->src, sizeof h->src, src, sizeof src);
    addr_text((const struct sockaddr *)&h->dst, sizeof h->dst, dst, sizeof dst);
    log_msg(LOG_LVL_DEBUG, "PROXY v%d from %s: client %s to %s%s%s%s%s%s%s%s", h->version,
            p->peer_text, src, dst, h->authority[0] ? " authority=" : "", h->authority,
            h->ssl ? " tls=" : "", h->ssl ? (h->ssl_version[0] ? h->ssl_version : "yes") : "",
            h->unique_id[0] ? " id=" : "", h->unique_id, h->crc_checked ? " crc=ok" : "");
}

/* The header is in: the session starts as the client it names (or, for
 * a balancer's own connection, as the balancer). */
static void ph_done(struct proxyhdr *p, const struct proxy_hdr *h)
{
    struct server *srv = p->srv;
    const struct listen_cfg *lc = p->lc;
    int fd = p->fd;
    struct sockaddr_storage peer = p->peer;
    socklen_t plen = p->plen;
    char via[64];
    ph_log(p, h);
    ph_free(p);
    if (h->local) {
        server_client(srv, lc, fd, (struct sockaddr *)&peer, plen, NULL, NULL);
        return;
    }
    char host[64];
    if (getnameinfo((struct sockaddr *)&peer, plen, host, sizeof host, NULL, 0,
                    NI_NUMERICHOST) != 0)
        snprintf(host, sizeof host, "?");
    snprintf(via, sizeof via, "%s", host);
    server_client(srv, lc, fd, (const struct sockaddr *)&h->src, sizeof h->src,
                  (const struct sockaddr *)&h->dst, via);
}

/* Take n bytes off the socket (they were peeked: they are there). */
static int ph_take(struct proxyhdr *p, size_t n)
{
    ssize_t got = recv(p->fd, p->buf + p->have, n, 0);
    if (got != (ssize_t)n)
        return -1;
    p->have += n;
    return 0;
}

static void ph_read(evutil_socket_t fd, short what, void *arg)
{
    struct proxyhdr *p = arg;
    (void)what;
    ssize_t n = recv(fd, p->buf + p->have, sizeof p->buf - p->have, MSG_PEEK);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n <= 0) {
        ph_fail(p, n == 0 ? "connection closed before the end of the header"
                          : strerror(errno), NULL);
        return;
    }
    struct proxy_hdr h;
    size_t used;
    const char *why;
    enum proxy_rc rc = proxy_parse(p->buf, p->have + (size_t)n, p->lc->proxy_protocol,
                                   &h, &used, &why);
    if (rc == PROXY_ERROR) {
        ph_fail(p, why, reply_core(RPL_PROXY_BAD));
        return;
    }
    if (ph_take(p, rc == PROXY_DONE ? used - p->have : (size_t)n) < 0) {
        ph_fail(p, "the socket gave fewer bytes than it showed", NULL);
        return;
    }
    if (rc == PROXY_DONE)
        ph_done(p, &h);
}

static void ph_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct proxyhdr *p = arg;
    char why[96];
    (void)fd;
    (void)what;
    snprintf(why, sizeof why, "no complete header within %g s (%zu bytes)",
             p->srv->cfg->timeout_proxy_header, p->have);
    ph_fail(p, why, reply_core(RPL_PROXY_TIMEOUT));
}

/* A connection from outside proxy_from: no header from there is trusted. */
static int ph_trusted(const struct listen_cfg *lc, const struct sockaddr *sa)
{
    unsigned char ip[NETMASK_BYTES];
    return netmask_sockaddr(sa, ip) == 0 && netmask_list_match(&lc->proxy_from, ip);
}

static struct proxyhdr *ph_new(struct server *srv, const struct listen_cfg *lc, int fd,
                               const struct sockaddr *sa, socklen_t salen)
{
    struct proxyhdr *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->srv = srv;
    p->lc = lc;
    p->fd = fd;
    p->plen = salen <= sizeof p->peer ? salen : sizeof p->peer;
    memcpy(&p->peer, sa, p->plen);
    addr_text(sa, salen, p->peer_text, sizeof p->peer_text);
    p->rd = event_new(srv->base, fd, EV_READ | EV_PERSIST, ph_read, p);
    p->deadline = evtimer_new(srv->base, ph_timeout, p);
    p->next = srv->proxy_pending;
    if (p->next)
        p->next->prev = p;
    srv->proxy_pending = p;
    srv->nproxy_pending++;
    return p;
}

void proxyhdr_start(struct server *srv, const struct listen_cfg *lc, int fd,
                    const struct sockaddr *sa, socklen_t salen)
{
    char peer[80];
    if (!ph_trusted(lc, sa)) {
        addr_text(sa, salen, peer, sizeof peer);
        log_msg(LOG_LVL_WARN, "connection from %s refused: not in proxy_from of %s:%s",
                peer, lc->host, lc->port);
        server_refuse(fd, reply_core(RPL_PROXY_UNTRUSTED));
        return;
    }
    if (srv->nproxy_pending >= srv->cfg->max_connections) {
        log_msg(LOG_LVL_WARN, "%u PROXY headers pending, refusing another",
                srv->nproxy_pending);
        server_refuse(fd, reply_core(RPL_CONN_LIMIT));
        return;
    }
    struct proxyhdr *p = ph_new(srv, lc, fd, sa, salen);
    struct timeval tv = clock_tv(srv->cfg->timeout_proxy_header);
    if (!p || !p->rd || !p->deadline || event_add(p->rd, NULL) < 0 ||
        evtimer_add(p->deadline, &tv) < 0) {
        log_msg(LOG_LVL_ERROR, "out of memory for a PROXY header");
        if (p)
            ph_free(p);
        server_refuse(fd, reply_core(RPL_CONN_NO_MEMORY));
    }
}

void proxyhdr_close_all(struct server *srv)
{
    while (srv->proxy_pending) {
        struct proxyhdr *p = srv->proxy_pending;
        close(p->fd);
        ph_free(p);
    }
}
