/* main.c — command line, start-up, signals and the event loop.
 *
 *   kasi [-c DIR] [-t] [--listen HOST:PORT]... [-V]
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "config.h"
#include "log.h"
#include "server.h"
#include "spool.h"
#include "version.h"

struct options {
    const char *confdir;
    int check_only;
    char **listen;      /* --listen values */
    size_t nlisten;
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: kasi [-c DIR] [-t] [--listen HOST:PORT]... [-V]\n"
            "  -c, --config DIR     configuration directory (default ./config)\n"
            "  -t, --test           check the configuration and exit\n"
            "  -l, --listen H:P     listen on H:P instead of the configured\n"
            "                       addresses (repeatable; IPv6 as [::1]:25)\n"
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
        default: usage(stderr); return -1;
        }
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

static int run(struct kasi_config *cfg)
{
    struct event_base *base = event_base_new();
    struct server srv;
    struct event *sigs[2] = { NULL, NULL };
    int rc = 1;

    if (!base)
        return 1;
    signal(SIGPIPE, SIG_IGN);
    if (server_init(&srv, base, cfg) == 0) {
        sigs[0] = evsignal_new(base, SIGTERM, on_stop, &srv);
        sigs[1] = evsignal_new(base, SIGINT, on_stop, &srv);
        evsignal_add(sigs[0], NULL);
        evsignal_add(sigs[1], NULL);
        log_msg(LOG_LVL_INFO, "kasi %s ready, host name %s", KASI_VERSION,
                cfg->hostname);
        event_base_dispatch(base);
        log_msg(LOG_LVL_INFO, "stopped");
        rc = 0;
    }
    server_free(&srv);
    for (int i = 0; i < 2; i++)
        if (sigs[i])
            event_free(sigs[i]);
    event_base_free(base);
    return rc;
}

int main(int argc, char **argv)
{
    struct options o = { 0 };
    struct kasi_config cfg;
    char err[1024] = "";
    int rc;

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
    if (o.check_only) {
        printf("kasi: configuration ok (%s)\n", o.confdir);
        config_free(&cfg);
        return 0;
    }
    log_setup(cfg.log_target, cfg.log_level);
    if (spool_prepare(cfg.spool_dir) < 0) {
        fprintf(stderr, "kasi: spool_dir %s: %s\n", cfg.spool_dir, strerror(errno));
        config_free(&cfg);
        return 1;
    }
    rc = run(&cfg);
    config_free(&cfg);
    return rc;
}
