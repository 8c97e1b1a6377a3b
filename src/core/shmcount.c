/* shmcount.c — the shared counter region (see shmcount.h for the
 * contract).
 *
 * Layout of the mapping, each part aligned to a cache line:
 *   struct region                 seed, owners, statistics
 *   gauge buckets (nbuckets + 1)  the last one holds only the global gauge
 *   gauge entries                 struct gauge + one uint32_t per owner
 *   window buckets, window entries
 * Every process maps it at the same address (it is inherited over fork),
 * so plain pointers computed once at creation are valid everywhere.
 *
 * A bucket's hash[] holds one tag per way, 0 for a free way; the tag is
 * written last when an entry is filled in and cleared first when it is
 * freed, so a process killed half-way leaves a free way, never a
 * half-made entry. Every read or write of an entry holds its bucket's
 * mutex. */
#include "core/shmcount.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define LINE 64
#define GLOBAL_TAG 1u

struct bucket {
    pthread_mutex_t lock;
    uint32_t tag[SHMCOUNT_WAYS];        /* 0: free way */
};

struct entry {                          /* the head of both kinds */
    unsigned char key[SHMCOUNT_KEY_MAX];
    uint8_t klen;
    uint8_t pinned;                     /* the global gauge: never freed */
};

struct gauge {
    struct entry e;
    uint32_t total;                     /* = the sum of held[] */
    uint32_t held[];                    /* per owner */
};

struct window {
    struct entry e;
    uint32_t step_ms;                   /* 0: a counter without expiry */
    uint64_t head;                      /* newest step: ring[head % STEPS] */
    uint64_t used_ms;                   /* last update, for eviction */
    uint64_t total;                     /* step_ms 0: the count */
    uint32_t ring[SHMCOUNT_STEPS];
};

struct region {
    uint64_t seed;
    unsigned owners;
    _Atomic unsigned long long evictions, full, repairs;
};

struct table {
    struct bucket *b;
    unsigned char *e;
    size_t nbuckets;                    /* a power of two (gauges: + 1 global) */
    size_t stride;                      /* bytes per entry */
};

static struct region *R;
static size_t map_size;
static struct table G, W;
static unsigned me;

/* ------------------------------------------------------------ set-up */

static size_t align_up(size_t n, size_t a)
{
    return (n + a - 1) / a * a;
}

static size_t buckets_for(size_t entries)
{
    size_t n = 1;
    while (n * SHMCOUNT_WAYS < entries && n < ((size_t)1 << 40))
        n <<= 1;
    return n;
}

static int init_locks(struct bucket *b, size_t n)
{
    pthread_mutexattr_t a;
    int rc = pthread_mutexattr_init(&a);
    if (!rc)
        rc = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    if (!rc)
        rc = pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    for (size_t i = 0; !rc && i < n; i++)
        rc = pthread_mutex_init(&b[i].lock, &a);
    pthread_mutexattr_destroy(&a);
    return rc;
}

static uint64_t new_seed(void)
{
    uint64_t s;
    if (getrandom(&s, sizeof s, 0) == (ssize_t)sizeof s)
        return s;
    return (uint64_t)time(NULL) * 0x9E3779B97F4A7C15ull ^ (uint64_t)getpid();
}

static struct gauge *gauge_at(size_t bi, int way)
{
    return (struct gauge *)(void *)(G.e + (bi * SHMCOUNT_WAYS + (size_t)way) * G.stride);
}

static struct window *window_at(size_t bi, int way)
{
    return (struct window *)(void *)(W.e + (bi * SHMCOUNT_WAYS + (size_t)way) * W.stride);
}

/* Where each part goes; returns the mapping's size. */
static size_t plan(unsigned owners, size_t gauges, size_t windows, size_t off[4])
{
    G.nbuckets = buckets_for(gauges);
    W.nbuckets = buckets_for(windows);
    G.stride = align_up(sizeof(struct gauge) + owners * sizeof(uint32_t), 8);
    W.stride = align_up(sizeof(struct window), 8);
    size_t n = align_up(sizeof(struct region), LINE);
    off[0] = n;
    n = align_up(n + (G.nbuckets + 1) * sizeof(struct bucket), LINE);
    off[1] = n;
    n = align_up(n + (G.nbuckets + 1) * SHMCOUNT_WAYS * G.stride, LINE);
    off[2] = n;
    n = align_up(n + W.nbuckets * sizeof(struct bucket), LINE);
    off[3] = n;
    return n + W.nbuckets * SHMCOUNT_WAYS * W.stride;
}

