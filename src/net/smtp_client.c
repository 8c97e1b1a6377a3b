/* smtp_client.c — the downstream SMTP/LMTP client and its connection pool
 * (see smtp_client.h for the contract and the reply mapping).
 *
 * Layout of this file: small pure helpers (xtext, reply parsing), then
 * pools (one per destination, each with its connections and a FIFO of jobs
 * waiting for a connection), then one connection's state machine
 * (connect, greeting, EHLO, STARTTLS, AUTH, idle, transaction, DATA (the
 * message from msg/msg_stream.h), final reply, RSET, QUIT), then the
 * public entry points.
 *
 * Every job reports through a zero-delay timer, so its callback never runs
 * inside this module's own stack frames; every connection step has a timer. */
#include "net/smtp_client.h"
#include "core/clock.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/util.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

#include "core/log.h"
#include "net/dns.h"
#include "net/tls.h"
#include "core/stats.h"
#include "msg/message.h"
#include "msg/msg_stream.h"

#define FWD_FILL_HIGH  (256 * 1024)    /* stop filling output above this */
#define FWD_WRITE_LOW  (64 * 1024)     /* refill when output drains to this */
#define FWD_MAX_LINE   4096            /* longest reply line we accept */
#define FWD_MAX_LINES  100             /* lines in one reply */
#define FWD_QUIT_WAIT  2.0             /* seconds to wait for the QUIT reply */
#define FWD_XF_MAXCMD  500             /* XFORWARD command length cap */

/* ---------------------------------------------------------------- helpers */

char *fwd_xtext(const char *s)
{
    size_t n = strlen(s);
    char *out = malloc(3 * n + 1), *o = out;
    if (!out)
        return NULL;
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch < 33 || ch > 126 || ch == '+' || ch == '=')
            o += sprintf(o, "+%02X", ch);
        else
            *o++ = (char)ch;
    }
    *o = '\0';
    return out;
}

int fwd_parse_reply_line(const char *line, int *code, int *more,
                         const char **text)
{
    if (line[0] < '2' || line[0] > '5' || !isdigit((unsigned char)line[1]) ||
        !isdigit((unsigned char)line[2]))
        return -1;
    if (line[3] != '\0' && line[3] != ' ' && line[3] != '-')
        return -1;
    *code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
    *more = line[3] == '-';
    *text = line[3] ? line + 4 : line + 3;
    return 0;
}

/* digits: 1..3 decimal digits at *p; advances *p. */
static int enh_digits(const char **p)
{
    int n = 0;
    while (isdigit((unsigned char)**p) && n < 4) {
        (*p)++;
        n++;
    }
    return n >= 1 && n <= 3;
}

const char *fwd_split_enh(const char *text, int code, char enh[16])
{
    const char *p = text;
    enh[0] = '\0';
    if (*p != '0' + code / 100 || p[1] != '.')
        return text;
    p += 2;
    if (!enh_digits(&p) || *p++ != '.' || !enh_digits(&p))
        return text;
    if (*p != '\0' && *p != ' ')
        return text;
    memcpy(enh, text, (size_t)(p - text));
    enh[p - text] = '\0';
    while (*p == ' ')
        p++;
    return p;
}

char *fwd_queue_id(const char *text)
{
    static const char key[] = "queued as ";
    for (const char *p = text; *p; p++) {
        if (strncasecmp(p, key, sizeof key - 1) != 0)
            continue;
        const char *id = p + sizeof key - 1, *e = id;
        while (isalnum((unsigned char)*e) || *e == '.' || *e == '-' ||
               *e == '_')
            e++;
        if (e == id)
            return NULL;
        char *out = malloc((size_t)(e - id) + 1);
        if (out) {
            memcpy(out, id, (size_t)(e - id));
            out[e - id] = '\0';
        }
        return out;
    }
    return NULL;
}

static char *xstrdup(const char *s)
{
    return s ? strdup(s) : NULL;
}

static int streq0(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}


/* ------------------------------------------------------------------ types */

enum xf_attr { XF_NAME, XF_ADDR, XF_PORT, XF_PROTO, XF_HELO, XF_IDENT,
               XF_SOURCE, XF_LOGIN, XF_N };
static const char *const xf_names[XF_N] = {
    "NAME", "ADDR", "PORT", "PROTO", "HELO", "IDENT", "SOURCE", "LOGIN" };

struct fwd_caps {
    int pipelining, eightbit, smtputf8, starttls, auth_plain;
    long long size;                 /* -1: no SIZE; 0: SIZE without limit */
    unsigned xf;                    /* XFORWARD attributes, 1 << XF_* */
};

enum conn_state { CS_CONNECT, CS_GREET, CS_EHLO, CS_HELO, CS_STARTTLS,
                  CS_TLS, CS_AUTH, CS_IDLE, CS_TXN, CS_DATA, CS_DOT,
                  CS_RSET, CS_QUIT,
                  CS_HELD,      /* lockstep session: between its steps */
                  CS_STEP };    /* lockstep session: a command's reply due */

struct fwd_pool;

struct fwd_conn {
    struct fwd_conn *prev, *next;
    struct fwd_pool *pool;
    struct bufferevent *bev;
    struct event *tmo;
    enum conn_state st;
    struct fwd_caps caps;
    int tls, tls_skip, reused;
    int in_read, dead;              /* freed after the read callback */
    struct fwd_job *job;
    struct dns_query *dq;           /* resolving the host name, NULL none */
    char *rtext;                    /* reply being collected */
    size_t rlen;
    int rlines, rcode;              /* its lines so far, their code */
    char renh[16];
};

/* J_STEP: a lockstep session's step answered; its callback is due and
 * the job lives on (J_DONE: the last callback, then the job is freed). */
enum job_phase { J_NEW, J_WAIT, J_RUN, J_STEP, J_DONE };

struct fwd_job {
    struct fwd_pool *pool;
    struct fwd_job *wprev, *wnext;  /* pool's wait queue */
    struct fwd_job *jprev, *jnext;  /* every live job */
    struct fwd_conn *conn;
    struct event *timer;
    enum job_phase phase;
    int retried, want_fresh;
    char *from, **rcpt;
    size_t nrcpt;
    enum smtp_body body;
    int smtputf8;
    char *xf[XF_N];
    struct msg *m;
    size_t size;
    struct msg_stream out;          /* DATA: the message, stuffed */
    fwd_done_fn done;
    void *arg;
    struct fwd_result res;
    double started;                 /* fwd_send (monotonic seconds) */
    /* transaction progress */
    char **xfcmd;
    size_t nxf, nsteps, sent, replied, lmtp_next;
    size_t *acc;                    /* indices of recipients taken at RCPT */
    struct fwd_reply mail;
    int got_reply;
    int lockstep;                   /* a fwd_session_*() session */
    int step_data;                  /* the step in progress is DATA */
    char *mailcmd;                  /* lockstep: the MAIL line, after XFORWARD */
};

struct fwd_pool {
    struct fwd_pool *next;
    struct event_base *base;
    char *host, *port, *helo, *auth_user, *auth_pass;
    int lmtp;
    enum fwd_tls starttls;
    double t_connect, t_cmd, t_data, idle;
    unsigned max;
    int lockstep;                   /* sessions hold their connection */
    int no_xforward;
    struct fwd_conn *conns;
    struct fwd_job *whead, *wtail;
};

static struct {
    struct fwd_pool *pools;
} G;

/* ---------------------------------------------------------- results, jobs */

static void reply_set(struct fwd_reply *r, int code, const char *enh,
                      const char *text)
{
    free(r->text);
    r->code = code;
    snprintf(r->enh, sizeof r->enh, "%s", enh ? enh : "");
    r->text = strdup(text ? text : "");
}

