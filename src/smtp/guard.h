/* guard.h — the deadlines of one SMTP session, on one timer.
 *
 * What bounds the time a client can hold a connection: the idle timeout
 * (no input for the command or DATA block timeout), the TLS handshake
 * deadline, the minimum data rate of a message, the output stall limit (a
 * client that does not read its replies), and the close deadline (a
 * closing session is freed whatever the peer or TLS do). session.c owns
 * one struct guard per session and tells it what happens; the guard's
 * timer calls `expired(arg, why)` for the first limit passed, never from
 * inside a guard_* call. Sessions use no bufferevent timeouts: libevent's
 * write timer misfires on TLS filters and then stops the writing side.
 *
 * Input only records a time stamp (no timer work per read): the timer
 * fires at the earliest deadline it knew of, recomputes, and re-arms. */
#ifndef KASI_GUARD_H
#define KASI_GUARD_H

#include <stddef.h>

struct event;
struct event_base;

enum guard_why {
    GUARD_NONE = 0,
    GUARD_IDLE,         /* no input for the idle limit */
    GUARD_HANDSHAKE,    /* TLS handshake not done by its deadline */
    GUARD_DATA_RATE,    /* message data slower than the minimum rate */
    GUARD_STALLED,      /* output held back for the stall limit */
    GUARD_CLOSE         /* closing for too long */
};

typedef void (*guard_expired_fn)(void *arg, enum guard_why why);

struct guard {
    struct event *ev;
    double armed;                   /* when the timer fires; 0: not armed */
    double idle, last_in;           /* idle limit (0: off), last input */
    double stall, stalled_since;    /* stall limit, when output backed up (0: not) */
    double rate, grace, rate_since; /* data phase: bytes/s, free seconds, start */
    unsigned long long rate_bytes;  /* bytes of the data phase so far */
    double deadline;                /* absolute deadline, 0: none */
    enum guard_why deadline_why;    /* GUARD_HANDSHAKE or GUARD_CLOSE */
    guard_expired_fn expired;
    void *arg;
};

/* 0, or -1 when the timer cannot be made. */
int guard_init(struct guard *g, struct event_base *base, guard_expired_fn fn, void *arg);
void guard_free(struct guard *g);
/* Stop every clock (the session is about to be freed). */
void guard_stop(struct guard *g);

/* (Re)start the idle clock with a limit of secs; 0 stops it. */
void guard_idle(struct guard *g, double secs);
/* Input arrived: the idle clock starts again. */
void guard_input(struct guard *g);

/* A deadline secs from now (why: GUARD_HANDSHAKE or GUARD_CLOSE). An
 * earlier deadline already set stays. */
void guard_deadline(struct guard *g, enum guard_why why, double secs);
/* Drop the deadline if it is of kind why. */
void guard_clear_deadline(struct guard *g, enum guard_why why);

/* Output backed up: the client must read within secs (0: it did). */
void guard_stall(struct guard *g, double secs);

/* A message's data phase: after grace seconds, at least rate bytes a second
 * on average (rate 0: no minimum). */
void guard_rate_start(struct guard *g, double rate, double grace);
void guard_rate_bytes(struct guard *g, size_t n);
void guard_rate_stop(struct guard *g);

#endif
