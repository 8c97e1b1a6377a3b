/* server.c — listeners, connection accounting and graceful shutdown.
 *
 * Each configured address gets an evconnlistener. A new connection is
 * counted globally and per client network, in counters shared by every
 * worker process; over either limit it gets one "421 4.7.0" line and is
 * closed before a session is ever built.
 *
 * After a burst the allocator keeps the freed session memory: when the
 * session count falls to a quarter of the burst's peak, and at least
 * TRIM_MIN_FREED sessions ended since the last release, the worker gives
 * it back to the system (malloc_trim, at most once per TRIM_INTERVAL, and
 * TRIM_SETTLE after the close that called for it, so that the sessions
 * closing together and their deferred frees are done); and once more
 * TRIM_SETTLE after the last session of the burst ends, for what the
 * others still held.
 * So that the release can give back nearly all of it, libevent's records
 * of the descriptors sessions get are made in blocks ahead of them (see
 * reserve_fd_slots). */
#include "smtp/server.h"
#include "core/clock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/listener.h>

#include "core/config.h"
#include "core/fdio.h"
#include "core/log.h"
#include "core/netmask.h"
#include "core/shmcount.h"
#include "core/stats.h"
#include "proto/reply.h"
#include "smtp/proxyhdr.h"
#include "smtp/session.h"

#define TRIM_MIN_FREED 64       /* sessions closed: fewer leave little behind */
#define TRIM_INTERVAL 10.0      /* seconds between two releases */
#define TRIM_SETTLE 0.5         /* seconds from the close to the release */

struct server *g_server;

/* ------------------------------------------------ connection accounting
 *
 * Connections are counted in the shared counters (core/shmcount.h), so the
 * limits hold for all worker processes together and across restarts:
 * every session holds the global gauge (limits.max_connections) and,
 * unless its address is in limits.exempt, the gauge of its network
 * (max_connections_per_ip, grouped by limits.ipv4_prefix / ipv6_prefix).
 * server_admit takes both, each check and hold in one step, before a
 * session exists; server_session_remove gives them back, finding the
 * network again from conn.remote_ip (so whatever changes remote_ip after
 * admission, a PROXY header, must give back and admit anew). The holds of
 * a worker that dies are given back by the supervisor. */

/* The key of ip's network, or 0 when ip's network is not counted. */
static int net_key(const struct kasi_config *c, const unsigned char ip[NETMASK_BYTES],
                   unsigned char key[NETMASK_KEY])
{
    if (!c->max_conn_per_ip || netmask_list_match(&c->exempt, ip))
        return 0;
    netmask_key(ip, c->ipv4_prefix, c->ipv6_prefix, 'N', key);
    return 1;
}

/* The reply for a client the counters did not admit (logged here). */
static const struct reply_std *refusal(const struct kasi_config *c, enum shmcount_rc rc,
                                       int global, const unsigned char bin[NETMASK_BYTES],
                                       const char *ip)
{
    char net[64];
    struct netmask m;
    netmask_group(bin, c->ipv4_prefix, c->ipv6_prefix, &m);
    netmask_format(&m, net, sizeof net);
    if (rc == SHMCOUNT_OVER && global) {
        log_msg(LOG_LVL_WARN, "connection limit (%u) reached, refusing %s",
                c->max_connections, ip);
        return reply_core(RPL_CONN_LIMIT);
    }
    if (rc == SHMCOUNT_OVER) {
        log_msg(LOG_LVL_WARN, "per-network connection limit (%u) reached for %s (%s)",
                c->max_conn_per_ip, ip, net);
        return reply_core(RPL_CONN_LIMIT_NET);
    }
    log_msg(LOG_LVL_ERROR, "shared counters: %s, refusing %s (%s)",
            rc == SHMCOUNT_FULL ? "no room to count a new network" : "not usable", ip, net);
    return reply_core(RPL_CONN_BUSY);
}

const struct reply_std *server_admit(struct server *srv, const unsigned char ip[NETMASK_BYTES],
                                     const char *ipstr)
{
    const struct kasi_config *c = srv->cfg;
    unsigned char key[NETMASK_KEY];
    enum shmcount_rc rc = shmcount_hold("", 0, c->max_connections, NULL);
    if (rc != SHMCOUNT_OK)
        return refusal(c, rc, 1, ip, ipstr);
    if (!net_key(c, ip, key))
        return NULL;
    rc = shmcount_hold(key, sizeof key, c->max_conn_per_ip, NULL);
    if (rc == SHMCOUNT_OK)
        return NULL;
    shmcount_drop("", 0);
    return refusal(c, rc, 0, ip, ipstr);
}