/* The result from a downstream reply, mapped (see the header). */
static void res_from_reply(struct fwd_result *r, int code, const char *enh,
                           const char *text)
{
    const char *e = enh && *enh ? enh : NULL;
    free(r->text);
    if (code >= 200 && code < 300) {
        r->code = 250;
        r->fail = FWD_OK;
    } else if (code >= 500 && code < 600) {
        r->code = code;
        r->fail = FWD_FAIL_REPLY;
        e = e ? e : "5.0.0";
    } else {
        r->code = 451;
        r->fail = FWD_FAIL_REPLY;
        e = e && e[0] == '4' ? e : "4.4.2";
    }
    snprintf(r->enh, sizeof r->enh, "%s", e ? e : "2.0.0");
    r->text = strdup(text ? text : "");
}

static void res_local(struct fwd_result *r, int code, const char *enh,
                      enum fwd_fail fail, const char *text)
{
    free(r->text);
    r->code = code;
    snprintf(r->enh, sizeof r->enh, "%s", enh);
    r->fail = fail;
    r->text = strdup(text);
}

static void job_reset_txn(struct fwd_job *j)
{
    for (size_t i = 0; i < j->nxf; i++)
        free(j->xfcmd[i]);
    free(j->xfcmd);
    j->xfcmd = NULL;
    j->nxf = j->nsteps = j->sent = j->replied = j->lmtp_next = 0;
    for (size_t i = 0; i < j->nrcpt; i++) {
        free(j->res.rcpt[i].text);
        memset(&j->res.rcpt[i], 0, sizeof j->res.rcpt[i]);
    }
    free(j->mail.text);
    memset(&j->mail, 0, sizeof j->mail);
    j->res.naccepted = 0;
    j->got_reply = 0;
    free(j->acc);
    j->acc = NULL;
}

static void job_free(struct fwd_job *j)
{
    job_reset_txn(j);
    free(j->mailcmd);
    if (j->timer)
        event_free(j->timer);
    free(j->from);
    for (size_t i = 0; i < j->nrcpt; i++)
        free(j->rcpt[i]);
    free(j->rcpt);
    for (int i = 0; i < XF_N; i++)
        free(j->xf[i]);
    free(j->res.rcpt);
    free(j->res.text);
    free(j->res.queue_id);
    free(j);
}

static void wait_remove(struct fwd_job *j)
{
    struct fwd_pool *p = j->pool;
    if (j->wprev)
        j->wprev->wnext = j->wnext;
    else
        p->whead = j->wnext;
    if (j->wnext)
        j->wnext->wprev = j->wprev;
    else
        p->wtail = j->wprev;
    j->wprev = j->wnext = NULL;
}

static void wait_push(struct fwd_job *j, int front)
{
    struct fwd_pool *p = j->pool;
    if (front) {
        j->wnext = p->whead;
        if (p->whead)
            p->whead->wprev = j;
        else
            p->wtail = j;
        p->whead = j;
    } else {
        j->wprev = p->wtail;
        if (p->wtail)
            p->wtail->wnext = j;
        else
            p->whead = j;
        p->wtail = j;
    }
}

/* Finish: the callback runs from the job's timer, on a clean stack. The
 * job must already be off its connection and out of the wait queue. */
static void job_complete(struct fwd_job *j)
{
    static const struct timeval zero = { 0, 0 };
    j->conn = NULL;
    j->phase = J_DONE;
    evtimer_add(j->timer, &zero);
}

/* ------------------------------------------------------------ connections */

static void pool_dispatch(struct fwd_pool *p);
static void conn_readcb(struct bufferevent *bev, void *arg);
static void conn_writecb(struct bufferevent *bev, void *arg);
static void conn_eventcb(struct bufferevent *bev, short what, void *arg);
static void txn_start(struct fwd_conn *c);

static void conn_arm(struct fwd_conn *c, double secs)
{
    struct timeval tv = clock_tv(secs);
    evtimer_add(c->tmo, &tv);
}

static void conn_destroy(struct fwd_conn *c)
{
    struct fwd_pool *p = c->pool;
    if (c->prev)
        c->prev->next = c->next;
    else
        p->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    if (c->tmo)
        event_free(c->tmo);
    dns_cancel(c->dq);
    c->dq = NULL;
    if (c->bev)
        bufferevent_free(c->bev);
    free(c->rtext);
    c->tmo = NULL;
    c->bev = NULL;
    c->rtext = NULL;
    if (c->in_read)
        c->dead = 1;
    else
        free(c);
}

static void conn_send(struct fwd_conn *c, const char *fmt, const char *a,
                      const char *b)
{
    evbuffer_add_printf(bufferevent_get_output(c->bev), fmt, a, b);
}

static void conn_quit(struct fwd_conn *c)
{
    c->st = CS_QUIT;
    conn_send(c, "QUIT\r\n", NULL, NULL);
    conn_arm(c, FWD_QUIT_WAIT);
}

/* The job is done with c: keep c idle in the pool or close it. */
static void conn_release(struct fwd_conn *c)
{
    c->job = NULL;
    if (c->pool->idle <= 0) {
        conn_quit(c);
        return;
    }
    c->st = CS_IDLE;
    conn_arm(c, c->pool->idle);
    pool_dispatch(c->pool);
}

/* The reply code kasi should give for a local failure in state st. */
static void fail_result(struct fwd_conn *c, struct fwd_job *j,
                        enum fwd_fail why, const char *detail)
{
    char text[300];
    const char *enh = "4.4.2";
    int early = c->st == CS_CONNECT || c->st == CS_GREET;
    if (why == FWD_FAIL_TLS || why == FWD_FAIL_AUTH)
        enh = "4.7.0";
    else if (why == FWD_FAIL_MESSAGE)
        enh = "4.3.0";
    else if (why == FWD_FAIL_PROTOCOL)
        enh = "4.5.0";
    else if (early)
        enh = "4.4.1";
    snprintf(text, sizeof text, "Downstream %s:%s: %s", c->pool->host,
             c->pool->port, detail);
    res_local(&j->res, 451, enh, why, text);
}

/* Retry on a fresh connection? Only a pooled connection that died before
 * the downstream answered anything of this transaction. */
static int conn_may_retry(const struct fwd_conn *c, const struct fwd_job *j,
                          enum fwd_fail why)
{
    return c->reused && !j->got_reply && !j->retried &&
           (why == FWD_FAIL_DROPPED || why == FWD_FAIL_TIMEOUT);
}

static void conn_fail(struct fwd_conn *c, enum fwd_fail why,
                      const char *detail)
{
    struct fwd_pool *p = c->pool;
    struct fwd_job *j = c->job;
    int retry = j && conn_may_retry(c, j, why);
    if (j && !retry)
        fail_result(c, j, why, detail);
    if (why != FWD_FAIL_DROPPED || c->st != CS_QUIT)
        log_msg(c->st == CS_IDLE || c->st == CS_QUIT ? LOG_LVL_DEBUG
                                                     : LOG_LVL_WARN,
                "forward %s:%s: %s%s", p->host, p->port, detail,
                retry ? " (retrying on a new connection)" : "");
    c->job = NULL;
    conn_destroy(c);
    if (retry) {
        job_reset_txn(j);
        j->retried = j->want_fresh = 1;
        j->conn = NULL;
        j->phase = J_WAIT;
        wait_push(j, 1);
    }
    pool_dispatch(p);
    if (j && !retry)
        job_complete(j);
}

