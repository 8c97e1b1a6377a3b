/* main.c — command line, start-up, signals and the event loop.
 *
 *   kasi [-c DIR] [-t] [--listen HOST:PORT]... [-V]
 *
 * kasi runs as two processes: a supervisor that binds the sockets and
 * watches, and a worker that serves SMTP on one event loop. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "core/config.h"
#include "core/stats.h"
#include "net/dns.h"
#include "net/http.h"
#include "core/log.h"
#include "core/passwd.h"
#include "core/shmcount.h"
#include "lua/plugins.h"
#include "smtp/server.h"
#include "msg/spool.h"
#include "net/tls.h"
#include "core/version.h"
#include "core/watchdog.h"
#include "init.h"
#include "top.h"

/* Under AddressSanitizer the worker's _exit() would skip the leak check
 * that runs at exit(): it is run by hand first (see worker_exit). */
#if defined(__SANITIZE_ADDRESS__)
#define KASI_LEAK_CHECK 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KASI_LEAK_CHECK 1
#endif
#endif
#ifdef KASI_LEAK_CHECK
#include <sanitizer/lsan_interface.h>
#endif

struct options {
    const char *confdir;
    int check_only;
    int no_supervisor;  /* run the worker in this process */
    char **listen;      /* --listen values */
    size_t nlisten;
    int top;            /* kasi top */
};

static int http_fd = -1;        /* the stats listener, bound by the supervisor */
static char *stats_path;        /* the history file in the spool directory */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: kasi [-c DIR] [-t] [--listen HOST:PORT]... [-V]\n"
            "       kasi passwd FILE USER   (add a user for auth/flat_file)\n"
            "       kasi init DIR           (create a deployment in DIR)\n"
            "       kasi [-c DIR] top       (the plugin table of a running kasi)\n"
            "  -c, --config DIR     configuration directory (default ./config)\n"
            "  -t, --test           check the configuration and exit\n"
            "  -l, --listen H:P     listen on H:P instead of the configured\n"
            "                       addresses (repeatable; IPv6 as [::1]:25)\n"
            "  --no-supervisor      no supervising process (debugging)\n"
            "  -V, --version        print the version and exit\n"
            "  -h, --help           this text\n");
}

