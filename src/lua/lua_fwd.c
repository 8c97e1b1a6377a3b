/* lua_fwd.c — the Lua binding of the downstream client (smtp_client.h).
 *
 *   kasi.forward(txn, dest [, rcpts]) -> result
 *       Deliver the current message to dest (a table mapped onto struct
 *       fwd_dest) for all of the transaction's recipients, or for the
 *       addresses in rcpts ("user@host" strings). The hook is suspended
 *       until the downstream answered; abandoning the hook cancels the
 *       job. The result table: code, enh (what kasi should answer), text
 *       (the downstream's reply text when fail is "reply" or "ok", else
 *       the detail of kasi's own failure, naming the downstream: for the
 *       log, not for the client), fail ("ok", "connect", "timeout",
 *       "dropped", "reply", ...),
 *       queue_id (the downstream's), naccepted, tls, reused and
 *       rcpt = { {address=, code=, enh=, text=}, ... }.
 *   kasi.forward_envelope(txn) -> {mail_from=, rcpt={...}, body=, smtputf8=,
 *       size=, xforward={addr=, port=, name=, helo=, proto=, ident=, login=}}
 *   kasi.forward_chunks(txn [, size]) -> iterator over the message,
 *       dot-stuffed, ending with the end-of-data line: what follows a 354.
 *   kasi.forward_pool(dest) -> open, idle (connections to dest)
 *
 * The envelope and the client's identity (for XFORWARD) come from the
 * session whose hook is running, like everything a hook touches. */
#include "lua/lua_fwd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <lauxlib.h>

#include "lua/lua_async.h"
#include "lua/lua_engine.h"
#include "msg/message.h"
#include "msg/msg_stream.h"
#include "msg/envelope.h"
#include "net/smtp_client.h"

#define LFWD_MAX_RCPT 100000

struct lfwd_rcpt {
    char *address;
    int code;
    char enh[16];
    char *text;
};

/* One kasi.forward() call: the job, then its copied result. */
struct lfwd_op {
    struct fwd_job *job;
    struct lua_async *a;
    struct event *wake_ev;
    char **addr;                /* the recipients sent, owned */
    size_t naddr;
    int code, tls, reused;
    enum fwd_fail fail;
    char enh[16];
    char *text, *queue_id;
    size_t naccepted;
    struct lfwd_rcpt *rcpt;     /* naddr entries once done */
};

static const char *const lfwd_fail_names[] = {
    "ok", "connect", "timeout", "dropped", "protocol", "tls", "auth",
    "extension", "message", "busy", "reply" };

/* ------------------------------------------------------------ helpers */

/* The connection of the txn object at idx (live, or this raises). */
static struct conn *lfwd_session(lua_State *L, int idx, int need_msg)
{
    struct conn *s;
    struct txn *t = lapi_check_txn(L, idx, &s);
    if (need_msg && !t->msg)
        luaL_error(L, "no message yet (the message exists from data_post on)");
    return s;
}

static void lfwd_op_free(struct lfwd_op *op)
{
    for (size_t i = 0; i < op->naddr; i++) {
        free(op->addr[i]);
        if (op->rcpt)
            free(op->rcpt[i].text);
    }
    free(op->addr);
    free(op->rcpt);
    free(op->text);
    free(op->queue_id);
    if (op->wake_ev)
        event_free(op->wake_ev);
    free(op);
}

static const char *opt_string(lua_State *L, int idx, const char *key)
{
    lua_getfield(L, idx, key);
    const char *v = lua_isnil(L, -1) ? NULL : lua_tostring(L, -1);
    lua_pop(L, 1);      /* the table still anchors the string */
    return v;
}

static double opt_number(lua_State *L, int idx, const char *key, double dflt)
{
    lua_getfield(L, idx, key);
    double v = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : dflt;
    lua_pop(L, 1);
    return v;
}

