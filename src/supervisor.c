/* supervisor.c — the supervising process (see supervisor.h).
 *
 * One loop, woken by signals or every tick: it handles SIGTERM/SIGHUP
 * flags, reaps workers, switches a ready generation in, restarts the
 * workers the current generation lacks, kills a worker stuck in plugin
 * code, and refreshes the status file.
 *
 * All workers accept on the same listening sockets, inherited across
 * fork, rather than each binding its own with SO_REUSEPORT: the
 * supervisor binds once (as root, so workers need no privilege), a
 * connection waiting in the queue of a worker that dies or retires is not
 * lost (SO_REUSEPORT gives each socket its own queue, and the kernel
 * resets what is queued on a closed one), and a new generation starts
 * accepting on the very socket the old one stops accepting on. */
#include "supervisor.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/sdnotify.h"
#include "core/shmcount.h"
#include "core/stats.h"
#include "core/watchdog.h"
#include "generation.h"
#include "msg/spool.h"
#include "net/tls.h"
#include "worker.h"

/* Under AddressSanitizer the worker's _exit() would skip the leak check
 * that runs at exit(): it is run by hand first (see the worker's start). */
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


#define SUP_TICK_MS 100
#define SUP_STUCK_GRACE 3.0     /* seconds past a hook's budget */
#define SUP_START_TIMEOUT 60.0  /* for a new generation's workers to load */
#define SUP_BACKOFF_MAX 10.0

struct sup_worker {
    pid_t pid;
    int slot;
    struct sgen *gen;
    double started;             /* monotonic */
    time_t since;               /* wall clock, for status */
    int serving;                /* was told to accept */
    int retiring;               /* was told to finish and exit */
    int killed;                 /* stuck: SIGKILL sent */
};

static volatile sig_atomic_t sup_term, sup_hup, sup_chld;

static struct {
    const struct sup_opts *o;
    struct sgen_env env;
    struct sgen *cur, *pending;
    struct sup_worker *w;
    size_t nw, wcap;
    int stopping, rc, start_failed, hup_again;
    double pending_deadline, restart_at, backoff;
    int lost_slot;              /* slot of the last worker lost, for its successor */
    unsigned reloads;
    char last[2048];            /* result of the last reload */
    time_t since;
    int dirty;                  /* status file out of date */
    double status_at;
    char pid_file[4096];
    unsigned table_conns;       /* the shared tables were made for these */
    unsigned table_counters;    /* max_connections and counters (at start) */
    char *stats_path;           /* the statistics history in the spool */
} sup;

static double sup_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ------------------------------------------------------- signals */

static void sup_signal(int sig)
{
    if (sig == SIGHUP)
        sup_hup = 1;
    else if (sig == SIGCHLD || sig == SIGUSR2)    /* a worker died, or is ready */
        sup_chld = 1;
    else
        sup_term = sig;
}

static void sup_signals(void (*handler)(int))
{
    static const int sigs[] = { SIGTERM, SIGINT, SIGHUP, SIGCHLD, SIGUSR2 };
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        sigaction(sigs[i], &sa, NULL);
}

/* Shared memory every worker inherits is created here, before the first
 * fork, from the first generation's settings (a reload does not resize
 * it): the watchdog's slots, the counters all workers share (connection
 * limits, AUTH failures, kasi.counter: 8 gauge entries per allowed
 * connection) and the statistics. A worker's slot number is its owner
 * number in the counters and its slot in the statistics. */
static int sup_shared_setup(const struct kasi_config *cfg)
{
    if (watchdog_setup() < 0 ||
        shmcount_create(WATCHDOG_SLOTS, (size_t)cfg->max_connections * 8,
                        cfg->counters) < 0) {
        log_msg(LOG_LVL_ERROR, "shared worker tables: %s", strerror(errno));
        return -1;
    }
    sup.table_conns = cfg->max_connections;
    sup.table_counters = cfg->counters;
    /* one statistics slot per worker slot, and the supervisor's own (the
     * reloads it counts) after them */
    if (stats_region_create(WATCHDOG_SLOTS + 1) < 0) {
        log_msg(LOG_LVL_WARN, "statistics off: %s", strerror(errno));
        return 0;
    }
    stats_worker_attach(WATCHDOG_SLOTS);
    sup.stats_path = malloc(strlen(cfg->spool_dir) + sizeof "/kasi.stats");
    if (sup.stats_path)
        sprintf(sup.stats_path, "%s/kasi.stats", cfg->spool_dir);
    if (stats_history_load(sup.stats_path) < 0)
        log_msg(LOG_LVL_WARN, "%s: not a statistics file, starting afresh", sup.stats_path);
    stats_tick(time(NULL), NULL);
    return 0;
}

