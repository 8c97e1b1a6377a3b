/* fuzz.h — what the fuzz targets in fuzz/ share: a check that aborts with
 * a message (so libFuzzer keeps the input as a crash), and a small
 * deterministic generator that turns input bytes into chunk sizes. */
#ifndef KASI_FUZZ_H
#define KASI_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define FUZZ_CHECK(cond) do { \
    if (!(cond)) { \
        fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
        abort(); \
    } \
} while (0)

/* xorshift64*: the same seed gives the same sequence. */
struct fuzz_rng { uint64_t s; };

static inline void fuzz_rng_seed(struct fuzz_rng *r, const uint8_t *p, size_t n)
{
    r->s = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < n; i++)
        r->s = (r->s ^ p[i]) * 0x100000001B3ull;
    if (!r->s)
        r->s = 1;
}

static inline uint64_t fuzz_rng_next(struct fuzz_rng *r)
{
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * 0x2545F4914F6CDD1Dull;
}

/* A number in [0, n). */
static inline size_t fuzz_rng_below(struct fuzz_rng *r, size_t n)
{
    return n ? (size_t)(fuzz_rng_next(r) % n) : 0;
}

#endif
