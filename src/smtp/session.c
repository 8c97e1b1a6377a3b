/* session.c — the SMTP state machine of one connection.
 *
 * Input arrives in the bufferevent's input buffer and is consumed by
 * session_process() according to the input mode: command lines (IN_CMD),
 * dot-stuffed message data (IN_DATA) or counted BDAT chunks (IN_BDAT).
 * Every command is parsed (smtp_parse.c), checked against the state, and its
 * decision handed to the plugin chain via run_hook(); the continuation
 * functions (*_done) turn the chain's answer into the reply. While a hook is
 * pending, input waits in the buffer, so pipelined commands are answered in
 * order. Replies go to the output buffer and leave in one write per loop
 * turn, which batches the replies to a pipelined group. */
#include "smtp/session.h"
#include "core/clock.h"
#include "smtp/session_stats.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "core/check.h"
#include "proto/auth.h"
#include "core/config.h"
#include "core/netmask.h"
#include "core/shmcount.h"
#include "core/utf8.h"
#include "net/dns.h"
#include "msg/message.h"
#include "smtp/server.h"
#include "net/tls.h"

#define SESSION_READ_HIGH (256 * 1024)    /* stop reading past this backlog */
/* Replies a client does not read: past OUT_HIGH (with what a STARTTLS
 * layer has passed to the plain one below it) no command is read until the
 * output drains to OUT_LOW. */
#define SESSION_OUT_HIGH (256 * 1024)
#define SESSION_OUT_LOW (64 * 1024)
#define SESSION_SHUTDOWN_FLUSH 1.0        /* seconds to flush the 421 at shutdown */

static void session_process(struct session *s);
static size_t output_len(const struct session *s);
static int junk_command(struct session *s);
static void start_banner(struct session *s);
static int starttls_offered(const struct session *s);
static int auth_offered(const struct session *s);

/* ---------------------------------------------------------------- logging */

/* ---------------------------------------------------------------- replies */

/* One reply line, built in a buffer and added in one piece. The text never
 * injects line ends or control bytes: they become spaces. */
static void reply_line(struct evbuffer *out, int code, char sep,
                       const char *enh, const char *text, size_t len)
{
    char buf[1024];
    size_t n = (size_t)((enh && *enh)
                        ? snprintf(buf, sizeof buf, "%d%c%s ", code, sep, enh)
                        : snprintf(buf, sizeof buf, "%d%c", code, sep));
    for (size_t i = 0; i < len; i++) {
        if (n == sizeof buf - 2) {      /* a very long text: flush a piece */
            evbuffer_add(out, buf, n);
            n = 0;
        }
        unsigned char c = (unsigned char)text[i];
        buf[n++] = (c < 0x20 || c == 0x7f) ? ' ' : (char)c;
    }
    buf[n++] = '\r';
    buf[n++] = '\n';
    evbuffer_add(out, buf, n);
}

void session_reply(struct session *s, int code, const char *enh, const char *text)
{
    struct evbuffer *out = bufferevent_get_output(s->bev);
    const char *p = text ? text : "";
    for (;;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        if (len && p[len - 1] == '\r')
            len--;
        reply_line(out, code, nl && nl[1] ? '-' : ' ', enh, p, len);
        if (!nl || !nl[1])
            break;
        p = nl + 1;
    }
    if (log_enabled(LOG_LVL_DEBUG))
        slog(s, LOG_LVL_DEBUG, "> %d %s %s", code, enh ? enh : "", p);
}

/* Count a protocol error whose reply is already queued. */
static void count_error(struct session *s)
{
    if (s->state != SS_CLOSING && ++s->errors >= s->srv->cfg->max_errors) {
        slog(s, LOG_LVL_INFO, "too many errors (%u), closing", s->errors);
        session_reply(s, 421, "4.7.0", "Too many errors, closing connection");
        s->last_result = "errors";
        session_close(s);
    }
}

/* A protocol error: reply and count it; too many closes the session. */
static void proto_error(struct session *s, int code, const char *enh,
                        const char *text)
{
    session_reply(s, code, enh, text);
    count_error(s);
}

static void status_error(struct session *s, const smtp_status *st)
{
    proto_error(s, st->code, st->enh, st->text);
}

/* ------------------------------------------------------- hook answer table */

struct hook_default {
    int deny_code; const char *deny_enh; const char *deny_text;
    int soft_code; const char *soft_enh; const char *soft_text;
};

static const struct hook_default hook_defaults[HOOK_COUNT] = {
    [HOOK_CONNECT] = { 554, "5.7.1", "Connection rejected",
                       421, "4.7.0", "Connection temporarily rejected" },
    [HOOK_HELO]    = { 550, "5.7.1", "HELO rejected",
                       450, "4.7.1", "HELO temporarily rejected" },
    [HOOK_EHLO]    = { 550, "5.7.1", "EHLO rejected",
                       450, "4.7.1", "EHLO temporarily rejected" },
    [HOOK_AUTH]    = { 535, "5.7.8", "Authentication credentials invalid",
                       454, "4.7.0", "Temporary authentication failure" },
    [HOOK_MAIL]    = { 550, "5.7.1", "Sender rejected",
                       450, "4.7.1", "Sender temporarily rejected" },
    [HOOK_RCPT]    = { 550, "5.7.1", "Recipient rejected",
                       450, "4.7.1", "Recipient temporarily rejected" },
    [HOOK_DATA]    = { 554, "5.7.1", "Message rejected",
                       451, "4.7.1", "Message temporarily rejected" },
    [HOOK_DATA_POST] = { 550, "5.7.1", "Message rejected",
                       451, "4.7.1", "Message temporarily rejected" },
    [HOOK_QUEUE]   = { 554, "5.7.1", "Message rejected",
                       451, "4.3.0", "Message temporarily rejected" },
    [HOOK_UNRECOGNIZED] = { 500, "5.5.2", "Command unrecognized",
                       450, "4.5.2", "Command temporarily refused" },
};

/* Reply for a deny-class answer. Returns 1 when it replied (the caller
 * stops), 0 for NEXT/OK. DISCONNECT variants also close the session. */
static int deny_reply(struct session *s, enum hook_id h, struct hook_result *r)
{
    const struct hook_default *d = &hook_defaults[h];
    int code;
    const char *enh, *text;

    switch (r->rc) {
    case RC_NEXT:
    case RC_OK:
        return 0;
    case RC_DENY:
    case RC_DENYDISCONNECT:
        code = d->deny_code ? d->deny_code : 550;
        enh = d->deny_enh ? d->deny_enh : "5.7.1";
        text = d->deny_text ? d->deny_text : "Rejected";
        break;
    case RC_DENYSOFT:
        code = d->soft_code ? d->soft_code : 451;
        enh = d->soft_enh ? d->soft_enh : "4.7.1";
        text = d->soft_text ? d->soft_text : "Temporarily rejected";
        break;
    case RC_DISCONNECT:
    default:
        code = 421;
        enh = "4.7.0";
        text = "Closing connection";
        break;
    }
    if (r->code)
        code = r->code;
    if (r->enh[0])
        enh = r->enh;
    if (r->msg)
        text = r->msg;
    session_reply(s, code, enh, text);
    sstats_deny(s, h, code);
    slog(s, LOG_LVL_INFO, "%s: %s %d %s %s", hook_name(h), hook_rc_name(r->rc),
         code, enh, text);
    /* a refused connection is closed whatever the answer */
    if (r->rc == RC_DENYDISCONNECT || r->rc == RC_DISCONNECT || h == HOOK_CONNECT) {
        s->last_result = hook_rc_name(r->rc);
        session_close(s);
    }
    return 1;
}

