/* stats_hist.c — the history of the statistics region: once a minute the
 * supervisor folds what the workers counted since the last minute into a
 * per-minute row (24 h ring) and a per-hour row (30 day ring); readers get
 * windows of points for the graph page, the current minute being live.
 * The rings are kept in a small text file of the spool directory, written
 * every few minutes and at exit, read at start (only rows with traffic are
 * written: a minute or hour missing from the file counted nothing; the
 * workers may write in that directory: the temporary file is made anew,
 * never followed):
 *
 *   kasi-stats 1
 *   p <index> <plugin name>
 *   m <minute start> <accepted> <rejected> <deferred> <dropped> [<index>=<n>]...
 *   h <hour start> ... (the same for an hour)
 *
 * Only the supervisor writes the rows, under the hist.seq counter (odd
 * while writing); readers retry when it moved. */
#include "core/stats.h"
#include "core/stats_region.h"

#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SAVE_EVERY 300          /* seconds between saves of the file */
#define HOUR 3600

#define H (&stats_r->hist)

static struct stats_row *min_row(int64_t t)
{
    return &H->min[(uint64_t)(t / 60) % STATS_MINUTES];
}

static struct stats_row *hour_row(int64_t t)
{
    return &H->hour[(uint64_t)(t / HOUR) % STATS_HOURS];
}

/* The ring's row for period t, emptied when it held an older period. */
static struct stats_row *row_claim(struct stats_row *r, int64_t t)
{
    if (r->t != t) {
        memset(r, 0, sizeof *r);
        r->t = t;
    }
    return r;
}

static void row_add(struct stats_row *r, const uint64_t *msgs, const uint64_t *deny)
{
    for (int o = 0; o < STATS_OUTCOMES; o++)
        r->msgs[o] += msgs[o];
    for (int p = 0; p < STATS_PLUGINS; p++)
        r->deny[p] += (uint32_t)deny[p];
}

/* Add totals - base to the base minute's rows. */
static void fold(const uint64_t *msgs, const uint64_t *deny)
{
    uint64_t dm[STATS_OUTCOMES], dd[STATS_PLUGINS];
    for (int o = 0; o < STATS_OUTCOMES; o++)
        dm[o] = msgs[o] - H->base_msgs[o];
    for (int p = 0; p < STATS_PLUGINS; p++)
        dd[p] = deny[p] - H->base_deny[p];
    row_add(row_claim(min_row(H->base_t), H->base_t), dm, dd);
    int64_t hour = H->base_t - H->base_t % HOUR;
    row_add(row_claim(hour_row(hour), hour), dm, dd);
}

/* Fold what was counted since the base into the base minute's rows and
 * start counting `minute`. The first minute counts from zero. */
static void roll(int64_t minute)
{
    uint64_t msgs[STATS_OUTCOMES], deny[STATS_PLUGINS];
    if (!H->base_t) {
        H->base_t = minute;
        return;
    }
    stats_region_totals(msgs, deny);
    atomic_fetch_add_explicit(&H->seq, 1, memory_order_acq_rel);
    fold(msgs, deny);
    memcpy(H->base_msgs, msgs, sizeof msgs);
    memcpy(H->base_deny, deny, sizeof deny);
    H->base_t = minute;
    atomic_fetch_add_explicit(&H->seq, 1, memory_order_acq_rel);
}

void stats_tick(time_t now, const char *path)
{
    if (!stats_r)
        return;
    int64_t minute = (int64_t)now - (int64_t)now % 60;
    if (minute != H->base_t)
        roll(minute);
    if (path && (int64_t)now - H->saved_at >= SAVE_EVERY)
        stats_history_save(path);
}

/* ------------------------------------------------------- the file */

static void save_row(FILE *f, char kind, const struct stats_row *r)
{
    fprintf(f, "%c %lld %llu %llu %llu %llu", kind, (long long)r->t,
            (unsigned long long)r->msgs[0], (unsigned long long)r->msgs[1],
            (unsigned long long)r->msgs[2], (unsigned long long)r->msgs[3]);
    for (int p = 0; p < STATS_PLUGINS; p++)
        if (r->deny[p])
            fprintf(f, " %d=%u", p, (unsigned)r->deny[p]);
    fputc('\n', f);
}

