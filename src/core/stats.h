/* stats.h — the counters behind the graph page, /metrics and /stats.json.
 *
 * One shared-memory region (mmap MAP_SHARED | MAP_ANONYMOUS) made by the
 * supervisor before it forks, so it outlives worker restarts and reloads.
 * Each worker writes only its own slot (no locks, no contention); readers
 * (any worker's HTTP handler) sum the slots. Plugins are named in a small
 * table inside the region; a name claimed twice by two workers at once is
 * merged by name when read. The supervisor rolls the per-minute (24 h) and
 * per-hour (30 days) history once a minute and keeps it in a file of the
 * spool directory (stats_hist.c).
 *
 * Recording functions are cheap (a few relaxed stores) and do nothing when
 * no region exists (kasi -t, unit tests, a build with KASI_STATS_OFF). They
 * are called from the event loop of a worker: session.c (connections,
 * transactions), plugins.c (each hook call), dns.c, smtp_client.c. */
#ifndef KASI_STATS_H
#define KASI_STATS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#define STATS_PLUGINS 128       /* plugin names the region holds */
#define STATS_HOOKS 16          /* == HOOK_COUNT (checked in the engine) */
#define STATS_HOOK_DENY 15      /* == HOOK_DENY: its answers reject nothing */
#define STATS_NAME 64           /* longest plugin name + 1 */
#define STATS_SERIES 256        /* plugin-defined series (kasi.stats) */
#define STATS_METRIC 48         /* longest plugin-defined metric name + 1 */
#define STATS_LABELS 192        /* longest rendered label set + 1 */
#define STATS_LAT_BUCKETS 22    /* latency: 10 us .. 50 s in 1-2-5 steps, +Inf */
#define STATS_SIZE_BUCKETS 16   /* message size: 1 KB .. 50 MB, +Inf */
#define STATS_MINUTES 1440      /* per-minute history: 24 h */
#define STATS_HOURS 720         /* per-hour history: 30 days */
#define STATS_MAX_SLOTS 256     /* slots a region may have */

/* A hook call's answer: the hook_rc values, then what the engine made. */
enum stats_answer {
    STATS_NEXT, STATS_OK, STATS_DENY, STATS_DENYSOFT, STATS_DENYDISCONNECT,
    STATS_DISCONNECT, STATS_ERROR, STATS_TIMEOUT, STATS_ANSWERS
};

/* What became of a connection, a transaction or a recipient. */
enum stats_outcome {
    STATS_ACCEPTED, STATS_REJECTED, STATS_DEFERRED, STATS_DROPPED, STATS_OUTCOMES
};

enum stats_kind { STATS_COUNTER = 1, STATS_SUMMARY = 2 };

/* ---- life cycle (supervisor) */

/* Map the region with nslots (at most STATS_MAX_SLOTS) worker slots. 0,
 * or -1 (errno). */
int stats_region_create(unsigned nslots);
void stats_region_free(void);
int stats_enabled(void);
/* The supervisor started (pid) or reaped (0) the worker of a slot; a
 * reaped worker's gauges (open connections) are cleared, never its
 * counters. */
void stats_worker_state(unsigned slot, pid_t pid);
/* In the worker after fork: this process writes slot. */
void stats_worker_attach(unsigned slot);
/* The workers the live generation runs (its `workers:`, resolved). */
void stats_workers_configured(unsigned n);

/* ---- recording (worker) */

/* A plugin call ended: answer (enum stats_answer), time it took. */
void stats_hook_call(const char *plugin, int hook, int answer, double seconds);
/* Make sure a plugin has a row (a loaded plugin that is never called). */
void stats_plugin_seen(const char *plugin);
/* A transaction ended: outcome, message bytes (0 when none came). */
void stats_message(int outcome, size_t bytes, int tls, int auth);
void stats_rcpt(int outcome);
void stats_conn_open(void);
void stats_conn_close(int outcome, int tls, int auth);
/* Refused at accept (connection limits): counted, never open. */
void stats_conn_refused(void);
void stats_dns(double seconds);
void stats_downstream(double seconds);
/* A plugin generation went live (ok) or a reload failed. */
void stats_generation(unsigned id, int ok, int reload);
/* kasi.stats: add to a plugin-defined series (labels rendered as
 * `a="x",b="y"`). 0, or -1 when the series table is full. */