static void conn_tmo(evutil_socket_t fd, short what, void *arg)
{
    struct fwd_conn *c = arg;
    (void)fd;
    (void)what;
    if (c->st == CS_IDLE)
        conn_quit(c);
    else if (c->st == CS_QUIT)
        conn_destroy(c);
    else
        conn_fail(c, c->st == CS_CONNECT ? FWD_FAIL_CONNECT
                                         : FWD_FAIL_TIMEOUT,
                  c->st == CS_CONNECT ? "connect timed out"
                  : c->st == CS_GREET ? "no greeting (timeout)"
                                      : "timeout");
}

/* Connect to a literal address. 0, or -1 when ip is not one. */
static int connect_ip(struct fwd_conn *c, const char *ip)
{
    union { struct sockaddr sa; struct sockaddr_in in; struct sockaddr_in6 in6; } a;
    long port = strtol(c->pool->port, NULL, 10);
    memset(&a, 0, sizeof a);
    if (evutil_inet_pton(AF_INET, ip, &a.in.sin_addr) == 1) {
        a.in.sin_family = AF_INET;
        a.in.sin_port = htons((uint16_t)port);
        return bufferevent_socket_connect(c->bev, &a.sa, sizeof a.in);
    }
    if (evutil_inet_pton(AF_INET6, ip, &a.in6.sin6_addr) == 1) {
        a.in6.sin6_family = AF_INET6;
        a.in6.sin6_port = htons((uint16_t)port);
        return bufferevent_socket_connect(c->bev, &a.sa, sizeof a.in6);
    }
    return -1;
}

static void conn_resolved(const struct dns_result *r, void *ud)
{
    struct fwd_conn *c = ud;
    c->dq = NULL;
    if (r->status != DNS_OK || r->n == 0) {
        conn_fail(c, FWD_FAIL_CONNECT, r->status == DNS_TIMEOUT
                  ? "cannot resolve the host name (timeout)"
                  : "cannot resolve the host name");
        return;
    }
    if (connect_ip(c, r->ans[0].text) < 0)
        conn_fail(c, FWD_FAIL_CONNECT, "cannot connect");
}

/* Start connecting: literal addresses directly, names through the one
 * resolver (net/dns.c: /etc/hosts, then DNS as dns.yaml says). */
static int conn_connect(struct fwd_conn *c)
{
    struct fwd_pool *p = c->pool;
    char *end;
    long port = strtol(p->port, &end, 10);
    if (*end || port <= 0 || port > 65535)
        return -1;
    if (connect_ip(c, p->host) == 0)
        return 0;
    c->dq = dns_query(p->host, DNS_T_ADDR, p->t_connect, conn_resolved, c);
    return c->dq ? 0 : -1;
}

static void conn_setup_bev(struct fwd_conn *c)
{
    bufferevent_setcb(c->bev, conn_readcb, conn_writecb, conn_eventcb, c);
    bufferevent_setwatermark(c->bev, EV_WRITE, FWD_WRITE_LOW, 0);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

/* A new connection carrying job j. On failure j is completed (later). */
static void conn_new(struct fwd_pool *p, struct fwd_job *j)
{
    struct fwd_conn *c = calloc(1, sizeof *c);
    if (c) {
        c->pool = p;
        c->next = p->conns;
        if (p->conns)
            p->conns->prev = c;
        p->conns = c;
        c->tmo = evtimer_new(p->base, conn_tmo, c);
        c->bev = bufferevent_socket_new(p->base, -1, BEV_OPT_CLOSE_ON_FREE);
    }
    if (c && c->tmo && c->bev) {
        c->job = j;
        j->conn = c;
        j->phase = J_RUN;
        c->st = CS_CONNECT;
        conn_setup_bev(c);
        conn_arm(c, p->t_connect);
        if (conn_connect(c) == 0)
            return;
        conn_fail(c, FWD_FAIL_CONNECT, "cannot connect");
        return;
    }
    if (c)
        conn_destroy(c);
    res_local(&j->res, 451, "4.3.0", FWD_FAIL_CONNECT, "Out of memory");
    job_complete(j);
}

/* ------------------------------------------------------- session set-up */

static void conn_ready(struct fwd_conn *c)
{
    if (c->job) {
        txn_start(c);
        return;
    }
    conn_release(c);
}

static void send_ehlo(struct fwd_conn *c)
{
    memset(&c->caps, 0, sizeof c->caps);
    c->caps.size = -1;
    c->st = CS_EHLO;
    conn_send(c, "%s %s\r\n", c->pool->lmtp ? "LHLO" : "EHLO", c->pool->helo);
    conn_arm(c, c->pool->t_cmd);
}

static int word_in(const char *list, const char *word)
{
    size_t n = strlen(word);
    for (const char *p = list; *p;) {
        while (*p == ' ')
            p++;
        size_t k = strcspn(p, " ");
        if (k == n && strncasecmp(p, word, n) == 0)
            return 1;
        p += k;
    }
    return 0;
}

/* One EHLO keyword line, e.g. "SIZE 10240000" or "XFORWARD NAME ADDR". */
static void caps_line(struct fwd_caps *k, const char *l)
{
    size_t n = strcspn(l, " =");
    const char *arg = l[n] ? l + n + 1 : "";
#define KW(s) (n == sizeof s - 1 && strncasecmp(l, s, n) == 0)
    if (KW("PIPELINING"))
        k->pipelining = 1;
    else if (KW("8BITMIME"))
        k->eightbit = 1;
    else if (KW("SMTPUTF8"))
        k->smtputf8 = 1;
    else if (KW("STARTTLS"))
        k->starttls = 1;
    else if (KW("SIZE"))
        k->size = strtoll(arg, NULL, 10);
    else if (KW("AUTH"))
        k->auth_plain |= word_in(arg, "PLAIN");
    else if (KW("XFORWARD"))
        for (int i = 0; i < XF_N; i++)
            if (word_in(arg, xf_names[i]))
                k->xf |= 1u << i;
#undef KW
}

static void caps_parse(struct fwd_caps *k, const char *text)
{
    const char *l = strchr(text, '\n');   /* skip the greeting line */
    while (l) {
        l++;
        const char *e = strchr(l, '\n');
        char line[256];
        size_t n = e ? (size_t)(e - l) : strlen(l);
        snprintf(line, sizeof line, "%.*s", (int)n, l);
        caps_line(k, line);
        l = e;
    }
}

static void send_auth(struct fwd_conn *c)
{
    struct fwd_pool *p = c->pool;
    size_t ul = strlen(p->auth_user), pl = strlen(p->auth_pass ? p->auth_pass : "");
    size_t n = ul + pl + 2;
    unsigned char *raw = malloc(n);
    char *b64 = malloc(4 * ((n + 2) / 3) + 1);
    if (!raw || !b64) {
        free(raw);
        free(b64);
        conn_fail(c, FWD_FAIL_AUTH, "out of memory");
        return;
    }
    raw[0] = '\0';
    memcpy(raw + 1, p->auth_user, ul);
    raw[ul + 1] = '\0';
    memcpy(raw + ul + 2, p->auth_pass ? p->auth_pass : "", pl);
    EVP_EncodeBlock((unsigned char *)b64, raw, (int)n);
    c->st = CS_AUTH;
    conn_send(c, "AUTH PLAIN %s\r\n", b64, NULL);
    conn_arm(c, p->t_cmd);
    OPENSSL_cleanse(raw, n);
    OPENSSL_cleanse(b64, strlen(b64));
    free(raw);
    free(b64);
}

/* After EHLO: STARTTLS, then AUTH, then ready. */
static void after_ehlo(struct fwd_conn *c)
{
    struct fwd_pool *p = c->pool;
    int want_tls = p->starttls == FWD_TLS_REQUIRED ||
                   (p->starttls == FWD_TLS_OPPORTUNISTIC && c->caps.starttls &&
                    !c->tls_skip);
    if (!c->tls && want_tls) {
        if (!c->caps.starttls) {
            conn_fail(c, FWD_FAIL_TLS, "TLS required but STARTTLS not offered");
            return;
        }
        c->st = CS_STARTTLS;
        conn_send(c, "STARTTLS\r\n", NULL, NULL);
        conn_arm(c, p->t_cmd);
        return;
    }
    if (p->auth_user && c->st != CS_AUTH) {
        if (!c->caps.auth_plain) {
            conn_fail(c, FWD_FAIL_AUTH, "AUTH PLAIN not offered");
            return;
        }
        send_auth(c);
        return;
    }
    conn_ready(c);
}

/* Returns 1 when the bufferevent was replaced (stop reading the old one). */
static int start_tls(struct fwd_conn *c)
{
    struct fwd_pool *p = c->pool;
    if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0) {
        conn_fail(c, FWD_FAIL_TLS, "data after the STARTTLS reply");
        return 1;
    }
    SSL *ssl = tls_client_new(p->host, TLS_VERIFY_NONE);
    struct bufferevent *tb = ssl ? bufferevent_openssl_filter_new(
        p->base, c->bev, ssl, BUFFEREVENT_SSL_CONNECTING,
        BEV_OPT_CLOSE_ON_FREE) : NULL;
    if (!tb) {
        if (ssl)
            SSL_free(ssl);
        conn_fail(c, FWD_FAIL_TLS, "cannot start TLS");
        return 1;
    }
    bufferevent_openssl_set_allow_dirty_shutdown(tb, 1);
    c->bev = tb;
    c->st = CS_TLS;
    conn_setup_bev(c);
    conn_arm(c, p->t_cmd);
    return 1;
}