int shmcount_create(unsigned owners, size_t gauges, size_t windows)
{
    size_t off[4];
    if (owners < 1 || owners > SHMCOUNT_OWNERS_MAX) {
        errno = EINVAL;
        return -1;
    }
    shmcount_destroy();
    size_t size = plan(owners, gauges, windows, off);
    unsigned char *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
                            MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
        return -1;
    G.b = (struct bucket *)(void *)(p + off[0]);
    G.e = p + off[1];
    W.b = (struct bucket *)(void *)(p + off[2]);
    W.e = p + off[3];
    int rc = init_locks(G.b, G.nbuckets + 1);
    if (!rc)
        rc = init_locks(W.b, W.nbuckets);
    if (rc) {
        munmap(p, size);
        errno = rc;
        return -1;
    }
    R = (struct region *)(void *)p;
    R->seed = new_seed();
    R->owners = owners;
    map_size = size;
    me = 0;
    gauge_at(G.nbuckets, 0)->e.pinned = 1;   /* the global gauge */
    G.b[G.nbuckets].tag[0] = GLOBAL_TAG;
    return 0;
}

void shmcount_destroy(void)
{
    if (R)
        munmap(R, map_size);
    R = NULL;
    map_size = 0;
    memset(&G, 0, sizeof G);
    memset(&W, 0, sizeof W);
}

int shmcount_ready(void)
{
    return R != NULL;
}

void shmcount_attach(unsigned owner)
{
    if (R && owner < R->owners)
        me = owner;
}

/* ------------------------------------------------------------ buckets */

static uint64_t key_hash(const void *key, size_t len)
{
    const unsigned char *k = key;
    uint64_t h = R->seed ^ (len * 0x9E3779B97F4A7C15ull);
    for (size_t i = 0; i < len; i++)
        h = (h ^ k[i]) * 0x100000001B3ull;          /* FNV-1a, seeded */
    h ^= h >> 33;                                    /* then mixed */
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    return h ^ (h >> 33);
}

/* The bucket and tag of key in t (the empty key: the global bucket). */
static size_t locate(const struct table *t, const void *key, size_t klen, uint32_t *tag)
{
    if (klen == 0) {
        *tag = GLOBAL_TAG;
        return G.nbuckets;
    }
    uint64_t h = key_hash(key, klen);
    *tag = (uint32_t)(h >> 32) ? (uint32_t)(h >> 32) : 2;
    return (size_t)h & (t->nbuckets - 1);
}

/* A gauge's total is the sum of its holds: after a holder died mid-way
 * (or its holds were taken away), recompute and free it at 0. */
static void gauge_settle(struct bucket *b, size_t bi, int way)
{
    struct gauge *g = gauge_at(bi, way);
    uint64_t sum = 0;
    for (unsigned o = 0; o < R->owners; o++)
        sum += g->held[o];
    g->total = sum > UINT32_MAX ? UINT32_MAX : (uint32_t)sum;
    if (g->total == 0 && !g->e.pinned)
        __atomic_store_n(&b->tag[way], 0, __ATOMIC_RELEASE);
}

static int lock(const struct table *t, size_t bi)
{
    struct bucket *b = &t->b[bi];
    int rc = pthread_mutex_lock(&b->lock);
    if (rc == EOWNERDEAD) {                          /* its holder died */
        for (int w = 0; t == &G && w < SHMCOUNT_WAYS; w++)
            if (b->tag[w])
                gauge_settle(b, bi, w);
        pthread_mutex_consistent(&b->lock);
        atomic_fetch_add(&R->repairs, 1);
        rc = 0;
    }
    return rc;
}

static void unlock(const struct table *t, size_t bi)
{
    pthread_mutex_unlock(&t->b[bi].lock);
}

static int find(const struct table *t, size_t bi, uint32_t tag, const void *key,
                size_t klen)
{
    const struct bucket *b = &t->b[bi];
    for (int w = 0; w < SHMCOUNT_WAYS; w++) {
        if (b->tag[w] != tag)
            continue;
        const struct entry *e = (const void *)(t->e + (bi * SHMCOUNT_WAYS + (size_t)w) *
                                                   t->stride);
        if (e->klen == klen && memcmp(e->key, key, klen) == 0)
            return w;
    }
    return -1;
}