static int opt_bool(lua_State *L, int idx, const char *key)
{
    lua_getfield(L, idx, key);
    int v = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

static enum fwd_tls tls_mode(lua_State *L, const char *s)
{
    if (!s || !strcmp(s, "none") || !strcmp(s, "no") || !strcmp(s, "false"))
        return FWD_TLS_NONE;
    if (!strcmp(s, "opportunistic") || !strcmp(s, "may"))
        return FWD_TLS_OPPORTUNISTIC;
    if (!strcmp(s, "required") || !strcmp(s, "encrypt"))
        return FWD_TLS_REQUIRED;
    luaL_error(L, "dest.tls: '%s' is not none, opportunistic or required", s);
    return FWD_TLS_NONE;
}

/* The dest table at idx onto d; port is written into portbuf. Strings
 * point into the table, which outlives the fwd_send() call. */
static void lfwd_dest(lua_State *L, int idx, struct fwd_dest *d,
                      char *portbuf, size_t portlen)
{
    luaL_checktype(L, idx, LUA_TTABLE);
    memset(d, 0, sizeof *d);
    d->host = opt_string(L, idx, "host");
    if (!d->host)
        d->host = "127.0.0.1";
    double port = opt_number(L, idx, "port", 10025);
    if (port < 1 || port > 65535)
        luaL_error(L, "dest.port must be 1..65535");
    snprintf(portbuf, portlen, "%d", (int)port);
    d->port = portbuf;
    d->lmtp = opt_bool(L, idx, "lmtp");
    d->starttls = tls_mode(L, opt_string(L, idx, "tls"));
    d->auth_user = opt_string(L, idx, "auth_user");
    d->auth_pass = opt_string(L, idx, "auth_pass");
    if (d->auth_user && !d->auth_pass)
        luaL_error(L, "dest.auth_user needs dest.auth_pass");
    d->helo = opt_string(L, idx, "helo");
    d->timeout_connect = opt_number(L, idx, "timeout_connect", 0);
    d->timeout_cmd = opt_number(L, idx, "timeout_cmd", 0);
    d->timeout_data = opt_number(L, idx, "timeout_data", 0);
    double pmax = opt_number(L, idx, "pool_max", 0);
    d->pool_max = pmax > 0 ? (unsigned)pmax : 0;
    double pidle = opt_number(L, idx, "pool_idle", 0);
    d->pool_idle = pidle > 0 ? pidle : 0;
    lua_getfield(L, idx, "xforward");
    d->no_xforward = lua_isboolean(L, -1) && !lua_toboolean(L, -1);
    lua_pop(L, 1);
}

/* ------------------------------------------------------------ envelope */

/* Raise on a bad rcpts argument before anything is allocated. */
static size_t lfwd_check_rcpts(lua_State *L, int idx, const struct txn *t)
{
    size_t n = lua_istable(L, idx) ? lua_objlen(L, idx) : t->nrcpt;
    if (n == 0 || n > LFWD_MAX_RCPT)
        luaL_error(L, "kasi.forward: no recipients");
    for (size_t i = 0; lua_istable(L, idx) && i < n; i++) {
        lua_rawgeti(L, idx, (int)i + 1);
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "kasi.forward: recipient %d is not a string", (int)i + 1);
        lua_pop(L, 1);
    }
    return n;
}

/* The recipients: the transaction's, or the strings of the table at idx
 * (checked already). -1 when out of memory. */
static int lfwd_rcpts(lua_State *L, int idx, const struct txn *t,
                      struct lfwd_op *op, size_t n)
{
    op->addr = calloc(n, sizeof *op->addr);
    if (!op->addr)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (lua_istable(L, idx)) {
            lua_rawgeti(L, idx, (int)i + 1);
            op->addr[i] = strdup(lua_tostring(L, -1));
            lua_pop(L, 1);
        } else {
            op->addr[i] = smtp_addr_format(&t->rcpt[i].addr);
        }
        op->naddr = i + 1;
        if (!op->addr[i])
            return -1;
    }
    return 0;
}

static void lfwd_xforward(const struct conn *s, struct fwd_envelope *e);

