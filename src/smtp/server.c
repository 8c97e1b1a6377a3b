/* server.c — listeners, connection accounting and graceful shutdown.
 *
 * Each configured address gets an evconnlistener. A new connection is
 * counted globally and per client IP; over either limit it gets one
 * "421 4.7.0" line and is closed before a session is ever built. */
#include "smtp/server.h"
#include "core/clock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/listener.h>

#include "core/config.h"
#include "core/log.h"
#include "core/stats.h"
#include "smtp/session.h"

#define IP_BUCKETS 4096

struct server *g_server;

/* ------------------------------------------------------ per-IP accounting */

struct ipcount {
    struct ipcount *next;
    unsigned count;
    char ip[64];
};

static unsigned ip_hash(const char *ip)
{
    unsigned h = 2166136261u;
    for (; *ip; ip++)
        h = (h ^ (unsigned char)*ip) * 16777619u;
    return h % IP_BUCKETS;
}

static struct ipcount **ip_slot(struct server *srv, const char *ip)
{
    struct ipcount **pp = &srv->ipbuckets[ip_hash(ip)];
    while (*pp && strcmp((*pp)->ip, ip) != 0)
        pp = &(*pp)->next;
    return pp;
}

static unsigned ip_get(struct server *srv, const char *ip)
{
    struct ipcount *c = *ip_slot(srv, ip);
    return c ? c->count : 0;
}

static void ip_add(struct server *srv, const char *ip, int delta)
{
    struct ipcount **pp = ip_slot(srv, ip);
    if (!*pp) {
        if (delta < 0)
            return;
        *pp = calloc(1, sizeof **pp);
        if (!*pp)
            return;
        snprintf((*pp)->ip, sizeof (*pp)->ip, "%s", ip);
    }
    (*pp)->count += (unsigned)delta;
    if ((*pp)->count == 0) {
        struct ipcount *dead = *pp;
        *pp = dead->next;
        free(dead);
    }
}

void server_session_add(struct server *srv, struct session *s)
{
    s->next = srv->sessions;
    s->prev = NULL;
    if (srv->sessions)
        srv->sessions->prev = s;
    srv->sessions = s;
    srv->nsessions++;
    ip_add(srv, s->conn.remote_ip, 1);
}

void server_session_remove(struct server *srv, struct session *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        srv->sessions = s->next;
    if (s->next)
        s->next->prev = s->prev;
    srv->nsessions--;
    ip_add(srv, s->conn.remote_ip, -1);
    if (srv->shutting_down && srv->nsessions == 0)
        event_base_loopexit(srv->base, NULL);
}

/* ---------------------------------------------------------------- accept */

static void refuse(int fd, const char *text)
{
    stats_conn_refused();
    /* best effort, non-blocking: the socket buffer is empty */
    ssize_t w = send(fd, text, strlen(text), MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)w;
    close(fd);
}

static void sockaddr_ip(const struct sockaddr *sa, char *ip, size_t len)
{
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const void *)sa;
        if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr))
            inet_ntop(AF_INET, &a->sin6_addr.s6_addr[12], ip, (socklen_t)len);
        else
            inet_ntop(AF_INET6, &a->sin6_addr, ip, (socklen_t)len);
    } else {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, ip,
                  (socklen_t)len);
    }
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd,
                      struct sockaddr *sa, int salen, void *arg)
{
    struct server_listener *sl = arg;
    struct server *srv = sl->srv;
    const struct kasi_config *c = srv->cfg;
    char ip[64];
    (void)l;
    sockaddr_ip(sa, ip, sizeof ip);
    if (srv->nsessions >= c->max_connections) {
        log_msg(LOG_LVL_WARN, "connection limit (%u) reached, refusing %s",
                c->max_connections, ip);
        refuse(fd, "421 4.7.0 Too many connections, try again later\r\n");
        return;
    }
    if (c->max_conn_per_ip && ip_get(srv, ip) >= c->max_conn_per_ip) {
        log_msg(LOG_LVL_WARN, "per-IP connection limit (%u) reached for %s",
                c->max_conn_per_ip, ip);
        refuse(fd, "421 4.7.0 Too many connections from your address\r\n");
        return;
    }
    if (!session_new(srv, sl->lc, fd, sa, (socklen_t)salen)) {
        log_msg(LOG_LVL_ERROR, "out of memory for a new session from %s", ip);
        refuse(fd, "421 4.3.0 Out of memory\r\n");
    }
}

static void accept_error_cb(struct evconnlistener *l, void *arg)
{
    (void)l;
    (void)arg;
    /* EMFILE and friends: log and keep listening */
    log_msg(LOG_LVL_ERROR, "accept: %s", strerror(errno));
}

