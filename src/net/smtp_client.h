/* smtp_client.h — the downstream SMTP/LMTP client: hands an accepted
 * message to the next MTA (typically Postfix on 127.0.0.1:10025) without
 * ever blocking the event loop, and keeps a pool of reused connections per
 * destination.
 *
 * One call, fwd_send(), runs one mail transaction and reports once, through
 * a callback, what the downstream said. The result is already mapped to what
 * kasi should answer its own client:
 *
 *   downstream 2xx to the final dot      -> 250, queue id parsed when given
 *   downstream 5xx                       -> that 5xx, enhanced code and text
 *   downstream 4xx                       -> 451 (downstream's 4.x.x when it
 *                                           sent one, else 4.4.2)
 *   connect failure, no greeting         -> 451 4.4.1
 *   timeout or connection lost later     -> 451 4.4.2
 *   no free pooled connection in time    -> 451 4.4.5
 *   SMTPUTF8 message, downstream lacks it-> 550 5.6.7 (RFC 6531 §3.4)
 *   8BITMIME/BINARYMIME message,
 *     downstream lacks the extension     -> 451 4.6.3: the downstream is our
 *                                           own backend, a missing extension
 *                                           is a configuration error to fix,
 *                                           not a reason to bounce; the
 *                                           sender keeps the message
 *   TLS required but not offered, TLS or
 *     AUTH failure                       -> 451 4.7.0
 *
 * A 2xx is only ever reported when the downstream said 2xx to the final dot.
 *
 * Wire details: EHLO (LHLO for LMTP), STARTTLS and AUTH PLAIN when
 * configured, XFORWARD (Postfix) with the attributes the downstream lists,
 * MAIL with SIZE= / BODY=8BITMIME / SMTPUTF8 as offered and needed, RCPTs
 * pipelined when PIPELINING is offered, then DATA streamed through
 * msg/msg_stream.h: copied in 64 KB pieces with dot-stuffing applied on
 * the fly, or on a plain connection the spilled body by reference (file
 * segments, sendfile), with output backpressure (a 50 MB message never
 * sits in memory). Any line start gets
 * its leading dot doubled, including after a bare LF (a downstream that
 * treats bare LF as a line end must not see an end of data there). A
 * message not ending in CRLF gets one before the final ".". DSN parameters
 * are not passed on. */
#ifndef KASI_SMTP_CLIENT_H
#define KASI_SMTP_CLIENT_H

#include <stddef.h>
#include <sys/types.h>

#include "proto/smtp_parse.h"

struct event_base;
struct msg;
struct fwd_job;

enum fwd_tls { FWD_TLS_NONE = 0, FWD_TLS_OPPORTUNISTIC, FWD_TLS_REQUIRED };

/* Where to send. Strings are copied; the struct may go away after
 * fwd_send() returns. Zero timeouts take the defaults below. */
struct fwd_dest {
    const char *host;          /* IPv4/IPv6 literal or a host name */
    const char *port;          /* "10025" */
    int lmtp;                  /* speak LMTP (RFC 2033) */
    enum fwd_tls starttls;     /* no certificate verification: the
                                  downstream is our own backend */
    const char *auth_user;     /* AUTH PLAIN when set (after STARTTLS) */
    const char *auth_pass;
    const char *helo;          /* our EHLO/LHLO name, default "localhost" */
    double timeout_connect;    /* TCP connect; also the longest wait for a
                                  pool slot (default 10 s) */
    double timeout_cmd;        /* each command reply, greeting (60 s) */
    double timeout_data;       /* DATA inactivity and the final reply (300 s) */
    unsigned pool_max;         /* connections per destination, busy + idle;
                                  0 = no limit */
    double pool_idle;          /* keep idle connections this long; 0 = no
                                  pool (QUIT after every transaction) */
    int no_xforward;           /* never send XFORWARD */
};

#define FWD_DEFAULT_CONNECT 10.0
#define FWD_DEFAULT_CMD     60.0
#define FWD_DEFAULT_DATA   300.0

/* The transaction. Strings are copied by fwd_send(). */
struct fwd_envelope {
    const char *mail_from;     /* "" for the null sender <> */
    const char *const *rcpt;   /* "local@domain" each, no angle brackets */
    size_t nrcpt;
    enum smtp_body body;       /* BODY= the client declared */
    int smtputf8;              /* the client said SMTPUTF8 */
    /* XFORWARD (Postfix XFORWARD_README); NULL = "[UNAVAILABLE]". Only the
     * attributes the downstream lists are sent; Postfix has no LOGIN. */
    const char *xf_addr;       /* client IP ("IPV6:" is added for v6) */
    const char *xf_name;       /* verified reverse name */
    const char *xf_helo;
    const char *xf_proto;      /* "SMTP" / "ESMTP" */
    const char *xf_ident;      /* our queue id, shows up in Postfix's log */
    const char *xf_login;      /* sent only if the downstream lists LOGIN */
    int xf_port;               /* client port, 0 = unknown */
};

