/* stats.c — the shared statistics region: creating it, the recording
 * functions a worker calls on its own slot, and snapshots that sum the
 * slots for the HTTP endpoints. A snapshot reads only the slots in use
 * (stats_region.use: attached or started), so the pages of the many slots
 * that never had a worker are never faulted in. See stats.h for who calls
 * what and stats_region.h for the layout and its concurrency rules. */
#include "core/stats.h"
#include "core/stats_region.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

struct stats_region *stats_r;
static size_t region_len;
static struct stats_slot *my_slot;      /* NULL: this process records nothing */

/* Process-local caches: plugin name pointer -> index, series key -> index. */
#define PCACHE 64
#define SCACHE 512
struct pcache_ent { const char *ptr; int id; };
struct scache_ent { uint32_t hash; int id; };      /* id + 1; 0: empty */
static struct pcache_ent pcache[PCACHE];
static struct scache_ent scache[SCACHE];

/* ------------------------------------------------------- counters */

static void bump(stats_ctr *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

static uint64_t rd(stats_ctr *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

static void add_double(stats_ctr *c, double v)
{
    uint64_t bits = rd(c);
    double d;
    memcpy(&d, &bits, sizeof d);
    d += v;
    memcpy(&bits, &d, sizeof bits);
    atomic_store_explicit(c, bits, memory_order_relaxed);
}

static double as_double(uint64_t bits)
{
    double d;
    memcpy(&d, &bits, sizeof d);
    return d;
}

/* 10 us .. 50 s in 1-2-5 steps (nanoseconds). */
static const uint64_t lat_ns_bounds[STATS_LAT_BUCKETS - 1] = {
    10000, 20000, 50000, 100000, 200000, 500000, 1000000, 2000000, 5000000,
    10000000, 20000000, 50000000, 100000000, 200000000, 500000000,
    1000000000, 2000000000, 5000000000, 10000000000, 20000000000, 50000000000,
};

/* 1 KB .. 50 MB in 1-2-5 steps. */
static const uint64_t size_bounds[STATS_SIZE_BUCKETS - 1] = {
    1000, 2000, 5000, 10000, 20000, 50000, 100000, 200000, 500000,
    1000000, 2000000, 5000000, 10000000, 20000000, 50000000,
};

static int bucket_of(const uint64_t *bounds, int n, uint64_t v)
{
    int i = 0;
    while (i < n && v > bounds[i])
        i++;
    return i;
}

double stats_lat_bound(int b)
{
    return b < STATS_LAT_BUCKETS - 1 ? (double)lat_ns_bounds[b] / 1e9 : -1;
}

double stats_size_bound(int b)
{
    return b < STATS_SIZE_BUCKETS - 1 ? (double)size_bounds[b] : -1;
}

static void observe_lat(stats_ctr *hist, stats_ctr *sum, double seconds)
{
    uint64_t ns = seconds > 0 ? (uint64_t)(seconds * 1e9) : 0;
    bump(&hist[bucket_of(lat_ns_bounds, STATS_LAT_BUCKETS - 1, ns)], 1);
    bump(sum, ns);
}

/* ------------------------------------------------------- life cycle */

int stats_region_create(unsigned nslots)
{
#ifdef KASI_STATS_OFF
    (void)nslots;
    return 0;
#else
    if (stats_r || nslots == 0)
        return 0;
    if (nslots > STATS_MAX_SLOTS) {
        errno = EINVAL;
        return -1;
    }
    size_t len = sizeof *stats_r + (size_t)nslots * sizeof stats_r->slot[0];
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return -1;
    stats_r = p;
    region_len = len;
    stats_r->nslots = nslots;
    stats_r->started = (int64_t)time(NULL);
    return 0;
#endif
}

void stats_region_free(void)
{
    if (stats_r)
        munmap(stats_r, region_len);
    stats_r = NULL;
    my_slot = NULL;
    region_len = 0;
    memset(pcache, 0, sizeof pcache);
    memset(scache, 0, sizeof scache);
}

int stats_enabled(void)
{
    return stats_r != NULL;
}

void stats_worker_state(unsigned slot, pid_t pid)
{
    if (!stats_r || slot >= stats_r->nslots)
        return;
    struct stats_slot *sl = &stats_r->slot[slot];
    atomic_store(&sl->pid, (int64_t)pid);
    if (pid) {
        atomic_fetch_or(&stats_r->use[slot], STATS_USE_WORKER);
        bump(&sl->starts, 1);
    } else {
        atomic_store(&sl->open, 0);
    }
}

void stats_worker_attach(unsigned slot)
{
    my_slot = stats_r && slot < stats_r->nslots ? &stats_r->slot[slot] : NULL;
    if (!my_slot)
        return;
    atomic_fetch_or(&stats_r->use[slot], STATS_USE_WRITTEN);
    atomic_store(&my_slot->open, 0);
}

void stats_workers_configured(unsigned n)
{
    if (stats_r)
        atomic_store(&stats_r->configured, n);
}

int stats_region_slot_used(uint32_t w)
{
    return atomic_load_explicit(&stats_r->use[w], memory_order_acquire) != 0;
}

/* ------------------------------------------------------- plugin names */

uint32_t stats_region_nplug(void)
{
    uint32_t n = atomic_load(&stats_r->nplug);
    return n < STATS_PLUGINS ? n : STATS_PLUGINS;
}

static int plugin_find(const char *name)
{
    uint32_t n = stats_region_nplug();
    for (uint32_t i = 0; i < n; i++)
        if (atomic_load_explicit(&stats_r->plug[i].ready, memory_order_acquire) &&
            !strncmp(stats_r->plug[i].name, name, STATS_NAME - 1))
            return (int)i;
    return -1;
}

int stats_region_plugin(const char *name)
{
    int id = plugin_find(name);
    if (id >= 0)
        return id;
    uint32_t i = atomic_fetch_add(&stats_r->nplug, 1);
    if (i >= STATS_PLUGINS)
        return -1;
    struct stats_pname *e = &stats_r->plug[i];
    strncpy(e->name, name, STATS_NAME - 1);
    atomic_store_explicit(&e->ready, 1, memory_order_release);
    return (int)i;
}

/* The name pointer is the generation's: cached, and checked against the
 * region's copy in case the memory now holds another plugin's name. */
static int plugin_id(const char *name)
{
    unsigned h = (unsigned)(((uintptr_t)name >> 4) % PCACHE);
    if (pcache[h].ptr == name &&
        (pcache[h].id < 0 || !strncmp(stats_r->plug[pcache[h].id].name, name,
                                      STATS_NAME - 1)))
        return pcache[h].id;
    pcache[h].ptr = name;
    pcache[h].id = stats_region_plugin(name);
    return pcache[h].id;
}

void stats_plugin_seen(const char *plugin)
{
    if (stats_r)
        plugin_id(plugin);
}

/* ------------------------------------------------------- recording */

void stats_hook_call(const char *plugin, int hook, int answer, double seconds)
{
    struct stats_slot *sl = my_slot;
    if (!sl || (unsigned)hook >= STATS_HOOKS || (unsigned)answer >= STATS_ANSWERS)
        return;
    int p = plugin_id(plugin);
    if (p < 0)
        return;
    bump(&sl->hook[p][hook][answer], 1);
    observe_lat(sl->lat[p], &sl->lat_ns[p], seconds);
}

int stats_outcome_of(int code)
{
    if (code >= 200 && code < 300)
        return STATS_ACCEPTED;
    return code >= 400 && code < 500 ? STATS_DEFERRED : STATS_REJECTED;
}

void stats_message(int outcome, size_t bytes, int tls, int auth)
{
    struct stats_slot *sl = my_slot;
    if (!sl || (unsigned)outcome >= STATS_OUTCOMES)
        return;
    bump(&sl->msgs[outcome][!!tls][!!auth], 1);
    if (bytes) {
        bump(&sl->size[bucket_of(size_bounds, STATS_SIZE_BUCKETS - 1, bytes)], 1);
        bump(&sl->size_sum, bytes);
    }
}

void stats_rcpt(int outcome)
{
    if (my_slot && (unsigned)outcome < STATS_OUTCOMES)
        bump(&my_slot->rcpts[outcome], 1);
}

void stats_conn_open(void)
{
    if (my_slot)
        atomic_store_explicit(&my_slot->open, atomic_load(&my_slot->open) + 1,
                              memory_order_relaxed);
}

void stats_conn_close(int outcome, int tls, int auth)
{
    struct stats_slot *sl = my_slot;
    if (!sl || (unsigned)outcome >= STATS_OUTCOMES)
        return;
    atomic_store_explicit(&sl->open, atomic_load(&sl->open) - 1, memory_order_relaxed);
    bump(&sl->conns[outcome], 1);
    if (tls)
        bump(&sl->conn_tls, 1);
    if (auth)
        bump(&sl->conn_auth, 1);
}

void stats_conn_refused(void)
{
    if (my_slot)
        bump(&my_slot->conn_refused, 1);
}

void stats_dns(double seconds)
{
    if (my_slot)
        observe_lat(my_slot->dns, &my_slot->dns_ns, seconds);
}

void stats_downstream(double seconds)
{
    if (my_slot)
        observe_lat(my_slot->down, &my_slot->down_ns, seconds);
}

void stats_generation(unsigned id, int ok, int reload)
{
    struct stats_slot *sl = my_slot;
    if (!sl)
        return;
    if (ok)
        atomic_store(&sl->generation, id);
    if (!reload)
        return;
    bump(ok ? &sl->reloads_ok : &sl->reloads_failed, 1);
    atomic_store(&sl->last_reload, (int64_t)time(NULL));
}

/* ------------------------------------------------------- plugin series */

static uint32_t key_hash(const char *a, const char *b, const char *c, int kind)
{
    uint32_t h = 2166136261u ^ (uint32_t)kind;
    const char *parts[3] = { a, b, c };
    for (int i = 0; i < 3; i++) {
        for (const char *p = parts[i]; *p; p++)
            h = (h ^ (unsigned char)*p) * 16777619u;
        h = (h ^ 0xff) * 16777619u;
    }
    return h;
}

static int series_is(uint32_t i, const char *plugin, const char *name,
                     const char *labels, int kind)
{
    const struct stats_sname *e = &stats_r->series[i];
    return atomic_load_explicit(&e->ready, memory_order_acquire) && e->kind == kind &&
           !strcmp(e->name, name) && !strcmp(e->labels, labels) &&
           !strcmp(e->plugin, plugin);
}

static int series_claim(const char *plugin, const char *name, const char *labels,
                        int kind)
{
    uint32_t n = atomic_load(&stats_r->nseries);
    for (uint32_t i = 0; i < n && i < STATS_SERIES; i++)
        if (series_is(i, plugin, name, labels, kind))
            return (int)i;
    uint32_t i = atomic_fetch_add(&stats_r->nseries, 1);
    if (i >= STATS_SERIES)
        return -1;
    struct stats_sname *e = &stats_r->series[i];
    e->kind = kind;
    strncpy(e->plugin, plugin, sizeof e->plugin - 1);
    strncpy(e->name, name, sizeof e->name - 1);
    strncpy(e->labels, labels, sizeof e->labels - 1);
    atomic_store_explicit(&e->ready, 1, memory_order_release);
    return (int)i;
}

static int series_id(const char *plugin, const char *name, const char *labels, int kind)
{
    uint32_t h = key_hash(plugin, name, labels, kind);
    for (unsigned k = 0; k < SCACHE; k++) {
        unsigned pos = (h + k) % SCACHE;
        if (scache[pos].id == 0) {
            int id = series_claim(plugin, name, labels, kind);
            if (id >= 0)
                scache[pos] = (struct scache_ent){ h, id + 1 };
            return id;
        }
        if (scache[pos].hash == h &&
            series_is((uint32_t)scache[pos].id - 1, plugin, name, labels, kind))
            return scache[pos].id - 1;
    }
    return series_claim(plugin, name, labels, kind);
}

int stats_custom(const char *plugin, const char *name, const char *labels,
                 int kind, double value)
{
    if (!my_slot)
        return 0;
    if (strlen(plugin) >= STATS_NAME || strlen(name) >= STATS_METRIC ||
        strlen(labels) >= STATS_LABELS)
        return -1;
    int id = series_id(plugin, name, labels, kind);
    if (id < 0)
        return -1;
    bump(&my_slot->ser_count[id], kind == STATS_COUNTER ? (uint64_t)value : 1);
    if (kind == STATS_SUMMARY)
        add_double(&my_slot->ser_sum[id], value);
    return 0;
}

/* ------------------------------------------------------- snapshots */

static uint64_t slot_denials(struct stats_slot *sl, int p)
{
    uint64_t n = 0;
    for (int h = 0; h < STATS_HOOKS; h++)
        if (h != STATS_HOOK_DENY)
            for (int a = STATS_DENY; a <= STATS_DISCONNECT; a++)
                n += rd(&sl->hook[p][h][a]);
    return n;
}

void stats_region_totals(uint64_t msgs[STATS_OUTCOMES], uint64_t deny[STATS_PLUGINS])
{
    uint32_t np = stats_region_nplug();
    memset(msgs, 0, STATS_OUTCOMES * sizeof *msgs);
    memset(deny, 0, STATS_PLUGINS * sizeof *deny);
    for (uint32_t w = 0; w < stats_r->nslots; w++) {
        struct stats_slot *sl = &stats_r->slot[w];
        if (!stats_region_slot_used(w))
            continue;
        for (int o = 0; o < STATS_OUTCOMES; o++)
            for (int i = 0; i < 4; i++)
                msgs[o] += rd(&sl->msgs[o][i >> 1][i & 1]);
        for (uint32_t p = 0; p < np; p++)
            deny[p] += slot_denials(sl, (int)p);
    }
}

int stats_snap_plugin(const struct stats_snap *s, const char *name)
{
    for (size_t i = 0; i < s->nplug; i++)
        if (!strcmp(s->names[i], name))
            return (int)i;
    return -1;
}

static void sum_array(uint64_t *dst, stats_ctr *src, int n)
{
    for (int i = 0; i < n; i++)
        dst[i] += rd(&src[i]);
}

/* Region plugin p's counters of one slot into snapshot row i. */
static void snap_plugin(struct stats_snap *s, size_t i, struct stats_slot *sl, int p)
{
    for (int h = 0; h < STATS_HOOKS; h++)
        sum_array(s->hook[i][h], sl->hook[p][h], STATS_ANSWERS);
    sum_array(s->lat[i], sl->lat[p], STATS_LAT_BUCKETS);
    s->lat_sum[i] += (double)rd(&sl->lat_ns[p]) / 1e9;
}

static void snap_slot(struct stats_snap *s, struct stats_slot *sl)
{
    sum_array(&s->msgs[0][0][0], &sl->msgs[0][0][0], STATS_OUTCOMES * 4);
    sum_array(s->rcpts, sl->rcpts, STATS_OUTCOMES);
    sum_array(s->conns, sl->conns, STATS_OUTCOMES);
    s->conn_tls += rd(&sl->conn_tls);
    s->conn_auth += rd(&sl->conn_auth);
    s->conn_refused += rd(&sl->conn_refused);
    s->open += atomic_load(&sl->open);
    sum_array(s->size, sl->size, STATS_SIZE_BUCKETS);
    s->size_sum += (double)rd(&sl->size_sum);
    sum_array(s->dns, sl->dns, STATS_LAT_BUCKETS);
    sum_array(s->down, sl->down, STATS_LAT_BUCKETS);
    s->dns_sum += (double)rd(&sl->dns_ns) / 1e9;
    s->down_sum += (double)rd(&sl->down_ns) / 1e9;
    s->reloads_ok += rd(&sl->reloads_ok);
    s->reloads_failed += rd(&sl->reloads_failed);
    time_t lr = (time_t)atomic_load(&sl->last_reload);
    if (lr > s->last_reload)
        s->last_reload = lr;
    for (size_t i = 0; i < STATS_PLUGINS; i++)
        if (s->idmap[i] >= 0)
            snap_plugin(s, (size_t)s->idmap[i], sl, (int)i);
    for (size_t i = 0; i < s->nseries; i++) {
        s->series[i].count += rd(&sl->ser_count[i]);
        s->series[i].sum += as_double(rd(&sl->ser_sum[i]));
    }
}

/* Names, merged: idmap[region index] = snapshot index. */
static void snap_names(struct stats_snap *s)
{
    uint32_t n = stats_region_nplug();
    for (uint32_t i = 0; i < STATS_PLUGINS; i++)
        s->idmap[i] = -1;
    for (uint32_t i = 0; i < n; i++) {
        if (!atomic_load_explicit(&stats_r->plug[i].ready, memory_order_acquire))
            continue;
        int at = stats_snap_plugin(s, stats_r->plug[i].name);
        if (at < 0) {
            at = (int)s->nplug++;
            memcpy(s->names[at], stats_r->plug[i].name, STATS_NAME);
            s->names[at][STATS_NAME - 1] = '\0';
        }
        s->idmap[i] = at;
    }
}

static void snap_series(struct stats_snap *s)
{
    uint32_t n = atomic_load(&stats_r->nseries);
    s->nseries = n < STATS_SERIES ? n : STATS_SERIES;
    for (size_t i = 0; i < s->nseries; i++) {
        const struct stats_sname *e = &stats_r->series[i];
        struct stats_series *d = &s->series[i];
        if (!atomic_load_explicit(&e->ready, memory_order_acquire))
            continue;                   /* kind 0: skipped by renderers */
        memcpy(d->plugin, e->plugin, sizeof d->plugin);
        memcpy(d->name, e->name, sizeof d->name);
        memcpy(d->labels, e->labels, sizeof d->labels);
        d->kind = e->kind;
    }
}

/* The slots a worker was ever started in, in slot order. */
static void snap_workers(struct stats_snap *s)
{
    s->configured = atomic_load(&stats_r->configured);
    for (unsigned w = 0; w < stats_r->nslots; w++) {
        if (!(atomic_load(&stats_r->use[w]) & STATS_USE_WORKER))
            continue;
        struct stats_slot *sl = &stats_r->slot[w];
        struct stats_worker *d = &s->workers[s->nworkers++];
        d->slot = w;
        d->pid = (pid_t)atomic_load(&sl->pid);
        s->running += d->pid != 0;
        d->generation = atomic_load(&sl->generation);
        d->open = atomic_load(&sl->open);
        uint64_t starts = rd(&sl->starts);
        d->restarts = starts ? starts - 1 : 0;
    }
}

struct stats_snap *stats_snapshot(void)
{
    if (!stats_r)
        return NULL;
    struct stats_snap *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->names = calloc(STATS_PLUGINS, sizeof *s->names);
    s->hook = calloc(STATS_PLUGINS, sizeof *s->hook);
    s->lat = calloc(STATS_PLUGINS, sizeof *s->lat);
    s->lat_sum = calloc(STATS_PLUGINS, sizeof *s->lat_sum);
    s->series = calloc(STATS_SERIES, sizeof *s->series);
    s->workers = calloc(stats_r->nslots, sizeof *s->workers);
    if (!s->names || !s->hook || !s->lat || !s->lat_sum || !s->series || !s->workers) {
        stats_snap_free(s);
        return NULL;
    }
    s->now = time(NULL);
    s->started = (time_t)stats_r->started;
    snap_names(s);
    snap_series(s);
    snap_workers(s);
    for (uint32_t w = 0; w < stats_r->nslots; w++)
        if (stats_region_slot_used(w))
            snap_slot(s, &stats_r->slot[w]);
    return s;
}

void stats_snap_free(struct stats_snap *s)
{
    if (!s)
        return;
    free(s->names);
    free(s->hook);
    free(s->lat);
    free(s->lat_sum);
    free(s->series);
    free(s->workers);
    free(s);
}

uint64_t stats_snap_denials(const struct stats_snap *s, size_t p)
{
    uint64_t n = 0;
    for (int h = 0; h < STATS_HOOKS; h++)
        if (h != STATS_HOOK_DENY)
            for (int a = STATS_DENY; a <= STATS_DISCONNECT; a++)
                n += s->hook[p][h][a];
    return n;
}

double stats_quantile(const uint64_t *b, double q)
{
    uint64_t total = 0;
    for (int i = 0; i < STATS_LAT_BUCKETS; i++)
        total += b[i];
    if (!total)
        return 0;
    double rank = q * (double)total, seen = 0;
    for (int i = 0; i < STATS_LAT_BUCKETS; i++) {
        if (seen + (double)b[i] >= rank && b[i]) {
            double lo = i ? stats_lat_bound(i - 1) : 0;
            if (i == STATS_LAT_BUCKETS - 1)
                return lo;              /* +Inf: the last finite bound */
            return lo + (stats_lat_bound(i) - lo) * (rank - seen) / (double)b[i];
        }
        seen += (double)b[i];
    }
    return stats_lat_bound(STATS_LAT_BUCKETS - 2);
}