static void sup_shared_free(void)
{
    if (sup.stats_path && stats_history_save(sup.stats_path) < 0)
        log_msg(LOG_LVL_WARN, "%s: %s", sup.stats_path, strerror(errno));
    stats_region_free();
    free(sup.stats_path);
    sup.stats_path = NULL;
    shmcount_destroy();
}

/* ------------------------------------------------------- generations */

static void sup_gen_unref(struct sgen *g)
{
    if (!g || --g->refs > 0)
        return;
    log_msg(LOG_LVL_DEBUG, "generation %u freed", g->id);
    sgen_free(g);
    free(g);
}

static size_t sup_count(const struct sgen *g, int only_ready)
{
    size_t n = 0;
    for (size_t i = 0; i < sup.nw; i++)
        if (sup.w[i].gen == g && !sup.w[i].retiring &&
            (!only_ready || watchdog_state(sup.w[i].slot) == WD_READY))
            n++;
    return n;
}

static void sup_tell_parent(const char *msg)
{
    if (sup.o->ready_fd < 0)
        return;
    ssize_t w = write(sup.o->ready_fd, msg, strlen(msg));
    (void)w;
    close(sup.o->ready_fd);
    ((struct sup_opts *)sup.o)->ready_fd = -1;
}

/* ------------------------------------------------------- workers */

static void sup_child(struct sgen *g, int slot)
{
    sigset_t none;
    sup_signals(SIG_DFL);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    sgen_close_others(g);
    if (sup.o->ready_fd >= 0)
        close(sup.o->ready_fd);
    stats_worker_attach((unsigned)slot);
    shmcount_attach((unsigned)slot);
    struct worker_opts wo = { g->id, slot, &g->ids, g->http_fd };
    int rc = worker_run(&g->cfg, g->lfd, &wo);
    fflush(NULL);
#ifdef KASI_LEAK_CHECK
    __lsan_do_leak_check();     /* _exit skips it; a report ends the process */
#endif
    _exit(rc);
}

static int sup_spawn(struct sgen *g)
{
    if (sup.nw == sup.wcap) {
        size_t cap = sup.wcap ? sup.wcap * 2 : 16;
        struct sup_worker *w = realloc(sup.w, cap * sizeof *w);
        if (!w)
            return -1;
        sup.w = w;
        sup.wcap = cap;
    }
    int slot = watchdog_slot_take(g == sup.cur ? sup.lost_slot : -1);
    if (slot < 0) {
        log_msg(LOG_LVL_ERROR, "no free worker slot (%d workers alive)", (int)sup.nw);
        return -1;
    }
    tls_use(&g->cfg, g->tls);   /* the child inherits this generation's TLS */
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0)
        sup_child(g, slot);
    if (pid < 0) {
        watchdog_slot_free(slot);
        log_msg(LOG_LVL_ERROR, "fork: %s", strerror(errno));
        return -1;
    }
    sup.w[sup.nw++] = (struct sup_worker){ pid, slot, g, sup_now(), time(NULL), 0, 0, 0 };
    stats_worker_state((unsigned)slot, pid);
    g->refs++;
    sup.dirty = 1;
    log_msg(LOG_LVL_INFO, "worker %d started (generation %u)", (int)pid, g->id);
    return 0;
}

static void sup_kill_gen(struct sgen *g, int sig)
{
    for (size_t i = 0; i < sup.nw; i++)
        if (sup.w[i].gen == g)
            kill(sup.w[i].pid, sig);
}

/* ------------------------------------------------------- reload */

