/* tap.h — a minimal TAP producer for the C unit tests (run by prove). */
#ifndef KASI_TAP_H
#define KASI_TAP_H
#include <stdio.h>
#include <string.h>

static int tap_n, tap_failed;

#define ok(cond, ...) do { \
    int ok_c_ = !!(cond); tap_n++; if (!ok_c_) tap_failed++; \
    printf("%sok %d - ", ok_c_ ? "" : "not ", tap_n); printf(__VA_ARGS__); \
    printf("\n"); \
    if (!ok_c_) printf("#   failed at %s:%d\n", __FILE__, __LINE__); \
} while (0)

#define is_int(got, want, ...) do { long long g_ = (got), w_ = (want); \
    ok(g_ == w_, __VA_ARGS__); if (g_ != w_) printf("#   got %lld, want %lld\n", g_, w_); } while (0)

#define is_str(got, want, ...) do { const char *g_ = (got), *w_ = (want); \
    int e_ = (g_ && w_) ? strcmp(g_, w_) == 0 : g_ == w_; ok(e_, __VA_ARGS__); \
    if (!e_) printf("#   got '%s', want '%s'\n", g_ ? g_ : "(null)", w_ ? w_ : "(null)"); } while (0)

#define done_testing() (printf("1..%d\n", tap_n), tap_failed ? 1 : 0)

#endif
