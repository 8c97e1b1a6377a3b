/* lua_api.c — what plugins see: the connection, transaction and address
 * objects (userdata whose fields are read live from the C session, so a
 * hook call costs no copying), and the C functions of the `kasi` library
 * (logging, sleep, the spool primitive). lua/kasi.lua builds the rest of
 * the library on top of these.
 *
 * Lifetime: a conn userdata points at the engine's session state until the
 * session ends (then every access raises "connection is gone"); a txn or
 * address userdata also carries the transaction's serial number and stops
 * working when that transaction is over. Each keeps the conn userdata
 * alive through its environment table, so nothing dangles. */
#include "lua/lua_engine.h"
#include "core/clock.h"
#include "lua/lua_async.h"

#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <lauxlib.h>

#include "proto/auth.h"
#include "core/config.h"
#include "core/log.h"
#include "lua/lua_counter.h"
#include "lua/lua_crypt.h"
#include "lua/lua_redis.h"
#include "lua/lua_fwd.h"
#include "lua/lua_net.h"
#include "lua/lua_stats.h"
#include "msg/message.h"
#include "msg/msg_stream.h"
#include "msg/envelope.h"
#include "msg/spool_io.h"

#define MT_CONN "kasi.conn"
#define MT_TXN "kasi.txn"
#define MT_ADDR "kasi.addr"

struct lconn_ud { struct lsess *ps; };
struct ltxn_ud { struct lconn_ud *c; unsigned serial; };
struct laddr_ud { struct lconn_ud *c; unsigned serial; int index; };  /* -1: MAIL */

static const char *cur_plugin;

void lapi_set_plugin(const char *name) { cur_plugin = name; }
const char *lapi_plugin(void) { return cur_plugin; }

/* ------------------------------------------------------- validity */

/* The one liveness check of conn and txn handles (every binding uses
 * these two): a handle of a connection that is gone, or of a transaction
 * that ended, raises a clear error. */
struct conn *lapi_check_conn(lua_State *L, int idx)
{
    struct lconn_ud *u = luaL_checkudata(L, idx, MT_CONN);
    if (!u->ps)
        luaL_error(L, "connection is gone");
    return u->ps->hc->conn;
}

static struct txn *txn_live(struct lconn_ud *c, unsigned serial)
{
    if (!c->ps || !c->ps->hc->conn->txn || c->ps->hc->conn->txn->serial != serial)
        return NULL;
    return c->ps->hc->conn->txn;
}

struct txn *lapi_check_txn(lua_State *L, int idx, struct conn **sp)
{
    struct ltxn_ud *u = luaL_checkudata(L, idx, MT_TXN);
    struct txn *t = txn_live(u->c, u->serial);
    if (!t)
        luaL_error(L, "transaction is over");
    if (sp)
        *sp = u->c->ps->hc->conn;
    return t;
}

static struct smtp_addr *addr_check(lua_State *L, int idx, struct txn **tp)
{
    struct laddr_ud *u = luaL_checkudata(L, idx, MT_ADDR);
    struct txn *t = txn_live(u->c, u->serial);
    if (!t || (u->index >= 0 && ((size_t)u->index > t->nrcpt ||
                                 (size_t)u->index >= t->rcpt_cap)))
        luaL_error(L, "address belongs to a finished transaction");
    if (tp)
        *tp = t;
    return u->index < 0 ? &t->mail.addr : &t->rcpt[u->index].addr;
}

static void push_opt_string(lua_State *L, const char *s)
{
    if (s)
        lua_pushstring(L, s);
    else
        lua_pushnil(L);
}

/* Field dispatch: upvalue 1 maps names to numbers, upvalue 2 holds the
 * methods. Returns the field number or 0 after pushing a method/nil. */
static int field_id(lua_State *L)
{
    lua_pushvalue(L, 2);
    lua_rawget(L, lua_upvalueindex(1));
    int id = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
    if (!id) {
        lua_pushvalue(L, 2);
        lua_rawget(L, lua_upvalueindex(2));
    }
    return id;
}

static void env_field(lua_State *L, int idx, const char *name)
{
    lua_getfenv(L, idx);
    lua_getfield(L, -1, name);
    lua_remove(L, -2);
}

/* ------------------------------------------------------- conn */