/* ------------------------------------------------------------ transaction */

/* XFORWARD commands for the attributes the downstream lists. */
static int xf_build(struct fwd_conn *c, struct fwd_job *j)
{
    char cmd[FWD_XF_MAXCMD + 64] = "";
    size_t len = 0;
    for (int i = 0; i < XF_N && !c->pool->no_xforward; i++) {
        if (!(c->caps.xf & (1u << i)) || (i == XF_LOGIN && !j->xf[i]))
            continue;
        char *v = j->xf[i] ? fwd_xtext(j->xf[i]) : strdup("[UNAVAILABLE]");
        if (!v)
            return -1;
        size_t add = strlen(xf_names[i]) + strlen(v) + 2;
        if (len && len + add > FWD_XF_MAXCMD) {
            char **n = realloc(j->xfcmd, (j->nxf + 1) * sizeof *n);
            if (!n || !(n[j->nxf] = strdup(cmd))) {
                free(v);
                if (n)
                    j->xfcmd = n;
                return -1;
            }
            j->xfcmd = n;
            j->nxf++;
            len = 0;
        }
        if (add > FWD_XF_MAXCMD - 9) {      /* never longer than the cap */
            free(v);
            continue;
        }
        len += (size_t)snprintf(cmd + len, sizeof cmd - len, "%s %s=%s",
                                len ? "" : "XFORWARD", xf_names[i], v);
        free(v);
    }
    if (len) {
        char **n = realloc(j->xfcmd, (j->nxf + 1) * sizeof *n);
        if (!n)
            return -1;
        j->xfcmd = n;
        if (!(n[j->nxf] = strdup(cmd)))
            return -1;
        j->nxf++;
    }
    return 0;
}

static void send_mail(struct fwd_conn *c, struct fwd_job *j)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    evbuffer_add_printf(out, "MAIL FROM:<%s>", j->from);
    if (c->caps.size >= 0)
        evbuffer_add_printf(out, " SIZE=%zu", j->size);
    if (j->body == SMTP_BODY_8BITMIME)
        evbuffer_add_printf(out, " BODY=8BITMIME");
    if (j->smtputf8)
        evbuffer_add_printf(out, " SMTPUTF8");
    evbuffer_add(out, "\r\n", 2);
}

/* Step s of the transaction: XFORWARD..., MAIL, RCPT..., DATA. */
static void send_step(struct fwd_conn *c, struct fwd_job *j, size_t s)
{
    if (s < j->nxf)
        conn_send(c, "%s\r\n", j->xfcmd[s], NULL);
    else if (s == j->nxf)
        send_mail(c, j);
    else if (s < j->nsteps - 1)
        conn_send(c, "RCPT TO:<%s>\r\n", j->rcpt[s - j->nxf - 1], NULL);
    else
        conn_send(c, "DATA\r\n", NULL, NULL);
}

static void txn_send(struct fwd_conn *c)
{
    struct fwd_job *j = c->job;
    while (j->sent < j->nsteps && (c->caps.pipelining || j->sent == j->replied))
        send_step(c, j, j->sent++);
}

/* A reason to refuse before sending anything, or NULL. */
static const char *ext_missing(struct fwd_conn *c, struct fwd_job *j,
                               int *code, const char **enh)
{
    if (j->smtputf8 && !c->caps.smtputf8) {
        *code = 550;
        *enh = "5.6.7";
        return "SMTPUTF8 message but the downstream does not support SMTPUTF8";
    }
    if ((j->body == SMTP_BODY_8BITMIME && !c->caps.eightbit) ||
        j->body == SMTP_BODY_BINARYMIME) {
        *code = 451;
        *enh = "4.6.3";
        return "8-bit message but the downstream does not offer 8BITMIME";
    }
    return NULL;
}

static void step_ready(struct fwd_conn *c);
static void step_reply(struct fwd_conn *c, int code, const char *text);

static void txn_start(struct fwd_conn *c)
{
    struct fwd_job *j = c->job;
    if (j->lockstep) {
        step_ready(c);
        return;
    }
    int code;
    const char *enh, *why = ext_missing(c, j, &code, &enh);
    j->res.tls = c->tls;
    j->res.reused = c->reused;
    if (why) {
        res_local(&j->res, code, enh, FWD_FAIL_EXTENSION, why);
        conn_release(c);
        job_complete(j);
        return;
    }
    if (xf_build(c, j) < 0) {
        conn_fail(c, FWD_FAIL_MESSAGE, "out of memory");
        return;
    }
    j->nsteps = j->nxf + 1 + j->nrcpt + 1;
    c->st = CS_TXN;
    conn_arm(c, c->pool->t_cmd);
    txn_send(c);
}


static void data_fill(struct fwd_conn *c);

/* After a 354: stream the message, spilled body bytes by reference on a
 * plain connection (TLS needs them in memory). */
static void data_begin(struct fwd_conn *c)
{
    struct fwd_job *j = c->job;
    msg_stream_init(&j->out, j->m, 0, MSG_STREAM_SMTP | (c->tls ? 0 : MSG_STREAM_FILES));
    if (msg_stream_by_reference(&j->out))
        bufferevent_set_max_single_write(c->bev, MSG_STREAM_FILE_AHEAD);
    c->st = CS_DATA;
    conn_arm(c, c->pool->t_data);
    data_fill(c);
}

/* 354: remember which recipients were taken, then stream the message. */
static void data_start(struct fwd_conn *c)
{
    struct fwd_job *j = c->job;
    free(j->acc);
    j->acc = malloc(j->res.naccepted * sizeof *j->acc);
    if (!j->acc) {
        conn_fail(c, FWD_FAIL_MESSAGE, "out of memory");
        return;
    }
    for (size_t i = 0, k = 0; i < j->nrcpt; i++)
        if (j->res.rcpt[i].code / 100 == 2)
            j->acc[k++] = i;
    data_begin(c);
}

