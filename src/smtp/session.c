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
#include <sys/uio.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "core/check.h"
#include "proto/auth.h"
#include "proto/reply.h"
#include "core/config.h"
#include "core/netmask.h"
#include "core/shmcount.h"
#include "core/utf8.h"
#include "net/dns.h"
#include "msg/message.h"
#include "smtp/server.h"
#include "smtp/xclient.h"
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

/* ---------------------------------------------------------------- replies */

/* Every reply leaves here, in the shape reply_format() gives it (no
 * injected line ends, bounded lines); 4xx and 5xx are counted for the
 * summary line. */
void session_reply(struct session *s, int code, const char *enh, const char *text)
{
    char buf[REPLY_WIRE_MAX];
    size_t n = reply_format(buf, sizeof buf, code, enh, text);
    evbuffer_add(bufferevent_get_output(s->bev), buf, n);
    if (code >= 500)
        s->nrejected++;
    else if (code >= 400)
        s->ndeferred++;
    if (log_enabled(LOG_LVL_DEBUG)) {
        size_t first = strcspn(buf, "\r");
        slog(s, LOG_LVL_DEBUG, "> %.*s%s", (int)(first > 300 ? 300 : first), buf,
             first + 2 < n ? " ..." : "");
    }
}

/* One of the core's own replies (reply.c), with its text or another. */
static void core_reply_text(struct session *s, enum reply_id id, const char *text)
{
    const struct reply_std *c = reply_core(id);
    session_reply(s, c->code, c->enh, text ? text : c->text);
}

/* Returns the code sent. */
static int core_reply(struct session *s, enum reply_id id)
{
    core_reply_text(s, id, NULL);
    return reply_core(id)->code;
}

/* A refusal by the core: one info line with the command it answers. */
static void log_core_error(struct session *s, int code, const char *enh, const char *text)
{
    char cmd[128], msg[160];
    log_quote(cmd, sizeof cmd, s->cur_cmd ? s->cur_cmd : "-",
              s->cur_cmd ? s->cur_cmd_len : 1);
    log_quote(msg, sizeof msg, text ? text : "", text ? strlen(text) : 0);
    slog(s, LOG_LVL_INFO, "error code=%d enh=%s ip=%s cmd=\"%s\" msg=\"%s\"", code,
         enh && *enh ? enh : "-", s->conn.remote_ip, cmd, msg);
}

static void core_refuse(struct session *s, enum reply_id id)
{
    const struct reply_std *c = reply_core(id);
    log_core_error(s, c->code, c->enh, c->text);
    session_reply(s, c->code, c->enh, c->text);
}

/* Count a protocol error whose reply is already queued. */
static void count_error(struct session *s)
{
    if (s->state != SS_CLOSING && ++s->conn.errors >= s->srv->cfg->max_errors) {
        slog(s, LOG_LVL_INFO, "too many errors (%u), closing", s->conn.errors);
        core_reply(s, RPL_TOO_MANY_ERRORS);
        s->last_result = "errors";
        session_close(s);
    }
}

/* A protocol error: reply, log and count it; too many closes the session. */
static void proto_error(struct session *s, enum reply_id id)
{
    core_refuse(s, id);
    count_error(s);
}

/* A protocol error a parser described (smtp_parse.c, auth.c). */
static void status_error(struct session *s, const smtp_status *st)
{
    log_core_error(s, st->code, st->enh, st->text);
    session_reply(s, st->code, st->enh, st->text);
    count_error(s);
}

/* ------------------------------------------------------- hook answers */

/* The line every refusal by a hook leaves: who refused what, for whom. */
static void log_refusal(struct session *s, enum hook_id h, const struct hook_result *r,
                        const struct reply *rep, const struct smtp_rcpt *rcpt)
{
    struct txn *t = s->conn.txn;
    char who[600] = "", msg[256];
    size_t off = 0;
    if (t && t->mail.addr.local) {
        char *from = smtp_addr_format(&t->mail.addr);
        off += (size_t)snprintf(who, sizeof who, " from=<%.250s>", from ? from : "");
        free(from);
    }
    if (rcpt) {
        char *to = smtp_addr_format(&rcpt->addr);
        snprintf(who + off, sizeof who - off, " rcpt=<%.250s>", to ? to : "");
        free(to);
    } else if (t && (h == HOOK_DATA || h == HOOK_DATA_POST || h == HOOK_QUEUE)) {
        snprintf(who + off, sizeof who - off, " rcpts=%zu txn=%s", t->nrcpt, t->id);
    }
    const char *text = rep->text ? rep->text : "";
    log_quote(msg, sizeof msg, text, strlen(text));
    slog(s, LOG_LVL_INFO, "%s plugin=%s hook=%s code=%d enh=%s ip=%s%s msg=\"%s\"",
         rep->code >= 500 ? "reject" : "defer", r->plugin[0] ? r->plugin : "-",
         hook_name(h), rep->code, rep->enh[0] ? rep->enh : "-", s->conn.remote_ip, who, msg);
}