enum { CF_REMOTE_IP = 1, CF_REMOTE_PORT, CF_LOCAL_IP, CF_LOCAL_PORT, CF_RDNS,
       CF_HELO, CF_HELO_VERB, CF_TLS, CF_AUTH_USER, CF_RELAYING, CF_NOTES,
       CF_RESULTS, CF_ID, CF_TXN, CF_GENERATION, CF_TLS_VERSION, CF_TLS_CIPHER,
       CF_TLS_SNI, CF_PROXY_IP, CF_ERRORS };
static const char *const conn_fields[] = {
    "remote_ip", "remote_port", "local_ip", "local_port", "rdns", "helo",
    "helo_verb", "tls", "auth_user", "relaying", "notes", "results", "id",
    "txn", "generation", "tls_version", "tls_cipher", "tls_sni", "proxy_ip", "errors", NULL };

static int conn_index(lua_State *L)
{
    struct conn *s = lapi_check_conn(L, 1);
    struct lconn_ud *u = lua_touserdata(L, 1);
    switch (field_id(L)) {
    case 0: return 1;
    case CF_REMOTE_IP: lua_pushstring(L, s->remote_ip); break;
    case CF_REMOTE_PORT: lua_pushinteger(L, s->remote_port); break;
    case CF_LOCAL_IP: lua_pushstring(L, s->local_ip); break;
    case CF_LOCAL_PORT: lua_pushinteger(L, s->local_port); break;
    case CF_RDNS: push_opt_string(L, s->rdns); break;
    case CF_HELO: push_opt_string(L, s->helo); break;
    case CF_HELO_VERB:
        push_opt_string(L, s->helo ? (s->esmtp ? "EHLO" : "HELO") : NULL);
        break;
    case CF_TLS: lua_pushboolean(L, s->tls); break;
    case CF_AUTH_USER: push_opt_string(L, s->auth_user); break;
    case CF_RELAYING: lua_pushboolean(L, s->relaying); break;
    case CF_NOTES: env_field(L, 1, "notes"); break;
    case CF_RESULTS: env_field(L, 1, "results"); break;
    case CF_ID: lua_pushstring(L, s->id); break;
    case CF_TXN: {
        int ref = lapi_txn_ref(u->ps);
        if (ref == LUA_NOREF)
            lua_pushnil(L);
        else
            lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
        break;
    }
    case CF_GENERATION: lua_pushinteger(L, u->ps->gen->id); break;
    case CF_TLS_VERSION: push_opt_string(L, s->tls ? s->tls_version : NULL); break;
    case CF_TLS_CIPHER: push_opt_string(L, s->tls ? s->tls_cipher : NULL); break;
    case CF_PROXY_IP: push_opt_string(L, s->proxy_ip[0] ? s->proxy_ip : NULL); break;
    case CF_ERRORS: lua_pushinteger(L, s->errors); break;
    case CF_TLS_SNI:
        push_opt_string(L, s->tls && s->tls_sni[0] ? s->tls_sni : NULL);
        break;
    default: lua_pushnil(L); break;
    }
    return 1;
}

static int conn_newindex(lua_State *L)
{
    struct conn *s = lapi_check_conn(L, 1);
    const char *k = luaL_checkstring(L, 2);
    if (strcmp(k, "relaying") != 0)
        return luaL_error(L, "conn.%s is read-only", k);
    s->relaying = lua_toboolean(L, 3);
    return 0;
}

static int conn_input_pending(lua_State *L)
{
    lapi_check_conn(L, 1);
    struct lconn_ud *u = lua_touserdata(L, 1);
    lua_pushinteger(L, (lua_Integer)u->ps->hc->input_pending(u->ps->hc));
    return 1;
}

static int conn_tostring(lua_State *L)
{
    struct lconn_ud *u = luaL_checkudata(L, 1, MT_CONN);
    lua_pushfstring(L, "conn %s", u->ps ? u->ps->hc->conn->id : "(gone)");
    return 1;
}

/* ------------------------------------------------------- addresses */

static void push_addr(lua_State *L, struct lconn_ud *c, int conn_idx,
                      unsigned serial, int index)
{
    struct laddr_ud *a = lua_newuserdata(L, sizeof *a);
    a->c = c;
    a->serial = serial;
    a->index = index;
    luaL_getmetatable(L, MT_ADDR);
    lua_setmetatable(L, -2);
    lua_createtable(L, 0, 1);
    lua_pushvalue(L, conn_idx);
    lua_setfield(L, -2, "conn");
    lua_setfenv(L, -2);
}

