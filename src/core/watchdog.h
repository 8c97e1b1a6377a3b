/* watchdog.h — a table of worker slots in memory shared between the
 * supervisor (src/supervisor.c) and its worker processes. Each worker
 * owns one slot: it marks when it enters and leaves plugin code, what it
 * is doing (starting, ready, serving, draining), how many sessions it has
 * open and, when it cannot start, why. The supervisor reads the slots to
 * kill a worker stuck in plugin code past its budget, to learn that a new
 * generation's workers are ready, and for `kasi status`. Clients of a
 * killed worker never got their 250, so nothing is lost. Without a
 * supervisor (no watchdog_setup) every call is a no-op. */
#ifndef KASI_WATCHDOG_H
#define KASI_WATCHDOG_H

#define WATCHDOG_SLOTS 160      /* workers alive at once, all generations */

enum watchdog_state {
    WD_STARTING = 0,            /* loading plugins */
    WD_READY,                   /* loaded, waiting for the go to accept */
    WD_SERVING,                 /* accepting connections */
    WD_DRAINING,                /* no longer accepting, finishing sessions */
};

/* Worker side. Before running plugin code that may not come back: budget
 * in seconds. */
void watchdog_enter(double budget);
/* Plugin code returned (finished or yielded). */
void watchdog_leave(void);
/* After fork: this process reports in slot. */
void watchdog_attach(int slot);
void watchdog_set_state(enum watchdog_state st);
void watchdog_set_sessions(unsigned n);
/* Why the worker could not start (kept for the supervisor's log). */
void watchdog_set_error(const char *msg);

/* Supervisor side. */
int watchdog_setup(void);            /* the shared table; before any fork */
/* A free slot, reset: `prefer` when it is free (a restarted worker keeps
 * the slot of the one it replaces), else the lowest; -1 when none. */
int watchdog_slot_take(int prefer);
void watchdog_slot_free(int slot);
/* Seconds the slot's worker has been over its budget, 0 when fine. */
double watchdog_overdue(int slot);
enum watchdog_state watchdog_state(int slot);
unsigned watchdog_sessions(int slot);
/* The start error a worker left, "" when none. */
const char *watchdog_error(int slot);

#endif
