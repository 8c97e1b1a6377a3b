/* watchdog.h — lets a supervising process see that the worker is stuck in
 * plugin code. The worker marks when it enters and leaves Lua; the
 * supervisor (main.c) kills and restarts a worker that stays inside longer
 * than the budget plus a grace period. Clients of a killed worker never got
 * their 250, so nothing is lost. Without a supervisor these are no-ops. */
#ifndef KASI_WATCHDOG_H
#define KASI_WATCHDOG_H

/* Before running plugin code that may not come back: budget in seconds. */
void watchdog_enter(double budget);
/* Plugin code returned (finished or yielded). */
void watchdog_leave(void);

/* Supervisor side. */
int watchdog_setup(void);            /* shared page; before fork */
void watchdog_reset(void);           /* for a new worker */
/* Seconds the worker has been over its budget, 0 when fine. */
double watchdog_overdue(void);

#endif