enum { AF_USER = 1, AF_HOST, AF_ADDRESS, AF_IS_NULL, AF_IS_POSTMASTER };
static const char *const addr_fields[] = {
    "user", "host", "address", "is_null", "is_postmaster", NULL };

static int addr_tostring(lua_State *L)
{
    struct smtp_addr *a = addr_check(L, 1, NULL);
    char *s = smtp_addr_format(a);
    lua_pushstring(L, s ? s : "");
    free(s);
    return 1;
}

static int addr_index(lua_State *L)
{
    struct smtp_addr *a = addr_check(L, 1, NULL);
    switch (field_id(L)) {
    case 0: return 1;
    case AF_USER: lua_pushstring(L, a->local ? a->local : ""); break;
    case AF_HOST: push_opt_string(L, a->domain); break;
    case AF_ADDRESS: return addr_tostring(L);
    case AF_IS_NULL: lua_pushboolean(L, a->is_null); break;
    case AF_IS_POSTMASTER: lua_pushboolean(L, a->is_postmaster); break;
    default: lua_pushnil(L); break;
    }
    return 1;
}

/* addr:set("user@host"): rewrite; raises on bad syntax. */
static int addr_set(lua_State *L)
{
    struct laddr_ud *u = luaL_checkudata(L, 1, MT_ADDR);
    struct txn *t;
    struct smtp_addr *a = addr_check(L, 1, &t);
    const char *str = luaL_checkstring(L, 2);
    struct smtp_addr n;
    smtp_status st;
    if (u->index < 0 && !*str) {            /* the null sender */
        memset(&n, 0, sizeof n);
        n.local = strdup("");
        n.is_null = 1;
        if (!n.local)
            return luaL_error(L, "out of memory");
    } else if (smtp_addr_parse(str, t->mail.smtputf8, &n, &st) < 0) {
        return luaL_error(L, "bad address '%s': %s", str, st.text);
    }
    smtp_addr_clear(a);
    *a = n;
    return 0;
}

int lapi_addr_new(struct lsess *ps, int index)
{
    lua_State *L = ps->gen->L;
    if (lapi_txn_ref(ps) == LUA_NOREF)
        return LUA_NOREF;
    lua_rawgeti(L, LUA_REGISTRYINDEX, ps->conn_ref);
    push_addr(L, lua_touserdata(L, -1), lua_gettop(L), ps->txn_serial, index);
    lua_remove(L, -2);
    return luaL_ref(L, LUA_REGISTRYINDEX);
}

int lapi_creds_new(struct lsess *ps, const struct auth_creds *c)
{
    lua_State *L = ps->gen->L;
    lua_createtable(L, 0, 3);
    lua_pushstring(L, c->mechanism);
    lua_setfield(L, -2, "mechanism");
    lua_pushstring(L, c->user);
    lua_setfield(L, -2, "user");
    lua_pushstring(L, c->password);
    lua_setfield(L, -2, "password");
    return luaL_ref(L, LUA_REGISTRYINDEX);
}

/* ------------------------------------------------------- txn */

enum { TF_ID = 1, TF_MAIL_FROM, TF_RCPT_TO, TF_SIZE, TF_NOTES, TF_RESULTS };
static const char *const txn_fields[] = {
    "id", "mail_from", "rcpt_to", "size", "notes", "results", NULL };

static void txn_addr(lua_State *L, int idx, int index)
{
    struct ltxn_ud *u = lua_touserdata(L, idx);
    env_field(L, idx, "conn");
    push_addr(L, u->c, lua_gettop(L), u->serial, index);
    lua_remove(L, -2);
}

static int txn_index(lua_State *L)
{
    struct txn *t = lapi_check_txn(L, 1, NULL);
    switch (field_id(L)) {
    case 0: return 1;
    case TF_ID: lua_pushstring(L, t->id); break;
    case TF_MAIL_FROM: txn_addr(L, 1, -1); break;
    case TF_RCPT_TO:
        lua_createtable(L, (int)t->nrcpt, 0);
        for (size_t i = 0; i < t->nrcpt; i++) {
            txn_addr(L, 1, (int)i);
            lua_rawseti(L, -2, (int)i + 1);
        }
        break;
    case TF_SIZE: lua_pushinteger(L, t->msg ? (lua_Integer)msg_size(t->msg) : 0); break;
    case TF_NOTES: env_field(L, 1, "notes"); break;
    case TF_RESULTS: env_field(L, 1, "results"); break;
    default: lua_pushnil(L); break;
    }
    return 1;
}

