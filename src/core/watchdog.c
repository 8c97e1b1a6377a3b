/* watchdog.c — the shared table of worker slots (see watchdog.h): one
 * anonymous shared mapping made by the supervisor before it forks, so
 * every worker inherits it. */
#include "core/watchdog.h"
#include "core/clock.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define WATCHDOG_ERRLEN 1536

struct watchdog_slot {
    int used;                        /* written by the supervisor only */
    _Atomic long long deadline_ms;   /* 0: not inside plugin code */
    _Atomic int state;
    _Atomic unsigned sessions;
    char error[WATCHDOG_ERRLEN];     /* written once, before the worker exits */
};

static struct watchdog_slot *wd_table;
static struct watchdog_slot *wd_mine;    /* a worker's own slot */

static long long now_ms(void)
{
    return (long long)(clock_now() * 1000);
}

int watchdog_setup(void)
{
    size_t len = WATCHDOG_SLOTS * sizeof *wd_table;
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return -1;
    memset(p, 0, len);
    wd_table = p;
    return 0;
}

/* ------------------------------------------------------- worker side */

void watchdog_attach(int slot)
{
    wd_mine = wd_table && slot >= 0 && slot < WATCHDOG_SLOTS ? &wd_table[slot] : NULL;
}

void watchdog_enter(double budget)
{
    if (wd_mine)
        atomic_store(&wd_mine->deadline_ms, now_ms() + (long long)(budget * 1000));
}

void watchdog_leave(void)
{
    if (wd_mine)
        atomic_store(&wd_mine->deadline_ms, 0);
}

void watchdog_set_state(enum watchdog_state st)
{
    if (wd_mine)
        atomic_store(&wd_mine->state, (int)st);
}

void watchdog_set_sessions(unsigned n)
{
    if (wd_mine)
        atomic_store(&wd_mine->sessions, n);
}

void watchdog_set_error(const char *msg)
{
    if (wd_mine)
        snprintf(wd_mine->error, sizeof wd_mine->error, "%s", msg);
}

/* --------------------------------------------------- supervisor side */

static void watchdog_slot_reset(struct watchdog_slot *s)
{
    s->used = 1;
    atomic_store(&s->deadline_ms, 0);
    atomic_store(&s->state, WD_STARTING);
    atomic_store(&s->sessions, 0);
    s->error[0] = '\0';
}

int watchdog_slot_take(int prefer)
{
    if (!wd_table)
        return -1;
    if (prefer >= 0 && prefer < WATCHDOG_SLOTS && !wd_table[prefer].used) {
        watchdog_slot_reset(&wd_table[prefer]);
        return prefer;
    }
    for (int i = 0; i < WATCHDOG_SLOTS; i++) {
        if (!wd_table[i].used) {
            watchdog_slot_reset(&wd_table[i]);
            return i;
        }
    }
    return -1;
}

void watchdog_slot_free(int slot)
{
    if (wd_table && slot >= 0 && slot < WATCHDOG_SLOTS)
        wd_table[slot].used = 0;
}

double watchdog_overdue(int slot)
{
    if (!wd_table || slot < 0 || slot >= WATCHDOG_SLOTS)
        return 0;
    long long d = atomic_load(&wd_table[slot].deadline_ms);
    long long n = now_ms();
    return (d && n > d) ? (double)(n - d) / 1000.0 : 0;
}

enum watchdog_state watchdog_state(int slot)
{
    if (!wd_table || slot < 0 || slot >= WATCHDOG_SLOTS)
        return WD_STARTING;
    return (enum watchdog_state)atomic_load(&wd_table[slot].state);
}

unsigned watchdog_sessions(int slot)
{
    if (!wd_table || slot < 0 || slot >= WATCHDOG_SLOTS)
        return 0;
    return atomic_load(&wd_table[slot].sessions);
}

const char *watchdog_error(int slot)
{
    if (!wd_table || slot < 0 || slot >= WATCHDOG_SLOTS)
        return "";
    /* the worker has exited when this is read: the text is complete */
    wd_table[slot].error[WATCHDOG_ERRLEN - 1] = '\0';
    return wd_table[slot].error;
}