/* Run hook h; cont gets the answer now or when the engine finishes. */
static void run_hook(struct session *s, enum hook_id h, void *arg,
                     session_cont_fn cont)
{
    struct hook_result r = { .rc = RC_NEXT };
    if (s->srv->engine->hook(&s->hc, h, arg, &r)) {
        cont(s, &r);
        hook_result_clear(&r);
        return;
    }
    s->hc.pending = 1;
    s->cont = cont;
    guard_idle(&s->guard, 0);       /* the hook has its own budget */
}

/* The idle clock starts again, with the limit of the input mode. */
static void reset_timeout(struct session *s)
{
    const struct kasi_config *c = s->srv->cfg;
    guard_idle(&s->guard, s->input == IN_CMD || s->input == IN_SKIPLINE
                              ? c->timeout_command : c->timeout_data_block);
}

/* A message's data phase (DATA, or BDAT chunks up to LAST) must keep the
 * minimum rate once its first data_block seconds are over. */
static void data_phase_start(struct session *s)
{
    const struct kasi_config *c = s->srv->cfg;
    guard_rate_start(&s->guard, c->min_data_rate, c->timeout_data_block);
}

#define SESSION_OF(c) ((struct session *)((char *)(c) - offsetof(struct session, hc)))

/* hook_ctx.done: the engine's late answer. */
static void hook_done(struct hook_ctx *c, struct hook_result *r)
{
    struct session *s = SESSION_OF(c);
    if (!CHECK(s->hc.pending && s->cont)) {     /* an answer nobody awaits */
        hook_result_clear(r);
        return;
    }
    session_cont_fn cont = s->cont;
    s->hc.pending = 0;
    s->cont = NULL;
    if (s->state != SS_CLOSING)
        reset_timeout(s);
    cont(s, r);
    hook_result_clear(r);
    session_process(s);
}

/* ----------------------------------------------------------- transactions */

static void txn_end(struct session *s)
{
    sstats_txn_end(s);
    guard_rate_stop(&s->guard);
    txn_free(s->conn.txn);
    s->conn.txn = NULL;
    if (s->state == SS_MAIL || s->state == SS_RCPT)
        s->state = SS_READY;
}

static enum data_bare_policy bare_policy(const struct kasi_config *c)
{
    return c->bare_lf_accept ? DATA_BARE_ACCEPT : DATA_BARE_REJECT;
}

static enum data_long_policy long_policy(const struct kasi_config *c)
{
    return c->long_lines_wrap ? DATA_LONG_WRAP : DATA_LONG_REJECT;
}

