/* worker.c — the worker process and kasi --inetd (see worker.h). */
#include "worker.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "core/config.h"
#include "core/log.h"
#include "core/privs.h"
#include "core/version.h"
#include "core/watchdog.h"
#include "lua/plugins.h"
#include "net/dns.h"
#include "net/http.h"
#include "net/tls.h"
#include "smtp/server.h"
#include "smtp/session.h"

#define WORKER_NSIG 5
/* stop, stop, retire (drain), go (start accepting), reload */
static const int worker_sigs[WORKER_NSIG] = { SIGTERM, SIGINT, SIGQUIT, SIGUSR1, SIGHUP };

struct worker {
    struct event_base *base;
    struct server srv;
    int supervised;
    int serving;
    struct event *sig[WORKER_NSIG];
    struct event *tick;
    struct http_server *web;    /* the stats page, NULL: none */
};

static void on_stop(evutil_socket_t sig, short what, void *arg)
{
    struct worker *w = arg;
    (void)what;
    watchdog_set_state(WD_DRAINING);
    if (w->srv.grace_ev) {      /* second signal: stop now */
        log_msg(LOG_LVL_WARN, "signal %d again, exiting now", (int)sig);
        event_base_loopbreak(w->base);
        return;
    }
    log_msg(LOG_LVL_INFO, "signal %d, shutting down", (int)sig);
    server_shutdown(&w->srv);
}

/* SIGQUIT from the supervisor: a newer generation took over. */
static void on_retire(evutil_socket_t sig, short what, void *arg)
{
    struct worker *w = arg;
    (void)sig;
    (void)what;
    if (w->srv.shutting_down)
        return;
    watchdog_set_state(WD_DRAINING);
    server_drain(&w->srv);
    plugins_retire();
    http_free(w->web);          /* the stats page too: the new generation has it */
    w->web = NULL;
}

/* SIGUSR1 from the supervisor: the whole generation is ready. */
static void on_go(evutil_socket_t sig, short what, void *arg)
{
    struct worker *w = arg;
    (void)sig;
    (void)what;
    if (w->serving || w->srv.shutting_down)
        return;
    w->serving = 1;
    server_accept_start(&w->srv);
    watchdog_set_state(WD_SERVING);
    log_msg(LOG_LVL_DEBUG, "accepting connections");
}

/* Without a supervisor, SIGHUP reloads in this process (plugins and
 * certificates only: smtp.yaml needs a restart). Supervised workers leave
 * reloads to the supervisor, which replaces them. */
static void on_hup(evutil_socket_t sig, short what, void *arg)
{
    struct worker *w = arg;
    (void)sig;
    (void)what;
    if (w->supervised)
        return;
    log_msg(LOG_LVL_INFO, "SIGHUP: reloading plugins");
    plugins_reload();
    tls_reload();
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    (void)fd;
    (void)what;
    watchdog_set_sessions(w->srv.nsessions);
}

static void worker_events(struct worker *w)
{
    event_callback_fn fns[WORKER_NSIG] = { on_stop, on_stop, on_retire, on_go, on_hup };
    for (int i = 0; i < WORKER_NSIG; i++) {
        w->sig[i] = evsignal_new(w->base, worker_sigs[i], fns[i], w);
        if (w->sig[i])
            evsignal_add(w->sig[i], NULL);
    }
    struct timeval half = { 0, 500000 };
    w->tick = event_new(w->base, -1, EV_PERSIST, on_tick, w);
    if (w->tick)
        evtimer_add(w->tick, &half);
}

static void worker_free(struct worker *w)
{
    http_free(w->web);
    server_free(&w->srv);
    plugins_free();
    dns_shutdown();
    for (int i = 0; i < WORKER_NSIG; i++)
        if (w->sig[i])
            event_free(w->sig[i]);
    if (w->tick)
        event_free(w->tick);
    if (w->base)
        event_base_free(w->base);
}

/* Timers on the precise monotonic clock (libevent's default on Linux is
 * the coarse one, a few milliseconds off). */
static struct event_base *new_base(void)
{
    struct event_config *ec = event_config_new();
    if (!ec)
        return NULL;
    event_config_set_flag(ec, EVENT_BASE_FLAG_PRECISE_TIMER);
    struct event_base *base = event_base_new_with_config(ec);
    event_config_free(ec);
    return base;
}

