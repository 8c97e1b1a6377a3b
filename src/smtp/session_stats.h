/* session_stats.h — what the SMTP session tells the statistics
 * (core/stats.h): the outcome of each connection, recipient and
 * transaction, with the message size and whether TLS and AUTH were used.
 * Called by session.c at the points where a reply decides something. */
#ifndef KASI_SESSION_STATS_H
#define KASI_SESSION_STATS_H

#include "proto/hooks.h"

struct session;

void sstats_conn_open(struct session *s);
/* The banner went out: the connection is accepted. */
void sstats_greeted(struct session *s);
/* A hook's answer was refused with code (deny_reply). */
void sstats_deny(struct session *s, enum hook_id h, int code);
void sstats_rcpt_accepted(struct session *s);
/* The message's final reply (end of DATA / BDAT LAST, or the refusal of
 * its content); a later one replaces it. */
void sstats_verdict(struct session *s, int code);
/* The transaction is about to be freed: count it once. */
void sstats_txn_end(struct session *s);
/* session_destroy: count the connection. */
void sstats_conn_end(struct session *s);

#endif
