/* clock.h — the one clock of kasi: monotonic seconds as a double, and the
 * conversion to the struct timeval that libevent timers and timeouts take.
 * Every deadline, budget and duration in the tree is measured with it.
 * Time is always in seconds (DESIGN: "time in seconds everywhere"). */
#ifndef KASI_CLOCK_H
#define KASI_CLOCK_H

#include <sys/time.h>

/* Monotonic seconds since an arbitrary point (CLOCK_MONOTONIC). */
double clock_now(void);

/* secs (clamped at 0) as a timeval, rounded up to the next microsecond so
 * that a timer never fires before secs have passed. */
struct timeval clock_tv(double secs);

#endif
