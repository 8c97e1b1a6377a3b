/* session.h — one SMTP connection: the RFC 5321 state machine, its current
 * transaction, and the reply path. Commands are parsed in session.c (with
 * smtp_parse.c), each decision goes through a hook (hooks.h), and message
 * bytes go through the DATA decoder into a message store (message.h). */
#ifndef KASI_SESSION_H
#define KASI_SESSION_H

#include <stddef.h>
#include <sys/socket.h>

#include "msg/envelope.h"
#include "proto/hooks.h"
#include "core/log.h"
#include "proto/smtp_data.h"
#include "proto/smtp_parse.h"
#include "smtp/guard.h"

struct session;
struct bufferevent;
struct evbuffer_cb_entry;
struct event;
struct server;
struct msg;
struct listen_cfg;
struct auth_sasl;

enum session_state {
    SS_NEW,          /* banner not sent yet (connect hook running) */
    SS_GREET,        /* banner sent, waiting for HELO/EHLO */
    SS_READY,        /* greeted, no transaction */
    SS_MAIL,         /* MAIL accepted */
    SS_RCPT,         /* at least one RCPT accepted */
    SS_CLOSING       /* final reply queued, closing when flushed */
};

/* IN_AUTH: the lines are SASL responses to an AUTH challenge. */
enum session_input { IN_CMD, IN_DATA, IN_BDAT, IN_SKIPLINE, IN_AUTH };

typedef void (*session_cont_fn)(struct session *s, struct hook_result *r);

struct session {
    struct server *srv;
    struct bufferevent *bev;
    int fd;
    struct conn conn;                  /* what plugins see as `conn` (msg/envelope.h) */
    struct hook_ctx hc;                /* the session as the plugin engine sees it */
    unsigned ntxn;                     /* transactions started */

    int tls_handshake;                 /* handshake in progress: 1 STARTTLS, 2 implicit */
    int tls_closing;                   /* close_notify sent */
    struct evbuffer_cb_entry *below_cb; /* STARTTLS close: watching the plain layer drain */
    const struct listen_cfg *listen;   /* the listener that accepted it */
    struct auth_sasl *sasl;            /* AUTH exchange in progress, else NULL */
    unsigned auth_failures;            /* failed AUTH attempts */
    int paused;                        /* input held (AUTH failure delay) */
    int xclient_ok;                    /* the client is in xclient_from (smtp/xclient.c) */
    struct event *auth_delay_ev;       /* ends the delay */
    struct hook_result auth_fail;      /* the reply after the failure delay */

    enum session_state state;
    enum session_input input;
    double partial_since;              /* first byte of an unfinished command line */

    struct data_decoder dec;           /* IN_DATA; IN_BDAT: line-end checks */
    unsigned long long bdat_left;      /* IN_BDAT: octets still to read */
    int bdat_last;                     /* current chunk is LAST */
    int bdat_discard;                  /* read and drop the chunk */
    struct hook_result bdat_reply;     /* reply after a discarded chunk */

    session_cont_fn cont;              /* what to do with the answer */

    unsigned nmsgs, nrcpts;            /* for the summary line */
    unsigned nrejected, ndeferred;     /* 5xx and 4xx replies sent */
    double started;                    /* monotonic seconds at accept */
    unsigned long long nbytes;
    const char *cur_cmd;               /* the command being handled (loggable part) */
    size_t cur_cmd_len;
    int dying;                         /* client gone, disconnect hooks running */
    const char *last_result;           /* e.g. "250" "quit" "timeout" */
    int stats_conn;                    /* 1 + outcome of the connect decision */
    int stats_verdict;                 /* the open transaction's final reply, 0 none */
    int stats_refused;                 /* its last MAIL/RCPT refusal code, 0 none */

    struct guard guard;                /* every deadline of the session (guard.h) */
    int out_held;                      /* output over its bound: input waits */
    unsigned junk;                     /* commands that moved no mail (max_junk_commands) */
    struct event *close_ev;            /* deferred free after session_close */
    struct session *prev, *next;       /* server's list */
};

/* Take over a socket accepted on listener lc (on an implicit-TLS listener
 * the banner follows the handshake). Returns NULL on allocation failure
 * (the caller closes fd). */
struct session *session_new(struct server *srv, const struct listen_cfg *lc, int fd,
                            const struct sockaddr *sa, socklen_t salen);

/* The same for a client a proxy named (the PROXY header): local is the
 * address the client connected to, via the proxy's address (conn.proxy_ip). */
struct session *session_new_proxied(struct server *srv, const struct listen_cfg *lc, int fd,
                                    const struct sockaddr *sa, const struct sockaddr *local,
                                    const char *via);

/* Send "code enh text" (text may hold '\n' for a multi-line reply). */
void session_reply(struct session *s, int code, const char *enh,
                   const char *text);
/* Close after flushing what is queued. */
void session_close(struct session *s);
/* Free at once, without flushing (process exit). */
void session_destroy(struct session *s);
/* Shutdown: send "421 4.3.2" and close. */
void session_kick(struct session *s, const char *reason);

/* Log with the connection id. */
#define slog(s, ...) conn_log(&(s)->conn, __VA_ARGS__)

#endif