static void sup_notify_ready(void)
{
    sdn_notify("READY=1\nSTATUS=generation %u, %u workers", sup.cur ? sup.cur->id : 0,
               sup.cur ? sup.cur->nworkers : 0);
}

static void sup_reload(void);

static void sup_reload_done(void)
{
    sup.reloads++;
    sup.dirty = 1;
    sup_notify_ready();
    if (sup.hup_again && !sup.stopping) {
        sup.hup_again = 0;
        sup_reload();
    }
}

/* A generation that will not be: log why, change nothing. */
static void sup_pending_fail(const char *why)
{
    struct sgen *g = sup.pending;
    sup.pending = NULL;
    if (g) {
        sup_kill_gen(g, SIGKILL);  /* none of them accepts yet */
        sgen_drop_listeners(g);
        sup_gen_unref(g);
    }
    if (!sup.cur) {
        log_msg(LOG_LVL_ERROR, "cannot start: %s", why);
        sup.start_failed = 1;
        char msg[2100];
        snprintf(msg, sizeof msg, "%s\n", why);
        sup_tell_parent(msg);
        return;
    }
    log_msg(LOG_LVL_ERROR, "reload failed, generation %u stays: %s", sup.cur->id, why);
    stats_generation(0, 0, 1);
    snprintf(sup.last, sizeof sup.last, "failed: %s", why);
    sup_reload_done();
}

/* Start a generation: prepare it, then its workers (they load the
 * plugins; sup_pending_check switches when all are ready). */
static void sup_generation_start(void)
{
    char err[2048];
    struct sgen *g = calloc(1, sizeof *g);
    unsigned id = sup.cur ? sup.cur->id + 1 : 1;
    if (!g || sgen_prepare(g, id, &sup.env, err, sizeof err) < 0) {
        if (!g)
            snprintf(err, sizeof err, "out of memory");
        free(g);
        sup_pending_fail(err);
        return;
    }
    sup.pending = g;
    if (id == 1 && sup_shared_setup(&g->cfg) < 0) {
        sup_pending_fail("cannot set up the shared worker tables");
        return;
    }
    if (id == 1)
        spool_sweep(g->cfg.spool_dir);      /* no worker writes yet */
    sup.pending_deadline = sup_now() + SUP_START_TIMEOUT;
    for (unsigned i = 0; i < g->nworkers; i++) {
        if (sup_spawn(g) < 0) {
            sup_pending_fail("cannot start a worker process");
            return;
        }
    }
}

static void sup_reload(void)
{
    if (sup.stopping)
        return;
    if (sup.pending) {
        sup.hup_again = 1;
        return;
    }
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    sdn_notify("RELOADING=1\nMONOTONIC_USEC=%llu",
               (unsigned long long)ts.tv_sec * 1000000ULL +
                   (unsigned long long)ts.tv_nsec / 1000);
    log_msg(LOG_LVL_INFO, "SIGHUP: loading generation %u", sup.cur->id + 1);
    sup_generation_start();
}

static void sup_worker_list(const struct sgen *g, char *out, size_t len)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < sup.nw && used < len; i++)
        if (sup.w[i].gen == g)
            used += (size_t)snprintf(out + used, len - used, " %d", (int)sup.w[i].pid);
}

static void sup_pid_file(const struct kasi_config *cfg);

static int sup_str_differs(const char *a, const char *b)
{
    return (a || b) && (!a || !b || strcmp(a, b));
}

/* What a reload cannot change: the shared tables keep the size they were
 * made with at start. Warned, and added to the diff line. */
static void sup_next_start(const struct kasi_config *a, const struct kasi_config *b,
                           char *diff, size_t len)
{
    char keys[160] = "";
    if (b->counters != a->counters && b->counters != sup.table_counters) {
        log_msg(LOG_LVL_WARN, "reload: limits.counters changed; it takes effect at the "
                "next start");
        strcat(keys, ", limits.counters");
    }
    if (b->max_connections != a->max_connections && b->max_connections > sup.table_conns) {
        log_msg(LOG_LVL_WARN, "reload: limits.max_connections changed; the new limit "
                "holds now, but the shared table of connections keeps its size (for %u) "
                "until the next start", sup.table_conns);
        strcat(keys, ", the table of limits.max_connections");
    }
    if (!keys[0])
        return;
    size_t used = strcmp(diff, "nothing changed") ? strlen(diff) : 0;
    snprintf(diff + used, len - used, "%sat the next start: %s", used ? "; " : "", keys + 2);
}