/* Fill way w of bucket bi with key (entry zeroed), then publish its tag. */
static void claim(const struct table *t, size_t bi, int w, uint32_t tag, const void *key,
                  size_t klen)
{
    struct entry *e = (void *)(t->e + (bi * SHMCOUNT_WAYS + (size_t)w) * t->stride);
    __atomic_store_n(&t->b[bi].tag[w], 0, __ATOMIC_RELEASE);
    memset(e, 0, t->stride);
    memcpy(e->key, key, klen);
    e->klen = (uint8_t)klen;
    __atomic_store_n(&t->b[bi].tag[w], tag, __ATOMIC_RELEASE);
}

static int free_way(const struct table *t, size_t bi)
{
    for (int w = 0; w < SHMCOUNT_WAYS; w++)
        if (!t->b[bi].tag[w])
            return w;
    return -1;
}

static int key_ok(size_t klen)
{
    return R && klen <= SHMCOUNT_KEY_MAX;
}

/* ------------------------------------------------------------ gauges */

enum shmcount_rc shmcount_hold(const void *key, size_t klen, unsigned max,
                               unsigned *count)
{
    uint32_t tag;
    if (count)
        *count = 0;
    if (!key_ok(klen))
        return SHMCOUNT_ERROR;
    size_t bi = locate(&G, key, klen, &tag);
    if (lock(&G, bi))
        return SHMCOUNT_ERROR;
    int w = find(&G, bi, tag, key, klen);
    if (w < 0 && (w = free_way(&G, bi)) >= 0)
        claim(&G, bi, w, tag, key, klen);
    enum shmcount_rc rc = SHMCOUNT_FULL;
    if (w >= 0) {
        struct gauge *g = gauge_at(bi, w);
        rc = (max && g->total >= max) || g->total == UINT32_MAX ? SHMCOUNT_OVER
                                                                : SHMCOUNT_OK;
        if (rc == SHMCOUNT_OK) {
            g->held[me]++;                  /* the truth first, then the sum */
            g->total++;
        }
        if (count)
            *count = g->total;
    }
    unlock(&G, bi);
    if (rc == SHMCOUNT_FULL)
        atomic_fetch_add(&R->full, 1);
    return rc;
}

void shmcount_drop(const void *key, size_t klen)
{
    uint32_t tag;
    if (!key_ok(klen))
        return;
    size_t bi = locate(&G, key, klen, &tag);
    if (lock(&G, bi))
        return;
    int w = find(&G, bi, tag, key, klen);
    struct gauge *g = w >= 0 ? gauge_at(bi, w) : NULL;
    if (g && g->held[me]) {
        g->held[me]--;
        if (--g->total == 0 && !g->e.pinned)
            __atomic_store_n(&G.b[bi].tag[w], 0, __ATOMIC_RELEASE);
    }
    unlock(&G, bi);
}

unsigned shmcount_held(const void *key, size_t klen)
{
    uint32_t tag;
    unsigned n = 0;
    if (!key_ok(klen))
        return 0;
    size_t bi = locate(&G, key, klen, &tag);
    if (lock(&G, bi))
        return 0;
    int w = find(&G, bi, tag, key, klen);
    if (w >= 0)
        n = gauge_at(bi, w)->total;
    unlock(&G, bi);
    return n;
}

void shmcount_release_owner(unsigned owner)
{
    if (!R || owner >= R->owners)
        return;
    for (size_t bi = 0; bi <= G.nbuckets; bi++) {
        if (lock(&G, bi))
            continue;
        for (int w = 0; w < SHMCOUNT_WAYS; w++) {
            struct gauge *g = gauge_at(bi, w);
            if (G.b[bi].tag[w] && g->held[owner]) {
                g->held[owner] = 0;
                gauge_settle(&G.b[bi], bi, w);
            }
        }
        unlock(&G, bi);
    }
}

/* ------------------------------------------------------------ windows */

static uint32_t step_of(double window)
{
    if (window <= 0)
        return 0;
    if (window > 86400.0 * 366)
        window = 86400.0 * 366;
    double ms = window * 1000.0 / (SHMCOUNT_STEPS - 1);
    uint32_t step = (uint32_t)ms;
    return step < ms ? step + 1 : (step ? step : 1);
}

/* The events of the last SHMCOUNT_STEPS steps up to now. */
static unsigned long long window_sum(const struct window *x, uint64_t now_ms)
{
    if (!x->step_ms)
        return x->total;
    uint64_t now = now_ms / x->step_ms;
    uint64_t age = now > x->head ? now - x->head : 0;
    unsigned long long sum = 0;
    for (uint64_t i = 0; i + age < SHMCOUNT_STEPS; i++)
        sum += x->ring[(x->head - i) % SHMCOUNT_STEPS];
    return sum;
}