/* The one envelope builder: the downstream envelope of transaction t on
 * connection c, recipients left to the caller. Returns the formatted
 * sender that e->mail_from points to (the caller frees it), NULL when out
 * of memory. */
static char *lfwd_envelope(const struct conn *c, const struct txn *t,
                           struct fwd_envelope *e)
{
    char *from = smtp_addr_format(&t->mail.addr);
    memset(e, 0, sizeof *e);
    e->mail_from = from ? from : "";
    e->body = t->mail.body;
    e->smtputf8 = t->mail.smtputf8;
    lfwd_xforward(c, e);
    return from;
}

static void lfwd_xforward(const struct conn *s, struct fwd_envelope *e)
{
    e->xf_addr = s->remote_ip;
    e->xf_port = s->remote_port;
    e->xf_name = s->rdns && s->rdns_confirmed ? s->rdns : NULL;
    e->xf_helo = s->helo;
    e->xf_proto = s->helo ? (s->esmtp ? "ESMTP" : "SMTP") : NULL;
    e->xf_ident = s->txn ? s->txn->id : NULL;
    e->xf_login = s->auth_user;
}

static const char *body_name(enum smtp_body b)
{
    switch (b) {
    case SMTP_BODY_7BIT: return "7BIT";
    case SMTP_BODY_8BITMIME: return "8BITMIME";
    case SMTP_BODY_BINARYMIME: return "BINARYMIME";
    default: return NULL;
    }
}

static void set_string(lua_State *L, const char *key, const char *v)
{
    if (!v)
        return;
    lua_pushstring(L, v);
    lua_setfield(L, -2, key);
}

/* kasi.forward_envelope(txn) */
static int l_forward_envelope(lua_State *L)
{
    struct conn *s = lfwd_session(L, 1, 0);
    struct txn *t = s->txn;
    struct fwd_envelope e;
    char *from = lfwd_envelope(s, t, &e);
    lua_createtable(L, 0, 6);
    set_string(L, "mail_from", e.mail_from);
    lua_createtable(L, (int)t->nrcpt, 0);
    for (size_t i = 0; i < t->nrcpt; i++) {
        char *a = smtp_addr_format(&t->rcpt[i].addr);
        lua_pushstring(L, a ? a : "");
        free(a);
        lua_rawseti(L, -2, (int)i + 1);
    }
    lua_setfield(L, -2, "rcpt");
    set_string(L, "body", body_name(t->mail.body));
    lua_pushboolean(L, t->mail.smtputf8);
    lua_setfield(L, -2, "smtputf8");
    lua_pushnumber(L, (lua_Number)(t->msg ? msg_size(t->msg) : 0));
    lua_setfield(L, -2, "size");
    lua_createtable(L, 0, 7);
    set_string(L, "addr", e.xf_addr);
    lua_pushinteger(L, e.xf_port);
    lua_setfield(L, -2, "port");
    set_string(L, "name", e.xf_name);
    set_string(L, "helo", e.xf_helo);
    set_string(L, "proto", e.xf_proto);
    set_string(L, "ident", e.xf_ident);
    set_string(L, "login", e.xf_login);
    lua_setfield(L, -2, "xforward");
    free(from);
    return 1;
}

/* ------------------------------------------------------------ forward */