/* Why a result is not simply the downstream's answer. */
enum fwd_fail {
    FWD_OK = 0,           /* the downstream answered: see code */
    FWD_FAIL_CONNECT,     /* connect failed / no greeting */
    FWD_FAIL_TIMEOUT,
    FWD_FAIL_DROPPED,     /* connection lost */
    FWD_FAIL_PROTOCOL,    /* garbled or unexpected reply */
    FWD_FAIL_TLS,
    FWD_FAIL_AUTH,
    FWD_FAIL_EXTENSION,   /* SMTPUTF8 / 8BITMIME missing downstream */
    FWD_FAIL_MESSAGE,     /* reading the message failed */
    FWD_FAIL_BUSY,        /* no pooled connection within timeout_connect */
    FWD_FAIL_REPLY,       /* the downstream refused (4xx/5xx) */
};

struct fwd_reply {
    int code;             /* 0 = never asked (e.g. MAIL failed first) */
    char enh[16];         /* "2.0.0", "" when none */
    char *text;           /* reply text without code/enhanced code; lines
                             of a multi-line reply joined with '\n' */
};

struct fwd_result {
    int code;             /* what kasi should answer: 250, 4xx, 5xx */
    char enh[16];
    char *text;
    enum fwd_fail fail;
    size_t nrcpt;         /* == envelope nrcpt */
    struct fwd_reply *rcpt;   /* the final fate of each recipient: the RCPT
                                 refusal, or the reply to the final dot (for
                                 LMTP each recipient's own reply) */
    size_t naccepted;     /* recipients the downstream took at RCPT */
    char *queue_id;       /* from "... queued as X", NULL when absent */
    int tls;              /* the connection was encrypted */
    int reused;           /* a pooled connection carried it */
};

/* Called exactly once per job unless fwd_cancel() came first, always from
 * the event loop (never from inside fwd_send). r and everything in it are
 * freed when the callback returns; the job is gone too. For LMTP, code is
 * 250 when every accepted recipient got 2xx, else the first 4xx reply
 * (mapped to 451), else the first 5xx reply: the caller may look at rcpt[]
 * to decide differently. */
typedef void (*fwd_done_fn)(void *arg, struct fwd_result *r);

/* Start forwarding m. m must stay valid until done runs or fwd_cancel().
 * Returns NULL only when out of memory. */
struct fwd_job *fwd_send(struct event_base *base, const struct fwd_dest *d,
                         const struct fwd_envelope *env, struct msg *m,
                         fwd_done_fn done, void *arg);

/* The caller went away: done will not be called and m is not read again.
 * A connection in the middle of this job is closed (the downstream drops
 * the unfinished transaction). Not allowed once done has been called. */
void fwd_cancel(struct fwd_job *j);

/* ---- lockstep sessions (queue/smtp_proxy's before-queue proxy) ----
 *
 * One downstream connection held by one client session and driven a
 * command at a time, so the downstream's answer to each RCPT can be the
 * client's. fwd_session_open() connects (EHLO, STARTTLS, AUTH as d says;
 * never a pooled connection, never kept idle after); then each step sends
 * one command and `step` is called once with its reply: r->code, r->enh
 * and r->text exactly as the downstream sent them (r->fail == FWD_OK; for
 * the open step 220 "ready"; for DATA the reply to the final dot, or the
 * refusal of DATA itself, with r->queue_id when given). When the
 * connection fails (timeout, drop, garbled reply, refused set-up), `step`
 * gets r->fail != FWD_OK with a 451 in r->code, and the job is gone after
 * that call. A step function returns -1 (nothing sent) unless the session
 * is between steps. fwd_session_close() ends it at any time (QUIT when
 * between steps, else the connection is closed) and `step` is not called
 * again. step runs from the event loop, never inside these calls. */
struct fwd_job *fwd_session_open(struct event_base *base, const struct fwd_dest *d,
                                 fwd_done_fn step, void *arg);
/* XFORWARD (the attributes the downstream lists, from env's xf_*), then
 * MAIL FROM env->mail_from with SIZE=size (size < 0: unknown, none sent),
 * BODY= and SMTPUTF8 as needed;
 * a missing SMTPUTF8/8BITMIME is answered locally (550 5.6.7 / 451 4.6.3). */
int fwd_session_mail(struct fwd_job *j, const struct fwd_envelope *env,
                     long long size);
int fwd_session_rcpt(struct fwd_job *j, const char *addr);
/* DATA, then m dot-stuffed (m must stay valid until step runs). */
int fwd_session_data(struct fwd_job *j, struct msg *m);
int fwd_session_rset(struct fwd_job *j);
void fwd_session_close(struct fwd_job *j);

/* Close every pooled connection and free the pools (process exit). Jobs
 * still running are dropped without their callback. */
void fwd_pool_shutdown(void);

/* Pool statistics for a destination: connections open and idle. */
void fwd_pool_stats(const struct fwd_dest *d, unsigned *open, unsigned *idle);

/* ---- building blocks, exposed for the unit tests ---- */

/* xtext (RFC 3461 §4): returns a new string; NULL when out of memory. */
char *fwd_xtext(const char *s);

/* One reply line: "250-text" / "250 text" / "250". Returns 0 and sets
 * *code, *more and *text (points into line), or -1 when garbled. */
int fwd_parse_reply_line(const char *line, int *code, int *more,
                         const char **text);
/* Split "2.1.5 Ok" into enh "2.1.5" and the rest; enh "" when absent. */
const char *fwd_split_enh(const char *text, int code, char enh[16]);
/* "... queued as 4XyZ12" -> "4XyZ12" (caller frees), NULL when absent. */
char *fwd_queue_id(const char *text);

#endif