/* Give back what server_admit took for a client at ip. */
static void server_release(struct server *srv, const unsigned char ip[NETMASK_BYTES])
{
    unsigned char key[NETMASK_KEY];
    if (net_key(srv->cfg, ip, key))
        shmcount_drop(key, sizeof key);
    shmcount_drop("", 0);
}

/* ------------------------------------------------- memory after a burst */

static long rss_kib(void)
{
    long pages = 0, rss = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
            rss = 0;
        fclose(f);
    }
    return rss * (sysconf(_SC_PAGESIZE) / 1024);
}

static void trim_cb(evutil_socket_t fd, short what, void *arg)
{
    struct server *srv = arg;
    (void)fd;
    (void)what;
    long before = rss_kib(), used = -1, held = -1;
    if (srv->engine && srv->engine->release)
        srv->engine->release();
#ifdef __GLIBC__
    malloc_trim(0);
    struct mallinfo2 mi = mallinfo2();
    used = (long)(mi.uordblks / 1024);          /* allocated and live */
    held = (long)((mi.arena + mi.hblkhd) / 1024);
#endif
    log_msg(LOG_LVL_INFO, "memory released after a burst of %u sessions (%u open): "
            "RSS %ld -> %ld KiB (heap %ld KiB in use of %ld)", srv->trim_peak,
            srv->nsessions, before, rss_kib(), used, held);
    if (srv->nsessions == 0)
        srv->trim_peak = 0;         /* the burst is over */
    srv->trim_freed = 0;
    srv->last_trim = clock_now();
}

/* The session count fell: after a burst, release memory (rate-limited). */
static void trim_maybe(struct server *srv)
{
    int burst_ending = srv->trim_freed >= TRIM_MIN_FREED &&
                       srv->nsessions <= srv->trim_peak / 4;
    int idle_again = srv->nsessions == 0 && srv->trim_freed > 0 && srv->trim_peak >= 64;
    if (!srv->trim_ev || !(burst_ending || idle_again))
        return;
    if (idle_again)             /* the burst's last session: soon, whatever the interval */
        evtimer_del(srv->trim_ev);
    else if (evtimer_pending(srv->trim_ev, NULL))
        return;
    double wait = idle_again ? 0 : srv->last_trim + TRIM_INTERVAL - clock_now();
    struct timeval tv = clock_tv(wait > TRIM_SETTLE ? wait : TRIM_SETTLE);
    evtimer_add(srv->trim_ev, &tv);
}

const struct reply_std *server_readdress(struct server *srv, const char *from,
                                         const char *to)
{
    const struct kasi_config *c = srv->cfg;
    unsigned char a[NETMASK_BYTES], b[NETMASK_BYTES], ka[NETMASK_KEY], kb[NETMASK_KEY];
    int had = netmask_addr(from, a) == 0 && net_key(c, a, ka);
    int has = netmask_addr(to, b) == 0 && net_key(c, b, kb);
    if (had && has && memcmp(ka, kb, sizeof ka) == 0)
        return NULL;                    /* the same network: nothing moves */
    if (has) {
        enum shmcount_rc rc = shmcount_hold(kb, sizeof kb, c->max_conn_per_ip, NULL);
        if (rc != SHMCOUNT_OK)
            return refusal(c, rc, 0, b, to);
    }
    if (had)
        shmcount_drop(ka, sizeof ka);
    return NULL;
}

void server_session_add(struct server *srv, struct session *s)
{
    s->next = srv->sessions;
    s->prev = NULL;
    if (srv->sessions)
        srv->sessions->prev = s;
    srv->sessions = s;
    srv->nsessions++;
    if (srv->nsessions > srv->trim_peak)
        srv->trim_peak = srv->nsessions;
}