static int txn_open_msg(struct session *s)
{
    const struct kasi_config *c = s->srv->cfg;
    struct msg_store *st = msg_store_new(c->memory_buffer, c->spool_dir);
    if (st)
        s->conn.txn->msg = msg_new(st);
    if (!s->conn.txn->msg) {
        msg_store_free(st);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------- greeting */

static void connect_done(struct session *s, struct hook_result *r)
{
    if (deny_reply(s, HOOK_CONNECT, r))
        return;
    char banner[512];
    snprintf(banner, sizeof banner, "%s ESMTP kasi", s->srv->cfg->hostname);
    session_reply(s, 220, NULL, r->msg ? r->msg : banner);
    sstats_greeted(s);
    s->state = SS_GREET;
}

static void start_banner(struct session *s)
{
    run_hook(s, HOOK_CONNECT, NULL, connect_done);
}

static const char *received_proto(const struct session *s)
{
    static const char *const names[2][2][2] = {
        /* [esmtp][tls][auth] */
        { { "SMTP", "SMTPA" }, { "SMTPS", "SMTPSA" } },
        { { "ESMTP", "ESMTPA" }, { "ESMTPS", "ESMTPSA" } },
    };
    if (s->conn.txn && s->conn.txn->mail.smtputf8)
        return s->conn.tls ? (s->conn.auth_user ? "UTF8SMTPSA" : "UTF8SMTPS")
                      : (s->conn.auth_user ? "UTF8SMTPA" : "UTF8SMTP");
    return names[!!s->conn.esmtp][!!s->conn.tls][!!s->conn.auth_user];
}

static void helo_done(struct session *s, struct hook_result *r)
{
    const struct kasi_config *c = s->srv->cfg;
    if (deny_reply(s, s->conn.esmtp ? HOOK_EHLO : HOOK_HELO, r)) {
        free(s->conn.helo);          /* a refused greeting leaves the session ungreeted */
        s->conn.helo = NULL;
        if (s->state != SS_CLOSING)
            s->state = SS_GREET;
        return;
    }
    s->state = SS_READY;
    if (!s->conn.esmtp) {
        char text[600];
        snprintf(text, sizeof text, "%s", c->hostname);
        session_reply(s, 250, NULL, text);
        return;
    }
    char text[1024];
    snprintf(text, sizeof text,
             "%s Hello %.255s [%s]\nPIPELINING\nSIZE %zu\n8BITMIME\n"
             "ENHANCEDSTATUSCODES\nSMTPUTF8\nCHUNKING%s%s",
             c->hostname, s->conn.helo, s->conn.remote_ip, c->max_message_size,
             starttls_offered(s) ? "\nSTARTTLS" : "",
             auth_offered(s) ? "\nAUTH " AUTH_MECHANISMS : "");
    session_reply(s, 250, NULL, text);
}

static void cmd_helo(struct session *s, const struct smtp_cmd *c)
{
    smtp_status st;
    if (smtp_parse_helo(c->arg, &st) < 0) {
        status_error(s, &st);
        return;
    }
    txn_end(s);                 /* HELO/EHLO imply RSET */
    free(s->conn.helo);
    s->conn.helo = strndup(c->arg, c->arg_len);
    s->conn.esmtp = c->verb == SMTP_EHLO;
    if (!s->conn.helo) {
        session_reply(s, 451, "4.3.0", "Out of memory");
        return;
    }
    run_hook(s, s->conn.esmtp ? HOOK_EHLO : HOOK_HELO, NULL, helo_done);
}

/* ------------------------------------------------------------ MAIL / RCPT */

static void mail_done(struct session *s, struct hook_result *r)
{
    if (deny_reply(s, HOOK_MAIL, r)) {
        txn_end(s);
        return;
    }
    s->state = SS_MAIL;
    session_reply(s, 250, "2.1.0", r->msg ? r->msg : "Ok");
}

static void cmd_mail(struct session *s, const struct smtp_cmd *c)
{
    const struct kasi_config *cfg = s->srv->cfg;
    if (s->state == SS_GREET) {
        proto_error(s, 503, "5.5.1", "Error: send HELO/EHLO first");
        return;
    }
    if (s->state != SS_READY) {
        proto_error(s, 503, "5.5.1", "Error: nested MAIL command");
        return;
    }
    if (s->listen && s->listen->submission && !s->conn.auth_user) {
        session_reply(s, 530, "5.7.0", "Authentication required");
        return;
    }
    struct smtp_parse_opts o = { .esmtp = s->conn.esmtp,
                                 .max_size = (long long)cfg->max_message_size };
    struct smtp_mail m;
    smtp_status st;
    if (smtp_parse_mail(c->arg, &o, &m, &st) < 0) {
        status_error(s, &st);
        return;
    }
    s->conn.txn = txn_new(&s->conn, ++s->ntxn);
    if (!s->conn.txn) {
        smtp_mail_clear(&m);
        session_reply(s, 451, "4.3.0", "Out of memory");
        return;
    }
    s->conn.txn->mail = m;
    run_hook(s, HOOK_MAIL, NULL, mail_done);
}

/* rcpt_ok runs after the 250: only a disconnect answer matters. */
static void rcpt_ok_done(struct session *s, struct hook_result *r)
{
    if (r->rc == RC_DISCONNECT || r->rc == RC_DENYDISCONNECT)
        deny_reply(s, HOOK_RCPT_OK, r);
}

/* The recipient under decision waits in s->conn.txn->rcpt[nrcpt] (not counted
 * until accepted). */
static void rcpt_done(struct session *s, struct hook_result *r)
{
    struct txn *t = s->conn.txn;
    struct smtp_rcpt *cand = &t->rcpt[t->nrcpt];
    if (deny_reply(s, HOOK_RCPT, r)) {
        smtp_rcpt_clear(cand);
        return;
    }
    t->nrcpt++;
    sstats_rcpt_accepted(s);
    s->state = SS_RCPT;
    session_reply(s, 250, "2.1.5", r->msg ? r->msg : "Ok");
    run_hook(s, HOOK_RCPT_OK, &t->rcpt[t->nrcpt - 1], rcpt_ok_done);
}

static void cmd_rcpt(struct session *s, const struct smtp_cmd *c)
{
    const struct kasi_config *cfg = s->srv->cfg;
    if (s->state != SS_MAIL && s->state != SS_RCPT) {
        proto_error(s, 503, "5.5.1", "Error: need MAIL command");
        return;
    }
    struct txn *t = s->conn.txn;
    if (t->nrcpt >= cfg->max_recipients) {
        if (junk_command(s))
            return;
        session_reply(s, 452, "4.5.3", "Error: too many recipients");
        return;
    }
    struct smtp_parse_opts o = { .esmtp = s->conn.esmtp, .smtputf8 = t->mail.smtputf8,
                                 .max_size = (long long)cfg->max_message_size };
    struct smtp_rcpt r;
    smtp_status st;
    if (smtp_parse_rcpt(c->arg, &o, &r, &st) < 0) {
        status_error(s, &st);
        return;
    }
    /* reserve the slot, then decide */
    if (txn_add_rcpt(t, &r) < 0) {
        smtp_rcpt_clear(&r);
        session_reply(s, 451, "4.3.0", "Out of memory");
        return;
    }
    t->nrcpt--;
    run_hook(s, HOOK_RCPT, &t->rcpt[t->nrcpt], rcpt_done);
}

/* ------------------------------------------------------------ DATA / BDAT */

static void finish_message(struct session *s);

static void data_emit(void *ctx, const char *p, size_t n)
{
    struct session *s = ctx;
    struct txn *t = s->conn.txn;
    const struct kasi_config *c = s->srv->cfg;
    t->bytes += n;
    if (c->max_message_size && t->bytes > c->max_message_size)
        t->too_big = 1;
    if (!t->too_big)
        msg_store_append(t->msg->store, p, n);
}

static void data_done(struct session *s, struct hook_result *r)
{
    if (deny_reply(s, HOOK_DATA, r))
        return;     /* the transaction stays open: the client may RSET */
    const struct kasi_config *c = s->srv->cfg;
    if (txn_open_msg(s) < 0) {
        session_reply(s, 451, "4.3.0", "Out of memory");
        return;
    }
    data_decoder_init(&s->dec, c->max_line_length, bare_policy(c), long_policy(c),
                      data_emit, s);
    s->input = IN_DATA;
    reset_timeout(s);
    data_phase_start(s);
    session_reply(s, 354, NULL, "End data with <CR><LF>.<CR><LF>");
}

static void cmd_data(struct session *s, const struct smtp_cmd *c)
{
    if (*c->arg) {
        proto_error(s, 501, "5.5.4", "Syntax: DATA");
        return;
    }
    if (s->state == SS_MAIL || (s->state == SS_RCPT && s->conn.txn->bdat)) {
        proto_error(s, 503, "5.5.1", s->state == SS_MAIL
                    ? "Error: need RCPT command"
                    : "Error: DATA not allowed after BDAT");
        return;
    }
    if (s->state != SS_RCPT) {
        proto_error(s, 503, "5.5.1", "Error: need MAIL command");
        return;
    }
    run_hook(s, HOOK_DATA, "DATA", data_done);
}

/* Read the body of a DATA command. Returns 0 when more input is needed. */
static int read_data(struct session *s, struct evbuffer *in)
{
    struct evbuffer_iovec v[8];
    int nv = evbuffer_peek(in, -1, NULL, v, 8);
    size_t used = 0;
    int done = 0;
    for (int i = 0; i < nv && i < 8 && !done; i++) {
        used += data_decoder_feed(&s->dec, v[i].iov_base, v[i].iov_len, &done);
    }
    evbuffer_drain(in, used);
    s->nbytes += used;
    guard_rate_bytes(&s->guard, used);
    if (done) {
        s->input = IN_CMD;
        reset_timeout(s);
        finish_message(s);
    }
    return 1;
}

static void bdat_chunk_end(struct session *s)
{
    s->input = IN_CMD;
    reset_timeout(s);
    if (s->bdat_discard) {
        struct hook_result *r = &s->bdat_reply;
        session_reply(s, r->code, r->enh, r->msg);
        hook_result_clear(r);
        s->bdat_discard = 0;
        return;
    }
    if (!s->bdat_last) {
        char text[64];
        snprintf(text, sizeof text, "%zu octets received", s->conn.txn->bytes);
        session_reply(s, 250, "2.0.0", text);
        return;
    }
    data_decoder_scan_end(&s->dec);
    finish_message(s);
}

static int read_bdat(struct session *s, struct evbuffer *in)
{
    struct evbuffer_iovec v[8];
    int nv = evbuffer_peek(in, -1, NULL, v, 8);
    size_t used = 0;
    for (int i = 0; i < nv && i < 8 && s->bdat_left > 0; i++) {
        size_t n = v[i].iov_len;
        if (n > s->bdat_left)
            n = (size_t)s->bdat_left;
        if (!s->bdat_discard) {
            data_decoder_scan(&s->dec, v[i].iov_base, n);
            data_emit(s, v[i].iov_base, n);
        }
        s->bdat_left -= n;
        used += n;
    }
    evbuffer_drain(in, used);
    s->nbytes += used;
    guard_rate_bytes(&s->guard, used);
    if (s->bdat_left == 0)
        bdat_chunk_end(s);
    return 1;
}

/* Read the chunk and then answer with (code, enh, text). */
static void bdat_discard(struct session *s, int code, const char *enh,
                         const char *text, int is_error)
{
    s->bdat_discard = 1;
    s->bdat_reply.code = code;
    snprintf(s->bdat_reply.enh, sizeof s->bdat_reply.enh, "%s", enh);
    s->bdat_reply.msg = strdup(text);
    if (is_error)
        s->errors++;
    s->input = IN_BDAT;
    if (s->bdat_left == 0)
        bdat_chunk_end(s);
}

static void bdat_data_done(struct session *s, struct hook_result *r)
{
    if (r->rc != RC_NEXT && r->rc != RC_OK) {
        /* refuse the message, but the chunk's bytes are on their way */
        const struct hook_default *d = &hook_defaults[HOOK_DATA];
        int soft = r->rc == RC_DENYSOFT;
        bdat_discard(s, r->code ? r->code : soft ? d->soft_code : d->deny_code,
                     r->enh[0] ? r->enh : soft ? d->soft_enh : d->deny_enh,
                     r->msg ? r->msg : soft ? d->soft_text : d->deny_text, 0);
        sstats_verdict(s, s->bdat_reply.code);
        txn_end(s);
        return;
    }
    if (txn_open_msg(s) < 0) {
        bdat_discard(s, 451, "4.3.0", "Out of memory", 0);
        sstats_verdict(s, 451);
        txn_end(s);
        return;
    }
    s->conn.txn->bdat = 1;
    data_phase_start(s);
    /* BDAT lines are not limited, but bare CR/LF follow the DATA policy */
    data_decoder_init(&s->dec, s->srv->cfg->max_line_length, bare_policy(s->srv->cfg),
                      DATA_LONG_WRAP, NULL, NULL);
    s->input = IN_BDAT;
    reset_timeout(s);
    if (s->bdat_left == 0)
        bdat_chunk_end(s);
}

static void cmd_bdat(struct session *s, const struct smtp_cmd *c)
{
    unsigned long long size;
    int last;
    smtp_status st;
    if (smtp_parse_bdat(c->arg, &size, &last, &st) < 0) {
        status_error(s, &st);
        return;
    }
    s->bdat_left = size;
    s->bdat_last = last;
    if (s->state != SS_RCPT) {
        bdat_discard(s, 503, "5.5.1", s->state == SS_MAIL
                     ? "Error: need RCPT command" : "Error: need MAIL command", 1);
        return;
    }
    if (!s->conn.txn->bdat) {        /* first chunk: the data hook decides */
        run_hook(s, HOOK_DATA, "BDAT", bdat_data_done);
        return;
    }
    s->input = IN_BDAT;
    if (size == 0)
        bdat_chunk_end(s);
}

/* --------------------------------------------------- end of a message */

/* queue_ok runs after the 250: only a disconnect answer matters. */
static void queue_ok_done(struct session *s, struct hook_result *r)
{
    txn_end(s);
    if (r->rc == RC_DISCONNECT || r->rc == RC_DENYDISCONNECT)
        deny_reply(s, HOOK_QUEUE_OK, r);
}

static void queue_done(struct session *s, struct hook_result *r)
{
    struct txn *t = s->conn.txn;
    if (r->rc == RC_OK) {
        char text[512];
        if (!r->msg)
            snprintf(text, sizeof text, "Ok: queued as %s", t->id);
        session_reply(s, r->code ? r->code : 250, r->enh[0] ? r->enh : "2.0.0",
                      r->msg ? r->msg : text);
        sstats_verdict(s, r->code ? r->code : 250);
        char *from = smtp_addr_format(&t->mail.addr);
        slog(s, LOG_LVL_INFO, "txn %s accepted: from=<%s> rcpts=%zu size=%zu",
             t->id, from ? from : "", t->nrcpt, msg_size(t->msg));
        free(from);
        s->nmsgs++;
        s->nrcpts += (unsigned)t->nrcpt;
        s->junk = 0;
        s->last_result = "250";
        run_hook(s, HOOK_QUEUE_OK, NULL, queue_ok_done);
        return;
    }
    if (r->rc == RC_NEXT) {
        r->rc = RC_DENYSOFT;
        if (!r->msg)
            r->msg = strdup("Queuing not available");
    }
    deny_reply(s, HOOK_QUEUE, r);
    txn_end(s);
}

static void data_post_done(struct session *s, struct hook_result *r)
{
    if (deny_reply(s, HOOK_DATA_POST, r)) {
        txn_end(s);
        return;
    }
    run_hook(s, HOOK_QUEUE, NULL, queue_done);
}

static int add_received(struct session *s)
{
    struct txn *t = s->conn.txn;
    const struct kasi_config *c = s->srv->cfg;
    char date[64], buf[2048];
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S %z", &tm);
    char helo[512], rdns[300];      /* client-chosen names: printable UTF-8 only */
    utf8_printable(s->conn.helo, helo, sizeof helo, '?');
    utf8_printable(s->conn.rdns && s->conn.rdns_confirmed ? s->conn.rdns : "unknown", rdns,
                   sizeof rdns, '?');
    int n = snprintf(buf, sizeof buf, "Received: from %s (%s [%s])\r\n"
                     "\tby %s (kasi) with %s id %s",
                     helo, rdns, s->conn.remote_ip, c->hostname, received_proto(s), t->id);
    if (n > (int)sizeof buf - 600)  /* a long HELO: keep room for the rest */
        n = (int)sizeof buf - 600;
    if (s->conn.tls)
        n += snprintf(buf + n, sizeof buf - (size_t)n, "\r\n\t(version=%s cipher=%s)",
                      s->conn.tls_version, s->conn.tls_cipher);
    if (t->nrcpt == 1 && t->rcpt[0].addr.local) {
        char *a = smtp_addr_format(&t->rcpt[0].addr);
        n += snprintf(buf + n, sizeof buf - (size_t)n, "\r\n\tfor <%s>", a ? a : "");
        free(a);
    }
    if (n > (int)sizeof buf - 80)
        n = (int)sizeof buf - 80;
    n += snprintf(buf + n, sizeof buf - (size_t)n, "; %s\r\n", date);
    return msg_header_prepend_raw(t->msg, buf, (size_t)n);
}

static void finish_message(struct session *s)
{
    struct txn *t = s->conn.txn;
    int code;
    const char *enh;
    const char *why = data_decoder_verdict(&s->dec, &code, &enh);

    guard_rate_stop(&s->guard);     /* the data is in: hooks have their budgets */
    if (why) {
        slog(s, LOG_LVL_INFO, "txn %s rejected: %s", t->id, why);
        session_reply(s, code, enh, why);
    } else if (t->too_big) {
        session_reply(s, code = 552, "5.3.4", "Message size exceeds fixed maximum message size");
    } else if (msg_store_failed(t->msg->store)) {
        slog(s, LOG_LVL_ERROR, "txn %s: message store: %s", t->id, strerror(errno));
        session_reply(s, code = 451, "4.3.0", "Error: local error storing the message");
    } else if (msg_parse_headers(t->msg) < 0 || add_received(s) < 0) {
        session_reply(s, code = 451, "4.3.0", "Out of memory");
    } else {
        run_hook(s, HOOK_DATA_POST, NULL, data_post_done);
        return;
    }
    sstats_verdict(s, code);
    txn_end(s);
}

/* ------------------------------------------------------------- STARTTLS */

static void session_read_cb(struct bufferevent *bev, void *arg);
static void session_write_cb(struct bufferevent *bev, void *arg);
static void session_event_cb(struct bufferevent *bev, short what, void *arg);
static void below_drained_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info,
                             void *arg);

static int starttls_offered(const struct session *s)
{
    enum listen_tls m = s->listen ? s->listen->tls : LISTEN_TLS_DEFAULT;
    return !s->conn.tls && !s->tls_handshake && tls_available() &&
           (m == LISTEN_TLS_STARTTLS || m == LISTEN_TLS_DEFAULT);
}

static int auth_offered(const struct session *s)
{
    return s->listen && s->listen->auth && (s->conn.tls || s->listen->auth_plaintext);
}

/* Point the session at a (new) bufferevent. */
static void session_attach(struct session *s, struct bufferevent *bev)
{
    s->bev = bev;
    bufferevent_setcb(bev, session_read_cb, session_write_cb, session_event_cb, s);
    bufferevent_setwatermark(bev, EV_READ, 0, SESSION_READ_HIGH);
    bufferevent_setwatermark(bev, EV_WRITE, SESSION_OUT_LOW, 0);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
}

/* RFC 3207: after TLS starts, the client greets again and nothing learnt
 * before counts. */
static void starttls_reset(struct session *s)
{
    txn_end(s);
    free(s->conn.helo);
    s->conn.helo = NULL;
    s->conn.esmtp = 0;
    if (s->conn.auth_user) {
        free(s->conn.auth_user);
        s->conn.auth_user = NULL;
        s->conn.relaying = 0;
    }
}

static void cmd_starttls(struct session *s, const struct smtp_cmd *c)
{
    if (*c->arg) {
        proto_error(s, 501, "5.5.4", "Syntax: STARTTLS");
        return;
    }
    if (s->conn.tls) {
        proto_error(s, 503, "5.5.1", "Error: TLS already active");
        return;
    }
    if (!starttls_offered(s)) {
        proto_error(s, 502, "5.5.1", "Error: command not implemented");
        return;
    }
    if (s->state != SS_READY) {
        proto_error(s, 503, "5.5.1", s->state == SS_GREET
                    ? "Error: send EHLO first" : "Error: MAIL transaction in progress");
        return;
    }
    /* CVE-2011-0411: what the client pipelined after STARTTLS was sent in
     * the clear; it must never be taken as a command inside TLS. */
    struct evbuffer *in = bufferevent_get_input(s->bev);
    size_t junk = evbuffer_get_length(in);
    if (junk) {
        slog(s, LOG_LVL_INFO, "STARTTLS: discarding %zu pipelined bytes", junk);
        evbuffer_drain(in, junk);
    }
    session_reply(s, 220, "2.0.0", "Ready to start TLS");
    struct bufferevent *tb = tls_wrap_filter(s->srv->base, s->bev);
    if (!tb) {
        slog(s, LOG_LVL_ERROR, "STARTTLS: cannot set up TLS");
        s->last_result = "tls-error";
        session_close(s);
        return;
    }
    starttls_reset(s);
    s->tls_handshake = 1;
    s->state = SS_NEW;          /* nothing is read until the handshake ends */
    session_attach(s, tb);
    /* the TLS layer holds its records back while the plain layer is full */
    s->below_cb = evbuffer_add_cb(bufferevent_get_output(bufferevent_get_underlying(tb)),
                                  below_drained_cb, s);
    guard_idle(&s->guard, 0);
    guard_deadline(&s->guard, GUARD_HANDSHAKE, s->srv->cfg->timeout_tls_handshake);
}

/* The handshake finished (STARTTLS or implicit TLS). */
static void tls_established(struct session *s)
{
    int implicit = s->tls_handshake == 2;
    s->tls_handshake = 0;
    s->conn.tls = 1;
    guard_clear_deadline(&s->guard, GUARD_HANDSHAKE);
    tls_info(s->bev, s->conn.tls_version, sizeof s->conn.tls_version, s->conn.tls_cipher,
             sizeof s->conn.tls_cipher, s->conn.tls_sni, sizeof s->conn.tls_sni);
    slog(s, LOG_LVL_INFO, "TLS established: version=%s cipher=%s sni=%s",
         s->conn.tls_version, s->conn.tls_cipher, s->conn.tls_sni[0] ? s->conn.tls_sni : "-");
    reset_timeout(s);
    if (implicit) {
        start_banner(s);
        return;
    }
    s->state = SS_GREET;
    session_process(s);
}

/* ----------------------------------------------------------------- AUTH */

/* AUTH failures are counted per client network (limits.ipv4_prefix /
 * ipv6_prefix) over the last auth.failure_window seconds, in the shared
 * counters: all workers see them and a restart keeps them. The key of
 * the client's network, or 0 when it is exempt (limits.exempt). */
static int auth_net_key(const struct session *s, unsigned char key[NETMASK_KEY])
{
    const struct kasi_config *c = s->srv->cfg;
    unsigned char ip[NETMASK_BYTES];
    if (netmask_addr(s->conn.remote_ip, ip) < 0 || netmask_list_match(&c->exempt, ip))
        return 0;
    netmask_key(ip, c->ipv4_prefix, c->ipv6_prefix, 'A', key);
    return 1;
}

/* Too many recent failures from the client's network (auth: section). */
static int auth_ip_limited(const struct session *s)
{
    unsigned max = s->srv->cfg->auth_max_failures_per_ip;
    unsigned char key[NETMASK_KEY];
    return max && auth_net_key(s, key) &&
           shmcount_count(key, sizeof key, clock_now()) >= max;
}

static void auth_close(struct session *s, const char *why)
{
    slog(s, LOG_LVL_INFO, "%s (%u on this connection), closing", why, s->auth_failures);
    session_reply(s, 421, "4.7.0", "Too many authentication failures, closing connection");
    s->last_result = "auth";
    session_close(s);
}

/* A user name fit for a log line: printable, bounded. */
static void safe_name(const char *in, char *out, size_t len)
{
    size_t i = 0;
    for (; in && in[i] && i + 1 < len; i++)
        out[i] = (unsigned char)in[i] < 0x21 || in[i] == 0x7f ? '?' : in[i];
    out[i] = '\0';
}

static void auth_delay_cb(evutil_socket_t fd, short what, void *arg)
{
    struct session *s = arg;
    (void)fd;
    (void)what;
    s->paused = 0;
    char *msg = s->auth_fail_msg;
    s->auth_fail_msg = NULL;
    if (s->state == SS_CLOSING) {
        free(msg);
        return;
    }
    if (s->auth_failures >= s->srv->cfg->auth_max_failures)
        auth_close(s, "too many authentication failures");
    else if (auth_ip_limited(s))
        auth_close(s, "too many authentication failures from this address");
    else
        session_reply(s, 535, "5.7.8", msg ? msg : "Authentication credentials invalid");
    free(msg);
    if (s->state == SS_CLOSING)
        return;
    session_process(s);
}

/* A refused attempt: answer 535 (with the plugin's text, msg, when it
 * gave one; taken) after a delay that doubles each time. */
static void auth_failed(struct session *s, char *msg)
{
    unsigned n = ++s->auth_failures;
    unsigned char key[NETMASK_KEY];
    if (auth_net_key(s, key))
        shmcount_add(key, sizeof key, 1, s->srv->cfg->auth_failure_window, clock_now());
    free(s->auth_fail_msg);
    s->auth_fail_msg = msg;
    struct timeval tv = { (time_t)1 << (n < 6 ? n - 1 : 5), 0 };
    if (!s->auth_delay_ev)
        s->auth_delay_ev = evtimer_new(s->srv->base, auth_delay_cb, s);
    if (!s->auth_delay_ev || evtimer_add(s->auth_delay_ev, &tv) < 0) {
        auth_delay_cb(-1, 0, s);
        return;
    }
    s->paused = 1;
}

static void auth_done(struct session *s, struct hook_result *r)
{
    struct auth_sasl *a = s->sasl;
    char user[128];
    safe_name(a->user, user, sizeof user);
    slog(s, LOG_LVL_INFO, "auth: user=%s mechanism=%s %s", user, a->creds.mechanism,
         r->rc == RC_OK ? "ok" : hook_rc_name(r->rc));
    if (r->rc == RC_OK) {
        s->conn.auth_user = strdup(a->user);
        auth_clear(a);
        if (!s->conn.auth_user) {
            session_reply(s, 454, "4.3.0", "Out of memory");
            return;
        }
        s->conn.relaying = 1;
        session_reply(s, 235, "2.7.0", r->msg ? r->msg : "Authentication successful");
        return;
    }
    auth_clear(a);
    if (r->rc == RC_DENY || r->rc == RC_NEXT) {
        auth_failed(s, r->rc == RC_DENY ? r->msg : NULL);
        if (r->rc == RC_DENY)
            r->msg = NULL;
    } else
        deny_reply(s, HOOK_AUTH, r);
}

/* Act on what the SASL exchange says next. */
static void auth_next(struct session *s, const struct auth_step *st)
{
    switch (st->next) {
    case AUTH_CHALLENGE:
        s->input = IN_AUTH;
        session_reply(s, 334, NULL, st->challenge);
        break;
    case AUTH_FAIL:
        s->input = IN_CMD;
        proto_error(s, st->code, st->enh, st->text);
        break;
    case AUTH_COMPLETE:
        s->input = IN_CMD;
        run_hook(s, HOOK_AUTH, &s->sasl->creds, auth_done);
        break;
    }
}

/* The reason AUTH cannot start now, or NULL. */
static int auth_refused(struct session *s)
{
    const char *why = NULL;
    if (!s->listen || !s->listen->auth)
        why = "Error: authentication not enabled";
    else if (!s->conn.tls && !s->listen->auth_plaintext) {
        proto_error(s, 538, "5.7.11",
                    "Encryption required for requested authentication mechanism");
        return 1;
    } else if (s->state == SS_GREET || !s->conn.esmtp)
        why = "Error: send EHLO first";
    else if (s->conn.auth_user)
        why = "Error: already authenticated";
    else if (s->state != SS_READY)
        why = "Error: MAIL transaction in progress";
    if (why)
        proto_error(s, 503, "5.5.1", why);
    return why != NULL;
}

static void cmd_auth(struct session *s, const struct smtp_cmd *c)
{
    struct auth_step st;
    if (auth_refused(s))
        return;
    if (auth_ip_limited(s)) {
        auth_close(s, "AUTH refused: too many recent failures from this address");
        return;
    }
    if (!s->sasl && !(s->sasl = calloc(1, sizeof *s->sasl))) {
        session_reply(s, 454, "4.3.0", "Out of memory");
        return;
    }
    auth_start(s->sasl, c->arg, &st);
    auth_next(s, &st);
}

/* A response line during the exchange (IN_AUTH). */
static void auth_line(struct session *s, char *line, size_t len)
{
    struct auth_step st;
    if (strlen(line) != len) {
        auth_clear(s->sasl);
        st = (struct auth_step){ .next = AUTH_FAIL, .code = 501, .enh = "5.5.2",
                                 .text = "Invalid base64 data" };
    } else {
        auth_continue(s->sasl, line, &st);
    }
    explicit_bzero(line, len);
    auth_next(s, &st);
}

/* ----------------------------------------------------------- the rest */

/* Commands that move no mail (NOOP, HELP, VRFY, RSET, HELO/EHLO, a RCPT
 * over max_recipients) have a budget per session, renewed by each accepted
 * message: a flood of them ends in 421. Returns 1 when it closed. */
static int junk_command(struct session *s)
{
    unsigned max = s->srv->cfg->max_junk_commands;
    if (!max || ++s->junk <= max)
        return 0;
    slog(s, LOG_LVL_INFO, "too many commands without mail (%u), closing", max);
    session_reply(s, 421, "4.7.0", "Too many commands without mail, closing connection");
    s->last_result = "junk";
    session_close(s);
    return 1;
}

static int is_junk(enum smtp_verb v)
{
    return v == SMTP_NOOP || v == SMTP_HELP || v == SMTP_VRFY || v == SMTP_RSET ||
           v == SMTP_HELO || v == SMTP_EHLO;
}

static void rset_done(struct session *s, struct hook_result *r)
{
    if (r->rc == RC_DISCONNECT || r->rc == RC_DENYDISCONNECT) {
        deny_reply(s, HOOK_RSET, r);
        return;
    }
    session_reply(s, 250, "2.0.0", "Ok");
}

static void quit_done(struct session *s, struct hook_result *r)
{
    char text[512];
    snprintf(text, sizeof text, "%s closing connection", s->srv->cfg->hostname);
    session_reply(s, 221, "2.0.0", r->msg ? r->msg : text);
    s->last_result = "quit";
    session_close(s);
}

static void unrecognized_done(struct session *s, struct hook_result *r)
{
    if (r->rc == RC_OK) {   /* a plugin handled the command and replied */
        if (r->msg)
            session_reply(s, r->code ? r->code : 250, r->enh[0] ? r->enh : "2.0.0", r->msg);
        return;
    }
    if (r->rc != RC_NEXT) {
        deny_reply(s, HOOK_UNRECOGNIZED, r);
        count_error(s);
        return;
    }
    proto_error(s, 500, "5.5.2", "Error: command not recognized");
}


static void dispatch(struct session *s, const struct smtp_cmd *c, char *line)
{
    if (is_junk(c->verb) && junk_command(s))
        return;
    switch (c->verb) {
    case SMTP_HELO:
    case SMTP_EHLO: cmd_helo(s, c); break;
    case SMTP_MAIL: cmd_mail(s, c); break;
    case SMTP_RCPT: cmd_rcpt(s, c); break;
    case SMTP_DATA: cmd_data(s, c); break;
    case SMTP_BDAT: cmd_bdat(s, c); break;
    case SMTP_RSET:
        if (*c->arg) { proto_error(s, 501, "5.5.4", "Syntax: RSET"); break; }
        txn_end(s);
        run_hook(s, HOOK_RSET, NULL, rset_done);
        break;
    case SMTP_NOOP: session_reply(s, 250, "2.0.0", "Ok"); break;
    case SMTP_QUIT:
        if (*c->arg) { proto_error(s, 501, "5.5.4", "Syntax: QUIT"); break; }
        run_hook(s, HOOK_QUIT, NULL, quit_done);
        break;
    case SMTP_VRFY:
        if (!*c->arg) { proto_error(s, 501, "5.5.4", "Syntax: VRFY address"); break; }
        session_reply(s, 252, "2.5.0",
                      "Cannot VRFY user, but will accept message and attempt delivery");
        break;
    case SMTP_EXPN: proto_error(s, 502, "5.5.1", "EXPN not available"); break;
    case SMTP_HELP:
        session_reply(s, 214, "2.0.0",
                      "Commands: HELO EHLO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP\n"
                      "See RFC 5321");
        break;
    case SMTP_STARTTLS: cmd_starttls(s, c); break;
    case SMTP_AUTH: cmd_auth(s, c); break;
    default:
        run_hook(s, HOOK_UNRECOGNIZED, line, unrecognized_done);
        break;
    }
}

/* Handle one complete command line (CRLF removed). */
static void handle_line(struct session *s, char *line, size_t len)
{
    if (s->input == IN_AUTH) {      /* credentials: never logged */
        auth_line(s, line, len);
        return;
    }
    if (log_enabled(LOG_LVL_DEBUG)) {
        /* AUTH's initial response holds credentials: log the verb and mechanism */
        int n = len > 200 ? 200 : (int)len;
        if (len > 5 && !strncasecmp(line, "AUTH ", 5))
            n = 5 + (int)strcspn(line + 5, " ");
        slog(s, LOG_LVL_DEBUG, "< %.*s%s", n, line, (size_t)n < len ? " ..." : "");
    }
    if (memchr(line, '\r', len) || memchr(line, '\n', len)) {
        proto_error(s, 500, "5.5.2", "Error: bare CR or LF in command");
        return;
    }
    if (s->state == SS_GREET || s->state == SS_READY || s->state == SS_MAIL ||
        s->state == SS_RCPT) {
        struct smtp_cmd c;
        smtp_status st;
        if (smtp_cmd_split(line, len, &c, &st) < 0 && c.verb != SMTP_UNKNOWN) {
            status_error(s, &st);
            return;
        }
        if (c.verb == SMTP_UNKNOWN && memchr(line, '\0', len)) {
            status_error(s, &st);
            return;
        }
        dispatch(s, &c, line);
    }
}

/* A client trickling one byte at a time resets the read timeout forever
 * (slowloris): a command line must be complete within the command timeout
 * of its first byte. Returns 1 when the session was closed for it. */
static int partial_line_expired(struct session *s)
{
    double t = clock_now();
    if (!s->partial_since) {
        s->partial_since = t;
        return 0;
    }
    if (t - s->partial_since <= s->srv->cfg->timeout_command)
        return 0;
    slog(s, LOG_LVL_INFO, "command not completed in time, closing");
    session_reply(s, 421, "4.4.2", "Error: timeout exceeded");
    s->last_result = "timeout";
    session_close(s);
    return 1;
}

/* Read one command line. Returns 0 when more input is needed. */
static int read_command(struct session *s, struct evbuffer *in)
{
    size_t max = s->srv->cfg->max_command_length;
    size_t eol_len = 0;
    struct evbuffer_ptr p = evbuffer_search_eol(in, NULL, &eol_len,
                                                EVBUFFER_EOL_CRLF_STRICT);
    if (p.pos < 0) {
        if (partial_line_expired(s))
            return 0;
        if (evbuffer_get_length(in) >= max) {
            evbuffer_drain(in, evbuffer_get_length(in));
            s->input = IN_SKIPLINE;
            proto_error(s, 500, "5.5.6", "Error: line too long");
        }
        return 0;
    }
    s->partial_since = 0;
    size_t len = (size_t)p.pos;
    if (len + 2 > max) {
        evbuffer_drain(in, len + eol_len);
        proto_error(s, 500, "5.5.6", "Error: line too long");
        return 1;
    }
    char stack[1024];               /* nearly every command fits */
    char *line = len < sizeof stack ? stack : malloc(len + 1);
    if (!line)
        return 0;
    evbuffer_remove(in, line, len);
    evbuffer_drain(in, eol_len);
    line[len] = '\0';
    s->nbytes += len + eol_len;
    handle_line(s, line, len);
    if (line != stack)
        free(line);
    return 1;
}

/* After an over-long line: drop input up to and including the next CRLF. */
static int skip_line(struct session *s, struct evbuffer *in)
{
    size_t eol_len = 0;
    struct evbuffer_ptr p = evbuffer_search_eol(in, NULL, &eol_len,
                                                EVBUFFER_EOL_CRLF_STRICT);
    if (p.pos < 0) {
        size_t n = evbuffer_get_length(in);
        /* keep a trailing CR: it may pair with the next packet's LF */
        evbuffer_drain(in, n > 0 ? n - 1 : 0);
        return 0;
    }
    evbuffer_drain(in, (size_t)p.pos + eol_len);
    s->input = IN_CMD;
    return 1;
}

/* Bytes queued for the client: in the session's bufferevent and, under
 * STARTTLS, in the plain one below the TLS layer. */
static size_t output_len(const struct session *s)
{
    struct bufferevent *below = bufferevent_get_underlying(s->bev);
    return evbuffer_get_length(bufferevent_get_output(s->bev)) +
           (below ? evbuffer_get_length(bufferevent_get_output(below)) : 0);
}

/* Replies pile up when the client does not read them: past SESSION_OUT_HIGH
 * the next command waits (and its input stays in the kernel) until the
 * output drains; a client that reads nothing for the command timeout is
 * dropped (GUARD_STALLED). Returns 1 while the output is over its bound. */
static int output_held(struct session *s)
{
    if (output_len(s) <= SESSION_OUT_HIGH)
        return 0;
    if (!s->out_held) {
        s->out_held = 1;
        bufferevent_disable(s->bev, EV_READ);
        guard_stall(&s->guard, s->srv->cfg->timeout_command);
        slog(s, LOG_LVL_INFO, "output over %d KiB: input waits", SESSION_OUT_HIGH / 1024);
    }
    return 1;
}

static void session_process(struct session *s)
{
    struct evbuffer *in;
    /* s->bev changes at STARTTLS: look it up each turn */
    while (!s->hc.pending && !s->paused && s->state != SS_CLOSING &&
           s->state != SS_NEW && !output_held(s) &&
           evbuffer_get_length(in = bufferevent_get_input(s->bev)) > 0) {
        int more;
        switch (s->input) {
        case IN_DATA: more = read_data(s, in); break;
        case IN_BDAT: more = read_bdat(s, in); break;
        case IN_SKIPLINE: more = skip_line(s, in); break;
        default: more = read_command(s, in); break;
        }
        if (!more)
            break;
    }
}

/* ------------------------------------------------------ connection events */

static void session_read_cb(struct bufferevent *bev, void *arg)
{
    struct session *s = arg;
    (void)bev;
    guard_input(&s->guard);
    session_process(s);
}

static void close_when_flushed(struct session *s);

static void session_write_cb(struct bufferevent *bev, void *arg)
{
    struct session *s = arg;
    (void)bev;
    if (s->state == SS_CLOSING) {
        close_when_flushed(s);
        return;
    }
    /* called once the output is down to SESSION_OUT_LOW */
    if (s->out_held && output_len(s) <= SESSION_OUT_LOW) {
        s->out_held = 0;
        bufferevent_enable(s->bev, EV_READ);
        guard_stall(&s->guard, 0);
        slog(s, LOG_LVL_DEBUG, "output drained: reading again");
        session_process(s);
    }
}

static void session_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct session *s = arg;
    (void)bev;
    if (what & BEV_EVENT_CONNECTED) {   /* TLS handshake done */
        tls_established(s);
        return;
    }
    if (s->tls_handshake && (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))) {
        char why[256];
        tls_error_text(s->bev, why, sizeof why);
        slog(s, LOG_LVL_INFO, "TLS handshake failed: %s", why[0] ? why : "connection closed");
        s->last_result = "tls-error";
        session_destroy(s);
        return;
    }
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        if (!s->last_result)
            s->last_result = (what & BEV_EVENT_EOF) ? "lost" : "error";
        if ((what & BEV_EVENT_ERROR) && s->conn.tls) {
            char why[256];
            tls_error_text(s->bev, why, sizeof why);
            if (why[0])
                slog(s, LOG_LVL_INFO, "TLS error: %s", why);
        }
        session_destroy(s);
    }
}

