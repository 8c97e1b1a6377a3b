/* main.c — the command line and the wiring of the processes.
 *
 *   kasi [-c DIR] [-t] [-d] [--listen HOST:PORT]... [--http-listen HOST:PORT] [-V]
 *   kasi [-c DIR] --inetd
 *   kasi [-c DIR] status | reload | stop
 *   kasi [-c DIR] top
 *   kasi passwd FILE USER
 *   kasi init DIR
 *
 * kasi runs as a supervisor (supervisor.c) that binds the sockets and
 * runs generations of worker processes (worker.c); --no-supervisor runs
 * one worker in the foreground, --inetd one session on stdin/stdout. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "control.h"
#include "core/config.h"
#include "core/log.h"
#include "core/passwd.h"
#include "core/privs.h"
#include "core/shmcount.h"
#include "core/stats.h"
#include "core/version.h"
#include "lua/plugins.h"
#include "msg/spool.h"
#include "net/dns.h"
#include "net/http.h"
#include "net/tls.h"
#include "init.h"
#include "smtp/server.h"
#include "supervisor.h"
#include "top.h"
#include "worker.h"

struct options {
    const char *confdir;
    int check_only;
    int no_supervisor;  /* run the worker in this process */
    int daemon;         /* -d */
    int inetd;          /* --inetd */
    const char *cmd;    /* status | reload | stop */
    int top;            /* kasi top */
    char **listen;      /* --listen values */
    size_t nlisten;
    const char *user;   /* --user */
    const char *http;   /* --http-listen */
    char absdir[PATH_MAX];
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: kasi [-c DIR] [-t] [-d] [--listen HOST:PORT]... [-V]\n"
            "       kasi [-c DIR] --inetd          (one session on stdin/stdout)\n"
            "       kasi [-c DIR] status|reload|stop\n"
            "       kasi [-c DIR] top       (the plugin table of a running kasi)\n"
            "       kasi passwd FILE USER   (add a user for auth/flat_file)\n"
            "       kasi init DIR           (create a deployment in DIR)\n"
            "  -c, --config DIR     configuration directory (default ./config)\n"
            "  -t, --test           check the configuration and exit\n"
            "  -d, --daemon         detach; log to syslog; exit once serving\n"
            "  -l, --listen H:P     listen on H:P instead of the configured\n"
            "                       addresses (repeatable; IPv6 as [::1]:25)\n"
            "  -u, --user NAME      the workers' user, instead of smtp.yaml's user:\n"
            "  --http-listen H:P    the statistics page on H:P instead of http.listen\n"
            "  --inetd              serve one session on stdin/stdout, then exit\n"
            "  --no-supervisor      no supervising process (debugging)\n"
            "  -V, --version        print the version and exit\n"
            "  -h, --help           this text\n");
}