static struct msg *txn_msg(lua_State *L)
{
    struct txn *t = lapi_check_txn(L, 1, NULL);
    if (!t->msg)
        luaL_error(L, "no message yet (headers and body exist from data_post on)");
    return t->msg;
}

static int txn_header(lua_State *L)
{
    struct msg *m = txn_msg(L);
    char *v = msg_header_get(m, luaL_checkstring(L, 2),
                             (size_t)luaL_optinteger(L, 3, 1) - 1);
    push_opt_string(L, v);
    free(v);
    return 1;
}

static int txn_header_all(lua_State *L)
{
    struct msg *m = txn_msg(L);
    const char *name = luaL_checkstring(L, 2);
    size_t n = msg_header_count(m, name);
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        char *v = msg_header_get(m, name, i);
        lua_pushstring(L, v ? v : "");
        free(v);
        lua_rawseti(L, -2, (int)i + 1);
    }
    return 1;
}

static const char *header_name(lua_State *L, int idx)
{
    const char *n = luaL_checkstring(L, idx);
    if (!*n || strpbrk(n, ": \t\r\n"))
        luaL_error(L, "bad header name '%s'", n);
    return n;
}

static int txn_add_header_at(lua_State *L, int prepend)
{
    struct msg *m = txn_msg(L);
    const char *name = header_name(L, 2);
    const char *value = luaL_checkstring(L, 3);
    if (strchr(value, '\r'))
        return luaL_error(L, "header value may not contain CR");
    int rc = prepend ? msg_header_prepend(m, name, value)
                     : msg_header_add(m, name, value);
    if (rc < 0)
        return luaL_error(L, "cannot add header %s", name);
    return 0;
}

static int txn_add_header(lua_State *L) { return txn_add_header_at(L, 0); }
static int txn_prepend_header(lua_State *L) { return txn_add_header_at(L, 1); }

static int txn_remove_header(lua_State *L)
{
    struct msg *m = txn_msg(L);
    lua_pushinteger(L, (lua_Integer)msg_header_remove(m, header_name(L, 2)));
    return 1;
}

/* Read [off, off+n) of the output (headers then body) as a Lua string,
 * straight into the Lua buffer's pieces. */
static void push_range(lua_State *L, struct msg *m, size_t off, size_t n)
{
    struct msg_stream s;
    luaL_Buffer b;
    msg_stream_init(&s, m, off, 0);
    luaL_buffinit(L, &b);
    while (n > 0) {
        size_t k = n < LUAL_BUFFERSIZE ? n : LUAL_BUFFERSIZE;
        ssize_t r = msg_stream_read(&s, luaL_prepbuffer(&b), k);
        if (r < 0)
            luaL_error(L, "error reading the message");
        if (r <= 0)
            break;
        luaL_addsize(&b, (size_t)r);
        n -= (size_t)r;
    }
    luaL_pushresult(&b);
}

/* Body start in output offsets: after the headers and the blank line. */
static size_t body_start(struct msg *m)
{
    struct msg_stream s;
    char crlf[2];
    msg_stream_init(&s, m, m->hdr_bytes, 0);
    if (msg_stream_read(&s, crlf, 2) == 2 && crlf[0] == '\r' && crlf[1] == '\n')
        return m->hdr_bytes + 2;
    return m->hdr_bytes;
}

static int txn_body(lua_State *L)
{
    struct msg *m = txn_msg(L);
    size_t start = body_start(m), size = msg_size(m);
    push_range(L, m, start, size > start ? size - start : 0);
    return 1;
}

static int txn_message(lua_State *L)
{
    struct msg *m = txn_msg(L);
    push_range(L, m, 0, msg_size(m));
    return 1;
}