static int parse_args(int argc, char **argv, struct options *o)
{
    static const struct option longopts[] = {
        { "config", required_argument, NULL, 'c' },
        { "test", no_argument, NULL, 't' },
        { "listen", required_argument, NULL, 'l' },
        { "version", no_argument, NULL, 'V' },
        { "help", no_argument, NULL, 'h' },
        { "no-supervisor", no_argument, NULL, 'S' },
        { NULL, 0, NULL, 0 },
    };
    int c;
    o->confdir = "config";
    while ((c = getopt_long(argc, argv, "c:tl:Vh", longopts, NULL)) != -1) {
        switch (c) {
        case 'c': o->confdir = optarg; break;
        case 't': o->check_only = 1; break;
        case 'l':
            o->listen = realloc(o->listen, (o->nlisten + 1) * sizeof *o->listen);
            if (!o->listen)
                return -1;
            o->listen[o->nlisten++] = optarg;
            break;
        case 'V': printf("kasi %s\n", KASI_VERSION); exit(0);
        case 'h': usage(stdout); exit(0);
        case 'S': o->no_supervisor = 1; break;
        default: usage(stderr); return -1;
        }
    }
    if (optind < argc && !strcmp(argv[optind], "top")) {
        o->top = 1;
        optind++;
    }
    if (optind < argc) {
        fprintf(stderr, "kasi: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return -1;
    }
    return 0;
}

/* --listen replaces the configured listeners. */
static int apply_listen(struct kasi_config *cfg, const struct options *o)
{
    if (!o->nlisten)
        return 0;
    struct listen_cfg *l = calloc(o->nlisten, sizeof *l);
    if (!l)
        return -1;
    for (size_t i = 0; i < o->nlisten; i++) {
        char err[256];
        if (config_parse_listen(o->listen[i], &l[i].host, &l[i].port, err,
                                sizeof err) < 0) {
            fprintf(stderr, "kasi: --listen %s: %s\n", o->listen[i], err);
            for (size_t j = 0; j < i; j++) {
                free(l[j].host);
                free(l[j].port);
            }
            free(l);
            return -1;
        }
    }
    for (size_t i = 0; i < cfg->nlisten; i++) {
        free(cfg->listen[i].host);
        free(cfg->listen[i].port);
    }
    free(cfg->listen);
    cfg->listen = l;
    cfg->nlisten = o->nlisten;
    return 0;
}

/* ------------------------------------------------------------- worker */

static void on_stop(evutil_socket_t sig, short what, void *arg)
{
    struct server *srv = arg;
    (void)what;
    if (srv->shutting_down) {   /* second signal: stop now */
        log_msg(LOG_LVL_WARN, "signal %d again, exiting now", (int)sig);
        event_base_loopbreak(srv->base);
        return;
    }
    log_msg(LOG_LVL_INFO, "signal %d, shutting down", (int)sig);
    server_shutdown(srv);
}

static void on_hup(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    (void)arg;
    log_msg(LOG_LVL_INFO, "SIGHUP: reloading plugins");
    plugins_reload();
    tls_reload();
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

/* The worker: serves the bound sockets until told to stop. Exit codes:
 * 0 clean stop, WORKER_FATAL when it could not start at all. */
#define WORKER_FATAL 3

static int run_worker(struct kasi_config *cfg, const int *fds)
{
    struct event_base *base = new_base();
    struct server srv;
    struct event *sigs[3] = { NULL, NULL, NULL };
    char err[1024] = "";
    int rc = WORKER_FATAL;

    if (!base)
        return WORKER_FATAL;
    signal(SIGPIPE, SIG_IGN);
    if (dns_init(base, cfg->dir, err, sizeof err) < 0)
        err[0] = '\0';         /* logged; lookups fail until a reload */
    struct http_server *web = NULL;
    if (server_init(&srv, base, cfg, &plugins_engine, fds) == 0 &&
        (http_fd < 0 || (web = http_start(base, http_fd, cfg))) &&
        plugins_init(cfg, base, err, sizeof err) == 0) {
        sigs[0] = evsignal_new(base, SIGTERM, on_stop, &srv);
        sigs[1] = evsignal_new(base, SIGINT, on_stop, &srv);
        sigs[2] = evsignal_new(base, SIGHUP, on_hup, &srv);
        for (int i = 0; i < 3; i++)
            evsignal_add(sigs[i], NULL);
        log_msg(LOG_LVL_INFO, "kasi %s ready, host name %s", KASI_VERSION,
                cfg->hostname);
        event_base_dispatch(base);
        log_msg(LOG_LVL_INFO, "stopped");
        rc = 0;
    } else if (err[0]) {
        log_msg(LOG_LVL_ERROR, "%s", err);
    }
    http_free(web);
    server_free(&srv);
    plugins_free();
    dns_shutdown();
    for (int i = 0; i < 3; i++)
        if (sigs[i])
            event_free(sigs[i]);
    event_base_free(base);
    return rc;
}

/* --------------------------------------------------------- supervisor */

/* The supervisor owns the listening sockets and one worker process. It
 * forwards SIGTERM/SIGINT/SIGHUP, restarts a worker that dies, and kills
 * one that stays inside plugin code past its budget (a CPU loop that no
 * in-process check can interrupt). */
#define WATCHDOG_GRACE 3.0      /* seconds past a hook's budget */

static volatile sig_atomic_t sup_term, sup_hup;

static void sup_signal(int sig)
{
    if (sig == SIGHUP)
        sup_hup = 1;
    else
        sup_term = sig;
}

static void sup_signals(void (*handler)(int))
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
}

/* The worker ends with _exit(): the supervisor's atexit handlers and
 * stdio buffers are not its own. */
static void worker_exit(int rc)
{
    fflush(NULL);
#ifdef KASI_LEAK_CHECK
    __lsan_do_leak_check();     /* a report ends the process */
#endif
    _exit(rc);
}

static pid_t spawn_worker(struct kasi_config *cfg, const int *fds)
{
    watchdog_reset();
    pid_t pid = fork();
    if (pid == 0) {
        sup_signals(SIG_DFL);
        stats_worker_attach(0);
        shmcount_attach(0);     /* the one worker is owner 0 of the counters */
        int rc = run_worker(cfg, fds);
        config_free(cfg);
        worker_exit(rc);
    }
    if (pid < 0)
        log_msg(LOG_LVL_ERROR, "fork: %s", strerror(errno));
    else
        log_msg(LOG_LVL_INFO, "worker %d started", (int)pid);
    stats_worker_state(0, pid > 0 ? pid : 0);
    return pid;
}

static void close_fds(int *fds, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (fds[i] >= 0)
            close(fds[i]);
        fds[i] = -1;
    }
}

