/* Unit tests for the shared counter region (src/core/shmcount.c): gauges
 * with a max, per-owner release, sliding windows, full buckets, and
 * several processes at once, one of them killed while it counts. */
#include "core/shmcount.h"
#include "tap.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define K(s) (s), sizeof(s) - 1

static void test_gauges(void)
{
    unsigned n = 99;
    ok(shmcount_create(2, 1024, 1024) == 0, "create a region for 2 owners");
    is_int(shmcount_held(K("Nnet")), 0, "an unknown key holds 0");
    for (int i = 0; i < 5; i++)
        shmcount_hold(K("Nnet"), 5, &n);
    is_int(n, 5, "5 holds: total 5");
    is_int(shmcount_hold(K("Nnet"), 5, &n), SHMCOUNT_OVER, "a 6th with max 5: over");
    is_int(n, 5, "  and the count that stopped it");
    is_int(shmcount_hold(K("Nnet"), 0, &n), SHMCOUNT_OK, "max 0: no limit");
    shmcount_drop(K("Nnet"));
    shmcount_drop(K("Nnet"));
    is_int(shmcount_held(K("Nnet")), 4, "two drops: 4");
    shmcount_attach(1);
    shmcount_drop(K("Nnet"));
    is_int(shmcount_held(K("Nnet")), 4, "a drop by an owner that holds nothing changes nothing");
    shmcount_hold(K("Nnet"), 0, NULL);
    shmcount_hold("", 0, 0, NULL);
    is_int(shmcount_held(K("Nnet")), 5, "owner 1 holds one more");
    shmcount_release_owner(0);
    is_int(shmcount_held(K("Nnet")), 1, "owner 0 released: only owner 1's hold is left");
    is_int(shmcount_held("", 0), 1, "the global gauge too");
    shmcount_drop(K("Nnet"));
    shmcount_drop("", 0);
    struct shmcount_stats st;
    shmcount_stats(&st);
    is_int(st.gauges, 0, "a gauge back at 0 is freed");
    is_int(shmcount_held("", 0), 0, "the global gauge is kept at 0");
    char big[SHMCOUNT_KEY_MAX + 1] = { 0 };
    is_int(shmcount_hold(big, sizeof big, 0, NULL), SHMCOUNT_ERROR, "a key too long: error");
    shmcount_destroy();
    is_int(shmcount_hold(K("Nnet"), 0, NULL), SHMCOUNT_ERROR, "no region: error");
    ok(!shmcount_ready(), "no region after destroy");
}

static void test_full_gauges(void)
{
    char key[16];
    int okn = 0;
    shmcount_create(1, SHMCOUNT_WAYS, SHMCOUNT_WAYS);   /* one bucket each */
    for (int i = 0; i < SHMCOUNT_WAYS; i++) {
        snprintf(key, sizeof key, "N%d", i);
        okn += shmcount_hold(key, strlen(key), 0, NULL) == SHMCOUNT_OK;
    }
    is_int(okn, SHMCOUNT_WAYS, "a bucket takes %d keys", SHMCOUNT_WAYS);
    is_int(shmcount_hold(K("Nmore"), 0, NULL), SHMCOUNT_FULL, "one more: full");
    is_int(shmcount_hold(K("N3"), 0, NULL), SHMCOUNT_OK, "a key already there still counts");
    is_int(shmcount_hold("", 0, 1, NULL), SHMCOUNT_OK, "the global gauge never runs out of room");
    shmcount_drop(K("N0"));
    is_int(shmcount_hold(K("Nmore"), 0, NULL), SHMCOUNT_OK, "room again once a key is at 0");
    struct shmcount_stats st;
    shmcount_stats(&st);
    is_int(st.full, 1, "refusals are counted");
    shmcount_destroy();
}

static void test_windows(void)
{
    shmcount_create(1, 1024, 1024);
    for (int i = 0; i < 5; i++)
        shmcount_add(K("Arate"), 1, 60, 1000.0 + i);
    is_int(shmcount_count(K("Arate"), 1004.5), 5, "5 events in a minute");
    is_int(shmcount_add(K("Arate"), 2, 60, 1010), 7, "add returns the count with its own");
    is_int(shmcount_count(K("Arate"), 1059.9), 7, "all still counted just short of 60 s");
    is_int(shmcount_count(K("Arate"), 1063.0), 7, "an event 60 s old still counts");
    is_int(shmcount_count(K("Arate"), 1068.1), 2, "at most window/15 after it, it is gone");
    is_int(shmcount_count(K("Arate"), 1074.1), 0, "all gone");
    is_int(shmcount_add(K("Arate"), 1, 60, 2000), 1, "a long pause: counting from 1");
    is_int(shmcount_add(K("Arate"), 1, 30, 2000), 1, "another window: the key starts again");
    is_int(shmcount_count(K("Anone"), 2000), 0, "an unknown key counts 0");
    is_int(shmcount_add(K("Lplain"), 3, 0, 1), 3, "a counter without a window");
    is_int(shmcount_add(K("Lplain"), 4, 0, 999999), 7, "  never forgets");
    is_int(shmcount_count(K("Lplain"), 5e6), 7, "  and get reads it");
    ok(shmcount_add("", 0, 1, 60, 1) == ~0ULL, "the empty key is not a window");
    ok(shmcount_add(K("Lneg"), 1, -1, 1) == ~0ULL, "a negative window is an error");
    shmcount_destroy();
}

