/* control.c — the control commands (see control.h). */
#include "control.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/config.h"

#define CTL_MAX_WORKERS 512
#define CTL_RELOAD_WAIT 120.0   /* seconds */

struct ctl_worker {
    long pid;
    unsigned gen;
    long long since;
    char state[16];
    unsigned conns;
};

struct ctl_status {
    long pid;
    long long since;
    unsigned generation, reloads;
    int pending;
    char last[2048];
    struct ctl_worker w[CTL_MAX_WORKERS];
    size_t nw;
};

int control_is_command(const char *word)
{
    return !strcmp(word, "status") || !strcmp(word, "reload") || !strcmp(word, "stop");
}

static void ctl_line(struct ctl_status *st, const char *line)
{
    struct ctl_worker *w = &st->w[st->nw];
    if (!strncmp(line, "last ", 5)) {
        snprintf(st->last, sizeof st->last, "%.2000s", line + 5);
        st->last[strcspn(st->last, "\n")] = '\0';
    } else if (st->nw < CTL_MAX_WORKERS &&
               sscanf(line, "worker %ld %u %lld %15s %u", &w->pid, &w->gen, &w->since,
                      w->state, &w->conns) == 5) {
        st->nw++;
    } else if (sscanf(line, "pid %ld", &st->pid) == 1 ||
               sscanf(line, "since %lld", &st->since) == 1 ||
               sscanf(line, "generation %u", &st->generation) == 1 ||
               sscanf(line, "reloads %u", &st->reloads) == 1 ||
               sscanf(line, "pending %d", &st->pending) == 1) {
        return;
    }
}

static int ctl_read(const struct kasi_config *cfg, struct ctl_status *st)
{
    char path[4200], line[2200];
    memset(st, 0, sizeof *st);
    snprintf(path, sizeof path, "%s/.gen/status", cfg->spool_dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        ctl_line(st, line);
    fclose(f);
    return 0;
}

static int ctl_alive(long pid)
{
    return pid > 0 && (kill((pid_t)pid, 0) == 0 || errno == EPERM);
}

/* The supervisor's pid, 0 when none is running. */
static long ctl_pid(const struct kasi_config *cfg, const struct ctl_status *st)
{
    long pid = 0;
    if (cfg->pid_file) {
        FILE *f = fopen(cfg->pid_file, "r");
        if (f) {
            if (fscanf(f, "%ld", &pid) != 1)
                pid = 0;
            fclose(f);
        }
    }
    if (!pid)
        pid = st->pid;
    if (!pid && getenv("MAINPID"))
        pid = strtol(getenv("MAINPID"), NULL, 10);
    return ctl_alive(pid) ? pid : 0;
}

static void ctl_span(long long secs, char *buf, size_t len)
{
    if (secs < 0)
        secs = 0;
    if (secs >= 86400)
        snprintf(buf, len, "%lldd%lldh", secs / 86400, secs % 86400 / 3600);
    else if (secs >= 3600)
        snprintf(buf, len, "%lldh%lldm", secs / 3600, secs % 3600 / 60);
    else if (secs >= 60)
        snprintf(buf, len, "%lldm%llds", secs / 60, secs % 60);
    else
        snprintf(buf, len, "%llds", secs);
}

static int ctl_status(const struct ctl_status *st, long pid)
{
    long long now = (long long)time(NULL);
    unsigned conns = 0, current = 0;
    char up[32];
    for (size_t i = 0; i < st->nw; i++) {
        conns += st->w[i].conns;
        current += st->w[i].gen == st->generation && strcmp(st->w[i].state, "draining");
    }
    ctl_span(now - st->since, up, sizeof up);
    printf("kasi running, pid %ld, up %s\n", pid, up);
    printf("generation %u, %u workers", st->generation, current);
    if (st->nw > current)
        printf(" (and %zu of other generations)", st->nw - current);
    printf(", %u open connections\n", conns);
    for (size_t i = 0; i < st->nw; i++) {
        ctl_span(now - st->w[i].since, up, sizeof up);
        printf("  worker %ld  generation %u  %-8s  up %-8s  %u connections\n",
               st->w[i].pid, st->w[i].gen, st->w[i].state, up, st->w[i].conns);
    }
    printf("reloads: %u%s; last reload: %s\n", st->reloads,
           st->pending ? " (one in progress)" : "", st->last);
    return 0;
}

static void ctl_nap(void)
{
    struct timespec ts = { 0, 50 * 1000000L };
    nanosleep(&ts, NULL);
}

static int ctl_reload(const struct kasi_config *cfg, struct ctl_status *st, long pid)
{
    unsigned before = st->reloads + (unsigned)st->pending;
    if (kill((pid_t)pid, SIGHUP) < 0) {
        fprintf(stderr, "kasi: reload: %s\n", strerror(errno));
        return 1;
    }
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        ctl_nap();
        if (!ctl_alive(pid)) {
            fprintf(stderr, "kasi: reload: kasi (pid %ld) is gone\n", pid);
            return 1;
        }
        if (ctl_read(cfg, st) == 0 && st->reloads > before && !st->pending)
            break;
        clock_gettime(CLOCK_MONOTONIC, &t);
        if (t.tv_sec - t0.tv_sec > CTL_RELOAD_WAIT) {
            fprintf(stderr, "kasi: reload: no result after %.0f s\n", CTL_RELOAD_WAIT);
            return 1;
        }
    }
    int good = !strncmp(st->last, "ok", 2);
    fprintf(good ? stdout : stderr, "kasi: reload %s\n", st->last);
    return good ? 0 : 1;
}

static int ctl_stop(const struct kasi_config *cfg, long pid)
{
    if (kill((pid_t)pid, SIGTERM) < 0) {
        fprintf(stderr, "kasi: stop: %s\n", strerror(errno));
        return 1;
    }
    double wait = cfg->timeout_shutdown + 30;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (ctl_alive(pid)) {
        ctl_nap();
        clock_gettime(CLOCK_MONOTONIC, &t);
        if (t.tv_sec - t0.tv_sec > wait) {
            fprintf(stderr, "kasi: stop: pid %ld still running after %.0f s\n", pid, wait);
            return 1;
        }
    }
    printf("kasi: stopped (pid %ld)\n", pid);
    return 0;
}

int control_main(const char *cmd, const struct kasi_config *cfg)
{
    static struct ctl_status st;
    int have = ctl_read(cfg, &st) == 0;
    long pid = ctl_pid(cfg, &st);
    if (!pid) {
        printf("kasi: not running\n");
        return !strcmp(cmd, "stop") ? 0 : 3;
    }
    if (!strcmp(cmd, "stop"))
        return ctl_stop(cfg, pid);
    if (!have) {
        fprintf(stderr, "kasi: pid %ld has no status file in %s/.gen (still starting?)\n",
                pid, cfg->spool_dir);
        return 1;
    }
    if (!strcmp(cmd, "status"))
        return ctl_status(&st, pid);
    return ctl_reload(cfg, &st, pid);
}