/* Move the ring's head to now, clearing the steps passed over. */
static void window_advance(struct window *x, uint64_t now_ms)
{
    uint64_t now = now_ms / x->step_ms;
    if (now <= x->head)
        return;
    uint64_t n = now - x->head < SHMCOUNT_STEPS ? now - x->head : SHMCOUNT_STEPS;
    for (uint64_t i = 1; i <= n; i++)
        x->ring[(x->head + i) % SHMCOUNT_STEPS] = 0;
    x->head = now;
}

/* A way for a new window: a free one, else one whose window is empty,
 * else the one updated longest ago (forgotten: counted in evictions). */
static int window_room(size_t bi, uint64_t now_ms)
{
    int w = free_way(&W, bi), lru = 0;
    for (int i = 0; w < 0 && i < SHMCOUNT_WAYS; i++) {
        const struct window *x = window_at(bi, i);
        if (x->step_ms && window_sum(x, now_ms) == 0)
            w = i;
        else if (x->used_ms < window_at(bi, lru)->used_ms)
            lru = i;
    }
    if (w >= 0)
        return w;
    atomic_fetch_add(&R->evictions, 1);
    return lru;
}

static struct window *window_get(size_t bi, uint32_t tag, const void *key, size_t klen,
                                 uint32_t step, uint64_t now_ms)
{
    int w = find(&W, bi, tag, key, klen);
    if (w < 0 || window_at(bi, w)->step_ms != step) {
        if (w < 0)
            w = window_room(bi, now_ms);
        claim(&W, bi, w, tag, key, klen);
        struct window *x = window_at(bi, w);
        x->step_ms = step;
        x->head = step ? now_ms / step : 0;
    }
    return window_at(bi, w);
}

unsigned long long shmcount_add(const void *key, size_t klen, unsigned n,
                                double window, double now)
{
    uint32_t tag;
    if (!key_ok(klen) || klen == 0 || !(window >= 0) || !(now >= 0))
        return ~0ULL;
    uint64_t now_ms = (uint64_t)(now * 1000.0);
    uint32_t step = step_of(window);
    size_t bi = locate(&W, key, klen, &tag);
    if (lock(&W, bi))
        return ~0ULL;
    struct window *x = window_get(bi, tag, key, klen, step, now_ms);
    if (step) {
        window_advance(x, now_ms);
        uint32_t *c = &x->ring[x->head % SHMCOUNT_STEPS];
        *c = UINT32_MAX - *c < n ? UINT32_MAX : *c + n;
    } else {
        x->total += n;
    }
    x->used_ms = now_ms;
    unsigned long long sum = window_sum(x, now_ms);
    unlock(&W, bi);
    return sum;
}

unsigned long long shmcount_count(const void *key, size_t klen, double now)
{
    uint32_t tag;
    unsigned long long sum = 0;
    if (!key_ok(klen) || klen == 0 || !(now >= 0))
        return 0;
    size_t bi = locate(&W, key, klen, &tag);
    if (lock(&W, bi))
        return 0;
    int w = find(&W, bi, tag, key, klen);
    if (w >= 0)
        sum = window_sum(window_at(bi, w), (uint64_t)(now * 1000.0));
    unlock(&W, bi);
    return sum;
}

/* ------------------------------------------------------------ statistics */

static size_t used(const struct table *t, size_t nbuckets)
{
    size_t n = 0;
    for (size_t bi = 0; bi < nbuckets; bi++)
        for (int w = 0; w < SHMCOUNT_WAYS; w++)
            n += __atomic_load_n(&t->b[bi].tag[w], __ATOMIC_RELAXED) != 0;
    return n;
}

void shmcount_stats(struct shmcount_stats *st)
{
    memset(st, 0, sizeof *st);
    if (!R)
        return;
    st->gauges = used(&G, G.nbuckets);           /* the global gauge not counted */
    st->windows = used(&W, W.nbuckets);
    st->gauge_slots = G.nbuckets * SHMCOUNT_WAYS;
    st->window_slots = W.nbuckets * SHMCOUNT_WAYS;
    st->evictions = atomic_load(&R->evictions);
    st->full = atomic_load(&R->full);
    st->repairs = atomic_load(&R->repairs);
}
