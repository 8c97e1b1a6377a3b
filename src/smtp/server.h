/* server.h — the process-wide state of a worker: event base, listeners,
 * live sessions, connection accounting (global and per client network, in
 * the shared counters of core/shmcount.h) and graceful shutdown. */
#ifndef KASI_SERVER_H
#define KASI_SERVER_H

#include <stddef.h>
#include <event2/event.h>
#include <sys/socket.h>

struct kasi_config;
struct listen_cfg;
struct session;
struct hook_engine;

/* What a listener's accept callback needs. */
struct proxyhdr;

struct server_listener {
    struct server *srv;
    const struct listen_cfg *lc;
};

struct server {
    struct event_base *base;
    struct kasi_config *cfg;
    const struct hook_engine *engine;  /* the plugin engine (installed by main.c) */
    struct evconnlistener **listeners;
    struct server_listener *lctx;  /* one per listener */
    size_t nlisteners;
    struct session *sessions;      /* doubly linked list of live sessions */
    unsigned nsessions;
    struct proxyhdr *proxy_pending;    /* connections still sending their PROXY header */
    unsigned nproxy_pending;
    int shutting_down;
    struct event *grace_ev;        /* end of the shutdown grace period */
    unsigned long long next_conn;  /* connection counter for ids */
    unsigned trim_peak;            /* most sessions at once since memory was released */
    unsigned trim_freed;           /* sessions ended since then */
    double last_trim;              /* when memory was last released (clock_now) */
    struct event *trim_ev;         /* releases memory after a burst (server.c) */
    int fd_slots;                  /* descriptors below have libevent's record made */
    char boot_id[16];              /* per-process id prefix */
};

extern struct server *g_server;

/* Bind and listen on every address of cfg (in the supervisor, before the
 * worker forks, so a restarted worker keeps the same sockets): fds gets
 * cfg->nlisten descriptors. Returns 0 or -1 (logged). */
int server_bind(const struct kasi_config *cfg, int *fds);

/* One listener of cfg: the fd, or -1 (logged). */
int server_bind_one(const struct listen_cfg *lc);
/* "listening on HOST:PORT (what)" for a bound socket. */
void server_log_listener(int fd, const struct listen_cfg *lc);

/* Serve the bound sockets fds (one per listener; NULL: none, sessions
 * come from session_new directly) on base. The listeners start disabled:
 * server_accept_start enables them. 0 or -1. */
int server_init(struct server *srv, struct event_base *base,
                struct kasi_config *cfg, const struct hook_engine *engine,
                const int *fds);
void server_accept_start(struct server *srv);
void server_free(struct server *srv);

/* Stop accepting, give sessions `grace` seconds, then 421 them. */
void server_shutdown(struct server *srv);
/* Stop accepting and let every session finish on its own (a retired
 * worker after a reload); the loop ends with the last one. */
void server_drain(struct server *srv);

/* Count a new client at ip (16 bytes, core/netmask.h; ipstr for the log)
 * against limits.max_connections and its network's limit, for all worker
 * processes together: NULL when admitted (server_session_remove gives it
 * back), else the 421 reply to refuse it with (proto/reply.h; logged). */
struct reply_std;
const struct reply_std *server_admit(struct server *srv, const unsigned char ip[16],
                                     const char *ipstr);

/* Admit a client (the limits above) and start its session on fd; one
 * refused or out of memory is answered with a 421 line and closed. For a
 * direct connection local and via are NULL; for one a proxy relays (the
 * PROXY header phase, smtp/proxyhdr.c), peer is the client it names, local
 * the address the client connected to and via the proxy's address. */
void server_client(struct server *srv, const struct listen_cfg *lc, int fd,
                   const struct sockaddr *peer, socklen_t plen,
                   const struct sockaddr *local, const char *via);

struct reply_std;

/* Send the reply r (best effort, never blocking) and close fd. */
void server_refuse(int fd, const struct reply_std *r);

/* XCLIENT named another client for a session counted at from: count it
 * at to instead. NULL when done, else the refusal (logged; the old count
 * stays). */
const struct reply_std *server_readdress(struct server *srv, const char *from,
                                         const char *to);

/* Session bookkeeping, called by session.c. */
void server_session_add(struct server *srv, struct session *s);
void server_session_remove(struct server *srv, struct session *s);

#endif
