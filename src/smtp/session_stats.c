/* session_stats.c — outcomes of connections, recipients and transactions
 * (see session_stats.h). A transaction's outcome is its message's final
 * reply when it has one (2xx accepted, 4xx deferred, 5xx rejected); one
 * that never got a recipient takes the class of its last MAIL/RCPT
 * refusal; anything else (RSET, QUIT or a lost connection before the end
 * of the message) is dropped. A connection is accepted when the banner
 * went out, rejected or deferred when the connect hook refused it, and
 * dropped when it closed before either. */
#include "smtp/session_stats.h"

#include "core/stats.h"
#include "smtp/session.h"

void sstats_conn_open(struct session *s)
{
    (void)s;
    stats_conn_open();
}

void sstats_greeted(struct session *s)
{
    s->stats_conn = 1 + STATS_ACCEPTED;
}

void sstats_deny(struct session *s, enum hook_id h, int code)
{
    switch (h) {
    case HOOK_CONNECT:
        s->stats_conn = 1 + stats_outcome_of(code);
        break;
    case HOOK_RCPT:
        stats_rcpt(stats_outcome_of(code));
        /* fall through */
    case HOOK_MAIL:
        s->stats_refused = code;
        break;
    case HOOK_DATA:
    case HOOK_DATA_POST:
    case HOOK_QUEUE:
        sstats_verdict(s, code);
        break;
    default:
        break;
    }
}

void sstats_rcpt_accepted(struct session *s)
{
    (void)s;
    stats_rcpt(STATS_ACCEPTED);
}

void sstats_verdict(struct session *s, int code)
{
    s->stats_verdict = code;
}

void sstats_txn_end(struct session *s)
{
    const struct txn *t = s->conn.txn;
    if (!t)
        return;
    int outcome = STATS_DROPPED;
    if (s->stats_verdict)
        outcome = stats_outcome_of(s->stats_verdict);
    else if (t->nrcpt == 0 && s->stats_refused)
        outcome = stats_outcome_of(s->stats_refused);
    stats_message(outcome, t->msg ? t->bytes : 0, s->conn.tls, s->conn.auth_user != NULL);
    s->stats_verdict = s->stats_refused = 0;
}

void sstats_conn_end(struct session *s)
{
    int outcome = s->stats_conn ? s->stats_conn - 1 : STATS_DROPPED;
    stats_conn_close(outcome, s->conn.tls, s->conn.auth_user != NULL);
}