static int lfwd_push(lua_State *L, void *ud)
{
    struct lfwd_op *op = ud;
    lua_createtable(L, 0, 10);
    lua_pushinteger(L, op->code);
    lua_setfield(L, -2, "code");
    set_string(L, "enh", op->enh);
    set_string(L, "text", op->text ? op->text : "");
    if (op->fail != FWD_OK)             /* nil when the downstream answered */
        set_string(L, "fail", lfwd_fail_names[op->fail]);
    set_string(L, "queue_id", op->queue_id);
    lua_pushinteger(L, (lua_Integer)op->naccepted);
    lua_setfield(L, -2, "naccepted");
    lua_pushboolean(L, op->tls);
    lua_setfield(L, -2, "tls");
    lua_pushboolean(L, op->reused);
    lua_setfield(L, -2, "reused");
    lua_createtable(L, (int)op->naddr, 0);
    for (size_t i = 0; op->rcpt && i < op->naddr; i++) {
        lua_createtable(L, 0, 4);
        set_string(L, "address", op->addr[i]);
        lua_pushinteger(L, op->rcpt[i].code);
        lua_setfield(L, -2, "code");
        set_string(L, "enh", op->rcpt[i].enh);
        set_string(L, "text", op->rcpt[i].text ? op->rcpt[i].text : "");
        lua_rawseti(L, -2, (int)i + 1);
    }
    lua_setfield(L, -2, "rcpt");
    lfwd_op_free(op);
    return 1;
}

static void lfwd_wake(evutil_socket_t fd, short what, void *arg)
{
    struct lfwd_op *op = arg;
    (void)fd;
    (void)what;
    lua_async_wake(op->a, lfwd_push, op);   /* frees op */
}

/* Copy what the caller reads; r is freed when this returns. The wake-up
 * is deferred so Lua (which may forward again) never runs in here. */
static void lfwd_done(void *arg, struct fwd_result *r)
{
    struct lfwd_op *op = arg;
    op->job = NULL;
    op->code = r->code;
    op->fail = r->fail <= FWD_FAIL_REPLY ? r->fail : FWD_FAIL_PROTOCOL;
    memcpy(op->enh, r->enh, sizeof op->enh);
    op->enh[sizeof op->enh - 1] = '\0';
    op->text = r->text ? strdup(r->text) : NULL;
    op->queue_id = r->queue_id ? strdup(r->queue_id) : NULL;
    op->naccepted = r->naccepted;
    op->tls = r->tls;
    op->reused = r->reused;
    op->rcpt = calloc(op->naddr, sizeof *op->rcpt);
    for (size_t i = 0; op->rcpt && i < op->naddr && i < r->nrcpt; i++) {
        op->rcpt[i].code = r->rcpt[i].code;
        memcpy(op->rcpt[i].enh, r->rcpt[i].enh, sizeof op->rcpt[i].enh);
        op->rcpt[i].enh[sizeof op->rcpt[i].enh - 1] = '\0';
        op->rcpt[i].text = r->rcpt[i].text ? strdup(r->rcpt[i].text) : NULL;
    }
    event_active(op->wake_ev, EV_TIMEOUT, 0);
}

static void lfwd_cancel(void *ud)
{
    struct lfwd_op *op = ud;
    if (op->job)
        fwd_cancel(op->job);
    op->job = NULL;
    lfwd_op_free(op);
}

static struct lfwd_op *lfwd_op_new(lua_State *L, const struct txn *t)
{
    size_t n = lfwd_check_rcpts(L, 3, t);
    struct lfwd_op *op = calloc(1, sizeof *op);
    if (!op)
        luaL_error(L, "out of memory");
    op->wake_ev = evtimer_new(lua_async_base(), lfwd_wake, op);
    if (!op->wake_ev || lfwd_rcpts(L, 3, t, op, n) < 0) {
        lfwd_op_free(op);
        luaL_error(L, "out of memory");
    }
    return op;
}

/* kasi.forward(txn, dest [, rcpts]) */
static int l_forward(lua_State *L)
{
    struct conn *s = lfwd_session(L, 1, 1);
    struct txn *t = s->txn;
    struct fwd_dest d;
    char port[16];
    lfwd_dest(L, 2, &d, port, sizeof port);
    if (!lua_isnoneornil(L, 3))
        luaL_checktype(L, 3, LUA_TTABLE);
    lua_async_check(L);
    if (!lua_async_base())
        return luaL_error(L, "kasi.forward: no event loop");
    struct lfwd_op *op = lfwd_op_new(L, t);
    struct fwd_envelope e;
    char *from = lfwd_envelope(s, t, &e);
    e.rcpt = (const char *const *)op->addr;
    e.nrcpt = op->naddr;
    op->job = from ? fwd_send(lua_async_base(), &d, &e, t->msg, lfwd_done, op)
                   : NULL;
    free(from);
    if (!op->job) {
        lfwd_op_free(op);
        return luaL_error(L, "out of memory");
    }
    return lua_async_wait(L, &op->a, lfwd_cancel, op);
}

