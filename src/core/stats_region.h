/* stats_region.h — the layout of the shared statistics region, private to
 * stats.c (slots, names, snapshots) and stats_hist.c (history, file).
 *
 * Writers: a worker writes only its own slot, with relaxed atomic loads
 * and stores (one writer per cell, so no read-modify-write instruction is
 * needed); the supervisor writes the slot's pid and the history (under a
 * sequence counter that readers check). Name tables grow by claiming an
 * index with an atomic add, filling the entry, then setting `ready`. */
#ifndef KASI_STATS_REGION_H
#define KASI_STATS_REGION_H

#include <stdatomic.h>
#include <stdint.h>

#include "core/stats.h"

typedef _Atomic uint64_t stats_ctr;

struct stats_pname {
    _Atomic uint32_t ready;
    char name[STATS_NAME];
};

struct stats_sname {
    _Atomic uint32_t ready;
    int kind;
    char plugin[STATS_NAME], name[STATS_METRIC], labels[STATS_LABELS];
};

struct stats_slot {
    _Atomic int64_t pid;            /* supervisor: 0 when not running */
    stats_ctr starts;               /* supervisor */
    _Atomic uint32_t generation;
    _Atomic int64_t open;
    _Atomic int64_t last_reload;
    stats_ctr reloads_ok, reloads_failed;
    stats_ctr hook[STATS_PLUGINS][STATS_HOOKS][STATS_ANSWERS];
    stats_ctr lat[STATS_PLUGINS][STATS_LAT_BUCKETS];
    stats_ctr lat_ns[STATS_PLUGINS];
    stats_ctr msgs[STATS_OUTCOMES][2][2];
    stats_ctr rcpts[STATS_OUTCOMES];
    stats_ctr conns[STATS_OUTCOMES], conn_tls, conn_auth, conn_refused;
    stats_ctr size[STATS_SIZE_BUCKETS], size_sum;
    stats_ctr dns[STATS_LAT_BUCKETS], dns_ns;
    stats_ctr down[STATS_LAT_BUCKETS], down_ns;
    stats_ctr ser_count[STATS_SERIES];
    stats_ctr ser_sum[STATS_SERIES];    /* the bits of a double */
};

/* What one minute (or hour) added. */
struct stats_row {
    int64_t t;                      /* its start (unix seconds), 0: empty */
    uint64_t msgs[STATS_OUTCOMES];
    uint32_t deny[STATS_PLUGINS];   /* by region plugin index */
};

/* The running totals the current minute started from, and the rows. */
struct stats_hist {
    _Atomic uint32_t seq;           /* odd while the supervisor writes */
    int64_t base_t;                 /* start of the minute being counted */
    uint64_t base_msgs[STATS_OUTCOMES];
    uint64_t base_deny[STATS_PLUGINS];
    int64_t saved_at;               /* last save of the file */
    struct stats_row min[STATS_MINUTES];
    struct stats_row hour[STATS_HOURS];
};

/* Flags of a slot in stats_region.use: read only the slots that have
 * them (an untouched slot's pages are never faulted in). */
#define STATS_USE_WRITTEN 1     /* a process attached to it */
#define STATS_USE_WORKER 2      /* the supervisor started a worker in it */

struct stats_region {
    uint32_t nslots;
    int64_t started;
    _Atomic uint32_t configured;    /* supervisor: workers of the live generation */
    _Atomic uint8_t use[STATS_MAX_SLOTS];   /* STATS_USE_* (atomic or) */
    _Atomic uint32_t nplug;         /* claimed entries (may pass STATS_PLUGINS) */
    struct stats_pname plug[STATS_PLUGINS];
    _Atomic uint32_t nseries;
    struct stats_sname series[STATS_SERIES];
    struct stats_hist hist;
    struct stats_slot slot[];
};

extern struct stats_region *stats_r;

/* Whether slot w was ever written or started. */
int stats_region_slot_used(uint32_t w);
/* Totals over every used slot: messages by outcome, denials by region index. */
void stats_region_totals(uint64_t msgs[STATS_OUTCOMES],
                         uint64_t deny[STATS_PLUGINS]);
/* Region plugin index of name (claiming one when new), or -1 when full. */
int stats_region_plugin(const char *name);
/* Claimed plugin entries that are ready to read. */
uint32_t stats_region_nplug(void);

#endif
