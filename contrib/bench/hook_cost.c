/* hook_cost.c — what one plugin hook call costs: runs the engine's hook
 * (plugins_engine.hook, what the session calls) in a loop on a fake
 * connection against a generation with 0, 1 and 5 plugins whose hook says
 * NEXT, and prints nanoseconds per call.
 *
 * Build it from the repository root after `make`, linking every object
 * in build/ except main.o (the same set the unit tests use), with the
 * cflags and libs of the Makefile, as build/hook_cost, and run it. Being
 * in build/, it finds lua/kasi.lua in the repository. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "core/config.h"
#include "core/stats.h"
#include "msg/envelope.h"
#include "proto/hooks.h"
#include "lua/plugins.h"

#define CALLS 2000000

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        exit(1);
    }
    fputs(text, f);
    fclose(f);
}

static void bench(const char *root, int nplugins, struct event_base *base)
{
    char path[512], list[512] = "";
    struct kasi_config cfg;
    char err[1024];
    memset(&cfg, 0, sizeof cfg);
    snprintf(path, sizeof path, "%s/config", root);
    cfg.dir = strdup(path);
    for (int i = 0; i < nplugins; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "b%d\n", i);
    snprintf(path, sizeof path, "%s/config/plugins", root);
    write_file(path, list);
    if (plugins_init(&cfg, base, err, sizeof err) < 0) {
        fprintf(stderr, "plugins_init: %s\n", err);
        exit(1);
    }
    struct conn conn;
    memset(&conn, 0, sizeof conn);
    snprintf(conn.id, sizeof conn.id, "bench");
    snprintf(conn.remote_ip, sizeof conn.remote_ip, "192.0.2.1");
    conn.helo = "client.test";
    struct hook_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.conn = &conn;
    struct hook_result r;
    double t0 = now();
    for (int i = 0; i < CALLS; i++) {
        memset(&r, 0, sizeof r);
        plugins_engine.hook(&ctx, HOOK_HELO, NULL, &r);
        hook_result_clear(&r);
    }
    double dt = now() - t0;
    printf("%d plugin(s) on the hook: %.0f ns per hook call (%.0f ns per plugin)\n",
           nplugins, dt / CALLS * 1e9, nplugins ? dt / CALLS * 1e9 / nplugins : 0);
    plugins_engine.end(&ctx);
    plugins_free();
    free(cfg.dir);
}

int main(void)
{
    char root[] = "/tmp/kasi-hook-cost-XXXXXX", path[600];
    if (!mkdtemp(root))
        return 1;
    snprintf(path, sizeof path, "%s/config", root);
    mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/plugins", root);
    mkdir(path, 0700);
    for (int i = 0; i < 5; i++) {
        snprintf(path, sizeof path, "%s/plugins/b%d.lua", root, i);
        write_file(path, "function hook_helo(conn, txn, helo)\n"
                         "  if helo == conn.remote_ip then return DENY end\n"
                         "end\n");
    }
    struct event_base *base = event_base_new();
    /* as in a worker: every call is counted (KASI_BENCH_STATS=0: not) */
    const char *st = getenv("KASI_BENCH_STATS");
    if (!st || strcmp(st, "0")) {
        stats_region_create(1);
        stats_worker_attach(0);
    }
    printf("statistics %s\n", stats_enabled() ? "on" : "off");
    bench(root, 0, base);
    bench(root, 1, base);
    bench(root, 5, base);
    event_base_free(base);
    stats_region_free();
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    return system(cmd) == 0 ? 0 : 1;
}
