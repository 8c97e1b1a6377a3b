/* clock.c — see clock.h. */
#include "core/clock.h"

#include <math.h>
#include <time.h>

double clock_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct timeval clock_tv(double secs)
{
    if (!(secs > 0))
        secs = 0;
    double whole = floor(secs);
    long usec = (long)ceil((secs - whole) * 1e6);
    struct timeval tv = { (time_t)whole, (suseconds_t)usec };
    if (tv.tv_usec >= 1000000) {
        tv.tv_sec++;
        tv.tv_usec -= 1000000;
    }
    return tv;
}