void server_session_remove(struct server *srv, struct session *s)
{
    unsigned char ip[NETMASK_BYTES];
    if (s->prev)
        s->prev->next = s->next;
    else
        srv->sessions = s->next;
    if (s->next)
        s->next->prev = s->prev;
    srv->nsessions--;
    srv->trim_freed++;
    if (netmask_addr(s->conn.remote_ip, ip) == 0)
        server_release(srv, ip);
    trim_maybe(srv);
    if (srv->shutting_down && srv->nsessions == 0)
        event_base_loopexit(srv->base, NULL);
}

/* ---------------------------------------------------------------- accept */

void server_refuse(int fd, const struct reply_std *r)
{
    char text[REPLY_LINE_MAX];
    size_t n = reply_format(text, sizeof text, r->code, r->enh, r->text);
    stats_conn_refused();
    /* best effort, non-blocking: the socket buffer is empty */
    ssize_t w = send(fd, text, n, MSG_NOSIGNAL | MSG_DONTWAIT);
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

void server_client(struct server *srv, const struct listen_cfg *lc, int fd,
                   const struct sockaddr *peer, socklen_t plen,
                   const struct sockaddr *local, const char *via)
{
    char ip[64];
    unsigned char bin[NETMASK_BYTES];
    sockaddr_ip(peer, ip, sizeof ip);
    if (netmask_sockaddr(peer, bin) < 0) {   /* not IP: nothing to count it by */
        log_msg(LOG_LVL_ERROR, "connection from a non-IP address refused");
        server_refuse(fd, reply_core(RPL_CONN_FAMILY));
        return;
    }
    const struct reply_std *no = server_admit(srv, bin, ip);
    if (no) {
        server_refuse(fd, no);
        return;
    }
    struct session *s = via ? session_new_proxied(srv, lc, fd, peer, local, via)
                            : session_new(srv, lc, fd, peer, plen);
    if (!s) {
        log_msg(LOG_LVL_ERROR, "out of memory for a new session from %s", ip);
        server_release(srv, bin);
        server_refuse(fd, reply_core(RPL_CONN_NO_MEMORY));
    }
}

/* libevent makes a small record for a descriptor the first time it gets
 * an event, and never frees it. Made one by one during a burst, one sits
 * among each session's memory and keeps that page from the system after
 * the burst (10,000 idle STARTTLS sessions: 28 MB kept after they closed,
 * 1.5 MB without). So they are made in blocks, ahead of the sessions:
 * when a client's descriptor reaches the last made, those up to twice
 * its number (a session may have a downstream descriptor too), within the
 * descriptor limit, are made together before its session: a socket is
 * copied to each free number in turn, given an event and closed again. */
#define FD_SLOTS_FIRST 256

static void fd_slot_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

static void fd_slot_touch(struct event_base *base, int fd)
{
    struct event *ev = event_new(base, fd, EV_READ, fd_slot_cb, NULL);
    if (ev && event_add(ev, NULL) == 0)
        event_del(ev);
    if (ev)
        event_free(ev);
}

static void reserve_fd_slots(struct server *srv, int fd)
{
    if (fd < srv->fd_slots)
        return;
    struct rlimit rl;
    rlim_t upto = fd < FD_SLOTS_FIRST / 2 ? FD_SLOTS_FIRST : (rlim_t)fd * 2;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < upto)
        upto = rl.rlim_cur;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return;                 /* only memory is at stake */
    for (int next = srv->fd_slots;;) {
        int copy = fcntl(sv[0], F_DUPFD_CLOEXEC, next);
        if (copy < 0 || (rlim_t)copy >= upto) {
            if (copy >= 0)
                close(copy);
            break;
        }
        fd_slot_touch(srv->base, copy);
        close(copy);
        next = copy + 1;
    }
    close(sv[0]);
    close(sv[1]);
    srv->fd_slots = (int)upto;
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd,
                      struct sockaddr *sa, int salen, void *arg)
{
    struct server_listener *sl = arg;
    (void)l;
    reserve_fd_slots(sl->srv, fd);
    if (sl->lc->proxy_protocol)         /* the balancer's header comes first */
        proxyhdr_start(sl->srv, sl->lc, fd, sa, (socklen_t)salen);
    else
        server_client(sl->srv, sl->lc, fd, sa, (socklen_t)salen, NULL, NULL);
}

static void accept_error_cb(struct evconnlistener *l, void *arg)
{
    (void)l;
    (void)arg;
    /* EMFILE and friends: log and keep listening */
    log_msg(LOG_LVL_ERROR, "accept: %s", strerror(errno));
}