static void close_soon(struct session *s);

/* The guard's timer: a limit of the session passed (guard.h). */
static void session_expired(void *arg, enum guard_why why)
{
    struct session *s = arg;
    const struct kasi_config *c = s->srv->cfg;
    switch (why) {
    case GUARD_IDLE:
        slog(s, LOG_LVL_INFO, "timeout, closing");
        session_reply(s, 421, "4.4.2", "Error: timeout exceeded");
        s->last_result = "timeout";
        session_close(s);
        return;
    case GUARD_DATA_RATE:
        slog(s, LOG_LVL_INFO, "message data slower than %u bytes/s (%llu bytes), closing",
             c->min_data_rate, s->guard.rate_bytes);
        session_reply(s, 421, "4.4.2", "Error: timeout exceeded (data too slow)");
        s->last_result = "slow-data";
        session_close(s);
        return;
    case GUARD_HANDSHAKE:
        slog(s, LOG_LVL_INFO, "TLS handshake failed: not done within %g s",
             c->timeout_tls_handshake);
        s->last_result = "tls-error";
        break;
    case GUARD_STALLED:
        slog(s, LOG_LVL_INFO, "client reads no replies (%g s), closing", c->timeout_command);
        s->last_result = "stalled";
        break;
    default:
        slog(s, LOG_LVL_INFO, "close not done within %g s, dropping the connection",
             c->timeout_close);
        break;
    }
    close_soon(s);      /* nothing more can be said: free it */
}