/* Iterator state in upvalues: txn, next offset, chunk size. */
static int body_chunk_next(lua_State *L)
{
    lua_settop(L, 0);
    lua_pushvalue(L, lua_upvalueindex(1));
    struct msg *m = txn_msg(L);
    size_t off = (size_t)lua_tointeger(L, lua_upvalueindex(2));
    size_t chunk = (size_t)lua_tointeger(L, lua_upvalueindex(3));
    size_t size = msg_size(m);
    if (off >= size)
        return 0;
    size_t n = size - off < chunk ? size - off : chunk;
    push_range(L, m, off, n);
    lua_pushinteger(L, (lua_Integer)(off + n));
    lua_replace(L, lua_upvalueindex(2));
    return 1;
}

static int txn_body_chunks(lua_State *L)
{
    struct msg *m = txn_msg(L);
    lua_Integer chunk = luaL_optinteger(L, 2, 65536);
    luaL_argcheck(L, chunk > 0, 2, "chunk size must be positive");
    lua_pushvalue(L, 1);
    lua_pushinteger(L, (lua_Integer)body_start(m));
    lua_pushinteger(L, chunk);
    lua_pushcclosure(L, body_chunk_next, 3);
    return 1;
}

static int txn_tostring(lua_State *L)
{
    struct ltxn_ud *u = luaL_checkudata(L, 1, MT_TXN);
    struct txn *t = txn_live(u->c, u->serial);
    lua_pushfstring(L, "txn %s", t ? t->id : "(over)");
    return 1;
}

/* A new txn userdata for the session's current transaction. */
static int txn_ud_new(struct lsess *ps)
{
    lua_State *L = ps->gen->L;
    ps->txn_serial = ps->hc->conn->txn->serial;
    struct ltxn_ud *u = lua_newuserdata(L, sizeof *u);
    lua_rawgeti(L, LUA_REGISTRYINDEX, ps->conn_ref);
    u->c = lua_touserdata(L, -1);
    u->serial = ps->txn_serial;
    luaL_getmetatable(L, MT_TXN);
    lua_setmetatable(L, -3);
    lua_createtable(L, 0, 3);
    lua_insert(L, -2);
    lua_setfield(L, -2, "conn");
    lua_newtable(L);
    lua_setfield(L, -2, "notes");
    lua_newtable(L);
    lua_setfield(L, -2, "results");
    lua_setfenv(L, -2);
    return luaL_ref(L, LUA_REGISTRYINDEX);
}

int lapi_txn_ref(struct lsess *ps)
{
    struct txn *t = ps->hc->conn->txn;
    if (!t)
        return LUA_NOREF;
    if (t->serial == ps->txn_serial && ps->txn_ref != LUA_NOREF)
        return ps->txn_ref;
    luaL_unref(ps->gen->L, LUA_REGISTRYINDEX, ps->txn_ref);
    ps->txn_ref = txn_ud_new(ps);
    return ps->txn_ref;
}

/* ------------------------------------------------------- conn objects */

int lapi_conn_new(struct lsess *ps)
{
    lua_State *L = ps->gen->L;
    struct lconn_ud *u = lua_newuserdata(L, sizeof *u);
    u->ps = ps;
    luaL_getmetatable(L, MT_CONN);
    lua_setmetatable(L, -2);
    lua_createtable(L, 0, 2);
    lua_newtable(L);
    lua_setfield(L, -2, "notes");
    lua_newtable(L);
    lua_setfield(L, -2, "results");
    lua_setfenv(L, -2);
    return luaL_ref(L, LUA_REGISTRYINDEX);
}

void lapi_conn_invalidate(struct lsess *ps)
{
    lua_State *L = ps->gen->L;
    if (ps->conn_ref != LUA_NOREF) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, ps->conn_ref);
        struct lconn_ud *u = lua_touserdata(L, -1);
        if (u)
            u->ps = NULL;
        lua_pop(L, 1);
        luaL_unref(L, LUA_REGISTRYINDEX, ps->conn_ref);
    }
    luaL_unref(L, LUA_REGISTRYINDEX, ps->txn_ref);
    ps->conn_ref = ps->txn_ref = LUA_NOREF;
}

void lapi_record(struct lsess *ps, const char *plugin, enum hook_id h,
                 const struct hook_result *r)
{
    lua_State *L = ps->gen->L;
    int in_txn = h >= HOOK_MAIL && h <= HOOK_QUEUE_OK;
    int ref = in_txn ? lapi_txn_ref(ps) : LUA_NOREF;
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref != LUA_NOREF ? ref : ps->conn_ref);
    lua_getfenv(L, -1);
    lua_getfield(L, -1, "results");
    lua_getfield(L, -1, plugin);
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, -3, plugin);
    }
    lua_pushinteger(L, r->rc);
    lua_setfield(L, -2, "rc");
    lua_pushstring(L, hook_name(h));
    lua_setfield(L, -2, "hook");
    push_opt_string(L, r->msg);
    lua_setfield(L, -2, "msg");
    lua_pop(L, 4);
}