static int row_empty(const struct stats_row *r)
{
    for (int o = 0; o < STATS_OUTCOMES; o++)
        if (r->msgs[o])
            return 0;
    for (int p = 0; p < STATS_PLUGINS; p++)
        if (r->deny[p])
            return 0;
    return 1;
}

/* The rows of the period that had traffic (a missing row reads as zero). */
static void save_rows(FILE *f, char kind, const struct stats_row *rows, size_t n,
                      int64_t oldest)
{
    for (size_t i = 0; i < n; i++)
        if (rows[i].t && rows[i].t >= oldest && !row_empty(&rows[i]))
            save_row(f, kind, &rows[i]);
}

int stats_history_save(const char *path)
{
    if (!stats_r || !path)
        return 0;
    time_t now = time(NULL);
    roll((int64_t)now - (int64_t)now % 60);   /* the current minute too */
    H->saved_at = (int64_t)now;
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    unlink(tmp);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0640);
    FILE *f = fd < 0 ? NULL : fdopen(fd, "w");
    if (!f) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    fprintf(f, "kasi-stats 1\n");
    uint32_t np = stats_region_nplug();
    for (uint32_t p = 0; p < np; p++)
        if (atomic_load(&stats_r->plug[p].ready))
            fprintf(f, "p %u %s\n", (unsigned)p, stats_r->plug[p].name);
    save_rows(f, 'm', H->min, STATS_MINUTES, (int64_t)now - 86400);
    save_rows(f, 'h', H->hour, STATS_HOURS, (int64_t)now - 30 * 86400LL);
    int bad = fflush(f) != 0 || fsync(fileno(f)) != 0;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path) < 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

/* "m T a r d x i=n ..." into the ring; map: file index -> region index. */
static void load_row(char *line, const int *map, time_t now)
{
    char kind;
    long long t;
    unsigned long long m[STATS_OUTCOMES];
    int used = 0;
    if (sscanf(line, "%c %lld %llu %llu %llu %llu%n", &kind, &t, &m[0], &m[1], &m[2],
               &m[3], &used) != 6 || t <= 0)
        return;
    int hourly = kind == 'h';
    if ((hourly && (t % HOUR || t < (long long)now - 30 * 86400LL)) ||
        (!hourly && (t % 60 || t < (long long)now - 86400)) || t > (long long)now)
        return;
    uint64_t msgs[STATS_OUTCOMES] = { m[0], m[1], m[2], m[3] };
    uint64_t deny[STATS_PLUGINS] = { 0 };
    char *p = line + used;
    int idx, n;
    unsigned val;
    while (sscanf(p, " %d=%u%n", &idx, &val, &n) == 2) {
        if (idx >= 0 && idx < STATS_PLUGINS && map[idx] >= 0)
            deny[map[idx]] += val;
        p += n;
    }
    struct stats_row *r = hourly ? hour_row(t) : min_row(t);
    row_add(row_claim(r, t), msgs, deny);
}

int stats_history_load(const char *path)
{
    if (!stats_r || !path)
        return 0;
    H->saved_at = (int64_t)time(NULL);     /* the first save is due in SAVE_EVERY */
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    int map[STATS_PLUGINS];
    for (int i = 0; i < STATS_PLUGINS; i++)
        map[i] = -1;
    char line[8192];
    time_t now = time(NULL);
    int ok = fgets(line, sizeof line, f) && !strncmp(line, "kasi-stats 1", 12);
    while (ok && fgets(line, sizeof line, f)) {
        int idx;
        char name[STATS_NAME];
        if (line[0] == 'p' && sscanf(line, "p %d %63s", &idx, name) == 2) {
            if (idx >= 0 && idx < STATS_PLUGINS)
                map[idx] = stats_region_plugin(name);
        } else if (line[0] == 'm' || line[0] == 'h') {
            load_row(line, map, now);
        }
    }
    fclose(f);
    return ok ? 0 : -1;
}