static void test_eviction(void)
{
    char key[16];
    shmcount_create(1, SHMCOUNT_WAYS, SHMCOUNT_WAYS);
    for (int i = 0; i < SHMCOUNT_WAYS; i++) {
        snprintf(key, sizeof key, "L%d", i);
        shmcount_add(key, strlen(key), 1, 0, 100.0 + i);
    }
    shmcount_add(K("L0"), 1, 0, 200);                  /* L1 is now the oldest */
    shmcount_add(K("Lnew"), 1, 0, 201);
    struct shmcount_stats st;
    shmcount_stats(&st);
    is_int(st.evictions, 1, "a full bucket forgets one entry");
    is_int(shmcount_count(K("L1"), 202), 0, "the one updated longest ago");
    is_int(shmcount_count(K("L0"), 202), 2, "a recently updated one survives");
    is_int(shmcount_count(K("Lnew"), 202), 1, "the new key is counted");
    shmcount_add(K("Wwin"), 1, 1, 300);                /* expires after 1.07 s */
    for (int i = 0; i < SHMCOUNT_WAYS; i++) {
        snprintf(key, sizeof key, "L%d", i);
        shmcount_add(key, strlen(key), 1, 0, 302);
    }
    is_int(shmcount_count(K("L1"), 303), 1, "an expired window makes room before any live entry");
    shmcount_destroy();
}

/* ---------------------------------------------------- several processes */

/* 8 processes race for 50 holds of one key: exactly 50 succeed. */
static void test_race(void)
{
    enum { PROCS = 8, TRIES = 100, MAX = 50 };
    int fail = 0, got = 0;
    shmcount_create(PROCS + 1, 1024, 1024);
    for (int p = 0; p < PROCS; p++) {
        if (fork() == 0) {
            shmcount_attach((unsigned)p + 1);
            int mine = 0;
            for (int i = 0; i < TRIES; i++)
                mine += shmcount_hold(K("Nhot"), MAX, NULL) == SHMCOUNT_OK;
            for (int i = 0; i < 20000; i++) {      /* and churn another key */
                shmcount_hold(K("Nchurn"), 0, NULL);
                shmcount_drop(K("Nchurn"));
                shmcount_add(K("Arace"), 1, 0, 1);
            }
            _exit(mine);
        }
    }
    for (int i = 0; i < PROCS; i++) {
        int st;
        if (wait(&st) < 0 || !WIFEXITED(st))
            fail++;
        else
            got += WEXITSTATUS(st);
    }
    is_int(fail, 0, "%d processes ran", PROCS);
    is_int(got, MAX, "exactly %d holds granted across %d processes", MAX, PROCS);
    is_int(shmcount_held(K("Nhot")), MAX, "the total is %d", MAX);
    is_int(shmcount_held(K("Nchurn")), 0, "hold/drop pairs from every process cancel out");
    is_int(shmcount_count(K("Arace"), 2), PROCS * 20000, "no window update lost");
    for (int p = 0; p < PROCS; p++)
        shmcount_release_owner((unsigned)p + 1);
    is_int(shmcount_held(K("Nhot")), 0, "their holds given back once they are gone");
    shmcount_destroy();
}

/* A worker killed with SIGKILL in the middle of counting, over and over:
 * nobody deadlocks, and once its holds are released the totals are exact. */
static void test_killed(void)
{
    int stuck = 0, wrong = 0;
    struct shmcount_stats st;
    shmcount_create(2, 1024, 1024);
    alarm(60);                                   /* a deadlock fails the test */
    for (int round = 0; round < 40; round++) {
        pid_t pid = fork();
        if (pid == 0) {
            shmcount_attach(1);
            for (;;) {
                shmcount_hold(K("Nkill"), 0, NULL);
                shmcount_hold("", 0, 0, NULL);
                shmcount_drop(K("Nkill"));
                shmcount_drop("", 0);
            }
        }
        struct timespec ts = { 0, 200000 + (round % 7) * 150000 };
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        if (shmcount_hold(K("Nkill"), 0, NULL) != SHMCOUNT_OK)
            stuck++;
        shmcount_release_owner(1);
        if (shmcount_held(K("Nkill")) != 1 || shmcount_held("", 0) != 0)
            wrong++;
        shmcount_drop(K("Nkill"));
    }
    alarm(0);
    shmcount_stats(&st);
    is_int(stuck, 0, "40 kills: every later hold worked");
    is_int(wrong, 0, "40 kills: totals exact after each release");
    ok(st.repairs > 0, "some kills landed inside a bucket's lock (%llu repaired)", st.repairs);
    is_int(shmcount_held(K("Nkill")), 0, "nothing left held");
    shmcount_destroy();
}

int main(void)
{
    test_gauges();
    test_full_gauges();
    test_windows();
    test_eviction();
    test_race();
    test_killed();
    return done_testing();
}