static int supervise(struct kasi_config *cfg, int *fds)
{
    const struct timespec tick = { 0, 100 * 1000 * 1000 };
    int stopping = 0, status;
    pid_t child;

    sup_signals(sup_signal);
    if (watchdog_setup() < 0)
        log_msg(LOG_LVL_WARN, "watchdog unavailable: %s", strerror(errno));
    child = spawn_worker(cfg, fds);
    if (child < 0)
        return 1;
    for (;;) {
        nanosleep(&tick, NULL);
        stats_tick(time(NULL), stats_path);
        if (sup_term) {
            int sig = sup_term;
            sup_term = 0;
            if (!stopping) {    /* no new connections may queue up */
                close_fds(fds, cfg->nlisten);
                close_fds(&http_fd, http_fd >= 0);
            }
            stopping = 1;
            kill(child, sig);
        }
        if (sup_hup) {
            sup_hup = 0;
            tls_reload();   /* a restarted worker gets the new certificates */
            kill(child, SIGHUP);
        }
        if (waitpid(child, &status, WNOHANG) == child) {
            stats_worker_state(0, 0);
            int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
            shmcount_release_owner(0);  /* its connections are closed */
            if (stopping)
                return code == 0 ? 0 : 1;
            if (code == WORKER_FATAL) {
                log_msg(LOG_LVL_ERROR, "worker could not start, exiting");
                return 1;
            }
            log_msg(LOG_LVL_ERROR, "worker %d ended (%s %d), restarting", (int)child,
                    WIFEXITED(status) ? "exit" : "signal",
                    WIFEXITED(status) ? code : WTERMSIG(status));
            nanosleep(&tick, NULL);
            child = spawn_worker(cfg, fds);
            if (child < 0)
                return 1;
            continue;
        }
        double over = watchdog_overdue();
        if (!stopping && over > WATCHDOG_GRACE) {
            log_msg(LOG_LVL_ERROR, "worker %d stuck in plugin code %.1f s past "
                    "its budget, killing it", (int)child, over);
            kill(child, SIGKILL);
            watchdog_reset();
        }
    }
}

/* Each connection is a descriptor: allow as many as the hard limit. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* The statistics region and its history, made before the first fork so
 * that every worker (and each restart) shares them. */
static void stats_start(const struct kasi_config *cfg)
{
    if (stats_region_create(1) < 0) {
        log_msg(LOG_LVL_WARN, "statistics off: %s", strerror(errno));
        return;
    }
    stats_path = malloc(strlen(cfg->spool_dir) + sizeof "/kasi.stats");
    if (stats_path)
        sprintf(stats_path, "%s/kasi.stats", cfg->spool_dir);
    if (stats_history_load(stats_path) < 0)
        log_msg(LOG_LVL_WARN, "%s: not a statistics file, starting afresh", stats_path);
    stats_tick(time(NULL), NULL);
}