/* ------------------------------------------------------- kasi.* in C */

static int k_log(lua_State *L)
{
    int level = (int)luaL_checkinteger(L, 1);
    const char *msg = luaL_checkstring(L, 2);
    const char *id = lua_tostring(L, 3);
    if (level < LOG_LVL_ERROR || level > LOG_LVL_DEBUG || !log_enabled(level))
        return 0;
    const char *p = cur_plugin ? cur_plugin : "lua";
    if (id)
        log_msg(level, "[%s] %s: %s", id, p, msg);
    else
        log_msg(level, "%s: %s", p, msg);
    return 0;
}

static int k_plugin(lua_State *L)
{
    push_opt_string(L, cur_plugin);
    return 1;
}

struct sleeper {
    struct event *ev;
    struct lua_async *a;
    double deadline;            /* clock_now() when the sleep may end */
};

static void sleep_cancel(void *ud)
{
    struct sleeper *sl = ud;
    event_free(sl->ev);
    free(sl);
}

/* libevent's timers may run a little early (coarse clock, cached loop
 * time): a sleep ends only once clock_now() has passed its deadline, so
 * kasi.sleep(n) never returns before n seconds. */
static void sleep_done(evutil_socket_t fd, short what, void *arg)
{
    struct sleeper *sl = arg;
    struct lua_async *a = sl->a;
    (void)fd;
    (void)what;
    double left = sl->deadline - clock_now();
    if (left > 0) {
        struct timeval tv = clock_tv(left);
        evtimer_add(sl->ev, &tv);
        return;
    }
    event_free(sl->ev);
    free(sl);
    lua_async_wake(a, NULL, NULL);
}

static int k_sleep(lua_State *L)
{
    double secs = luaL_checknumber(L, 1);
    struct event_base *base = lua_async_base();
    if (!base)
        return luaL_error(L, "kasi.sleep: no event loop");
    if (secs < 0)
        secs = 0;
    lua_async_check(L);
    struct sleeper *sl = calloc(1, sizeof *sl);
    if (!sl || !(sl->ev = evtimer_new(base, sleep_done, sl))) {
        free(sl);
        return luaL_error(L, "out of memory");
    }
    sl->deadline = clock_now() + secs;
    struct timeval tv = clock_tv(secs);
    int rc = lua_async_wait(L, &sl->a, sleep_cancel, sl);
    event_base_update_cache_time(base);   /* the loop's cached time may be stale */
    evtimer_add(sl->ev, &tv);
    return rc;
}

/* kasi.spool_write(txn) -> true | nil, err. Yields the hook until the
 * message and its directory entry are on disk (msg/spool_io.c). */
struct spool_wait {
    struct lua_async *a;
    struct spool_io_job *job;
    int err;
    char dir[256];
};

static void spool_cancel(void *ud)
{
    struct spool_wait *w = ud;
    spool_io_forget(w->job);
    free(w);
}

static int spool_push(lua_State *L, void *ud)
{
    struct spool_wait *w = ud;
    if (!w->err) {
        lua_pushboolean(L, 1);
        return 1;
    }
    lua_pushnil(L);
    lua_pushfstring(L, "spool %s: %s", w->dir, strerror(w->err));
    return 2;
}

static void spool_done(void *arg, int err)
{
    struct spool_wait *w = arg;
    w->err = err;
    lua_async_wake(w->a, spool_push, w);
    free(w);
}

static int k_spool_write(lua_State *L)
{
    struct conn *s;
    struct txn *t = lapi_check_txn(L, 1, &s);
    struct event_base *base = lua_async_base();
    char err[512];
    if (!t->msg) {
        lua_pushnil(L);
        lua_pushliteral(L, "no message");
        return 2;
    }
    lua_async_check(L);
    struct ltxn_ud *u = lua_touserdata(L, 1);
    const char *dir = u->c->ps->gen->cfg->spool_dir;
    struct spool_wait *w = calloc(1, sizeof *w);
    if (!w)
        return luaL_error(L, "out of memory");
    snprintf(w->dir, sizeof w->dir, "%s", dir);
    w->job = base ? spool_io_write(base, dir, s, t, spool_done, w, err, sizeof err) : NULL;
    if (!w->job) {
        free(w);
        lua_pushnil(L);
        lua_pushstring(L, base ? err : "spool: no event loop");
        return 2;
    }
    return lua_async_wait(L, &w->a, spool_cancel, w);
}