/* Create, bind and listen one socket; returns the fd or -1 (logged). */
static int bind_one(const struct listen_cfg *lc)
{
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV };
    struct addrinfo *res;
    int rc = getaddrinfo(lc->host, lc->port, &hints, &res);
    if (rc != 0) {
        log_msg(LOG_LVL_ERROR, "listen %s:%s: %s", lc->host, lc->port, gai_strerror(rc));
        return -1;
    }
    int one = 1;
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd >= 0) {
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (res->ai_family == AF_INET6)
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
        if (bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 1024) < 0) {
            close(fd);
            fd = -1;
        }
    }
    if (fd < 0)
        log_msg(LOG_LVL_ERROR, "listen %s:%s: %s", lc->host, lc->port, strerror(errno));
    freeaddrinfo(res);
    return fd;
}

int server_bind(const struct kasi_config *cfg, int *fds)
{
    for (size_t i = 0; i < cfg->nlisten; i++) {
        fds[i] = bind_one(&cfg->listen[i]);
        if (fds[i] < 0) {
            while (i-- > 0)
                close(fds[i]);
            return -1;
        }
    }
    return 0;
}

static void log_listener(int fd, const struct listen_cfg *lc)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char ip[64] = "?";
    int port = 0;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
        sockaddr_ip((struct sockaddr *)&ss, ip, sizeof ip);
        port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                              : ((struct sockaddr_in *)&ss)->sin_port);
    }
    char what[64];
    snprintf(what, sizeof what, "%s%s%s", lc->submission ? " (submission)" : "",
             lc->tls == LISTEN_TLS_IMPLICIT ? " (implicit TLS)"
             : lc->tls == LISTEN_TLS_STARTTLS ? " (STARTTLS)" : "",
             lc->auth ? " (AUTH)" : "");
    log_msg(LOG_LVL_INFO, ss.ss_family == AF_INET6 ? "listening on [%s]:%d%s"
                                                   : "listening on %s:%d%s",
            ip, port, what);
}

int server_init(struct server *srv, struct event_base *base,
                struct kasi_config *cfg, const struct hook_engine *engine,
                const int *fds)
{
    memset(srv, 0, sizeof *srv);
    srv->base = base;
    srv->cfg = cfg;
    srv->engine = engine;
    snprintf(srv->boot_id, sizeof srv->boot_id, "%08lX%04X",
             (unsigned long)time(NULL), (unsigned)getpid() & 0xffff);
    srv->ipbuckets = calloc(IP_BUCKETS, sizeof *srv->ipbuckets);
    srv->listeners = calloc(cfg->nlisten, sizeof *srv->listeners);
    srv->lctx = calloc(cfg->nlisten, sizeof *srv->lctx);
    if (!srv->ipbuckets || !srv->listeners || !srv->lctx)
        return -1;
    for (size_t i = 0; i < cfg->nlisten; i++) {
        srv->lctx[i] = (struct server_listener){ srv, &cfg->listen[i] };
        struct evconnlistener *l = evconnlistener_new(
            base, accept_cb, &srv->lctx[i], LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
            -1, fds[i]);
        if (!l) {
            log_msg(LOG_LVL_ERROR, "listener: %s", strerror(errno));
            return -1;
        }
        evconnlistener_set_error_cb(l, accept_error_cb);
        srv->listeners[srv->nlisteners++] = l;
        log_listener(fds[i], &cfg->listen[i]);
    }
    g_server = srv;
    return 0;
}

static void close_listeners(struct server *srv)
{
    for (size_t i = 0; i < srv->nlisteners; i++)
        evconnlistener_free(srv->listeners[i]);
    srv->nlisteners = 0;
}

void server_free(struct server *srv)
{
    while (srv->sessions)       /* only sessions a forced exit left behind */
        session_destroy(srv->sessions);
    close_listeners(srv);
    free(srv->listeners);
    free(srv->lctx);
    if (srv->ipbuckets) {
        for (size_t i = 0; i < IP_BUCKETS; i++) {
            while (srv->ipbuckets[i]) {
                struct ipcount *n = srv->ipbuckets[i]->next;
                free(srv->ipbuckets[i]);
                srv->ipbuckets[i] = n;
            }
        }
    }
    free(srv->ipbuckets);
    if (srv->grace_ev)
        event_free(srv->grace_ev);
    if (g_server == srv)
        g_server = NULL;
}

static void grace_over_cb(evutil_socket_t fd, short what, void *arg)
{
    struct server *srv = arg;
    (void)fd;
    (void)what;
    log_msg(LOG_LVL_INFO, "shutdown grace period over, closing %u sessions",
            srv->nsessions);
    for (struct session *s = srv->sessions, *n; s; s = n) {
        n = s->next;
        session_kick(s, "Server shutting down, try again later");
    }
}

void server_shutdown(struct server *srv)
{
    if (srv->shutting_down)
        return;
    srv->shutting_down = 1;
    close_listeners(srv);
    log_msg(LOG_LVL_INFO, "shutting down: %u sessions open", srv->nsessions);
    if (srv->nsessions == 0) {
        event_base_loopexit(srv->base, NULL);
        return;
    }
    struct timeval tv = clock_tv(srv->cfg->timeout_shutdown);
    srv->grace_ev = evtimer_new(srv->base, grace_over_cb, srv);
    evtimer_add(srv->grace_ev, &tv);
}