/* Move message bytes into the output buffer, stuffed, up to the mark;
 * after the last byte, the end of data. */
static void data_fill(struct fwd_conn *c)
{
    struct fwd_job *j = c->job;
    int r = msg_stream_fill(&j->out, bufferevent_get_output(c->bev), FWD_FILL_HIGH);
    if (r < 0) {
        conn_fail(c, FWD_FAIL_MESSAGE, errno == ENOMEM ? "out of memory"
                                                       : "cannot read the message");
        return;
    }
    if (r == 0)
        return;
    c->st = CS_DOT;
    conn_arm(c, c->pool->t_data);
}

/* The result is set and no message went out: RSET, report. */
static void txn_abort(struct fwd_conn *c)
{
    struct fwd_job *j = c->job;
    c->job = NULL;
    c->st = CS_RSET;
    conn_send(c, "RSET\r\n", NULL, NULL);
    conn_arm(c, c->pool->t_cmd);
    job_complete(j);
}

/* MAIL or every RCPT refused: the refusal is the result (a 4xx refusal
 * wins over a 5xx one, so the sender retries). */
static void txn_refused(struct fwd_conn *c)
{
    struct fwd_job *j = c->job;
    const struct fwd_reply *r = &j->mail;
    if (r->code / 100 == 2) {
        r = NULL;
        for (size_t i = 0; i < j->nrcpt; i++) {
            const struct fwd_reply *x = &j->res.rcpt[i];
            if (x->code && (!r || (x->code / 100 == 4 && r->code / 100 != 4)))
                r = x;
        }
    }
    if (r && r->code)
        res_from_reply(&j->res, r->code, r->enh, r->text);
    else
        res_local(&j->res, 451, "4.5.0", FWD_FAIL_PROTOCOL,
                  "Downstream refused the transaction");
    txn_abort(c);
}

/* The reply to DATA itself. */
static void txn_data_reply(struct fwd_conn *c, int code, const char *text)
{
    struct fwd_job *j = c->job;
    int go = j->mail.code / 100 == 2 && j->res.naccepted > 0;
    if (code == 354 && go) {
        data_start(c);
    } else if (code == 354) {
        conn_fail(c, FWD_FAIL_PROTOCOL, "354 to DATA without recipients");
    } else if (go && code / 100 < 4) {
        /* a 2xx to DATA itself: no message went out, never a success */
        conn_fail(c, FWD_FAIL_PROTOCOL, "DATA answered without 354");
    } else if (go) {
        res_from_reply(&j->res, code, c->renh, text);
        for (size_t i = 0; i < j->nrcpt; i++)
            if (j->res.rcpt[i].code / 100 == 2)
                reply_set(&j->res.rcpt[i], code, c->renh, text);
        txn_abort(c);
    } else {
        txn_refused(c);
    }
}

/* One reply during XFORWARD/MAIL/RCPT/DATA. */
static void txn_reply(struct fwd_conn *c, int code, const char *text)
{
    struct fwd_job *j = c->job;
    size_t s = j->replied++;
    j->got_reply = 1;
    if (s == j->nsteps - 1) {
        txn_data_reply(c, code, text);
        return;
    }
    if (s == j->nxf) {
        reply_set(&j->mail, code, c->renh, text);
    } else if (s > j->nxf) {
        reply_set(&j->res.rcpt[s - j->nxf - 1], code, c->renh, text);
        j->res.naccepted += code / 100 == 2;
    } else if (code / 100 != 2) {
        log_msg(LOG_LVL_WARN, "forward %s:%s: XFORWARD refused: %d %s",
                c->pool->host, c->pool->port, code, text);
    }
    conn_arm(c, c->pool->t_cmd);
    if (!c->caps.pipelining &&
        ((j->mail.code && j->mail.code / 100 != 2) ||
         (j->replied == j->nsteps - 1 && j->res.naccepted == 0))) {
        txn_refused(c);
        return;
    }
    txn_send(c);
}

/* Report success/failure of the message and put the connection back. */
static void txn_finish(struct fwd_conn *c, int usable)
{
    struct fwd_job *j = c->job;
    if (j->res.code == 250)
        log_msg(LOG_LVL_DEBUG, "forward %s:%s: accepted%s%s",
                c->pool->host, c->pool->port,
                j->res.queue_id ? " as " : "",
                j->res.queue_id ? j->res.queue_id : "");
    c->job = NULL;
    if (usable)
        conn_release(c);     /* may hand c to a waiting job at once */
    else
        conn_quit(c);
    job_complete(j);
}

/* LMTP: the overall result once every accepted recipient has answered:
 * the first 4xx, else the first 5xx, else the first 2xx (recipients
 * refused at RCPT do not count, as for SMTP). */
static void lmtp_overall(struct fwd_job *j)
{
    const struct fwd_reply *pick[6] = { NULL };
    for (size_t k = 0; k < j->res.naccepted; k++) {
        const struct fwd_reply *r = &j->res.rcpt[j->acc[k]];
        int cls = r->code / 100;
        if (cls != 2 && cls != 5)
            cls = 4;    /* e.g. a 3xx: not delivered, a temporary failure */
        if (!pick[cls])
            pick[cls] = r;
    }
    const struct fwd_reply *r = pick[4] ? pick[4] : pick[5] ? pick[5] : pick[2];
    if (r)
        res_from_reply(&j->res, r->code, r->enh, r->text);
    for (size_t k = 0; k < j->res.naccepted && !j->res.queue_id; k++) {
        const struct fwd_reply *x = &j->res.rcpt[j->acc[k]];
        if (x->code / 100 == 2)
            j->res.queue_id = fwd_queue_id(x->text);
    }
}

/* The reply (LMTP: one of the replies) to the final dot. */
static void dot_reply(struct fwd_conn *c, int code, const char *text)
{
    struct fwd_job *j = c->job;
    if (j->lockstep) {
        step_reply(c, code, text);
        return;
    }
    j->got_reply = 1;
    if (c->pool->lmtp) {
        reply_set(&j->res.rcpt[j->acc[j->lmtp_next++]], code, c->renh, text);
        if (j->lmtp_next < j->res.naccepted) {
            conn_arm(c, c->pool->t_data);
            return;
        }
        lmtp_overall(j);
    } else {
        res_from_reply(&j->res, code, c->renh, text);
        for (size_t k = 0; k < j->res.naccepted; k++)
            reply_set(&j->res.rcpt[j->acc[k]], code, c->renh, text);
        if (code / 100 == 2)
            j->res.queue_id = fwd_queue_id(text);
    }
    txn_finish(c, code != 421);
}

/* ------------------------------------------------------- reply dispatch */

/* A reply while the connection is not expecting one. */
static void conn_unexpected(struct fwd_conn *c, int code, const char *text)
{
    struct fwd_job *j = c->job;
    char detail[200];
    snprintf(detail, sizeof detail, "unexpected reply: %d %.150s", code, text);
    if (!j) {
        log_msg(LOG_LVL_DEBUG, "forward %s:%s: %s", c->pool->host,
                c->pool->port, detail);
        conn_destroy(c);
        return;
    }
    if (code / 100 == 4 || code / 100 == 5) {
        /* e.g. "421 timeout" while we send DATA: take its code, close */
        res_from_reply(&j->res, code, c->renh, text);
        c->job = NULL;
        conn_destroy(c);
        pool_dispatch(j->pool);
        job_complete(j);
        return;
    }
    conn_fail(c, FWD_FAIL_PROTOCOL, detail);
}