static int parse_word(struct options *o, int argc, char **argv)
{
    if (optind < argc && !o->cmd && control_is_command(argv[optind]))
        o->cmd = argv[optind++];
    else if (optind < argc && !strcmp(argv[optind], "top"))
        o->top = optind++ > 0;
    if (optind < argc) {
        fprintf(stderr, "kasi: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return -1;
    }
    return 0;
}

static int parse_args(int argc, char **argv, struct options *o)
{
    static const struct option longopts[] = {
        { "config", required_argument, NULL, 'c' },
        { "test", no_argument, NULL, 't' },
        { "daemon", no_argument, NULL, 'd' },
        { "listen", required_argument, NULL, 'l' },
        { "version", no_argument, NULL, 'V' },
        { "help", no_argument, NULL, 'h' },
        { "no-supervisor", no_argument, NULL, 'S' },
        { "inetd", no_argument, NULL, 'I' },
        { "user", required_argument, NULL, 'u' },
        { "http-listen", required_argument, NULL, 'H' },
        { NULL, 0, NULL, 0 },
    };
    int c;
    o->confdir = "config";
    while ((c = getopt_long(argc, argv, "+c:tdl:u:Vh", longopts, NULL)) != -1) {
        switch (c) {
        case 'c': o->confdir = optarg; break;
        case 't': o->check_only = 1; break;
        case 'd': o->daemon = 1; break;
        case 'l': {
            char **l = realloc(o->listen, (o->nlisten + 1) * sizeof *o->listen);
            if (!l)
                return -1;
            o->listen = l;
            o->listen[o->nlisten++] = optarg;
            break;
        }
        case 'V': printf("kasi %s\n", KASI_VERSION); exit(0);
        case 'h': usage(stdout); exit(0);
        case 'S': o->no_supervisor = 1; break;
        case 'I': o->inetd = 1; break;
        case 'u': o->user = optarg; break;
        case 'H': o->http = optarg; break;
        default: usage(stderr); return -1;
        }
        if (optind < argc && control_is_command(argv[optind]) && !o->cmd)
            o->cmd = argv[optind++];
    }
    return parse_word(o, argc, argv);
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

/* kasi -t: everything a start would load, without serving. */
static int check_config(struct kasi_config *cfg, const char *confdir)
{
    char err[2048] = "";
    struct dns_settings dns;
    int rc = dns_settings_load(cfg->dir, &dns, err, sizeof err) < 0 ||
             tls_init(cfg, err, sizeof err) < 0 || plugins_check(cfg, err, sizeof err) < 0;
    if (rc)
        fprintf(stderr, "kasi: %s\n", err);
    else
        printf("kasi: configuration ok (%s)\n", confdir);
    tls_free();
    return rc;
}

/* The spool, writable by the workers' user (core/privs.h). 0 or -1
 * (printed). */
static int prepare_spool(const struct kasi_config *cfg, const struct priv_ids *ids)
{
    int given;
    if (spool_prepare(cfg->spool_dir) == 0 && priv_spool(ids, cfg->spool_dir, &given) == 0)
        return 0;
    fprintf(stderr, "kasi: spool_dir %s: %s\n", cfg->spool_dir, strerror(errno));
    return -1;
}

/* stderr is the connection itself under inetd: log to syslog then. */
static void inetd_log(const struct kasi_config *cfg)
{
    struct stat a, b;
    int shared = fstat(0, &a) == 0 && fstat(2, &b) == 0 && a.st_dev == b.st_dev &&
                 a.st_ino == b.st_ino;
    log_setup(shared ? "syslog" : cfg->log_target, cfg->log_level);
}

/* The counters a lone worker still needs (connection limits, AUTH
 * failures, kasi.counter): owner 0 of a region of its own. */
static int lone_counters(const struct kasi_config *cfg)
{
    if (shmcount_create(1, (size_t)cfg->max_connections * 8, cfg->counters) == 0)
        return 0;
    log_msg(LOG_LVL_ERROR, "shared counters: %s", strerror(errno));
    return -1;
}

static int run_inetd(struct kasi_config *cfg, const struct priv_ids *ids)
{
    char err[1024] = "";
    inetd_log(cfg);
    if (tls_init(cfg, err, sizeof err) < 0) {
        log_msg(LOG_LVL_ERROR, "%s", err);
        return 1;
    }
    int rc = prepare_spool(cfg, ids) < 0 || lone_counters(cfg) < 0 ? 1
                                                                : worker_inetd(cfg, ids);
    shmcount_destroy();
    tls_free();
    return rc;
}

/* --no-supervisor: bind, then be the worker. */
static int run_alone(struct kasi_config *cfg, const struct priv_ids *ids)
{
    char err[1024] = "";
    if (tls_init(cfg, err, sizeof err) < 0) {
        fprintf(stderr, "kasi: %s\n", err);
        return 1;
    }
    int *fds = calloc(cfg->nlisten, sizeof *fds);
    int rc = 1, http_fd = -1;
    if (fds && prepare_spool(cfg, ids) == 0 && lone_counters(cfg) == 0 &&
        server_bind(cfg, fds) == 0 && (http_fd = http_bind(cfg, err, sizeof err)) != -2) {
        spool_sweep(cfg->spool_dir);
        for (size_t i = 0; i < cfg->nlisten; i++)
            server_log_listener(fds[i], &cfg->listen[i]);
        if (stats_region_create(1) == 0) {
            stats_worker_state(0, getpid());    /* this process is the one worker */
            stats_worker_attach(0);
            stats_workers_configured(1);
        }
        struct worker_opts wo = { 0, -1, ids, http_fd };
        rc = worker_run(cfg, fds, &wo) == 0 ? 0 : 1;
        stats_region_free();
    }
    if (http_fd == -2)
        log_msg(LOG_LVL_ERROR, "%s", err);
    if (http_fd >= 0)
        close(http_fd);
    free(fds);
    shmcount_destroy();
    tls_free();
    return rc;
}

/* -d: the caller waits until the daemon serves (or says why it cannot). */
static void daemon_wait(int fd, pid_t child)
{
    char msg[2200];
    size_t used = 0;
    ssize_t n;
    while (used + 1 < sizeof msg && (n = read(fd, msg + used, sizeof msg - 1 - used)) > 0)
        used += (size_t)n;
    msg[used] = '\0';
    waitpid(child, NULL, 0);
    if (!strcmp(msg, "ok\n"))
        exit(0);
    fprintf(stderr, "kasi: %s", used ? msg : "the daemon ended before it could serve "
            "(see the log)\n");
    exit(1);
}

static int daemonize(void)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid > 0) {
        close(p[1]);
        daemon_wait(p[0], pid);
    }
    close(p[0]);
    setsid();
    if ((pid = fork()) < 0)
        _exit(1);
    if (pid > 0)
        _exit(0);
    if (chdir("/") < 0)
        _exit(1);
    int null = open("/dev/null", O_RDWR);
    if (null >= 0) {
        dup2(null, 0);
        dup2(null, 1);
        dup2(null, 2);
        if (null > 2)
            close(null);
    }
    return p[1];
}