int server_bind_one(const struct listen_cfg *lc)
{
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV };
    struct addrinfo *res;
    int rc = getaddrinfo(lc->host, lc->port, &hints, &res);
    if (rc != 0) {
        log_msg(LOG_LVL_ERROR, "listen %s:%s: %s", lc->host, lc->port, gai_strerror(rc));
        return -1;
    }
    int fd = fdio_listen(res, 1024);
    if (fd < 0)
        log_msg(LOG_LVL_ERROR, "listen %s:%s: %s", lc->host, lc->port, strerror(errno));
    freeaddrinfo(res);
    return fd;
}

int server_bind(const struct kasi_config *cfg, int *fds)
{
    for (size_t i = 0; i < cfg->nlisten; i++) {
        fds[i] = server_bind_one(&cfg->listen[i]);
        if (fds[i] < 0) {
            while (i-- > 0)
                close(fds[i]);
            return -1;
        }
    }
    return 0;
}

void server_log_listener(int fd, const struct listen_cfg *lc)
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
    static const char *const proxy[] = { "", " (PROXY v1)", " (PROXY v2)", " (PROXY)" };
    char what[96];
    snprintf(what, sizeof what, "%s%s%s%s", lc->submission ? " (submission)" : "",
             lc->tls == LISTEN_TLS_IMPLICIT ? " (implicit TLS)"
             : lc->tls == LISTEN_TLS_STARTTLS ? " (STARTTLS)" : "",
             lc->auth ? " (AUTH)" : "", proxy[lc->proxy_protocol & 3]);
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
    if (!shmcount_ready()) {
        log_msg(LOG_LVL_ERROR, "no shared counters: they are made before the worker starts");
        return -1;
    }
    reserve_fd_slots(srv, 0);
    srv->listeners = calloc(cfg->nlisten + 1, sizeof *srv->listeners);
    srv->lctx = calloc(cfg->nlisten + 1, sizeof *srv->lctx);
    srv->trim_ev = evtimer_new(base, trim_cb, srv);
    srv->last_trim = clock_now() - TRIM_INTERVAL;
    if (!srv->listeners || !srv->lctx || !srv->trim_ev)
        return -1;
    for (size_t i = 0; fds && i < cfg->nlisten; i++) {
        srv->lctx[i] = (struct server_listener){ srv, &cfg->listen[i] };
        struct evconnlistener *l = evconnlistener_new(
            base, accept_cb, &srv->lctx[i],
            LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_DISABLED, -1, fds[i]);
        if (!l) {
            log_msg(LOG_LVL_ERROR, "listener: %s", strerror(errno));
            return -1;
        }
        evconnlistener_set_error_cb(l, accept_error_cb);
        srv->listeners[srv->nlisteners++] = l;
    }
    g_server = srv;
    return 0;
}

void server_accept_start(struct server *srv)
{
    for (size_t i = 0; i < srv->nlisteners; i++)
        evconnlistener_enable(srv->listeners[i]);
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
    proxyhdr_close_all(srv);
    close_listeners(srv);
    free(srv->listeners);
    free(srv->lctx);
    if (srv->grace_ev)
        event_free(srv->grace_ev);
    if (srv->trim_ev)
        event_free(srv->trim_ev);
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

/* Close the listeners; the loop ends with the last session. */
static void stop_accepting(struct server *srv, const char *why)
{
    if (!srv->shutting_down) {
        srv->shutting_down = 1;
        close_listeners(srv);
        proxyhdr_close_all(srv);        /* no session yet: nothing to finish */
        log_msg(LOG_LVL_INFO, "%s: %u sessions open", why, srv->nsessions);
    }
    if (srv->nsessions == 0)
        event_base_loopexit(srv->base, NULL);
}

void server_drain(struct server *srv)
{
    stop_accepting(srv, "draining");
}

void server_shutdown(struct server *srv)
{
    if (srv->grace_ev)
        return;
    stop_accepting(srv, "shutting down");
    if (srv->nsessions == 0)
        return;
    struct timeval tv = clock_tv(srv->cfg->timeout_shutdown);
    srv->grace_ev = evtimer_new(srv->base, grace_over_cb, srv);
    evtimer_add(srv->grace_ev, &tv);
}