static void conn_reply_setup(struct fwd_conn *c, int code, const char *text)
{
    switch (c->st) {
    case CS_GREET:
        if (code / 100 == 2)
            send_ehlo(c);
        else
            conn_fail(c, FWD_FAIL_CONNECT, text);
        break;
    case CS_EHLO:
        if (code / 100 == 2) {
            caps_parse(&c->caps, text);
            after_ehlo(c);
        } else if (!c->pool->lmtp) {
            c->st = CS_HELO;
            conn_send(c, "HELO %s\r\n", c->pool->helo, NULL);
            conn_arm(c, c->pool->t_cmd);
        } else {
            conn_fail(c, FWD_FAIL_PROTOCOL, "LHLO refused");
        }
        break;
    case CS_HELO:
        if (code / 100 == 2)
            after_ehlo(c);
        else
            conn_fail(c, FWD_FAIL_PROTOCOL, "HELO refused");
        break;
    case CS_STARTTLS:
        if (code == 220) {
            start_tls(c);
        } else if (c->pool->starttls == FWD_TLS_REQUIRED) {
            conn_fail(c, FWD_FAIL_TLS, "STARTTLS refused");
        } else {
            c->tls_skip = 1;
            after_ehlo(c);
        }
        break;
    default:    /* CS_AUTH */
        if (code == 235) {
            c->st = CS_IDLE;     /* anything but CS_AUTH: auth is done */
            conn_ready(c);
        } else {
            conn_fail(c, FWD_FAIL_AUTH, "AUTH refused");
        }
        break;
    }
}

/* A complete reply arrived (text: its lines joined with '\n'). */
static void conn_reply(struct fwd_conn *c, int code, const char *text)
{
    switch (c->st) {
    case CS_GREET: case CS_EHLO: case CS_HELO: case CS_STARTTLS: case CS_AUTH:
        conn_reply_setup(c, code, text);
        break;
    case CS_TXN:
        txn_reply(c, code, text);
        break;
    case CS_DOT:
        dot_reply(c, code, text);
        break;
    case CS_RSET:
        if (code / 100 == 2)
            conn_release(c);
        else
            conn_quit(c);
        break;
    case CS_QUIT:
        conn_destroy(c);
        break;
    case CS_STEP:
        step_reply(c, code, text);
        break;
    default:    /* CS_CONNECT, CS_TLS, CS_IDLE, CS_DATA, CS_HELD */
        conn_unexpected(c, code, text);
        break;
    }
}

/* Add one line to the reply being collected. Returns -1 when too big, or
 * when its code is not the one of the first line (RFC 5321 §4.2.1). */
static int reply_append(struct fwd_conn *c, int code, const char *text)
{
    char enh[16];
    const char *t = fwd_split_enh(text, code, enh);
    size_t n = strlen(t);
    if (c->rlines == 0) {
        memcpy(c->renh, enh, sizeof enh);
        c->rcode = code;
    }
    if (++c->rlines > FWD_MAX_LINES || code != c->rcode)
        return -1;
    char *r = realloc(c->rtext, c->rlen + n + 2);
    if (!r)
        return -1;
    c->rtext = r;
    if (c->rlen)
        r[c->rlen++] = '\n';
    memcpy(r + c->rlen, t, n + 1);
    c->rlen += n;
    return 0;
}

/* Handle one line; returns 0 to go on reading. */
static int conn_line(struct fwd_conn *c, const char *line)
{
    int code, more;
    const char *text;
    if (fwd_parse_reply_line(line, &code, &more, &text) < 0 ||
        reply_append(c, code, text) < 0) {
        conn_fail(c, FWD_FAIL_PROTOCOL, "garbled reply");
        return -1;
    }
    if (more)
        return 0;
    char *full = c->rtext;
    c->rtext = NULL;
    c->rlen = 0;
    c->rlines = 0;
    conn_reply(c, code, full ? full : "");
    free(full);
    return 0;
}

static void conn_readcb(struct bufferevent *bev, void *arg)
{
    struct fwd_conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    c->in_read = 1;
    while (!c->dead && c->bev == bev) {
        size_t len;
        char *line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF);
        if (!line) {
            if (evbuffer_get_length(in) > FWD_MAX_LINE)
                conn_fail(c, FWD_FAIL_PROTOCOL, "reply line too long");
            break;
        }
        if (len > FWD_MAX_LINE || strlen(line) != len)
            conn_fail(c, FWD_FAIL_PROTOCOL, "bad reply line");
        else
            conn_line(c, line);
        free(line);
    }
    c->in_read = 0;
    if (c->dead)
        free(c);
}

static void conn_writecb(struct bufferevent *bev, void *arg)
{
    struct fwd_conn *c = arg;
    (void)bev;
    if (c->st != CS_DATA)
        return;
    conn_arm(c, c->pool->t_data);
    data_fill(c);
}

static void conn_eventcb(struct bufferevent *bev, short what, void *arg)
{
    struct fwd_conn *c = arg;
    char detail[200];
    if (what & BEV_EVENT_CONNECTED) {
        if (c->st == CS_CONNECT) {
            c->st = CS_GREET;
            conn_arm(c, c->pool->t_cmd);
        } else if (c->st == CS_TLS) {
            c->tls = 1;
            send_ehlo(c);
        }
        return;
    }
    if (c->st == CS_IDLE || c->st == CS_QUIT) {
        conn_destroy(c);
        return;
    }
    int dns = bufferevent_socket_get_dns_error(bev);
    int err = EVUTIL_SOCKET_ERROR();
    snprintf(detail, sizeof detail, "%s%s%s",
             c->st == CS_CONNECT ? "cannot connect" : "connection lost",
             (what & BEV_EVENT_ERROR) ? ": " : "",
             !(what & BEV_EVENT_ERROR) ? ""
             : dns ? evutil_gai_strerror(dns)
                   : evutil_socket_error_to_string(err));
    conn_fail(c, c->st == CS_CONNECT ? FWD_FAIL_CONNECT
               : c->st == CS_TLS     ? FWD_FAIL_TLS
                                     : FWD_FAIL_DROPPED, detail);
}

/* ------------------------------------------------------ lockstep steps
 *
 * A lockstep session (fwd_session_*, for queue/smtp_proxy) holds one
 * connection and sends one command at a time when its caller says so; each
 * reply goes back through the job's callback as it came (code, enhanced
 * code, text), without the mapping fwd_send() applies. */

/* Report a step's outcome from the job's timer; the job lives on. */
static void step_report(struct fwd_job *j, int code, const char *enh,
                        const char *text)
{
    static const struct timeval zero = { 0, 0 };
    free(j->res.text);
    j->res.text = strdup(text ? text : "");
    j->res.code = code;
    j->res.fail = FWD_OK;
    snprintf(j->res.enh, sizeof j->res.enh, "%s", enh ? enh : "");
    j->phase = J_STEP;
    evtimer_add(j->timer, &zero);
}

/* Set up (and, on a pooled connection, nothing else) is done. */
static void step_ready(struct fwd_conn *c)
{
    struct fwd_job *j = c->job;
    j->got_reply = 1;               /* never retried from here on */
    j->res.tls = c->tls;
    c->st = CS_HELD;
    evtimer_del(c->tmo);
    step_report(j, 220, "", "ready");
}

static void step_send(struct fwd_conn *c, const char *line, const char *arg,
                      double tmo)
{
    c->st = CS_STEP;
    conn_send(c, line, arg, NULL);
    conn_arm(c, tmo);
}