static int run_supervised(struct kasi_config *cfg, const struct options *o)
{
    struct sup_opts so = { o->confdir, o->listen, o->nlisten, o->user, o->http, -1 };
    if (o->daemon) {
        so.ready_fd = daemonize();
        if (so.ready_fd < 0) {
            fprintf(stderr, "kasi: -d: %s\n", strerror(errno));
            return 1;
        }
    }
    log_setup(o->daemon ? "syslog" : cfg->log_target, cfg->log_level);
    config_free(cfg);           /* the supervisor loads its own generations */
    return supervisor_run(&so);
}

static int run(struct kasi_config *cfg, const struct options *o)
{
    char err[1024] = "";
    struct priv_ids ids;
    if (o->cmd)
        return control_main(o->cmd, cfg);
    if (o->top)
        return top_main(cfg);
    if (o->check_only)
        return check_config(cfg, o->confdir);
    struct dns_settings dns;   /* dns.yaml is used later; check it now */
    if (dns_settings_load(cfg->dir, &dns, err, sizeof err) < 0 ||
        priv_resolve(cfg->user, cfg->group, &ids, err, sizeof err) < 0) {
        fprintf(stderr, "kasi: %s\n", err);
        return 1;
    }
    raise_fd_limit();
    if (o->inetd)
        return run_inetd(cfg, &ids);
    if (o->no_supervisor) {
        log_setup(cfg->log_target, cfg->log_level);
        return run_alone(cfg, &ids);
    }
    return run_supervised(cfg, o);
}

int main(int argc, char **argv)
{
    static struct options o;
    struct kasi_config cfg;
    char err[1024] = "";

    if (argc > 1 && !strcmp(argv[1], "passwd"))
        return passwd_main(argc - 1, argv + 1);
    if (argc > 1 && !strcmp(argv[1], "init"))
        return init_main(argc - 1, argv + 1);
    if (parse_args(argc, argv, &o) < 0) {
        free(o.listen);
        return 2;
    }
    /* a daemon leaves the working directory: every path must be absolute */
    if (o.daemon && realpath(o.confdir, o.absdir))
        o.confdir = o.absdir;
    memset(&cfg, 0, sizeof cfg);
    int rc = 1;
    if (config_load(o.confdir, &cfg, err, sizeof err) < 0 ||
        config_override_listen(&cfg, o.listen, o.nlisten, err, sizeof err) < 0 ||
        config_override_user(&cfg, o.user, err, sizeof err) < 0 ||
        config_override_http(&cfg, o.http, err, sizeof err) < 0)
        fprintf(stderr, "kasi: %s\n", err);
    else
        rc = run(&cfg, &o);
    config_free(&cfg);
    free(o.listen);
    return rc;
}