static void close_now_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    session_destroy(arg);
}

static void close_soon(struct session *s)
{
    guard_stop(&s->guard);      /* nothing may fire before the free */
    bufferevent_disable(s->bev, EV_READ | EV_WRITE);
    if (!s->close_ev)
        s->close_ev = evtimer_new(s->srv->base, close_now_cb, s);
    if (s->close_ev)
        event_active(s->close_ev, EV_TIMEOUT, 0);
    else
        session_destroy(s);     /* out of memory: no flush */
}

/* After STARTTLS the TLS layer writes into the plain bufferevent below it
 * at once: the replies are only gone when that one has sent them. Closing,
 * its draining ends the session; with input held for a full output, it
 * wakes the write callback (deferred: we are inside the drain). */
static void below_drained_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info,
                             void *arg)
{
    struct session *s = arg;
    if (!info->n_deleted)
        return;
    if (s->state == SS_CLOSING) {
        if (s->tls_closing && evbuffer_get_length(buf) == 0)
            close_soon(s);
        return;
    }
    if (s->out_held && output_len(s) <= SESSION_OUT_LOW)
        bufferevent_trigger(s->bev, EV_WRITE,
                            BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
}

/* Closing: free the session once every queued byte reached the socket. */
static void close_when_flushed(struct session *s)
{
    if (evbuffer_get_length(bufferevent_get_output(s->bev)) != 0)
        return;                 /* the write callback comes back here */
    struct bufferevent *below = bufferevent_get_underlying(s->bev);
    if (!below) {
        close_soon(s);
        return;
    }
    if (s->conn.tls && !s->tls_closing) {
        s->tls_closing = 1;
        tls_close_notify(s->bev);
    }
    if (evbuffer_get_length(bufferevent_get_output(below)) == 0 || !s->below_cb)
        close_soon(s);          /* else below_drained_cb comes back */
}

void session_close(struct session *s)
{
    if (s->state == SS_CLOSING)
        return;
    if (s->hc.pending) {          /* its answer would come too late */
        s->srv->engine->cancel(&s->hc);
        s->hc.pending = 0;
    }
    s->state = SS_CLOSING;
    bufferevent_disable(s->bev, EV_READ);
    bufferevent_enable(s->bev, EV_WRITE);
    bufferevent_setwatermark(s->bev, EV_WRITE, 0, 0);  /* the write callback at empty */
    /* one teardown: freed when flushed, or at the close deadline whatever
     * the client or the TLS layer do */
    guard_idle(&s->guard, 0);
    guard_stall(&s->guard, 0);
    guard_rate_stop(&s->guard);
    guard_deadline(&s->guard, GUARD_CLOSE, s->srv->cfg->timeout_close);
    close_when_flushed(s);
}

void session_kick(struct session *s, const char *reason)
{
    if (s->state != SS_CLOSING) {
        session_reply(s, 421, "4.3.2", reason);
        s->last_result = "shutdown";
        session_close(s);
    }
    /* the grace is over: a second to flush, then it goes */
    if (s->state == SS_CLOSING && !s->close_ev)
        guard_deadline(&s->guard, GUARD_CLOSE, SESSION_SHUTDOWN_FLUSH);
}

static void session_summary(struct session *s)
{
    slog(s, LOG_LVL_INFO,
         "disconnect ip=%s port=%d helo=%s tls=%s auth=%s txns=%u msgs=%u "
         "rcpts=%u bytes=%llu result=%s",
         s->conn.remote_ip, s->conn.remote_port, s->conn.helo ? s->conn.helo : "-",
         s->conn.tls ? s->conn.tls_version : "no", s->conn.auth_user ? s->conn.auth_user : "-", s->ntxn,
         s->nmsgs, s->nrcpts, s->nbytes, s->last_result ? s->last_result : "-");
}

void session_destroy(struct session *s)
{
    const struct hook_engine *eng = s->srv->engine;
    if (s->hc.pending)
        eng->cancel(&s->hc);
    s->hc.pending = 0;
    struct hook_result r = { .rc = RC_NEXT };
    eng->hook(&s->hc, HOOK_DISCONNECT, NULL, &r);   /* a late answer is dropped */
    hook_result_clear(&r);
    eng->end(&s->hc);
    guard_free(&s->guard);
    if (s->close_ev)
        event_free(s->close_ev);
    session_summary(s);
    sstats_txn_end(s);
    sstats_conn_end(s);
    txn_free(s->conn.txn);
    hook_result_clear(&s->bdat_reply);
    if (s->auth_delay_ev)
        event_free(s->auth_delay_ev);
    free(s->auth_fail_msg);
    if (s->sasl) {
        auth_clear(s->sasl);
        free(s->sasl);
    }
    if (s->below_cb)
        evbuffer_remove_cb_entry(bufferevent_get_output(bufferevent_get_underlying(s->bev)),
                                 s->below_cb);
    if (s->conn.tls && s->state == SS_CLOSING && !s->tls_closing)
        tls_close_notify(s->bev);   /* implicit TLS: straight to the socket */
    bufferevent_free(s->bev);
    server_session_remove(s->srv, s);
    dns_rdns_cancel(&s->conn);
    free(s->conn.helo);
    free(s->conn.rdns);
    free(s->conn.auth_user);
    free(s);
}

static void addr_to_str(const struct sockaddr *sa, char *ip, size_t iplen, int *port)
{
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
        if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr))
            inet_ntop(AF_INET, &a->sin6_addr.s6_addr[12], ip, (socklen_t)iplen);
        else
            inet_ntop(AF_INET6, &a->sin6_addr, ip, (socklen_t)iplen);
        *port = ntohs(a->sin6_port);
    } else if (sa->sa_family != AF_INET) {   /* kasi --inetd on a pipe or */
        snprintf(ip, iplen, "127.0.0.1");    /* a local socket */
        *port = 0;
    } else {
        const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &a->sin_addr, ip, (socklen_t)iplen);
        *port = ntohs(a->sin_port);
    }
}