static void stats_stop(void)
{
    if (stats_path && stats_history_save(stats_path) < 0)
        log_msg(LOG_LVL_WARN, "%s: %s", stats_path, strerror(errno));
    stats_region_free();
    free(stats_path);
    stats_path = NULL;
}

/* The counters all workers share (connection limits, AUTH failures,
 * kasi.counter), made before any fork so they outlive worker restarts and
 * reloads: 8 gauge entries per allowed connection. */
static int shared_counters(const struct kasi_config *cfg)
{
    if (shmcount_create(1, (size_t)cfg->max_connections * 8, cfg->counters) == 0)
        return 0;
    log_msg(LOG_LVL_ERROR, "shared counters: %s", strerror(errno));
    return -1;
}

static int serve(struct kasi_config *cfg, int no_supervisor)
{
    raise_fd_limit();
    int *fds = calloc(cfg->nlisten, sizeof *fds);
    int rc;
    if (!fds || shared_counters(cfg) < 0 || server_bind(cfg, fds) < 0) {
        free(fds);
        shmcount_destroy();
        return 1;
    }
    http_fd = http_bind(cfg);
    if (http_fd == -2) {
        close_fds(fds, cfg->nlisten);
        free(fds);
        shmcount_destroy();
        return 1;
    }
    stats_start(cfg);
    if (no_supervisor) {
        stats_worker_attach(0);
        rc = run_worker(cfg, fds);
        rc = rc == WORKER_FATAL ? 1 : rc;
    } else {
        rc = supervise(cfg, fds);
        close_fds(fds, cfg->nlisten);
    }
    close_fds(&http_fd, http_fd >= 0);
    stats_stop();
    free(fds);
    shmcount_destroy();
    return rc;
}

int main(int argc, char **argv)
{
    struct options o = { 0 };
    struct kasi_config cfg;
    char err[1024] = "";
    int rc;

    if (argc > 1 && !strcmp(argv[1], "passwd"))
        return passwd_main(argc - 1, argv + 1);
    if (argc > 1 && !strcmp(argv[1], "init"))
        return init_main(argc - 1, argv + 1);
    if (parse_args(argc, argv, &o) < 0) {
        free(o.listen);
        return 2;
    }
    memset(&cfg, 0, sizeof cfg);
    if (config_load(o.confdir, &cfg, err, sizeof err) < 0 || apply_listen(&cfg, &o) < 0) {
        if (err[0])
            fprintf(stderr, "kasi: %s\n", err);
        config_free(&cfg);
        free(o.listen);
        return 1;
    }
    free(o.listen);
    if (o.top) {
        rc = top_main(&cfg);
        config_free(&cfg);
        return rc;
    }
    struct dns_settings dns;   /* dns.yaml is used later; check it now */
    if (dns_settings_load(cfg.dir, &dns, err, sizeof err) < 0 ||
        tls_init(&cfg, err, sizeof err) < 0) {
        fprintf(stderr, "kasi: %s\n", err);
        config_free(&cfg);
        return 1;
    }
    if (o.check_only) {
        if (plugins_check(&cfg, err, sizeof err) < 0) {
            fprintf(stderr, "kasi: %s\n", err);
            tls_free();
            config_free(&cfg);
            return 1;
        }
        printf("kasi: configuration ok (%s)\n", o.confdir);
        tls_free();
        config_free(&cfg);
        return 0;
    }
    log_setup(cfg.log_target, cfg.log_level);
    if (spool_prepare(cfg.spool_dir) < 0) {
        fprintf(stderr, "kasi: spool_dir %s: %s\n", cfg.spool_dir, strerror(errno));
        tls_free();
        config_free(&cfg);
        return 1;
    }
    rc = serve(&cfg, o.no_supervisor);
    tls_free();
    config_free(&cfg);
    return rc;
}