/* kasi.forward_pool(dest) -> open, idle */
static int l_forward_pool(lua_State *L)
{
    struct fwd_dest d;
    char port[16];
    unsigned open = 0, idle = 0;
    lfwd_dest(L, 1, &d, port, sizeof port);
    fwd_pool_stats(&d, &open, &idle);
    lua_pushinteger(L, open);
    lua_pushinteger(L, idle);
    return 2;
}

/* ------------------------------------------------------------ chunks */

/* The iterator's state: a userdata upvalue (the txn is the second). */
struct lfwd_chunks {
    struct msg_stream ms;       /* SMTP mode; ms.m set again at each step */
    size_t chunk;
    char *out;                  /* 2 * chunk bytes, below */
};

static int lfwd_chunk_next(lua_State *L)
{
    struct lfwd_chunks *c = lua_touserdata(L, lua_upvalueindex(1));
    struct txn *t = lapi_check_txn(L, lua_upvalueindex(2), NULL);
    if (!t->msg)
        return luaL_error(L, "kasi.forward_chunks: the message is gone");
    c->ms.m = t->msg;
    ssize_t n = msg_stream_read(&c->ms, c->out, 2 * c->chunk);
    if (n < 0)
        return luaL_error(L, "kasi.forward_chunks: cannot read the message");
    if (n == 0)
        return 0;
    lua_pushlstring(L, c->out, (size_t)n);
    return 1;
}

/* kasi.forward_chunks(txn [, size]) */
static int l_forward_chunks(lua_State *L)
{
    lfwd_session(L, 1, 1);
    lua_Integer chunk = luaL_optinteger(L, 2, 65536);
    luaL_argcheck(L, chunk > 0 && chunk <= (1 << 22), 2, "chunk size 1..4M");
    struct lfwd_chunks *c = lua_newuserdata(L, sizeof *c + 2 * (size_t)chunk);
    msg_stream_init(&c->ms, NULL, 0, MSG_STREAM_SMTP);
    c->out = (char *)(c + 1);
    c->chunk = (size_t)chunk;
    lua_pushvalue(L, 1);                    /* the txn, checked at each step */
    lua_pushcclosure(L, lfwd_chunk_next, 2);
    return 1;
}

/* ------------------------------------------------------------ sessions
 *
 *   kasi.forward_open(dest) -> sess | nil, err
 *   sess:mail(txn) / sess:rcpt(addr) / sess:data(txn) / sess:rset()
 *       -> {code=, enh=, text=, queue_id=} | nil, err
 *   sess:close(); sess.tls
 *
 * A lockstep session over the downstream client (smtp_client.h
 * fwd_session_*): each method sends one command and suspends the hook
 * until its reply. A reply of any code is a result; nil, err means the
 * connection failed and the session is closed. */

#define LFWD_MT_SESS "kasi.forward_session"

struct lfsess {
    struct fwd_job *job;        /* NULL once closed or failed */
    struct lua_async *a;        /* the hook waiting for a step, NULL none */
    struct event *wake_ev;
    int code, tls, failed;
    char enh[16];
    char *text, *queue_id;
    lua_State *gL;              /* the main state, for self_ref */
    int self_ref;               /* anchors the object while it opens */
};

/* Drop the anchor of an opening session. */
static void lfs_unref(struct lfsess *s)
{
    if (s->self_ref != LUA_NOREF)
        luaL_unref(s->gL, LUA_REGISTRYINDEX, s->self_ref);
    s->self_ref = LUA_NOREF;
}

static void lfs_clear(struct lfsess *s)
{
    free(s->text);
    free(s->queue_id);
    s->text = s->queue_id = NULL;
}