static int k_memory(lua_State *L)
{
    lua_pushinteger(L, lua_gc(L, LUA_GCCOUNT, 0) * 1024 + lua_gc(L, LUA_GCCOUNTB, 0));
    return 1;
}

/* ------------------------------------------------------- registration */

static void new_class(lua_State *L, const char *mt, const char *const *fields,
                      lua_CFunction index, const luaL_Reg *methods,
                      const char *methods_name)
{
    luaL_newmetatable(L, mt);
    lua_newtable(L);                        /* field name -> number */
    for (int i = 0; fields[i]; i++) {
        lua_pushinteger(L, i + 1);
        lua_setfield(L, -2, fields[i]);
    }
    lua_newtable(L);                        /* methods */
    for (; methods && methods->name; methods++) {
        lua_pushcfunction(L, methods->func);
        lua_setfield(L, -2, methods->name);
    }
    lua_pushvalue(L, -1);
    lua_setfield(L, -5, methods_name);      /* kasi._conn_methods, ... */
    lua_pushcclosure(L, index, 2);
    lua_setfield(L, -2, "__index");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 1);
}

void lapi_open(lua_State *L, struct lgen *g)
{
    static const luaL_Reg conn_m[] = {
        { "input_pending", conn_input_pending }, { NULL, NULL } };
    static const luaL_Reg txn_m[] = {
        { "header", txn_header }, { "header_all", txn_header_all },
        { "add_header", txn_add_header }, { "prepend_header", txn_prepend_header },
        { "remove_header", txn_remove_header }, { "body", txn_body },
        { "body_chunks", txn_body_chunks }, { "message", txn_message }, { NULL, NULL } };
    static const luaL_Reg addr_m[] = { { "set", addr_set }, { NULL, NULL } };
    static const luaL_Reg kasi_f[] = {
        { "_log", k_log }, { "plugin", k_plugin }, { "sleep", k_sleep },
        { "spool_write", k_spool_write }, { "memory", k_memory }, { NULL, NULL } };
    static const char *const rc_names[] = {
        "NEXT", "OK", "DENY", "DENYSOFT", "DENYDISCONNECT", "DISCONNECT", NULL };

    lua_newtable(L);                        /* kasi */
    luaL_register(L, NULL, kasi_f);
    for (int i = 0; rc_names[i]; i++) {
        lua_pushinteger(L, i);
        lua_setfield(L, -2, rc_names[i]);
    }
    lua_pushinteger(L, g->id);
    lua_setfield(L, -2, "generation");
    lua_pushstring(L, g->cfg->hostname ? g->cfg->hostname : "localhost");
    lua_setfield(L, -2, "hostname");
    new_class(L, MT_CONN, conn_fields, conn_index, conn_m, "_conn_methods");
    new_class(L, MT_TXN, txn_fields, txn_index, txn_m, "_txn_methods");
    new_class(L, MT_ADDR, addr_fields, addr_index, addr_m, "_addr_methods");
    luaL_getmetatable(L, MT_CONN);
    lua_pushcfunction(L, conn_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushcfunction(L, conn_tostring);
    lua_setfield(L, -2, "__tostring");
    luaL_getmetatable(L, MT_TXN);
    lua_pushcfunction(L, txn_tostring);
    lua_setfield(L, -2, "__tostring");
    luaL_getmetatable(L, MT_ADDR);
    lua_pushcfunction(L, addr_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 3);
    lnet_open(L);                           /* kasi.dns, kasi.tcp */
    lfwd_open(L);                           /* kasi.forward */
    lcrypt_open(L);                         /* kasi.crypt_verify, crypt_check */
    lredis_open(L);                         /* kasi.redis */
    lstats_open(L);                         /* kasi.stats.incr, observe */
    lcounter_open(L, g->cfg);               /* kasi.counter */
    lua_setglobal(L, "kasi");
}