int stats_custom(const char *plugin, const char *name, const char *labels,
                 int kind, double value);

/* The outcome a reply code means: 2xx accepted, 4xx deferred, else rejected. */
int stats_outcome_of(int code);

/* ---- reading (any process) */

struct stats_series {
    char plugin[STATS_NAME], name[STATS_METRIC], labels[STATS_LABELS];
    int kind;
    uint64_t count;
    double sum;
};

/* A slot a worker was ever started in (others are left out). */
struct stats_worker {
    unsigned slot;
    pid_t pid;                  /* 0: not running */
    unsigned generation;        /* its live plugin generation */
    int64_t open;               /* open connections */
    uint64_t restarts;          /* times this slot's worker was started - 1 */
};

/* Everything, summed over the slots, plugins merged by name. */
struct stats_snap {
    time_t now, started;        /* started: the region was made */
    size_t nplug;
    char (*names)[STATS_NAME];
    uint64_t (*hook)[STATS_HOOKS][STATS_ANSWERS];
    uint64_t (*lat)[STATS_LAT_BUCKETS];
    double *lat_sum;            /* seconds */
    uint64_t msgs[STATS_OUTCOMES][2][2];        /* [outcome][tls][auth] */
    uint64_t rcpts[STATS_OUTCOMES];
    uint64_t conns[STATS_OUTCOMES], conn_tls, conn_auth, conn_refused;
    int64_t open;
    uint64_t size[STATS_SIZE_BUCKETS];
    double size_sum;
    uint64_t dns[STATS_LAT_BUCKETS], down[STATS_LAT_BUCKETS];
    double dns_sum, down_sum;
    uint64_t reloads_ok, reloads_failed;
    time_t last_reload;         /* 0: none since start */
    unsigned nworkers;          /* slots ever started */
    unsigned running;           /* of them, with a worker now */
    unsigned configured;        /* workers the live generation wants, 0: unknown */
    struct stats_worker *workers;
    size_t nseries;
    struct stats_series *series;
    int idmap[STATS_PLUGINS];   /* region plugin index -> names[], -1 none */
};

/* NULL when there is no region or no memory. */
struct stats_snap *stats_snapshot(void);
void stats_snap_free(struct stats_snap *s);
/* Index of a plugin in a snapshot, or -1. */
int stats_snap_plugin(const struct stats_snap *s, const char *name);
/* Upper bounds: seconds of a latency bucket, bytes of a size bucket. The
 * last bucket is +Inf. */
double stats_lat_bound(int bucket);
double stats_size_bound(int bucket);
/* The q-quantile (0..1) of a latency histogram, interpolated within its
 * bucket; 0 when empty. */
double stats_quantile(const uint64_t *buckets, double q);
/* Rejections (every deny-class answer a plugin gave) of plugin p. */
uint64_t stats_snap_denials(const struct stats_snap *s, size_t p);

/* ---- history (stats_hist.c) */

/* One point of a history window: what happened in [t, t + step). */
struct stats_point {
    time_t t;
    uint64_t msgs[STATS_OUTCOMES];
    uint64_t *deny;             /* per plugin of the window's snapshot */
};

struct stats_window {
    int step;                   /* seconds per point */
    size_t npoints;
    struct stats_point *points; /* oldest first; the last one is live */
};

/* range: "1h" (60 x 1 min), "24h" (96 x 15 min), "30d" (120 x 6 h).
 * Plugins are those of snap. 0, or -1 (unknown range, no memory). */
int stats_window_get(const struct stats_snap *snap, const char *range,
                     struct stats_window *w);
void stats_window_free(struct stats_window *w);

/* Supervisor: read the history file at start (a missing file is fine),
 * roll the current minute into the history when it ends (call often; it
 * saves the file every few minutes), and save at exit. */
int stats_history_load(const char *path);
void stats_tick(time_t now, const char *path);
int stats_history_save(const char *path);

#endif
