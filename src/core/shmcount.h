/* shmcount.h — counters shared by every process of one kasi: the
 * connection counts behind limits.max_connections and the per-network
 * limit, AUTH failures per network, and the plugins' kasi.counter.
 *
 * Why shared memory and not a counter service (Postfix's anvil): the
 * per-network check runs in the accept callback, before a session exists,
 * and must answer at once; a lookup here is a hash and a mutex, with no
 * round trip, no extra process to supervise and nothing to reconnect.
 * The region is mmap'ed (MAP_SHARED | MAP_ANONYMOUS) by the supervisor
 * before it forks the first worker, so it outlives worker restarts and
 * reloads; it ends with the supervisor.
 *
 * Two fixed-size tables of buckets, each bucket a process-shared robust
 * mutex over SHMCOUNT_WAYS entries, keys hashed with a seed drawn at
 * creation (a client cannot aim its keys at one bucket):
 *
 *   gauges   values that go up and come down: "this many connections are
 *            open". Each entry keeps, besides its total, how much every
 *            owner (a worker process, numbered by the supervisor) holds,
 *            so when a worker dies the supervisor gives its holds back
 *            (shmcount_release_owner) and the totals stay exact. The
 *            global connection count is a gauge with the empty key, in a
 *            bucket of its own that never fills. A gauge whose total is 0
 *            is freed. When a new key finds its bucket full (every entry
 *            held), shmcount_hold answers SHMCOUNT_FULL; the table has 8
 *            entries per allowed connection, so that means hash bad luck,
 *            and the caller refuses the client with a temporary error.
 *   windows  counts of events in a sliding window (rates, AUTH failures)
 *            and counters without a window. They belong to no process and
 *            survive any worker's death. When a new key finds its bucket
 *            full, the entry updated longest ago is forgotten (an expired
 *            window first; shmcount_stats counts evictions).
 *
 * A worker killed while holding a bucket's mutex leaves it to the next
 * process that locks it (EOWNERDEAD), which recomputes the bucket's gauge
 * totals from the per-owner holds and goes on.
 *
 * Keys are byte strings of 1..SHMCOUNT_KEY_MAX bytes (the empty key is
 * the global gauge); callers keep their own namespaces by a first byte:
 * 'N' per-network connections, 'A' AUTH failures, 'L' plugins' keys.
 *
 * Who calls: main.c creates the region (supervisor, before fork) and
 * releases a dead worker's holds; a worker calls shmcount_attach once
 * after fork; smtp/server.c, smtp/session.c and lua/lua_counter.c count.
 * Time is monotonic seconds (core/clock), passed in so tests control it. */
#ifndef KASI_SHMCOUNT_H
#define KASI_SHMCOUNT_H

#include <stddef.h>
#include <stdint.h>

#define SHMCOUNT_KEY_MAX 80
#define SHMCOUNT_WAYS 16
#define SHMCOUNT_OWNERS_MAX 256
#define SHMCOUNT_STEPS 16       /* a window is counted in 16 steps */

enum shmcount_rc {
    SHMCOUNT_OK = 0,
    SHMCOUNT_OVER,              /* at its max: not held */
    SHMCOUNT_FULL,              /* no room for a new gauge */
    SHMCOUNT_ERROR              /* no region, bad key, lock failure */
};

struct shmcount_stats {
    size_t gauges, windows;     /* entries in use */
    size_t gauge_slots, window_slots;
    unsigned long long evictions;   /* windows forgotten to make room */
    unsigned long long full;        /* holds refused for want of room */
    unsigned long long repairs;     /* buckets taken over from a dead holder */
};

/* Map a region for `owners` processes (1..SHMCOUNT_OWNERS_MAX) with room
 * for at least `gauges` and `windows` entries (rounded up to a power of
 * two, at least SHMCOUNT_WAYS each). The caller is owner 0 until it calls
 * shmcount_attach. 0, or -1 with errno (mmap, mutex set-up). */
int shmcount_create(unsigned owners, size_t gauges, size_t windows);
/* Unmap (supervisor exit, tests). */
void shmcount_destroy(void);
/* 1 when a region exists in this process. */
int shmcount_ready(void);

/* After fork: this process holds gauges as owner (< owners). */
void shmcount_attach(unsigned owner);
/* Supervisor, once the owner's process is gone: drop everything it held. */
void shmcount_release_owner(unsigned owner);

/* ---- gauges */

/* Hold key once more unless its total is already max or more (max 0: no
 * limit). *count (may be NULL): the total after the hold, or the total
 * that stopped it. */
enum shmcount_rc shmcount_hold(const void *key, size_t klen, unsigned max,
                               unsigned *count);
/* Give back one hold of key by this owner (none held: nothing happens). */
void shmcount_drop(const void *key, size_t klen);
/* The total held, all owners together. */
unsigned shmcount_held(const void *key, size_t klen);

/* ---- windows */

/* Add n events to key now and return the events of the last `window`
 * seconds, these included. An event counts for at least `window` seconds
 * and is forgotten at most window / 15 later (steps of window / 15).
 * window 0: a counter without expiry. A key met with another window
 * starts again from 0. ~0ULL on error (no region, bad key). */
unsigned long long shmcount_add(const void *key, size_t klen, unsigned n,
                                double window, double now);
/* The count shmcount_add would return for n = 0, without creating key. */
unsigned long long shmcount_count(const void *key, size_t klen, double now);

void shmcount_stats(struct shmcount_stats *st);

#endif
