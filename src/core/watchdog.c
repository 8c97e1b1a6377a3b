/* watchdog.c — a shared page where the worker marks "inside plugin code
 * until <deadline>", read by the supervisor (see watchdog.h). */
#include "core/watchdog.h"
#include "core/clock.h"

#include <stdatomic.h>
#include <stddef.h>
#include <sys/mman.h>
#include <time.h>

struct watchdog_page {
    _Atomic long long deadline_ms;   /* 0: not inside plugin code */
};

static struct watchdog_page *wd;

static long long now_ms(void)
{
    return (long long)(clock_now() * 1000);
}

int watchdog_setup(void)
{
    void *p = mmap(NULL, sizeof *wd, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return -1;
    wd = p;
    atomic_store(&wd->deadline_ms, 0);
    return 0;
}

void watchdog_reset(void)
{
    if (wd)
        atomic_store(&wd->deadline_ms, 0);
}

void watchdog_enter(double budget)
{
    if (wd)
        atomic_store(&wd->deadline_ms, now_ms() + (long long)(budget * 1000));
}

void watchdog_leave(void)
{
    if (wd)
        atomic_store(&wd->deadline_ms, 0);
}

double watchdog_overdue(void)
{
    if (!wd)
        return 0;
    long long d = atomic_load(&wd->deadline_ms);
    long long n = now_ms();
    return (d && n > d) ? (double)(n - d) / 1000.0 : 0;
}