/* The step callback (smtp_client.h): copy, then wake the waiter. */
static void lfs_step(void *arg, struct fwd_result *r)
{
    struct lfsess *s = arg;
    lfs_clear(s);
    s->code = r->code;
    snprintf(s->enh, sizeof s->enh, "%s", r->enh);
    s->text = strdup(r->text ? r->text : "");
    s->queue_id = r->queue_id ? strdup(r->queue_id) : NULL;
    s->tls = r->tls;
    if (r->fail != FWD_OK) {
        s->failed = 1;
        s->job = NULL;              /* gone after this call */
    }
    if (s->a)
        event_active(s->wake_ev, EV_TIMEOUT, 0);
}

static int lfs_push(lua_State *L, void *ud)
{
    struct lfsess *s = ud;
    if (s->self_ref != LUA_NOREF && !s->failed) {   /* opened: the object */
        lua_rawgeti(L, LUA_REGISTRYINDEX, s->self_ref);
        lfs_unref(s);
        return 1;
    }
    lfs_unref(s);
    if (s->failed) {
        lua_pushnil(L);
        lua_pushstring(L, s->text && *s->text ? s->text : "downstream failed");
        return 2;
    }
    lua_createtable(L, 0, 4);
    lua_pushinteger(L, s->code);
    lua_setfield(L, -2, "code");
    set_string(L, "enh", s->enh);
    set_string(L, "text", s->text ? s->text : "");
    set_string(L, "queue_id", s->queue_id);
    return 1;
}

static void lfs_wake(evutil_socket_t fd, short what, void *arg)
{
    struct lfsess *s = arg;
    struct lua_async *a = s->a;
    (void)fd;
    (void)what;
    s->a = NULL;
    lua_async_wake(a, lfs_push, s);
}

/* The hook gave up waiting: the step's outcome is unknown, so the
 * session cannot go on. */
static void lfs_cancel(void *ud)
{
    struct lfsess *s = ud;
    s->a = NULL;
    fwd_session_close(s->job);
    s->job = NULL;
    s->failed = 1;
    lfs_unref(s);
}

static struct lfsess *lfs_check(lua_State *L)
{
    return luaL_checkudata(L, 1, LFWD_MT_SESS);
}

/* Wait for the step just started (rc from fwd_session_*). */
static int lfs_wait(lua_State *L, struct lfsess *s, int rc)
{
    if (rc < 0) {
        lua_pushnil(L);
        lua_pushstring(L, s->failed ? "downstream failed" : s->job ? "busy" : "closed");
        return 2;
    }
    return lua_async_wait(L, &s->a, lfs_cancel, s);
}

/* Usable for a new step? Pushes nil, err and returns 2 when not. */
static int lfs_unusable(lua_State *L, struct lfsess *s)
{
    if (s->job && !s->a)
        return 0;
    lua_pushnil(L);
    lua_pushstring(L, s->a ? "busy" : s->failed ? "downstream failed" : "closed");
    return 2;
}

/* kasi.forward_open(dest) */
static int l_forward_open(lua_State *L)
{
    struct fwd_dest d;
    char port[16];
    lfwd_dest(L, 1, &d, port, sizeof port);
    lua_async_check(L);
    struct lfsess *s = lua_newuserdata(L, sizeof *s);
    memset(s, 0, sizeof *s);
    s->self_ref = LUA_NOREF;
    luaL_getmetatable(L, LFWD_MT_SESS);
    lua_setmetatable(L, -2);
    s->wake_ev = evtimer_new(lua_async_base(), lfs_wake, s);
    s->job = s->wake_ev ? fwd_session_open(lua_async_base(), &d, lfs_step, s) : NULL;
    if (!s->job)
        return luaL_error(L, "out of memory");
    s->gL = lrun_current->gen->L;
    s->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);    /* pops the object */
    return lua_async_wait(L, &s->a, lfs_cancel, s);
}