/* pid_file changed: the old file goes, the new one is written. */
static void sup_move_pid_file(const struct kasi_config *a, const struct kasi_config *b)
{
    if (!sup_str_differs(a->pid_file, b->pid_file))
        return;
    if (sup.pid_file[0])
        unlink(sup.pid_file);
    sup.pid_file[0] = '\0';
    sup_pid_file(b);
}

/* Every worker of the pending generation is ready: it takes over. */
static void sup_switch(void)
{
    struct sgen *g = sup.pending, *old = sup.cur;
    char diff[1500], pids[300];
    for (size_t i = 0; i < sup.nw; i++) {
        struct sup_worker *w = &sup.w[i];
        if (w->gen == g) {
            kill(w->pid, SIGUSR1);
            w->serving = 1;
        } else if (!w->retiring) {
            /* a worker that never served has no sessions and maybe no
             * handler yet: it is simply stopped */
            kill(w->pid, w->serving ? SIGQUIT : SIGKILL);
            w->retiring = 1;
        }
    }
    sup.pending = NULL;
    sup.cur = g;
    stats_workers_configured(g->nworkers);
    sgen_diff(old, g, diff, sizeof diff);
    if (old) {
        sup_next_start(&old->cfg, &g->cfg, diff, sizeof diff);
        sup_move_pid_file(&old->cfg, &g->cfg);
    }
    sgen_log_listeners(old, g);
    log_setup(g->cfg.log_target, g->cfg.log_level);
    sup_worker_list(g, pids, sizeof pids);
    if (old) {
        sgen_drop_listeners(old);
        sup_gen_unref(old);
        log_msg(LOG_LVL_INFO, "generation %u live (was %u): %s; workers%s ready",
                g->id, old->id, diff, pids);
        snprintf(sup.last, sizeof sup.last, "ok: generation %u: %s", g->id, diff);
        stats_generation(g->id, 1, 1);
        sup_reload_done();
        return;
    }
    sgen_prune();
    log_msg(LOG_LVL_INFO, "generation %u live: workers%s ready", g->id, pids);
    snprintf(sup.last, sizeof sup.last, "none yet");
    sup.dirty = 1;
    sup_notify_ready();
    sup_tell_parent("ok\n");
    if (sup.hup_again) {        /* a SIGHUP that came during the start */
        sup.hup_again = 0;
        sup_reload();
    }
}

static void sup_pending_check(void)
{
    if (!sup.pending)
        return;
    if (sup_count(sup.pending, 1) == sup.pending->nworkers) {
        sup_switch();
    } else if (sup_now() > sup.pending_deadline) {
        char why[128];
        snprintf(why, sizeof why, "the workers did not finish loading within %.0f s",
                 SUP_START_TIMEOUT);
        sup_pending_fail(why);
    }
}

/* ------------------------------------------------------- reaping */

