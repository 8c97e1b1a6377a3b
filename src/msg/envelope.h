/* envelope.h — what kasi knows of a client connection (struct conn) and of
 * one mail transaction on it (struct txn): the data every layer above reads.
 * The SMTP session (smtp/session.c) owns and fills both; the plugin engine
 * (lua/) shows them to plugins as `conn` and `txn`; the spool and the
 * downstream client take them to write or forward a message. Nothing here
 * does I/O except conn_log. */
#ifndef KASI_ENVELOPE_H
#define KASI_ENVELOPE_H

#include <stddef.h>

#include "proto/smtp_parse.h"

struct msg;
struct dns_rdns;

/* One mail transaction: MAIL, RCPTs, message. */
struct txn {
    char id[48];                /* "<conn id>.<n>", also the queue id */
    struct smtp_mail mail;
    struct smtp_rcpt *rcpt;
    size_t nrcpt, rcpt_cap;
    struct msg *msg;            /* created at DATA / first BDAT */
    size_t bytes;               /* message bytes received (unstuffed) */
    int too_big;                /* over max_message_size: read on, reject */
    int bdat;                   /* CHUNKING in use */
    unsigned serial;            /* unique per process: tells a live handle
                                   from one of an earlier transaction */
};

/* The facts of one client connection. */
struct conn {
    char id[32];                       /* connection id, in every log line */
    char remote_ip[64], local_ip[64];
    int remote_port, local_port;
    char proxy_ip[64];                 /* the proxy that named the client (PROXY
                                          header, XCLIENT), "" for a direct one */
    char *rdns;                        /* reverse DNS name, NULL unknown */
    int rdns_confirmed;                /* rdns resolves back to remote_ip */
    struct dns_rdns *rdns_job;         /* lookup in progress (net/dns.c), NULL done */
    char *helo;                        /* accepted HELO/EHLO argument */
    int esmtp;                         /* greeted with EHLO */
    int tls;                           /* TLS active */
    char tls_version[16];              /* "TLSv1.3" once TLS is up */
    char tls_cipher[64];               /* "TLS_AES_256_GCM_SHA384" */
    char tls_sni[256];                 /* server name the client asked for, "" none */
    char *auth_user;                   /* authenticated user, NULL none */
    int relaying;                      /* allowed to relay */
    unsigned errors;                   /* protocol errors so far (bad commands) */
    struct txn *txn;                   /* the open transaction, NULL none */
};

/* A new transaction numbered n on connection c (id "<conn id>.<n>"). NULL
 * when out of memory. */
struct txn *txn_new(const struct conn *c, unsigned n);
/* Append r (its strings move into the transaction; r is zeroed). 0 or -1. */
int txn_add_rcpt(struct txn *t, struct smtp_rcpt *r);
void txn_free(struct txn *t);

/* Log with the connection id: "[id] text". */
void conn_log(const struct conn *c, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