/* What answer r at hook h means (reply.c); a refusal is logged. rcpt: the
 * recipient under decision, if any. */
static enum reply_action decide(struct session *s, enum hook_id h, const struct hook_result *r,
                                struct reply *rep, const struct smtp_rcpt *rcpt)
{
    reply_answer(h, r, rep);
    if (rep->action != REPLY_ACCEPT && rep->code >= 400) {
        log_refusal(s, h, r, rep, rcpt);
        sstats_deny(s, h, rep->code);
    }
    return rep->action;
}

/* Send a decided reply (own: the text when the reply has none of its own)
 * and close when it says so. */
static enum reply_action send_answer(struct session *s, const struct hook_result *r,
                                     const struct reply *rep, const char *own)
{
    if (rep->code)
        session_reply(s, rep->code, rep->enh, rep->text ? rep->text : own);
    if (rep->action == REPLY_CLOSE) {
        s->last_result = hook_rc_name(r->rc);
        session_close(s);
    }
    return rep->action;
}

static enum reply_action answer(struct session *s, enum hook_id h, const struct hook_result *r,
                                const char *own, const struct smtp_rcpt *rcpt)
{
    struct reply rep;
    decide(s, h, r, &rep, rcpt);
    return send_answer(s, r, &rep, own);
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
    if (!s->dying)              /* a dying session has no input left */
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

/* A refused connection is closed whatever the answer (reply.c). */
static void connect_done(struct session *s, struct hook_result *r)
{
    char banner[512];
    snprintf(banner, sizeof banner, "%s ESMTP kasi", s->srv->cfg->hostname);
    if (answer(s, HOOK_CONNECT, r, banner, NULL) == REPLY_ACCEPT) {
        sstats_greeted(s);
        s->state = SS_GREET;
    }
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

/* The EHLO reply: the greeting line and the extensions. */
static void ehlo_text(const struct session *s, char *text, size_t len)
{
    const struct kasi_config *c = s->srv->cfg;
    if (!s->conn.esmtp) {
        snprintf(text, len, "%s", c->hostname);
        return;
    }
    snprintf(text, len,
             "%s Hello %.255s [%s]\nPIPELINING\nSIZE %zu\n8BITMIME\n"
             "ENHANCEDSTATUSCODES\nSMTPUTF8\nCHUNKING%s%s%s",
             c->hostname, s->conn.helo, s->conn.remote_ip, c->max_message_size,
             starttls_offered(s) ? "\nSTARTTLS" : "",
             auth_offered(s) ? "\nAUTH " AUTH_MECHANISMS : "",
             s->xclient_ok ? "\nXCLIENT " XCLIENT_ATTRS : "");
}

static void helo_done(struct session *s, struct hook_result *r)
{
    char text[1024];
    ehlo_text(s, text, sizeof text);
    if (answer(s, s->conn.esmtp ? HOOK_EHLO : HOOK_HELO, r, text, NULL) == REPLY_ACCEPT) {
        s->state = SS_READY;
        return;
    }
    free(s->conn.helo);          /* a refused greeting leaves the session ungreeted */
    s->conn.helo = NULL;
    if (s->state != SS_CLOSING)
        s->state = SS_GREET;
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
        core_refuse(s, RPL_NO_MEMORY);
        return;
    }
    run_hook(s, s->conn.esmtp ? HOOK_EHLO : HOOK_HELO, NULL, helo_done);
}

/* ------------------------------------------------------------ MAIL / RCPT */

static void mail_done(struct session *s, struct hook_result *r)
{
    if (answer(s, HOOK_MAIL, r, NULL, NULL) != REPLY_ACCEPT) {
        txn_end(s);
        return;
    }
    s->state = SS_MAIL;
}

static void cmd_mail(struct session *s, const struct smtp_cmd *c)
{
    const struct kasi_config *cfg = s->srv->cfg;
    if (s->state == SS_GREET) {
        proto_error(s, RPL_NEED_HELO);
        return;
    }
    if (s->state != SS_READY) {
        proto_error(s, RPL_NESTED_MAIL);
        return;
    }
    if (s->listen && s->listen->submission && !s->conn.auth_user) {
        core_refuse(s, RPL_AUTH_REQUIRED);
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
        core_refuse(s, RPL_NO_MEMORY);
        return;
    }
    s->conn.txn->mail = m;
    run_hook(s, HOOK_MAIL, NULL, mail_done);
}

/* rcpt_ok runs after the 250: only a disconnect answer matters. */
static void rcpt_ok_done(struct session *s, struct hook_result *r)
{
    answer(s, HOOK_RCPT_OK, r, NULL, NULL);
}

/* The recipient under decision waits in s->conn.txn->rcpt[nrcpt] (not counted
 * until accepted). */
static void rcpt_done(struct session *s, struct hook_result *r)
{
    struct txn *t = s->conn.txn;
    struct smtp_rcpt *cand = &t->rcpt[t->nrcpt];
    if (answer(s, HOOK_RCPT, r, NULL, cand) != REPLY_ACCEPT) {
        smtp_rcpt_clear(cand);
        return;
    }
    t->nrcpt++;
    sstats_rcpt_accepted(s);
    s->state = SS_RCPT;
    run_hook(s, HOOK_RCPT_OK, &t->rcpt[t->nrcpt - 1], rcpt_ok_done);
}

static void cmd_rcpt(struct session *s, const struct smtp_cmd *c)
{
    const struct kasi_config *cfg = s->srv->cfg;
    if (s->state != SS_MAIL && s->state != SS_RCPT) {
        proto_error(s, RPL_NEED_MAIL);
        return;
    }
    struct txn *t = s->conn.txn;
    if (t->nrcpt >= cfg->max_recipients) {
        if (junk_command(s))
            return;
        core_refuse(s, RPL_TOO_MANY_RCPTS);
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
        core_refuse(s, RPL_NO_MEMORY);
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

/* The 354 (reply.c: only an accepted DATA) goes out together with the
 * switch to message input, never without it. */
static void data_done(struct session *s, struct hook_result *r)
{
    struct reply rep;
    if (decide(s, HOOK_DATA, r, &rep, NULL) != REPLY_ACCEPT) {
        send_answer(s, r, &rep, NULL);
        return;     /* the transaction stays open: the client may RSET */
    }
    const struct kasi_config *c = s->srv->cfg;
    if (txn_open_msg(s) < 0) {
        core_refuse(s, RPL_NO_MEMORY);
        return;
    }
    data_decoder_init(&s->dec, c->max_line_length, bare_policy(c), long_policy(c),
                      data_emit, s);
    s->input = IN_DATA;
    reset_timeout(s);
    data_phase_start(s);
    send_answer(s, r, &rep, NULL);
}

static void cmd_data(struct session *s, const struct smtp_cmd *c)
{
    if (*c->arg) {
        proto_error(s, RPL_SYNTAX_DATA);
        return;
    }
    if (s->state == SS_MAIL || (s->state == SS_RCPT && s->conn.txn->bdat)) {
        proto_error(s, s->state == SS_MAIL ? RPL_NEED_RCPT : RPL_DATA_AFTER_BDAT);
        return;
    }
    if (s->state != SS_RCPT) {
        proto_error(s, RPL_NEED_MAIL);
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
        core_reply_text(s, RPL_BDAT_CHUNK, text);
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
    if (is_error) {
        log_core_error(s, code, enh, text);
        s->conn.errors++;
    }
    s->input = IN_BDAT;
    if (s->bdat_left == 0)
        bdat_chunk_end(s);
}

static void bdat_data_done(struct session *s, struct hook_result *r)
{
    struct reply rep;
    enum reply_action a = decide(s, HOOK_DATA, r, &rep, NULL);
    if (a == REPLY_CLOSE) {
        send_answer(s, r, &rep, NULL);
        return;
    }
    if (a == REPLY_REFUSE) {
        /* refuse the message, but the chunk's bytes are on their way */
        bdat_discard(s, rep.code, rep.enh, rep.text ? rep.text : "", 0);
        txn_end(s);
        return;
    }
    if (txn_open_msg(s) < 0) {
        const struct reply_std *c = reply_core(RPL_NO_MEMORY);
        bdat_discard(s, c->code, c->enh, c->text, 0);
        sstats_verdict(s, c->code);
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
        const struct reply_std *c = reply_core(s->state == SS_MAIL ? RPL_NEED_RCPT : RPL_NEED_MAIL);
        bdat_discard(s, c->code, c->enh, c->text, 1);
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
    answer(s, HOOK_QUEUE_OK, r, NULL, NULL);
}

/* 250 only when a queue plugin said OK: the message is stored or
 * forwarded (reply.c turns every other answer into a 4xx or 5xx). */
static void queue_done(struct session *s, struct hook_result *r)
{
    struct txn *t = s->conn.txn;
    struct reply rep;
    if (decide(s, HOOK_QUEUE, r, &rep, NULL) != REPLY_ACCEPT) {
        send_answer(s, r, &rep, NULL);
        txn_end(s);
        return;
    }
    char text[512];
    snprintf(text, sizeof text, "Ok: queued as %s", t->id);
    send_answer(s, r, &rep, text);
    sstats_verdict(s, rep.code);
    char *from = smtp_addr_format(&t->mail.addr);
    slog(s, LOG_LVL_INFO, "txn %s accepted: from=<%s> rcpts=%zu size=%zu plugin=%s",
         t->id, from ? from : "", t->nrcpt, msg_size(t->msg), r->plugin[0] ? r->plugin : "-");
    free(from);
    s->nmsgs++;
    s->nrcpts += (unsigned)t->nrcpt;
    s->junk = 0;
    s->last_result = "250";
    run_hook(s, HOOK_QUEUE_OK, NULL, queue_ok_done);
}

static void data_post_done(struct session *s, struct hook_result *r)
{
    if (answer(s, HOOK_DATA_POST, r, NULL, NULL) != REPLY_ACCEPT) {
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
        slog(s, LOG_LVL_INFO, "txn %s rejected: %zu bytes, over the size limit", t->id, t->bytes);
        code = core_reply(s, RPL_TOO_BIG);
    } else if (msg_store_failed(t->msg->store)) {
        slog(s, LOG_LVL_ERROR, "txn %s: message store: %s", t->id, strerror(errno));
        code = core_reply(s, RPL_STORE_FAILED);
    } else if (msg_parse_headers(t->msg) < 0 || add_received(s) < 0) {
        slog(s, LOG_LVL_ERROR, "txn %s: out of memory", t->id);
        code = core_reply(s, RPL_NO_MEMORY);
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
        proto_error(s, RPL_SYNTAX_STARTTLS);
        return;
    }
    if (s->conn.tls) {
        proto_error(s, RPL_TLS_ACTIVE);
        return;
    }
    if (!starttls_offered(s)) {
        proto_error(s, RPL_NOT_IMPLEMENTED);
        return;
    }
    if (s->state != SS_READY) {
        proto_error(s, s->state == SS_GREET ? RPL_NEED_EHLO : RPL_IN_TXN);
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
    core_reply(s, RPL_TLS_GO);
    struct bufferevent *tb = tls_wrap_starttls(s->srv->base, s->bev);
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
    /* the TLS layer holds its records back while the plain layer is full
     * (only when it runs as a filter: tls_wrap_starttls) */
    struct bufferevent *below = bufferevent_get_underlying(tb);
    if (below)
        s->below_cb = evbuffer_add_cb(bufferevent_get_output(below), below_drained_cb, s);
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
    core_reply(s, RPL_AUTH_TOO_MANY);
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
    struct hook_result *f = &s->auth_fail;
    if (s->state == SS_CLOSING) {
        hook_result_clear(f);
        return;
    }
    if (s->auth_failures >= s->srv->cfg->auth_max_failures)
        auth_close(s, "too many authentication failures");
    else if (auth_ip_limited(s))
        auth_close(s, "too many authentication failures from this address");
    else
        session_reply(s, f->code, f->enh, f->msg);
    hook_result_clear(f);
    if (s->state == SS_CLOSING)
        return;
    session_process(s);
}

/* A refused attempt: answer rep (535 or the plugin's 5xx) after a delay
 * that doubles each time. */
static void auth_failed(struct session *s, const struct reply *rep)
{
    unsigned n = ++s->auth_failures;
    unsigned char key[NETMASK_KEY];
    struct hook_result *f = &s->auth_fail;
    if (auth_net_key(s, key))
        shmcount_add(key, sizeof key, 1, s->srv->cfg->auth_failure_window, clock_now());
    hook_result_clear(f);
    f->code = rep->code;
    snprintf(f->enh, sizeof f->enh, "%s", rep->enh);
    f->msg = rep->text ? strdup(rep->text) : NULL;
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
    struct reply rep;
    enum reply_action act = decide(s, HOOK_AUTH, r, &rep, NULL);
    if (act == REPLY_ACCEPT) {
        s->conn.auth_user = strdup(a->user);
        auth_clear(a);
        if (!s->conn.auth_user) {
            core_refuse(s, RPL_AUTH_NO_MEMORY);
            return;
        }
        s->conn.relaying = 1;
        send_answer(s, r, &rep, NULL);
        return;
    }
    auth_clear(a);
    if (act == REPLY_REFUSE && (r->rc == RC_DENY || r->rc == RC_NEXT))
        auth_failed(s, &rep);       /* refused or no taker: a failed attempt */
    else
        send_answer(s, r, &rep, NULL);
}

/* Act on what the SASL exchange says next. */
static void auth_next(struct session *s, const struct auth_step *st)
{
    switch (st->next) {
    case AUTH_CHALLENGE:
        s->input = IN_AUTH;
        core_reply_text(s, RPL_AUTH_CHALLENGE, st->challenge);
        break;
    case AUTH_FAIL: {
        s->input = IN_CMD;
        smtp_status fail = { st->code, st->enh, st->text };
        status_error(s, &fail);
        break;
    }
    case AUTH_COMPLETE:
        s->input = IN_CMD;
        run_hook(s, HOOK_AUTH, &s->sasl->creds, auth_done);
        break;
    }
}

/* AUTH cannot start now: refuse it (returns 1), else 0. */
static int auth_refused(struct session *s)
{
    enum reply_id why = RPL_COUNT;
    if (!s->listen || !s->listen->auth)
        why = RPL_AUTH_DISABLED;
    else if (!s->conn.tls && !s->listen->auth_plaintext)
        why = RPL_AUTH_ENCRYPT;
    else if (s->state == SS_GREET || !s->conn.esmtp)
        why = RPL_NEED_EHLO;
    else if (s->conn.auth_user)
        why = RPL_AUTH_DONE;
    else if (s->state != SS_READY)
        why = RPL_IN_TXN;
    if (why != RPL_COUNT)
        proto_error(s, why);
    return why != RPL_COUNT;
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
        core_refuse(s, RPL_AUTH_NO_MEMORY);
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
        const struct reply_std *c = reply_core(RPL_BAD_BASE64);
        st = (struct auth_step){ .next = AUTH_FAIL, .code = c->code, .enh = c->enh,
                                 .text = c->text };
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
    core_reply(s, RPL_TOO_MANY_JUNK);
    s->last_result = "junk";
    session_close(s);
    return 1;
}

static int is_junk(enum smtp_verb v)
{
    return v == SMTP_NOOP || v == SMTP_HELP || v == SMTP_VRFY || v == SMTP_RSET ||
           v == SMTP_HELO || v == SMTP_EHLO;
}

/* RSET cannot fail: 250, unless a plugin closes the connection. */
static void rset_done(struct session *s, struct hook_result *r)
{
    answer(s, HOOK_RSET, r, NULL, NULL);
}

/* QUIT cannot fail: 221 and close, whatever the answer. */
static void quit_done(struct session *s, struct hook_result *r)
{
    char text[512];
    snprintf(text, sizeof text, "%s closing connection", s->srv->cfg->hostname);
    answer(s, HOOK_QUIT, r, text, NULL);
    s->last_result = "quit";
}

/* OK: a plugin handled the command; anything else counts as an error. */
static void unrecognized_done(struct session *s, struct hook_result *r)
{
    if (answer(s, HOOK_UNRECOGNIZED, r, NULL, NULL) != REPLY_ACCEPT)
        count_error(s);
}


/* XCLIENT (smtp/xclient.c checks it and applies it): the client a trusted
 * proxy names replaces the connection's, and the session starts again as
 * if that client had just connected: the plugins see the old connection
 * end and a new one begin (connect hook), and it is greeted anew. */
static void cmd_xclient(struct session *s, const struct smtp_cmd *c)
{
    struct xclient_args x;
    const struct hook_engine *eng = s->srv->engine;
    if (xclient_check(s, c, &x) < 0)        /* refused or bad: replied */
        return;
    txn_end(s);
    starttls_reset(s);                      /* the same reset: helo, auth */
    struct hook_result r = { .rc = RC_NEXT };
    eng->hook(&s->hc, HOOK_DISCONNECT, NULL, &r);   /* a late answer is dropped */
    hook_result_clear(&r);
    eng->end(&s->hc);
    xclient_apply(s, &x);
    s->state = SS_NEW;                      /* pipelined input waits for the banner */
    start_banner(s);
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
        if (*c->arg) { proto_error(s, RPL_SYNTAX_RSET); break; }
        txn_end(s);
        run_hook(s, HOOK_RSET, NULL, rset_done);
        break;
    case SMTP_NOOP: core_reply(s, RPL_OK); break;
    case SMTP_QUIT:
        if (*c->arg) { proto_error(s, RPL_SYNTAX_QUIT); break; }
        run_hook(s, HOOK_QUIT, NULL, quit_done);
        break;
    case SMTP_VRFY:
        if (!*c->arg) { proto_error(s, RPL_SYNTAX_VRFY); break; }
        core_reply(s, RPL_VRFY);
        break;
    case SMTP_EXPN: proto_error(s, RPL_EXPN); break;
    case SMTP_HELP: core_reply(s, RPL_HELP); break;
    case SMTP_STARTTLS: cmd_starttls(s, c); break;
    case SMTP_AUTH: cmd_auth(s, c); break;
    case SMTP_XCLIENT: cmd_xclient(s, c); break;
    default:
        run_hook(s, HOOK_UNRECOGNIZED, line, unrecognized_done);
        break;
    }
}

/* How much of a command line may be logged: AUTH's initial response holds
 * credentials, so only the verb and mechanism. */
static size_t loggable_len(const char *line, size_t len)
{
    size_t n = len;
    if (len > 5 && !strncasecmp(line, "AUTH ", 5))
        n = 5 + strcspn(line + 5, " ");
    return n > 200 ? 200 : n;
}

static void run_command(struct session *s, char *line, size_t len);

/* Handle one complete command line (CRLF removed). */
static void handle_line(struct session *s, char *line, size_t len)
{
    if (s->input == IN_AUTH) {      /* credentials: never logged */
        auth_line(s, line, len);
        return;
    }
    size_t n = loggable_len(line, len);
    if (log_enabled(LOG_LVL_DEBUG))
        slog(s, LOG_LVL_DEBUG, "< %.*s%s", (int)n, line, n < len ? " ..." : "");
    s->cur_cmd = line;              /* for the log lines of refusals */
    s->cur_cmd_len = n;
    run_command(s, line, len);
    s->cur_cmd = NULL;
}

static void run_command(struct session *s, char *line, size_t len)
{
    if (memchr(line, '\r', len) || memchr(line, '\n', len)) {
        proto_error(s, RPL_BARE_CRLF);
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
    core_reply(s, RPL_TIMEOUT);
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
            proto_error(s, RPL_LINE_TOO_LONG);
        }
        return 0;
    }
    s->partial_since = 0;
    size_t len = (size_t)p.pos;
    if (len + 2 > max) {
        evbuffer_drain(in, len + eol_len);
        proto_error(s, RPL_LINE_TOO_LONG);
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

#define LIBEVENT_MAX_READ 4096

/* Up to want bytes from fd into a bufferevent's input, in one readv. */
static void input_readv(struct evbuffer *in, evutil_socket_t fd, size_t want)
{
    struct evbuffer_iovec v[2];
    struct iovec io[2];
    evbuffer_unfreeze(in, 0);   /* a bufferevent's input takes bytes from it alone */
    int nv = evbuffer_reserve_space(in, (ev_ssize_t)want, v, 2);
    for (int i = 0; i < nv; i++)
        io[i] = (struct iovec){ v[i].iov_base, v[i].iov_len };
    ssize_t n = nv > 0 ? readv(fd, io, nv) : -1;
    size_t left = n > 0 ? (size_t)n : 0;
    int used = 0;
    for (; used < nv && left > 0; used++) {
        v[used].iov_len = left < v[used].iov_len ? left : v[used].iov_len;
        left -= v[used].iov_len;
    }
    if (nv > 0)
        evbuffer_commit_space(in, v, used);
    evbuffer_freeze(in, 0);
}

/* While a message streams in on a plain connection, read what the kernel
 * holds in one step, up to the input bound: libevent reads a socket at
 * most 4 KiB at a time (EVBUFFER_MAX_READ), which for a large message is
 * one system call and one turn of the loop per 4 KiB. Only after a full
 * 4 KiB read (a shorter one emptied the socket). What is read past the
 * message stays in the input buffer, as libevent's own reads leave it;
 * EOF and errors are seen by libevent's next read. */
static void data_read_ahead(struct session *s)
{
    if ((s->input != IN_DATA && s->input != IN_BDAT) || s->conn.tls || s->tls_handshake ||
        bufferevent_get_underlying(s->bev))
        return;
    evutil_socket_t fd = bufferevent_getfd(s->bev);
    struct evbuffer *in = bufferevent_get_input(s->bev);
    size_t have = evbuffer_get_length(in);
    if (fd >= 0 && have >= LIBEVENT_MAX_READ && have < SESSION_READ_HIGH)
        input_readv(in, fd, SESSION_READ_HIGH - have);
}

static void session_read_cb(struct bufferevent *bev, void *arg)
{
    struct session *s = arg;
    (void)bev;
    guard_input(&s->guard);
    data_read_ahead(s);
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
        core_reply(s, RPL_TIMEOUT);
        s->last_result = "timeout";
        session_close(s);
        return;
    case GUARD_DATA_RATE:
        slog(s, LOG_LVL_INFO, "message data slower than %u bytes/s (%llu bytes), closing",
             c->min_data_rate, s->guard.rate_bytes);
        core_reply(s, RPL_DATA_TOO_SLOW);
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
    if (s->dying)
        return;                 /* the client is gone already */
    if (s->state != SS_CLOSING) {
        core_reply_text(s, RPL_SHUTDOWN, reason);
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
         "rcpts=%u bytes=%llu rejected=%u deferred=%u duration=%.3f result=%s",
         s->conn.remote_ip, s->conn.remote_port, s->conn.helo ? s->conn.helo : "-",
         s->conn.tls ? s->conn.tls_version : "no", s->conn.auth_user ? s->conn.auth_user : "-", s->ntxn,
         s->nmsgs, s->nrcpts, s->nbytes, s->nrejected, s->ndeferred,
         clock_now() - s->started, s->last_result ? s->last_result : "-");
}

/* The client is gone: close the socket and stop all that talks to it.
 * What the disconnect hooks read (conn, txn) stays. */
static void session_release_io(struct session *s)
{
    guard_free(&s->guard);          /* no limit applies to a client that is gone */
    if (s->auth_delay_ev) {
        event_free(s->auth_delay_ev);
        s->auth_delay_ev = NULL;
    }
    if (s->below_cb)
        evbuffer_remove_cb_entry(bufferevent_get_output(bufferevent_get_underlying(s->bev)),
                                 s->below_cb);
    s->below_cb = NULL;
    if (s->conn.tls && s->state == SS_CLOSING && !s->tls_closing)
        tls_close_notify(s->bev);   /* implicit TLS: straight to the socket */
    bufferevent_free(s->bev);
    s->bev = NULL;
}

/* Last: the disconnect hooks are over (or abandoned at exit). */
static void session_free(struct session *s)
{
    s->srv->engine->end(&s->hc);
    if (s->close_ev)
        event_free(s->close_ev);
    txn_free(s->conn.txn);
    hook_result_clear(&s->bdat_reply);
    hook_result_clear(&s->auth_fail);
    if (s->sasl) {
        auth_clear(s->sasl);
        free(s->sasl);
    }
    server_session_remove(s->srv, s);
    dns_rdns_cancel(&s->conn);
    free(s->conn.helo);
    free(s->conn.rdns);
    free(s->conn.auth_user);
    free(s);
}

/* The disconnect chain ended: free from the loop, not inside the
 * engine's callback. */
static void disconnect_done(struct session *s, struct hook_result *r)
{
    (void)r;
    event_active(s->close_ev, EV_TIMEOUT, 0);
}

/* The socket closes at once; the session stays until its disconnect
 * hooks have run to their end (each within its plugin's time budget),
 * then close_ev frees it. A second call (process exit) frees at once. */
void session_destroy(struct session *s)
{
    const struct hook_engine *eng = s->srv->engine;
    if (s->dying) {
        session_free(s);
        return;
    }
    if (s->hc.pending)
        eng->cancel(&s->hc);
    s->hc.pending = 0;
    session_summary(s);
    sstats_txn_end(s);          /* counted now; the txn stays for the hooks */
    sstats_conn_end(s);
    session_release_io(s);
    s->dying = 1;
    s->state = SS_CLOSING;
    if (s->close_ev)
        event_del(s->close_ev);
    else
        s->close_ev = evtimer_new(s->srv->base, close_now_cb, s);
    struct hook_result r = { .rc = RC_NEXT };
    if (!eng->hook(&s->hc, HOOK_DISCONNECT, NULL, &r)) {
        s->hc.pending = 1;
        s->cont = disconnect_done;
        if (s->close_ev)
            return;
        eng->cancel(&s->hc);        /* out of memory: no waiting */
    }
    hook_result_clear(&r);
    session_free(s);
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

/* hook_ctx.input_pending (0 once the client is gone) */
static size_t input_pending(const struct hook_ctx *c)
{
    const struct session *s = SESSION_OF(c);
    return s->bev ? evbuffer_get_length(bufferevent_get_input(s->bev)) : 0;
}

/* The session's addresses: the client sa, the address it reached (local,
 * or the socket's own), the proxy that named the client (via, or none). */
static void session_addresses(struct session *s, const struct sockaddr *sa,
                              const struct sockaddr *local, const char *via)
{
    struct sockaddr_storage own;
    socklen_t ll = sizeof own;
    addr_to_str(sa, s->conn.remote_ip, sizeof s->conn.remote_ip, &s->conn.remote_port);
    if (!local && getsockname(s->fd, (struct sockaddr *)&own, &ll) == 0)
        local = (struct sockaddr *)&own;
    if (local)
        addr_to_str(local, s->conn.local_ip, sizeof s->conn.local_ip, &s->conn.local_port);
    snprintf(s->conn.proxy_ip, sizeof s->conn.proxy_ip, "%s", via ? via : "");
    s->xclient_ok = xclient_allowed(s);
}

static struct session *session_open(struct server *srv, const struct listen_cfg *lc, int fd,
                                    const struct sockaddr *sa, const struct sockaddr *local,
                                    const char *via)
{
    struct session *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->srv = srv;
    s->listen = lc;
    s->fd = fd;
    s->hc.conn = &s->conn;
    s->hc.done = hook_done;
    s->hc.input_pending = input_pending;
    s->started = clock_now();
    snprintf(s->conn.id, sizeof s->conn.id, "%s%06llX", srv->boot_id, ++srv->next_conn);
    session_addresses(s, sa, local, via);
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
    slog(s, LOG_LVL_INFO, "connect ip=%s port=%d local=%s:%d%s%s%s", s->conn.remote_ip,
         s->conn.remote_port, s->conn.local_ip, s->conn.local_port,
         s->tls_handshake ? " tls" : "", via ? " via=" : "", via ? via : "");
    dns_rdns_start(&s->conn);          /* in the background: the banner does not wait */
    if (!s->tls_handshake)
        start_banner(s);
    return s;
}

struct session *session_new(struct server *srv, const struct listen_cfg *lc, int fd,
                            const struct sockaddr *sa, socklen_t salen)
{
    (void)salen;
    return session_open(srv, lc, fd, sa, NULL, NULL);
}

struct session *session_new_proxied(struct server *srv, const struct listen_cfg *lc, int fd,
                                    const struct sockaddr *sa, const struct sockaddr *local,
                                    const char *via)
{
    return session_open(srv, lc, fd, sa, local, via);
}