/* ------------------------------------------------------- windows */

struct range {
    const char *name;
    int step, npoints, hourly;
};

static const struct range ranges[] = {
    { "1h", 60, 60, 0 },
    { "24h", 900, 96, 0 },
    { "30d", 6 * HOUR, 120, 1 },
    { NULL, 0, 0, 0 },
};

static void point_add(struct stats_point *pt, const struct stats_snap *snap,
                      const uint64_t *msgs, const uint64_t *deny_region,
                      const uint32_t *deny32)
{
    for (int o = 0; o < STATS_OUTCOMES; o++)
        pt->msgs[o] += msgs[o];
    for (int p = 0; p < STATS_PLUGINS; p++) {
        int at = snap->idmap[p];
        if (at >= 0)
            pt->deny[at] += deny_region ? deny_region[p] : deny32[p];
    }
}

static void fill_point(struct stats_point *pt, const struct stats_snap *snap,
                       const struct range *rg)
{
    int unit = rg->hourly ? HOUR : 60;
    for (int64_t t = pt->t; t < pt->t + rg->step; t += unit) {
        const struct stats_row *r = rg->hourly ? hour_row(t) : min_row(t);
        if (r->t == t)
            point_add(pt, snap, r->msgs, NULL, r->deny);
    }
}

/* The points from the rings plus what was counted since the base. */
static void fill_window(struct stats_window *w, const struct stats_snap *snap,
                        const struct range *rg)
{
    uint64_t msgs[STATS_OUTCOMES], deny[STATS_PLUGINS];
    for (size_t i = 0; i < w->npoints; i++) {
        struct stats_point *pt = &w->points[i];
        memset(pt->msgs, 0, sizeof pt->msgs);
        memset(pt->deny, 0, snap->nplug * sizeof *pt->deny);
        fill_point(pt, snap, rg);
    }
    stats_region_totals(msgs, deny);
    for (int o = 0; o < STATS_OUTCOMES; o++)
        msgs[o] -= H->base_msgs[o];
    for (int p = 0; p < STATS_PLUGINS; p++)
        deny[p] -= H->base_deny[p];
    for (size_t i = 0; i < w->npoints; i++) {
        struct stats_point *pt = &w->points[i];
        if (H->base_t >= pt->t && H->base_t < pt->t + rg->step)
            point_add(pt, snap, msgs, deny, NULL);
    }
}

int stats_window_get(const struct stats_snap *snap, const char *range,
                     struct stats_window *w)
{
    const struct range *rg = ranges;
    memset(w, 0, sizeof *w);
    while (rg->name && strcmp(rg->name, range ? range : "1h"))
        rg++;
    if (!rg->name || !stats_r)
        return -1;
    size_t n = (size_t)rg->npoints, np = snap->nplug ? snap->nplug : 1;
    w->points = calloc(n, sizeof *w->points);
    uint64_t *deny = calloc(n * np, sizeof *deny);
    if (!w->points || !deny) {
        free(w->points);
        free(deny);
        w->points = NULL;
        return -1;
    }
    w->step = rg->step;
    w->npoints = n;
    int64_t last = (int64_t)snap->now - (int64_t)snap->now % rg->step;
    for (size_t i = 0; i < n; i++) {
        w->points[i].t = (time_t)(last - (int64_t)(n - 1 - i) * rg->step);
        w->points[i].deny = deny + i * np;
    }
    for (int tries = 0; tries < 1000; tries++) {
        uint32_t seq = atomic_load_explicit(&H->seq, memory_order_acquire);
        if (seq & 1) {
            sched_yield();
            continue;
        }
        fill_window(w, snap, rg);
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&H->seq, memory_order_acquire) == seq)
            break;
    }
    return 0;
}

void stats_window_free(struct stats_window *w)
{
    if (w->points)
        free(w->points[0].deny);
    free(w->points);
    memset(w, 0, sizeof *w);
}