static int l_sess_mail(lua_State *L)
{
    struct lfsess *s = lfs_check(L);
    struct conn *c;
    struct txn *t = lapi_check_txn(L, 2, &c);
    if (lfs_unusable(L, s))
        return 2;
    lua_async_check(L);
    struct fwd_envelope e;
    char *from = lfwd_envelope(c, t, &e);
    int rc = from ? fwd_session_mail(s->job, &e, t->mail.size) : -1;
    free(from);
    return lfs_wait(L, s, rc);
}

/* sess:rcpt(addr): an address object or "user@host". */
static int l_sess_rcpt(lua_State *L)
{
    struct lfsess *s = lfs_check(L);
    if (!lua_isstring(L, 2) && !luaL_callmeta(L, 2, "__tostring"))
        return luaL_argerror(L, 2, "an address or a string");
    const char *addr = lua_tostring(L, -1);
    if (!addr || strpbrk(addr, "\r\n<>"))
        return luaL_argerror(L, 2, "not an address");
    if (lfs_unusable(L, s))
        return 2;
    lua_async_check(L);
    return lfs_wait(L, s, fwd_session_rcpt(s->job, addr));
}

static int l_sess_data(lua_State *L)
{
    struct lfsess *s = lfs_check(L);
    struct txn *t = lapi_check_txn(L, 2, NULL);
    if (!t->msg)
        return luaL_error(L, "no message yet (the message exists from data_post on)");
    if (lfs_unusable(L, s))
        return 2;
    lua_async_check(L);
    return lfs_wait(L, s, fwd_session_data(s->job, t->msg));
}

static int l_sess_rset(lua_State *L)
{
    struct lfsess *s = lfs_check(L);
    if (lfs_unusable(L, s))
        return 2;
    lua_async_check(L);
    return lfs_wait(L, s, fwd_session_rset(s->job));
}

static int l_sess_close(lua_State *L)
{
    struct lfsess *s = lfs_check(L);
    if (s->a)                       /* another hook waits on it */
        return 0;
    fwd_session_close(s->job);
    s->job = NULL;
    return 0;
}

static int l_sess_gc(lua_State *L)
{
    struct lfsess *s = lfs_check(L);
    fwd_session_close(s->job);
    s->job = NULL;
    lfs_unref(s);
    if (s->wake_ev)
        event_free(s->wake_ev);
    s->wake_ev = NULL;
    lfs_clear(s);
    return 0;
}

static int l_sess_index(lua_State *L)
{
    struct lfsess *s = lfs_check(L);
    const char *k = luaL_checkstring(L, 2);
    if (strcmp(k, "tls") == 0) {
        lua_pushboolean(L, s->tls);
        return 1;
    }
    if (strcmp(k, "open") == 0) {
        lua_pushboolean(L, s->job != NULL);
        return 1;
    }
    luaL_getmetatable(L, LFWD_MT_SESS);
    lua_getfield(L, -1, "methods");
    lua_getfield(L, -1, k);
    return 1;
}

static void lfs_class(lua_State *L)
{
    static const luaL_Reg m[] = {
        { "mail", l_sess_mail }, { "rcpt", l_sess_rcpt }, { "data", l_sess_data },
        { "rset", l_sess_rset }, { "close", l_sess_close }, { NULL, NULL } };
    luaL_newmetatable(L, LFWD_MT_SESS);
    lua_newtable(L);
    luaL_register(L, NULL, m);
    lua_setfield(L, -2, "methods");
    lua_pushcfunction(L, l_sess_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_sess_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
}

/* ------------------------------------------------------------ open */

void lfwd_open(lua_State *L)
{
    static const luaL_Reg f[] = {
        { "forward", l_forward }, { "forward_envelope", l_forward_envelope },
        { "forward_chunks", l_forward_chunks }, { "forward_pool", l_forward_pool },
        { "forward_open", l_forward_open }, { NULL, NULL } };
    luaL_register(L, NULL, f);
    lfs_class(L);
}

void lfwd_shutdown(void)
{
    fwd_pool_shutdown();
}
