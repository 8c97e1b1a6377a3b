/* xclient.h — XCLIENT on the session side: who may send it (clients in
 * smtp.yaml xclient_from, as the session first knew them), when (not in
 * the middle of a mail transaction), and what it changes in struct conn
 * (address, port, reverse DNS name, HELO, protocol, login, the address the
 * client reached) and in the per-network connection count. The argument
 * is parsed by proto/xclient.c; session.c dispatches the command and does
 * the session's reset around xclient_apply. */
#ifndef KASI_SMTP_XCLIENT_H
#define KASI_SMTP_XCLIENT_H

#include "proto/smtp_parse.h"
#include "proto/xclient.h"

struct session;

/* 1 when s's client may send XCLIENT (session start, before any XCLIENT). */
int xclient_allowed(const struct session *s);

/* Check an XCLIENT command: 0 with *x filled when the session may go on,
 * -1 when it was answered (550 not allowed, 503 in a transaction, 501 bad
 * syntax; 421 and closed when the named client's network is over its
 * connection limit). */
int xclient_check(struct session *s, const struct smtp_cmd *c, struct xclient_args *x);

/* Make the named client the session's (after the session's reset). */
void xclient_apply(struct session *s, const struct xclient_args *x);

#endif