static void sup_describe(int status, char *buf, size_t len)
{
    if (WIFEXITED(status))
        snprintf(buf, len, "exit %d", WEXITSTATUS(status));
    else
        snprintf(buf, len, "signal %d", WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

/* A worker of the current generation died: restart, backing off when
 * they die young (a worker that cannot start must not spin). */
static void sup_lost(const struct sup_worker *w, const char *how, const char *err)
{
    double lived = sup_now() - w->started;
    if (err[0])
        log_msg(LOG_LVL_ERROR, "worker %d could not start on generation %u: %s",
                (int)w->pid, w->gen->id, err);
    log_msg(LOG_LVL_ERROR, "worker %d ended (%s), restarting", (int)w->pid, how);
    sup.lost_slot = w->slot;
    sup.backoff = lived < 2 ? (sup.backoff < 0.1 ? 0.1 : sup.backoff * 2) : 0;
    if (sup.backoff > SUP_BACKOFF_MAX)
        sup.backoff = SUP_BACKOFF_MAX;
    sup.restart_at = sup_now() + sup.backoff;
}

static void sup_exited(const struct sup_worker *w, int status)
{
    char how[64], err[2048];
    sup_describe(status, how, sizeof how);
    snap_unmap(&w->gen->snap, watchdog_error(w->slot), err, sizeof err);
    int clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (w->gen == sup.pending) {
        char why[2200];
        snprintf(why, sizeof why, "%s (worker %d, %s)", err[0] ? err : "worker died",
                 (int)w->pid, how);
        sup_pending_fail(why);
    } else if (sup.stopping) {
        log_msg(LOG_LVL_INFO, "worker %d stopped (%s)", (int)w->pid, how);
        if (!clean && w->serving)
            sup.rc = 1;
    } else if (w->retiring) {
        log_msg(clean ? LOG_LVL_INFO : LOG_LVL_WARN,
                "worker %d retired (generation %u, %s)", (int)w->pid, w->gen->id, how);
    } else if (w->gen == sup.cur) {
        sup_lost(w, how, err);
    } else {
        log_msg(LOG_LVL_DEBUG, "worker %d stopped (generation %u abandoned, %s)",
                (int)w->pid, w->gen->id, how);
    }
}

static void sup_reap(void)
{
    int status;
    pid_t pid;
    sup_chld = 0;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (size_t i = 0; i < sup.nw; i++) {
            if (sup.w[i].pid != pid)
                continue;
            struct sup_worker w = sup.w[i];
            sup.w[i] = sup.w[--sup.nw];
            sup.dirty = 1;
            sup_exited(&w, status);
            stats_worker_state((unsigned)w.slot, 0);
            shmcount_release_owner((unsigned)w.slot);   /* its connections are closed */
            watchdog_slot_free(w.slot);
            sup_gen_unref(w.gen);
            break;
        }
    }
}

/* ------------------------------------------------------- upkeep */

static void sup_restart(void)
{
    if (!sup.cur || sup.stopping || sup_now() < sup.restart_at)
        return;
    for (size_t n = sup_count(sup.cur, 0); n < sup.cur->nworkers; n++)
        if (sup_spawn(sup.cur) < 0)
            break;
}

/* A restarted worker of the current generation accepts once loaded. */
static void sup_go(void)
{
    for (size_t i = 0; i < sup.nw; i++) {
        struct sup_worker *w = &sup.w[i];
        if (w->gen == sup.cur && !w->serving && !w->retiring &&
            watchdog_state(w->slot) == WD_READY) {
            kill(w->pid, SIGUSR1);
            w->serving = 1;
            sup.dirty = 1;
        }
    }
}

/* Plugin code that no in-process check can interrupt (a JIT-compiled
 * loop): only this worker's sessions are lost, none had its 250. */
static void sup_watchdog(void)
{
    for (size_t i = 0; i < sup.nw; i++) {
        struct sup_worker *w = &sup.w[i];
        double over = watchdog_overdue(w->slot);
        if (w->killed || over <= SUP_STUCK_GRACE)
            continue;
        log_msg(LOG_LVL_ERROR, "worker %d stuck in plugin code %.1f s past its budget, "
                "killing it", (int)w->pid, over);
        kill(w->pid, SIGKILL);
        w->killed = 1;
    }
}

static void sup_stop(int sig)
{
    if (!sup.stopping) {
        sup.stopping = 1;
        sgen_close_all();       /* no new connections may queue up (the stats page's too) */
        sdn_notify("STOPPING=1");
        log_msg(LOG_LVL_INFO, "signal %d, stopping %zu workers", sig, sup.nw);
        if (sup.pending) {
            sup_kill_gen(sup.pending, SIGKILL);
            sup_gen_unref(sup.pending);
            sup.pending = NULL;
        }
    }
    for (size_t i = 0; i < sup.nw; i++)
        kill(sup.w[i].pid, sig);
}

/* ------------------------------------------------------- status */

static const char *sup_state_name(const struct sup_worker *w)
{
    if (w->retiring)
        return "draining";
    if (w->gen == sup.pending)
        return "starting";
    switch (watchdog_state(w->slot)) {
    case WD_DRAINING: return "draining";
    case WD_STARTING: return "starting";
    default: return w->serving ? "serving" : "starting";
    }
}

/* The status file (format in control.h), replaced atomically. */
static void sup_status_write(void)
{
    char path[PATH_MAX + 16], tmp[PATH_MAX + 24];
    snprintf(path, sizeof path, "%s/status", sup.env.state);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return;
    fprintf(f, "pid %d\nsince %lld\ngeneration %u\nreloads %u\npending %d\nlast %s\n",
            (int)getpid(), (long long)sup.since, sup.cur ? sup.cur->id : 0, sup.reloads,
            sup.pending || sup.hup_again, sup.last);
    for (size_t i = 0; i < sup.nw; i++) {
        const struct sup_worker *w = &sup.w[i];
        fprintf(f, "worker %d %u %lld %s %u\n", (int)w->pid, w->gen->id,
                (long long)w->since, sup_state_name(w), watchdog_sessions(w->slot));
    }
    if (fclose(f) == 0)
        rename(tmp, path);
}

/* Now when something changed; the session counts at most once a second. */
static void sup_status(void)
{
    double now = sup_now();
    if (!sup.env.state[0] || (!sup.dirty && now - sup.status_at < 1.0))
        return;
    sup.dirty = 0;
    sup.status_at = now;
    sup_status_write();
}

static void sup_pid_file(const struct kasi_config *cfg)
{
    if (!cfg->pid_file)
        return;
    char tmp[4200];
    snprintf(sup.pid_file, sizeof sup.pid_file, "%s", cfg->pid_file);
    snprintf(tmp, sizeof tmp, "%s.tmp", cfg->pid_file);
    FILE *f = fopen(tmp, "w");
    if (!f || fprintf(f, "%d\n", (int)getpid()) < 0 || fclose(f) != 0 ||
        rename(tmp, cfg->pid_file) < 0) {
        log_msg(LOG_LVL_ERROR, "pid_file %s: %s", cfg->pid_file, strerror(errno));
        sup.pid_file[0] = '\0';
    }
}

/* ------------------------------------------------------- the loop */

static void sup_tick(void)
{
    struct timespec tick = { 0, SUP_TICK_MS * 1000000L };
    if (!sup_term && !sup_hup && !sup_chld)
        nanosleep(&tick, NULL);     /* a signal ends it early */
    if (sup_term) {
        int sig = sup_term;
        sup_term = 0;
        sup_stop(sig);
    }
    if (sup_hup) {
        sup_hup = 0;
        sup_reload();
    }
    stats_tick(time(NULL), sup.stats_path);
    sup_reap();
    sup_pending_check();
    sup_restart();
    sup_go();
    sup_watchdog();
    sup_status();
}

static void sup_cleanup(void)
{
    for (size_t i = 0; i < sup.nw; i++)
        kill(sup.w[i].pid, SIGKILL);
    while (sup.nw) {
        struct timespec ms = { 0, 10000000L };
        sup_reap();
        nanosleep(&ms, NULL);
    }
    if (sup.cur)
        sup_gen_unref(sup.cur);
    sup.cur = NULL;
    sgen_close_all();
    tls_use(NULL, NULL);
    if (sup.pid_file[0])
        unlink(sup.pid_file);
    sgen_state_close(&sup.env);
    sup_shared_free();
    free(sup.w);
}

int supervisor_run(const struct sup_opts *o)
{
    memset(&sup, 0, sizeof sup);
    sup.o = o;
    sup.since = time(NULL);
    sup.env.confdir = o->confdir;
    sup.env.listen = o->listen;
    sup.env.nlisten = o->nlisten;
    sup.env.user = o->user;
    sup.env.http_listen = o->http_listen;
    sup.lost_slot = -1;
    sdn_setup();
    sup_signals(sup_signal);
    sgen_adopt_activated();
    sup_generation_start();
    if (sup.cur || sup.pending)
        sup_pid_file(&(sup.pending ? sup.pending : sup.cur)->cfg);
    while (!sup.start_failed && !(sup.stopping && sup.nw == 0))
        sup_tick();
    if (sup.start_failed)
        sup.rc = 1;
    sup_cleanup();
    return sup.rc;
}