static void step_reply(struct fwd_conn *c, int code, const char *text)
{
    struct fwd_job *j = c->job;
    if (j->replied < j->nxf) {                  /* XFORWARD before MAIL */
        if (code / 100 != 2)
            log_msg(LOG_LVL_WARN, "forward %s:%s: XFORWARD refused: %d %s",
                    c->pool->host, c->pool->port, code, text);
        if (++j->replied < j->nxf)
            step_send(c, "%s\r\n", j->xfcmd[j->replied], c->pool->t_cmd);
        else
            step_send(c, "%s\r\n", j->mailcmd, c->pool->t_cmd);
        return;
    }
    if (j->step_data && code == 354 && c->st == CS_STEP) {
        data_begin(c);
        return;
    }
    if (j->step_data && code / 100 == 2 && c->st == CS_DOT) {
        free(j->res.queue_id);
        j->res.queue_id = fwd_queue_id(text);
    }
    j->step_data = 0;
    j->m = NULL;
    c->st = CS_HELD;
    evtimer_del(c->tmo);
    step_report(j, code, c->renh, text);
}

/* The session's connection, ready for a step; NULL when it is not. */
static struct fwd_conn *step_conn(struct fwd_job *j)
{
    if (!j || !j->lockstep || j->phase != J_RUN || !j->conn ||
        j->conn->st != CS_HELD)
        return NULL;
    free(j->res.queue_id);
    j->res.queue_id = NULL;
    return j->conn;
}

/* ------------------------------------------------------------------ pools */

static int pool_matches(const struct fwd_pool *p, struct event_base *base,
                        const struct fwd_dest *d)
{
    return p->base == base && strcmp(p->host, d->host) == 0 &&
           strcmp(p->port, d->port) == 0 && p->lmtp == !!d->lmtp &&
           p->starttls == d->starttls && streq0(p->auth_user, d->auth_user) &&
           streq0(p->auth_pass, d->auth_pass) && p->no_xforward == !!d->no_xforward &&
           strcmp(p->helo, d->helo ? d->helo : "localhost") == 0;
}

/* The pool of lockstep sessions to d: no cap (each client session holds
 * one connection for as long as it lasts), nothing kept idle. */
static int pool_matches_lockstep(const struct fwd_pool *p, struct event_base *base,
                                 const struct fwd_dest *d, int lockstep)
{
    return p->lockstep == lockstep && pool_matches(p, base, d);
}

static void pool_config(struct fwd_pool *p, const struct fwd_dest *d)
{
    p->t_connect = d->timeout_connect > 0 ? d->timeout_connect : FWD_DEFAULT_CONNECT;
    p->t_cmd = d->timeout_cmd > 0 ? d->timeout_cmd : FWD_DEFAULT_CMD;
    p->t_data = d->timeout_data > 0 ? d->timeout_data : FWD_DEFAULT_DATA;
    p->max = d->pool_max;
    p->idle = d->pool_idle;
}

static void pool_free(struct fwd_pool *p)
{
    free(p->host);
    free(p->port);
    free(p->helo);
    free(p->auth_user);
    if (p->auth_pass)
        OPENSSL_cleanse(p->auth_pass, strlen(p->auth_pass));
    free(p->auth_pass);
    free(p);
}

static struct fwd_pool *pool_get(struct event_base *base,
                                 const struct fwd_dest *d, int lockstep)
{
    struct fwd_pool *p;
    for (p = G.pools; p; p = p->next)
        if (pool_matches_lockstep(p, base, d, lockstep))
            break;
    if (!p) {
        p = calloc(1, sizeof *p);
        if (!p)
            return NULL;
        p->base = base;
        p->host = strdup(d->host);
        p->port = strdup(d->port);
        p->helo = strdup(d->helo ? d->helo : "localhost");
        p->auth_user = xstrdup(d->auth_user);
        p->auth_pass = xstrdup(d->auth_pass);
        p->lmtp = !!d->lmtp;
        p->starttls = d->starttls;
        p->lockstep = lockstep;
        p->no_xforward = !!d->no_xforward;
        if (!p->host || !p->port || !p->helo ||
            (d->auth_user && !p->auth_user) || (d->auth_pass && !p->auth_pass)) {
            pool_free(p);
            return NULL;
        }
        p->next = G.pools;
        G.pools = p;
    }
    pool_config(p, d);
    if (lockstep) {
        p->max = 0;
        p->idle = 0;
    }
    return p;
}

static unsigned pool_count(const struct fwd_pool *p, struct fwd_conn **idle)
{
    unsigned n = 0;
    *idle = NULL;
    for (struct fwd_conn *c = p->conns; c; c = c->next) {
        if (c->st == CS_QUIT)
            continue;
        n++;
        if (c->st == CS_IDLE && !*idle)
            *idle = c;
    }
    return n;
}

static void conn_assign(struct fwd_conn *c, struct fwd_job *j)
{
    evtimer_del(c->tmo);
    c->job = j;
    c->reused = 1;
    j->conn = c;
    j->phase = J_RUN;
    txn_start(c);
}

/* Hand waiting jobs to idle connections or new ones, within the cap. */
static void pool_dispatch(struct fwd_pool *p)
{
    struct fwd_job *j;
    while ((j = p->whead) != NULL) {
        struct fwd_conn *idle;
        unsigned n = pool_count(p, &idle);
        if (idle && !j->want_fresh) {
            wait_remove(j);
            evtimer_del(j->timer);
            conn_assign(idle, j);
            continue;
        }
        if (p->max && n >= p->max) {
            if (!idle)
                return;
            conn_destroy(idle);     /* make room for a fresh connection */
            continue;
        }
        wait_remove(j);
        evtimer_del(j->timer);
        conn_new(p, j);
    }
}

/* ------------------------------------------------------------- public API */

static struct fwd_job *G_jobs;   /* every live job, for the shutdown */

static void job_unlink(struct fwd_job *j)
{
    if (j->jprev)
        j->jprev->jnext = j->jnext;
    else
        G_jobs = j->jnext;
    if (j->jnext)
        j->jnext->jprev = j->jprev;
}

static void job_timer(evutil_socket_t fd, short what, void *arg)
{
    struct fwd_job *j = arg;
    struct timeval tv;
    (void)fd;
    (void)what;
    switch (j->phase) {
    case J_NEW:
        j->phase = J_WAIT;
        wait_push(j, 0);
        tv = clock_tv(j->pool->t_connect);
        evtimer_add(j->timer, &tv);
        pool_dispatch(j->pool);
        break;
    case J_WAIT:
        wait_remove(j);
        res_local(&j->res, 451, "4.4.5", FWD_FAIL_BUSY,
                  "No downstream connection free; try again later");
        job_complete(j);
        break;
    case J_DONE:
        job_unlink(j);
        stats_downstream(clock_now() - j->started);
        j->done(j->arg, &j->res);
        job_free(j);
        break;
    case J_STEP:
        j->phase = J_RUN;
        j->done(j->arg, &j->res);     /* may start the next step */
        break;
    case J_RUN:
        break;
    }
}