/* hook_ctx.input_pending */
static size_t input_pending(const struct hook_ctx *c)
{
    const struct session *s = SESSION_OF(c);
    return evbuffer_get_length(bufferevent_get_input(s->bev));
}

struct session *session_new(struct server *srv, const struct listen_cfg *lc, int fd,
                            const struct sockaddr *sa, socklen_t salen)
{
    struct session *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    (void)salen;
    s->srv = srv;
    s->listen = lc;
    s->fd = fd;
    s->hc.conn = &s->conn;
    s->hc.done = hook_done;
    s->hc.input_pending = input_pending;
    snprintf(s->conn.id, sizeof s->conn.id, "%s%06llX", srv->boot_id, ++srv->next_conn);
    addr_to_str(sa, s->conn.remote_ip, sizeof s->conn.remote_ip, &s->conn.remote_port);
    struct sockaddr_storage local;
    socklen_t ll = sizeof local;
    if (getsockname(fd, (struct sockaddr *)&local, &ll) == 0)
        addr_to_str((struct sockaddr *)&local, s->conn.local_ip, sizeof s->conn.local_ip,
                    &s->conn.local_port);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);

    if (lc && lc->tls == LISTEN_TLS_IMPLICIT) {
        s->bev = tls_wrap_socket(srv->base, fd);
        s->tls_handshake = 2;   /* the banner waits for the handshake */
    } else {
        s->bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
    }
    if (!s->bev || guard_init(&s->guard, srv->base, session_expired, s) < 0) {
        if (s->bev)
            bufferevent_free(s->bev);
        guard_free(&s->guard);
        free(s);
        return NULL;
    }
    bufferevent_setcb(s->bev, session_read_cb, session_write_cb, session_event_cb, s);
    bufferevent_setwatermark(s->bev, EV_READ, 0, SESSION_READ_HIGH);
    bufferevent_setwatermark(s->bev, EV_WRITE, SESSION_OUT_LOW, 0);
    server_session_add(srv, s);
    sstats_conn_open(s);
    s->state = SS_NEW;
    s->input = IN_CMD;
    if (s->tls_handshake)
        guard_deadline(&s->guard, GUARD_HANDSHAKE, srv->cfg->timeout_tls_handshake);
    else
        reset_timeout(s);
    bufferevent_enable(s->bev, EV_READ | EV_WRITE);
    slog(s, LOG_LVL_INFO, "connect ip=%s port=%d local=%s:%d%s", s->conn.remote_ip,
         s->conn.remote_port, s->conn.local_ip, s->conn.local_port, s->tls_handshake ? " tls" : "");
    dns_rdns_start(&s->conn);          /* in the background: the banner does not wait */
    if (!s->tls_handshake)
        start_banner(s);
    return s;
}