/* A supervised worker does not outlive its supervisor: if that dies (a
 * crash, SIGKILL) the kernel sends the worker SIGTERM and it drains, so
 * nothing serves unsupervised. Asked for after the privilege drop, which
 * clears it; a supervisor gone before that is seen by getppid. */
static int follow_supervisor(pid_t supervisor, char *err, size_t errlen)
{
    if (prctl(PR_SET_PDEATHSIG, SIGTERM) == 0 && getppid() == supervisor)
        return 0;
    snprintf(err, errlen, "the supervisor is gone");
    return -1;
}

/* Privileges, event loop, server, plugins: everything before serving. */
static int worker_start(struct worker *w, struct kasi_config *cfg, const int *fds,
                        const struct worker_opts *o, char *err, size_t errlen)
{
    pid_t supervisor = getppid();
    signal(SIGPIPE, SIG_IGN);
    if (priv_drop(o->ids, err, errlen) < 0)
        return -1;
    if (w->supervised && follow_supervisor(supervisor, err, errlen) < 0)
        return -1;
    w->base = new_base();
    if (!w->base) {
        snprintf(err, errlen, "cannot set up the event loop");
        return -1;
    }
    if (dns_init(w->base, cfg->dir, err, errlen) < 0)
        err[0] = '\0';         /* logged; lookups fail until a reload */
    if (server_init(&w->srv, w->base, cfg, &plugins_engine, fds) < 0) {
        snprintf(err, errlen, "cannot set up the listeners");
        return -1;
    }
    if (o->http_fd >= 0 && !(w->web = http_start(w->base, o->http_fd, cfg))) {
        snprintf(err, errlen, "cannot serve the stats page");
        return -1;
    }
    if (o->generation)
        plugins_set_generation(o->generation);
    if (plugins_init(cfg, w->base, err, errlen) < 0)
        return -1;
    worker_events(w);
    return 0;
}

/* The loop has ended: a signal now (a draining worker told to stop while
 * it frees) has nothing left to do, but freeing its event would put back
 * the default action, which kills the process. Every other thread blocks
 * signals; this one blocks them while the events go, then ignores them
 * (which drops one already pending). */
static void worker_stop_signals(struct worker *w)
{
    sigset_t set;
    sigemptyset(&set);
    for (int i = 0; i < WORKER_NSIG; i++)
        sigaddset(&set, worker_sigs[i]);
    sigprocmask(SIG_BLOCK, &set, NULL);
    for (int i = 0; i < WORKER_NSIG; i++) {
        if (w->sig[i])
            event_free(w->sig[i]);
        w->sig[i] = NULL;
        signal(worker_sigs[i], SIG_IGN);
    }
}

int worker_run(struct kasi_config *cfg, const int *fds, const struct worker_opts *o)
{
    struct worker w;
    char err[1536] = "";
    memset(&w, 0, sizeof w);
    w.supervised = o->slot >= 0;
    watchdog_attach(o->slot);
    if (worker_start(&w, cfg, fds, o, err, sizeof err) < 0) {
        if (w.supervised)
            watchdog_set_error(err);
        else if (err[0])
            log_msg(LOG_LVL_ERROR, "%s", err);
        worker_free(&w);
        return WORKER_FATAL;
    }
    log_msg(LOG_LVL_INFO, "kasi %s ready, host name %s%s", KASI_VERSION, cfg->hostname,
            w.supervised ? ", waiting for the generation" : "");
    if (w.supervised) {
        watchdog_set_state(WD_READY);
        kill(getppid(), SIGUSR2);   /* wake the supervisor: no tick to wait for */
    } else
        on_go(0, 0, &w);
    event_base_dispatch(w.base);
    worker_stop_signals(&w);
    log_msg(LOG_LVL_INFO, "stopped");
    worker_free(&w);
    return 0;
}

/* ---------------------------------------------------------- inetd */

/* When stdin is not a socket (a pipe pair), the session gets one end of a
 * socketpair and this relay copies stdin into the other end and the other
 * end to stdout. */
struct relay {
    struct bufferevent *in, *out, *mid;
    int in_done;
};

static void relay_in_cb(struct bufferevent *bev, void *arg)
{
    struct relay *r = arg;
    bufferevent_write_buffer(r->mid, bufferevent_get_input(bev));
}

static void relay_mid_cb(struct bufferevent *bev, void *arg)
{
    struct relay *r = arg;
    bufferevent_write_buffer(r->out, bufferevent_get_input(bev));
}

