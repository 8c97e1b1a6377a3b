/* guard.c — one timer per session for all of its deadlines (see guard.h). */
#include "smtp/guard.h"
#include "core/clock.h"

#include <event2/event.h>

/* The earliest limit and its time (GUARD_NONE: nothing runs). A backed-up
 * output replaces the idle clock: the client is not expected to send while
 * it does not read. */
static enum guard_why guard_next(const struct guard *g, double *at)
{
    enum guard_why why = GUARD_NONE;
    double t = 0;
    if (g->deadline) {
        t = g->deadline;
        why = g->deadline_why;
    }
    double c = g->stalled_since ? g->stalled_since + g->stall
             : g->idle ? g->last_in + g->idle : 0;
    if (c && (!why || c < t)) {
        t = c;
        why = g->stalled_since ? GUARD_STALLED : GUARD_IDLE;
    }
    if (g->rate_since && g->rate > 0) {
        c = g->rate_since + g->grace + (double)g->rate_bytes / g->rate;
        if (!why || c < t) {
            t = c;
            why = GUARD_DATA_RATE;
        }
    }
    *at = t;
    return why;
}

/* Make sure the timer fires no later than the earliest limit. A later
 * limit needs nothing: the timer fires early and re-arms. */
static void guard_arm(struct guard *g)
{
    double at;
    if (guard_next(g, &at) == GUARD_NONE) {
        if (g->armed)
            event_del(g->ev);
        g->armed = 0;
        return;
    }
    if (g->armed && g->armed <= at)
        return;
    struct timeval tv = clock_tv(at - clock_now());
    event_add(g->ev, &tv);
    g->armed = at;
}

static void guard_fire(evutil_socket_t fd, short what, void *arg)
{
    struct guard *g = arg;
    double at;
    (void)fd;
    (void)what;
    g->armed = 0;
    enum guard_why why = guard_next(g, &at);
    if (why != GUARD_NONE && at <= clock_now()) {
        g->expired(g->arg, why);    /* may free the session: g is gone */
        return;
    }
    guard_arm(g);
}

int guard_init(struct guard *g, struct event_base *base, guard_expired_fn fn, void *arg)
{
    *g = (struct guard){ .expired = fn, .arg = arg };
    g->ev = evtimer_new(base, guard_fire, g);
    return g->ev ? 0 : -1;
}

void guard_free(struct guard *g)
{
    if (g->ev)
        event_free(g->ev);
    g->ev = NULL;
}

void guard_stop(struct guard *g)
{
    if (g->ev)
        event_del(g->ev);
    g->armed = g->idle = g->stalled_since = g->rate_since = g->deadline = 0;
    g->deadline_why = GUARD_NONE;
}

void guard_idle(struct guard *g, double secs)
{
    g->idle = secs;
    g->last_in = clock_now();
    guard_arm(g);
}

void guard_input(struct guard *g)
{
    g->last_in = clock_now();
}

void guard_deadline(struct guard *g, enum guard_why why, double secs)
{
    double at = clock_now() + secs;
    if (g->deadline && g->deadline <= at)
        return;
    g->deadline = at;
    g->deadline_why = why;
    guard_arm(g);
}

void guard_clear_deadline(struct guard *g, enum guard_why why)
{
    if (g->deadline_why != why)
        return;
    g->deadline = 0;
    g->deadline_why = GUARD_NONE;
}

void guard_stall(struct guard *g, double secs)
{
    if (!secs) {
        if (g->stalled_since)
            g->last_in = clock_now();   /* the idle clock starts afresh */
        g->stalled_since = 0;
        return;
    }
    if (g->stalled_since)
        return;
    g->stall = secs;
    g->stalled_since = clock_now();
    guard_arm(g);
}

void guard_rate_start(struct guard *g, double rate, double grace)
{
    g->rate = rate;
    g->grace = grace;
    g->rate_bytes = 0;
    g->rate_since = clock_now();
    guard_arm(g);
}

void guard_rate_bytes(struct guard *g, size_t n)
{
    g->rate_bytes += n;
}

void guard_rate_stop(struct guard *g)
{
    g->rate_since = 0;
}