static int job_copy_env(struct fwd_job *j, const struct fwd_envelope *env)
{
    const char *xf[XF_N] = { env->xf_name, NULL, NULL, env->xf_proto,
                             env->xf_helo, env->xf_ident, "REMOTE",
                             env->xf_login };
    char buf[80];
    if (env->xf_addr) {
        snprintf(buf, sizeof buf, "%s%s",
                 strchr(env->xf_addr, ':') ? "IPV6:" : "", env->xf_addr);
        xf[XF_ADDR] = buf;
    }
    char port[16];
    if (env->xf_port > 0) {
        snprintf(port, sizeof port, "%d", env->xf_port);
        xf[XF_PORT] = port;
    }
    for (int i = 0; i < XF_N; i++)
        if (xf[i] && !(j->xf[i] = strdup(xf[i])))
            return -1;
    j->from = strdup(env->mail_from ? env->mail_from : "");
    j->rcpt = calloc(env->nrcpt ? env->nrcpt : 1, sizeof *j->rcpt);
    j->res.rcpt = calloc(env->nrcpt ? env->nrcpt : 1, sizeof *j->res.rcpt);
    if (!j->from || !j->rcpt || !j->res.rcpt)
        return -1;
    for (; j->nrcpt < env->nrcpt; j->nrcpt++)
        if (!(j->rcpt[j->nrcpt] = strdup(env->rcpt[j->nrcpt])))
            return -1;
    j->res.nrcpt = j->nrcpt;
    j->body = env->body;
    j->smtputf8 = env->smtputf8;
    return 0;
}

struct fwd_job *fwd_send(struct event_base *base, const struct fwd_dest *d,
                         const struct fwd_envelope *env, struct msg *m,
                         fwd_done_fn done, void *arg)
{
    static const struct timeval zero = { 0, 0 };
    struct fwd_job *j = calloc(1, sizeof *j);
    if (!j)
        return NULL;
    j->pool = pool_get(base, d, 0);
    j->timer = evtimer_new(base, job_timer, j);
    if (!j->pool || !j->timer || job_copy_env(j, env) < 0) {
        job_free(j);
        return NULL;
    }
    j->m = m;
    j->started = clock_now();
    j->size = msg_size(m);
    j->done = done;
    j->arg = arg;
    j->jnext = G_jobs;
    if (G_jobs)
        G_jobs->jprev = j;
    G_jobs = j;
    if (j->nrcpt == 0) {
        res_local(&j->res, 554, "5.5.1", FWD_FAIL_REPLY, "No recipients");
        j->phase = J_DONE;
    }
    evtimer_add(j->timer, &zero);
    return j;
}

void fwd_cancel(struct fwd_job *j)
{
    if (!j)
        return;
    if (j->phase == J_WAIT)
        wait_remove(j);
    if (j->phase == J_RUN && j->conn) {
        struct fwd_conn *c = j->conn;
        struct fwd_pool *p = j->pool;
        c->job = NULL;
        conn_destroy(c);
        pool_dispatch(p);
    }
    job_unlink(j);
    job_free(j);
}

void fwd_pool_shutdown(void)
{
    while (G_jobs) {
        struct fwd_job *j = G_jobs;
        if (j->conn)
            j->conn->job = NULL;
        if (j->phase == J_WAIT)
            wait_remove(j);
        job_unlink(j);
        job_free(j);
    }
    while (G.pools) {
        struct fwd_pool *p = G.pools;
        G.pools = p->next;
        while (p->conns)
            conn_destroy(p->conns);
        pool_free(p);
    }
}

void fwd_pool_stats(const struct fwd_dest *d, unsigned *open, unsigned *idle)
{
    *open = *idle = 0;
    for (struct fwd_pool *p = G.pools; p; p = p->next) {
        if (strcmp(p->host, d->host) != 0 || strcmp(p->port, d->port) != 0 ||
            p->lmtp != !!d->lmtp)
            continue;
        for (struct fwd_conn *c = p->conns; c; c = c->next) {
            *open += c->st != CS_QUIT;
            *idle += c->st == CS_IDLE;
        }
    }
}

/* ------------------------------------------------------ lockstep API */

struct fwd_job *fwd_session_open(struct event_base *base, const struct fwd_dest *d,
                                 fwd_done_fn step, void *arg)
{
    static const struct timeval zero = { 0, 0 };
    struct fwd_job *j = calloc(1, sizeof *j);
    if (!j)
        return NULL;
    j->lockstep = 1;
    j->want_fresh = 1;
    j->pool = pool_get(base, d, 1);
    j->timer = evtimer_new(base, job_timer, j);
    if (!j->pool || !j->timer) {
        job_free(j);
        return NULL;
    }
    j->done = step;
    j->arg = arg;
    j->jnext = G_jobs;
    if (G_jobs)
        G_jobs->jprev = j;
    G_jobs = j;
    evtimer_add(j->timer, &zero);
    return j;
}

/* The MAIL line for env with the parameters the downstream offers. */
static char *mail_line(const struct fwd_conn *c, const struct fwd_envelope *env,
                       long long size)
{
    char sz[32] = "";
    if (c->caps.size >= 0 && size >= 0)
        snprintf(sz, sizeof sz, " SIZE=%lld", size);
    size_t n = strlen(env->mail_from ? env->mail_from : "") + 80;
    char *line = malloc(n);
    if (line)
        snprintf(line, n, "MAIL FROM:<%s>%s%s%s", env->mail_from ? env->mail_from : "",
                 sz, env->body == SMTP_BODY_8BITMIME ? " BODY=8BITMIME" : "",
                 env->smtputf8 ? " SMTPUTF8" : "");
    return line;
}

int fwd_session_mail(struct fwd_job *j, const struct fwd_envelope *env, long long size)
{
    struct fwd_conn *c = step_conn(j);
    if (!c)
        return -1;
    int code;
    const char *enh;
    j->smtputf8 = env->smtputf8;
    j->body = env->body;
    const char *why = ext_missing(c, j, &code, &enh);
    if (why) {
        step_report(j, code, enh, why);
        return 0;
    }
    job_reset_txn(j);
    for (int i = 0; i < XF_N; i++) {
        free(j->xf[i]);
        j->xf[i] = NULL;
    }
    free(j->from);
    free(j->rcpt);
    free(j->res.rcpt);
    j->from = NULL;
    j->rcpt = NULL;
    j->res.rcpt = NULL;
    free(j->mailcmd);
    j->mailcmd = mail_line(c, env, size);
    struct fwd_envelope xf = *env;
    xf.nrcpt = 0;
    if (!j->mailcmd || job_copy_env(j, &xf) < 0 || xf_build(c, j) < 0)
        return -1;
    if (j->nxf)
        step_send(c, "%s\r\n", j->xfcmd[0], c->pool->t_cmd);
    else
        step_send(c, "%s\r\n", j->mailcmd, c->pool->t_cmd);
    return 0;
}

int fwd_session_rcpt(struct fwd_job *j, const char *addr)
{
    struct fwd_conn *c = step_conn(j);
    if (!c)
        return -1;
    step_send(c, "RCPT TO:<%s>\r\n", addr, c->pool->t_cmd);
    return 0;
}

int fwd_session_data(struct fwd_job *j, struct msg *m)
{
    struct fwd_conn *c = step_conn(j);
    if (!c)
        return -1;
    j->m = m;
    j->size = msg_size(m);
    j->step_data = 1;
    step_send(c, "DATA\r\n", NULL, c->pool->t_cmd);
    return 0;
}

int fwd_session_rset(struct fwd_job *j)
{
    struct fwd_conn *c = step_conn(j);
    if (!c)
        return -1;
    step_send(c, "RSET\r\n", NULL, c->pool->t_cmd);
    return 0;
}

void fwd_session_close(struct fwd_job *j)
{
    if (!j)
        return;
    struct fwd_conn *c = j->conn;
    if (c && c->st == CS_HELD) {
        c->job = NULL;
        conn_quit(c);                       /* polite: QUIT, then close */
        j->conn = NULL;
    }
    fwd_cancel(j);
}