/* stdin ended: end the session's input once what we have is written. */
static void relay_mid_written(struct bufferevent *bev, void *arg)
{
    struct relay *r = arg;
    if (r->in_done == 1) {
        shutdown(bufferevent_getfd(bev), SHUT_WR);
        r->in_done = 2;
    }
}

static void relay_in_event(struct bufferevent *bev, short what, void *arg)
{
    struct relay *r = arg;
    (void)bev;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        bufferevent_disable(r->in, EV_READ);
        r->in_done = 1;
        if (evbuffer_get_length(bufferevent_get_output(r->mid)) == 0)
            relay_mid_written(r->mid, r);
    }
}

static int relay_start(struct relay *r, struct event_base *base, int *session_fd)
{
    int sv[2];
    memset(r, 0, sizeof *r);
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return -1;
    fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
    fcntl(1, F_SETFL, fcntl(1, F_GETFL) | O_NONBLOCK);
    evutil_make_socket_nonblocking(sv[1]);
    r->in = bufferevent_socket_new(base, 0, 0);
    r->out = bufferevent_socket_new(base, 1, 0);
    r->mid = bufferevent_socket_new(base, sv[1], BEV_OPT_CLOSE_ON_FREE);
    if (!r->in || !r->out || !r->mid) {
        close(sv[0]);
        return -1;
    }
    bufferevent_setcb(r->in, relay_in_cb, NULL, relay_in_event, r);
    bufferevent_setcb(r->mid, relay_mid_cb, relay_mid_written, NULL, r);
    bufferevent_enable(r->in, EV_READ);
    bufferevent_enable(r->mid, EV_READ | EV_WRITE);
    bufferevent_enable(r->out, EV_WRITE);
    *session_fd = sv[0];
    return 0;
}

/* After the session closed its end: the rest of its output (already in
 * the socket buffer, so non-blocking reads find it) to stdout. */
static void relay_finish(struct relay *r)
{
    struct evbuffer *pending = evbuffer_new();  /* the bufferevent's own output */
    if (r->mid && pending) {                     /* is frozen outside its loop */
        int fd = bufferevent_getfd(r->mid);
        evbuffer_add_buffer(pending, bufferevent_get_output(r->out));
        evbuffer_add_buffer(pending, bufferevent_get_input(r->mid));
        fcntl(1, F_SETFL, fcntl(1, F_GETFL) & ~O_NONBLOCK);
        while (evbuffer_read(pending, fd, 65536) > 0)
            ;
        while (evbuffer_get_length(pending) && evbuffer_write(pending, 1) > 0)
            ;
    }
    if (pending)
        evbuffer_free(pending);
    if (r->in)
        bufferevent_free(r->in);
    if (r->out)
        bufferevent_free(r->out);
    if (r->mid)
        bufferevent_free(r->mid);
}

static int is_socket(int fd)
{
    struct stat st;
    return fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
}

int worker_inetd(struct kasi_config *cfg, const struct priv_ids *ids)
{
    struct worker w;
    struct worker_opts o = { 0, -1, ids, -1 };
    struct relay relay;
    char err[1536] = "";
    int fd = 0, rc = 1;
    memset(&w, 0, sizeof w);
    memset(&relay, 0, sizeof relay);
    if (worker_start(&w, cfg, NULL, &o, err, sizeof err) < 0) {
        log_msg(LOG_LVL_ERROR, "%s", err);
    } else if (!is_socket(0) && relay_start(&relay, w.base, &fd) < 0) {
        log_msg(LOG_LVL_ERROR, "inetd: cannot relay stdin: %s", strerror(errno));
    } else {
        struct sockaddr_storage peer;
        socklen_t plen = sizeof peer;
        memset(&peer, 0, sizeof peer);
        if (getpeername(fd, (struct sockaddr *)&peer, &plen) < 0)
            peer.ss_family = AF_UNIX;
        const struct listen_cfg *lc = cfg->nlisten ? &cfg->listen[0] : NULL;
        if (session_new(&w.srv, lc, fd, (struct sockaddr *)&peer, plen)) {
            server_drain(&w.srv);       /* the loop ends with the session */
            event_base_dispatch(w.base);
            rc = 0;
        }
    }
    relay_finish(&relay);
    worker_free(&w);
    return rc;
}
