/* lua_net.c — kasi.dns and kasi.tcp: the network calls plugins make.
 * They read like blocking calls but each one yields the hook's coroutine
 * (lua_async.h) and resumes it from the event loop, OpenResty-style.
 *
 *   kasi.dns.query(name, type [, {timeout=}])  -> answers | nil, err
 *   kasi.dns.query_many({{name, type}, ...} [, {timeout=}]) -> results
 *   kasi.dns.ptr(ip)                         -> names | nil, err
 *   kasi.dns.reverse(ip [, zone])            -> "4.3.2.1.zone" | nil
 *   kasi.dns.rdns()                          -> name | nil, confirmed
 *   kasi.tcp.connect(host|ip|path, port [, {timeout=, tls=, tls_verify=}])
 *       -> sock | nil, err;  sock:send / receive / send_message /
 *          starttls / settimeout / close
 *
 * Wake-ups are always deferred to an event of their own, so Lua never runs
 * inside a c-ares or bufferevent callback. */
#include "lua/lua_net.h"
#include "core/check.h"
#include "core/clock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <lauxlib.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "net/dns.h"
#include "net/tls.h"
#include "lua/lua_async.h"
#include "lua/lua_engine.h"
#include "msg/message.h"
#include "msg/msg_stream.h"
#include "msg/envelope.h"

#define MT_SOCK "kasi.tcp.sock"
#define LNET_MAX_QUERIES 64
#define LNET_MSG_HIGH (256 * 1024)
#define LNET_MSG_LOW (64 * 1024)
#define LNET_MAX_LINE (1024 * 1024)
#define LNET_READ_HIGH (16 * 1024 * 1024)


static int push_fail(lua_State *L, const char *err)
{
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
}

/* ================================================================ DNS */

struct ldns_item {
    struct ldns_op *op;
    struct dns_query *q;
    struct dns_result r;
    int type;
    char *name;
};

struct ldns_op {
    struct lua_async *a;
    struct event *wake_ev;
    size_t n, pending;
    int many;
    struct ldns_item it[];
};

static void ldns_free(struct ldns_op *op)
{
    for (size_t i = 0; i < op->n; i++) {
        dns_cancel(op->it[i].q);
        dns_result_clear(&op->it[i].r);
        free(op->it[i].name);
    }
    if (op->wake_ev)
        event_free(op->wake_ev);
    free(op);
}

/* answers table (with .ttl) or nil, err */
static int push_answers(lua_State *L, const struct dns_result *r)
{
    if (r->status != DNS_OK)
        return push_fail(L, dns_status_str(r->status));
    lua_createtable(L, (int)r->n, 1);
    for (size_t i = 0; i < r->n; i++) {
        if (r->type == DNS_T_MX) {
            lua_createtable(L, 0, 2);
            lua_pushstring(L, r->ans[i].text);
            lua_setfield(L, -2, "exchange");
            lua_pushinteger(L, r->ans[i].pref);
            lua_setfield(L, -2, "preference");
        } else {
            lua_pushstring(L, r->ans[i].text);
        }
        lua_rawseti(L, -2, (int)i + 1);
    }
    lua_pushinteger(L, (lua_Integer)r->ttl);
    lua_setfield(L, -2, "ttl");
    return 1;
}

static int ldns_push(lua_State *L, void *ud)
{
    struct ldns_op *op = ud;
    if (!op->many) {
        push_answers(L, &op->it[0].r);
    } else {
        lua_createtable(L, (int)op->n, 0);
        for (size_t i = 0; i < op->n; i++) {
            lua_createtable(L, 0, 4);
            lua_pushstring(L, op->it[i].name);
            lua_setfield(L, -2, "name");
            lua_pushstring(L, dns_type_name(op->it[i].type));
            lua_setfield(L, -2, "type");
            int k = push_answers(L, &op->it[i].r);
            if (k == 2)
                lua_setfield(L, -3, "err");
            lua_setfield(L, -2, "answers");
            lua_rawseti(L, -2, (int)i + 1);
        }
    }
    ldns_free(op);
    return 0;
}

static void ldns_wake(evutil_socket_t fd, short what, void *arg)
{
    struct ldns_op *op = arg;
    (void)fd;
    (void)what;
    lua_async_wake(op->a, ldns_push, op);
}

static void ldns_answer(const struct dns_result *r, void *ud)
{
    struct ldns_item *it = ud;
    it->q = NULL;
    if (dns_result_copy(&it->r, r) < 0)
        it->r.status = DNS_ERROR;
    if (--it->op->pending == 0)
        event_active(it->op->wake_ev, EV_TIMEOUT, 0);
}

static void ldns_cancel(void *ud)
{
    ldns_free(ud);
}

static double opt_timeout(lua_State *L, int idx, double dflt)
{
    double t = dflt;
    if (lua_istable(L, idx)) {
        lua_getfield(L, idx, "timeout");
        if (lua_isnumber(L, -1))
            t = lua_tonumber(L, -1);
        lua_pop(L, 1);
    }
    return t;
}

static int check_type(lua_State *L, int idx)
{
    const char *tn = luaL_optstring(L, idx, "A");
    int type = dns_type_parse(tn);
    if (!type)
        luaL_error(L, "kasi.dns: unsupported record type '%s'", tn);
    return type;
}

/* Start the queries of op (names and types filled in) and yield. */
static int ldns_start(lua_State *L, struct ldns_op *op, double timeout)
{
    op->wake_ev = evtimer_new(lua_async_base(), ldns_wake, op);
    if (!op->wake_ev) {
        ldns_free(op);
        return luaL_error(L, "out of memory");
    }
    op->pending = op->n;
    for (size_t i = 0; i < op->n; i++) {
        struct ldns_item *it = &op->it[i];
        it->op = op;
        it->q = dns_query(it->name, it->type, timeout, ldns_answer, it);
        if (!it->q) {
            it->r.status = DNS_ERROR;
            op->pending--;
        }
    }
    if (op->pending == 0)
        event_active(op->wake_ev, EV_TIMEOUT, 0);
    return lua_async_wait(L, &op->a, ldns_cancel, op);
}

static struct ldns_op *ldns_new(lua_State *L, size_t n)
{
    struct ldns_op *op = calloc(1, sizeof *op + n * sizeof op->it[0]);
    if (!op)
        luaL_error(L, "out of memory");
    return op;
}

static int ldns_query_name(lua_State *L, const char *name, int type, int topt)
{
    const struct dns_result *c = dns_cache_get(name, type);
    if (c)
        return push_answers(L, c);
    lua_async_check(L);
    struct ldns_op *op = ldns_new(L, 1);
    op->n = 1;
    op->it[0].type = type;
    op->it[0].name = strdup(name);
    if (!op->it[0].name) {
        free(op);
        return luaL_error(L, "out of memory");
    }
    return ldns_start(L, op, opt_timeout(L, topt, 0));
}

/* kasi.dns.query(name, type [, opts]) */
static int l_dns_query(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    int type = check_type(L, 2);
    return ldns_query_name(L, name, type, 3);
}

/* kasi.dns.ptr(ip [, opts]) */
static int l_dns_ptr(lua_State *L)
{
    char rev[128];
    if (dns_reverse_name(luaL_checkstring(L, 1), NULL, rev, sizeof rev) < 0)
        return push_fail(L, "not an IP address");
    return ldns_query_name(L, rev, DNS_T_PTR, 2);
}

/* kasi.dns.query_many({{name, type}, ...} [, opts]): all at once. */
static int l_dns_query_many(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    size_t n = lua_objlen(L, 1);
    if (n > LNET_MAX_QUERIES)
        return luaL_error(L, "kasi.dns.query_many: at most %d queries",
                          LNET_MAX_QUERIES);
    lua_async_check(L);
    struct ldns_op *op = ldns_new(L, n);
    op->many = 1;
    for (size_t i = 0; i < n; i++) {
        lua_rawgeti(L, 1, (int)i + 1);
        if (!lua_istable(L, -1)) {
            ldns_free(op);
            return luaL_error(L, "kasi.dns.query_many: item %d is not "
                              "{name, type}", (int)i + 1);
        }
        lua_rawgeti(L, -1, 1);
        lua_rawgeti(L, -2, 2);
        const char *name = lua_tostring(L, -2);
        int type = dns_type_parse(lua_isstring(L, -1) ? lua_tostring(L, -1) : "A");
        op->it[i].name = strdup(name ? name : "");
        op->it[i].type = type;
        op->n = i + 1;
        lua_pop(L, 3);
        if (!name || !type || !op->it[i].name) {
            ldns_free(op);
            return luaL_error(L, "kasi.dns.query_many: bad item %d", (int)i + 1);
        }
    }
    if (n == 0) {
        free(op);
        lua_newtable(L);
        return 1;
    }
    return ldns_start(L, op, opt_timeout(L, 2, 0));
}

/* kasi.dns.reverse(ip [, zone]) -> query name | nil */
static int l_dns_reverse(lua_State *L)
{
    char out[512];
    const char *zone = luaL_optstring(L, 2, NULL);
    if (dns_reverse_name(luaL_checkstring(L, 1), zone, out, sizeof out) < 0) {
        lua_pushnil(L);
        return 1;
    }
    lua_pushstring(L, out);
    return 1;
}

/* kasi.dns.rdns(conn): the client's reverse DNS, waiting for the lookup. */
struct lrdns {
    struct lua_async *a;
    struct conn *s;
    struct event *ev;
};

static int lrdns_push(lua_State *L, void *ud)
{
    struct lrdns *w = ud;
    if (w->s->rdns)
        lua_pushstring(L, w->s->rdns);
    else
        lua_pushnil(L);
    lua_pushboolean(L, w->s->rdns_confirmed);
    event_free(w->ev);
    free(w);
    return 0;
}

static void lrdns_wake(evutil_socket_t fd, short what, void *arg)
{
    struct lrdns *w = arg;
    (void)fd;
    (void)what;
    lua_async_wake(w->a, lrdns_push, w);
}

static void lrdns_done(void *ud)
{
    struct lrdns *w = ud;
    event_active(w->ev, EV_TIMEOUT, 0);
}

static void lrdns_cancel(void *ud)
{
    struct lrdns *w = ud;
    if (!dns_rdns_done(w->s))
        dns_rdns_unwait(w->s);
    event_free(w->ev);
    free(w);
}

static int l_dns_rdns(lua_State *L)
{
    struct conn *s = lapi_check_conn(L, 1);
    if (dns_rdns_done(s)) {
        if (s->rdns)
            lua_pushstring(L, s->rdns);
        else
            lua_pushnil(L);
        lua_pushboolean(L, s->rdns_confirmed);
        return 2;
    }
    lua_async_check(L);
    struct lrdns *w = calloc(1, sizeof *w);
    if (!w || !(w->ev = evtimer_new(lua_async_base(), lrdns_wake, w))) {
        free(w);
        return luaL_error(L, "out of memory");
    }
    w->s = s;
    dns_rdns_wait(s, lrdns_done, w);
    return lua_async_wait(L, &w->a, lrdns_cancel, w);
}

/* ================================================================ TCP */

enum lsock_op { OP_NONE, OP_CONNECT, OP_SEND, OP_RECV, OP_MSG };

struct lsock {
    struct bufferevent *bev;
    char *host;                /* for SNI / certificate name */
    int tls_want, tls_verify;
    double timeout;            /* seconds per operation */
    int eof;
    char err[160];             /* why the socket failed, "" ok */
    /* the operation in progress */
    enum lsock_op op;
    struct lua_async *a;
    lua_State *gL;             /* main state, for the self reference */
    int self_ref;
    struct event *tmr, *wake_ev;
    struct dns_query *dq;
    int port;
    int rmode;                 /* 'l', 'a' or 'n' */
    size_t rn;
    struct msg_stream ms;      /* send_message: ms.m set while it runs */
    /* its result */
    int ok;
    char *res;
    size_t res_len;
    const char *res_err;
};

struct lsock_ud { struct lsock *s; };

static void lsock_io_setup(struct lsock *s);
static void lsock_try_recv(struct lsock *s);
static void lsock_refill(struct lsock *s);

static void lsock_drop_bev(struct lsock *s)
{
    if (s->bev)
        bufferevent_free(s->bev);
    s->bev = NULL;
    s->eof = 1;
}

/* End the operation: the hook resumes from the loop with its result. */
static void lsock_finish(struct lsock *s, int ok, const char *err)
{
    if (s->op == OP_NONE)
        return;
    s->ok = ok;
    s->res_err = err;
    evtimer_del(s->tmr);
    if (s->bev && s->op == OP_MSG)
        bufferevent_setwatermark(s->bev, EV_WRITE, 0, 0);
    s->ms.m = NULL;
    event_active(s->wake_ev, EV_TIMEOUT, 0);
}

static int lsock_push(lua_State *L, void *ud)
{
    struct lsock *s = ud;
    enum lsock_op op = s->op;
    s->op = OP_NONE;
    if (op == OP_CONNECT && s->ok)
        lua_rawgeti(L, LUA_REGISTRYINDEX, s->self_ref);
    else if (!s->ok) {
        lua_pushnil(L);
        lua_pushstring(L, s->res_err ? s->res_err : "error");
        if (op == OP_RECV && s->res)
            lua_pushlstring(L, s->res, s->res_len);
    } else if (op == OP_RECV)
        lua_pushlstring(L, s->res ? s->res : "", s->res_len);
    else
        lua_pushinteger(L, (lua_Integer)s->res_len);
    free(s->res);
    s->res = NULL;
    luaL_unref(L, LUA_REGISTRYINDEX, s->self_ref);
    s->self_ref = LUA_NOREF;
    return 0;
}

static void lsock_wake(evutil_socket_t fd, short what, void *arg)
{
    struct lsock *s = arg;
    struct lua_async *a = s->a;
    (void)fd;
    (void)what;
    s->a = NULL;
    lua_async_wake(a, lsock_push, s);   /* s may be collected after this */
}

/* The hook was abandoned: the socket's state is unknown, close it. */
static void lsock_cancel(void *ud)
{
    struct lsock *s = ud;
    s->a = NULL;
    s->op = OP_NONE;
    s->ms.m = NULL;
    evtimer_del(s->tmr);
    event_del(s->wake_ev);
    dns_cancel(s->dq);
    s->dq = NULL;
    free(s->res);
    s->res = NULL;
    lsock_drop_bev(s);
    luaL_unref(s->gL, LUA_REGISTRYINDEX, s->self_ref);
    s->self_ref = LUA_NOREF;
}

static void lsock_on_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct lsock *s = arg;
    (void)fd;
    (void)what;
    if (s->op == OP_CONNECT) {
        dns_cancel(s->dq);
        s->dq = NULL;
        lsock_drop_bev(s);
    }
    lsock_finish(s, 0, "timeout");
}

/* Start an operation: keeps the userdata (at idx) alive, arms the timer. */
static void lsock_begin(lua_State *L, struct lsock *s, int idx, enum lsock_op op)
{
    struct timeval tv = clock_tv(s->timeout);
    s->op = op;
    s->ok = 0;
    s->res_len = 0;
    s->gL = lrun_current->gen->L;
    lua_pushvalue(L, idx);
    s->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    evtimer_add(s->tmr, &tv);
}

static int lsock_wait(lua_State *L, struct lsock *s, int idx, enum lsock_op op)
{
    lsock_begin(L, s, idx, op);
    return lua_async_wait(L, &s->a, lsock_cancel, s);
}

/* ---- bufferevent callbacks */

static void lsock_read_cb(struct bufferevent *bev, void *arg)
{
    struct lsock *s = arg;
    (void)bev;
    if (s->op == OP_RECV)
        lsock_try_recv(s);
}

static void lsock_write_cb(struct bufferevent *bev, void *arg)
{
    struct lsock *s = arg;
    if (s->op == OP_SEND && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        lsock_finish(s, 1, NULL);
    else if (s->op == OP_MSG)
        lsock_refill(s);
}

static void lsock_set_error(struct lsock *s, struct bufferevent *bev)
{
    unsigned long e = bufferevent_get_openssl_error(bev);
    int se = EVUTIL_SOCKET_ERROR();
    if (e)
        ERR_error_string_n(e, s->err, sizeof s->err);
    else if (se)
        snprintf(s->err, sizeof s->err, "%s", strerror(se));
    else
        snprintf(s->err, sizeof s->err, "connection failed");
}

static int lsock_start_tls(struct lsock *s);

static void lsock_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct lsock *s = arg;
    if (what & BEV_EVENT_CONNECTED) {
        if (s->op != OP_CONNECT)
            return;
        if (s->tls_want == 1) {
            if (lsock_start_tls(s) < 0)
                lsock_finish(s, 0, s->err);
            return;
        }
        lsock_finish(s, 1, NULL);
        return;
    }
    if (what & BEV_EVENT_ERROR)
        lsock_set_error(s, bev);
    if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)))
        return;
    s->eof = 1;
    if (!s->err[0] && s->op != OP_RECV)
        snprintf(s->err, sizeof s->err, "closed");
    if (s->op == OP_RECV)
        lsock_try_recv(s);
    else
        lsock_finish(s, 0, s->err);
}

static void lsock_io_setup(struct lsock *s)
{
    bufferevent_setcb(s->bev, lsock_read_cb, lsock_write_cb, lsock_event_cb, s);
    bufferevent_setwatermark(s->bev, EV_READ, 0, LNET_READ_HIGH);
    bufferevent_enable(s->bev, EV_READ | EV_WRITE);
}

/* Wrap the connection in TLS; completion comes as BEV_EVENT_CONNECTED. */
static int lsock_start_tls(struct lsock *s)
{
    SSL *ssl = tls_client_new(s->host, s->tls_verify ? TLS_VERIFY_PEER : TLS_VERIFY_NONE);
    if (!ssl) {
        snprintf(s->err, sizeof s->err, "TLS setup failed");
        return -1;
    }
    struct bufferevent *tb = bufferevent_openssl_filter_new(
        bufferevent_get_base(s->bev), s->bev, ssl, BUFFEREVENT_SSL_CONNECTING,
        BEV_OPT_CLOSE_ON_FREE);
    if (!tb) {
        SSL_free(ssl);
        snprintf(s->err, sizeof s->err, "TLS setup failed");
        return -1;
    }
    s->bev = tb;
    s->tls_want = 2;
    lsock_io_setup(s);
    return 0;
}

/* ---- connect */

static int lsock_connect_sa(struct lsock *s, const struct sockaddr *sa, int len)
{
    s->bev = bufferevent_socket_new(lua_async_base(), -1, BEV_OPT_CLOSE_ON_FREE);
    if (!s->bev) {
        snprintf(s->err, sizeof s->err, "out of memory");
        return -1;
    }
    lsock_io_setup(s);
    if (bufferevent_socket_connect(s->bev, sa, len) < 0) {
        snprintf(s->err, sizeof s->err, "%s", strerror(errno ? errno : ECONNREFUSED));
        lsock_drop_bev(s);
        return -1;
    }
    return 0;
}

/* 0: started, -1: failed (s->err), 1: not an address */
static int lsock_connect_addr(struct lsock *s, const char *host, int port)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    if (host[0] == '/' || strncmp(host, "unix:", 5) == 0) {
        struct sockaddr_un *un = (struct sockaddr_un *)&ss;
        const char *path = host[0] == '/' ? host : host + 5;
        if (strlen(path) >= sizeof un->sun_path) {
            snprintf(s->err, sizeof s->err, "socket path too long");
            return -1;
        }
        un->sun_family = AF_UNIX;
        strcpy(un->sun_path, path);
        return lsock_connect_sa(s, (struct sockaddr *)un, sizeof *un);
    }
    struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((unsigned short)port);
        return lsock_connect_sa(s, (struct sockaddr *)v4, sizeof *v4);
    }
    if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((unsigned short)port);
        return lsock_connect_sa(s, (struct sockaddr *)v6, sizeof *v6);
    }
    return 1;
}

static void lsock_resolved(const struct dns_result *r, void *ud)
{
    struct lsock *s = ud;
    s->dq = NULL;
    if (r->status == DNS_OK && r->n > 0 &&
        lsock_connect_addr(s, r->ans[0].text, s->port) == 0)
        return;
    if (!s->err[0])
        snprintf(s->err, sizeof s->err, "cannot resolve %s: %s", s->host,
                 dns_status_str(r->status));
    lsock_finish(s, 0, s->err);
}

static struct lsock *lsock_check(lua_State *L)
{
    struct lsock_ud *u = luaL_checkudata(L, 1, MT_SOCK);
    if (!u->s)
        luaL_error(L, "socket is gone");
    return u->s;
}

static void lsock_opts(lua_State *L, int idx, struct lsock *s)
{
    s->timeout = opt_timeout(L, idx, 10);
    s->tls_verify = 1;
    if (!lua_istable(L, idx))
        return;
    lua_getfield(L, idx, "tls");
    s->tls_want = lua_toboolean(L, -1);
    lua_getfield(L, idx, "tls_verify");
    if (!lua_isnil(L, -1))
        s->tls_verify = lua_toboolean(L, -1);
    lua_pop(L, 2);
}

static struct lsock *lsock_new(lua_State *L)
{
    struct lsock_ud *u = lua_newuserdata(L, sizeof *u);
    u->s = NULL;
    luaL_getmetatable(L, MT_SOCK);
    lua_setmetatable(L, -2);
    struct lsock *s = calloc(1, sizeof *s);
    if (!s)
        luaL_error(L, "out of memory");
    u->s = s;
    s->self_ref = LUA_NOREF;
    s->tmr = evtimer_new(lua_async_base(), lsock_on_timeout, s);
    s->wake_ev = evtimer_new(lua_async_base(), lsock_wake, s);
    if (!s->tmr || !s->wake_ev)
        luaL_error(L, "out of memory");
    return s;
}

/* kasi.tcp.connect(host, port [, opts]) */
static int l_tcp_connect(lua_State *L)
{
    const char *host = luaL_checkstring(L, 1);
    int unix_path = host[0] == '/' || strncmp(host, "unix:", 5) == 0;
    int port = unix_path || lua_isnoneornil(L, 2) || lua_istable(L, 2)
                   ? 0 : (int)luaL_checkinteger(L, 2);
    if (!unix_path && (port <= 0 || port > 65535))
        return luaL_error(L, "kasi.tcp.connect: bad port");
    lua_async_check(L);
    if (!lua_async_base())
        return luaL_error(L, "kasi.tcp.connect: no event loop");
    struct lsock *s = lsock_new(L);
    int ud = lua_gettop(L);
    lsock_opts(L, unix_path ? 2 : 3, s);
    if (unix_path && lua_istable(L, 2) == 0)
        lsock_opts(L, 3, s);
    s->port = port;
    s->host = strdup(host);
    if (!s->host)
        return luaL_error(L, "out of memory");
    int rc = lsock_connect_addr(s, host, port);
    if (rc < 0)
        return push_fail(L, s->err);
    if (rc == 1) {
        s->dq = dns_query(host, DNS_T_ADDR, s->timeout, lsock_resolved, s);
        if (!s->dq)
            return push_fail(L, "cannot resolve");
    }
    return lsock_wait(L, s, ud, OP_CONNECT);
}

/* ---- send / receive */

/* NULL when the socket can take an operation now, else why not: "busy"
 * (another hook's operation is in progress), the error, or "closed". A
 * runtime condition, so the caller returns nil, why. */
static const char *lsock_unusable(const struct lsock *s)
{
    if (s->op != OP_NONE)
        return "busy";
    if (!s->bev || (s->eof && s->err[0]))
        return s->err[0] ? s->err : "closed";
    return NULL;
}

static int l_sock_send(lua_State *L)
{
    struct lsock *s = lsock_check(L);
    size_t len;
    const char *data = luaL_checklstring(L, 2, &len);
    const char *why = lsock_unusable(s);
    if (why)
        return push_fail(L, why);
    lua_async_check(L);
    if (len == 0) {
        lua_pushinteger(L, 0);
        return 1;
    }
    if (bufferevent_write(s->bev, data, len) < 0)
        return push_fail(L, "out of memory");
    lsock_begin(L, s, 1, OP_SEND);
    s->res_len = len;
    return lua_async_wait(L, &s->a, lsock_cancel, s);
}

static void lsock_take(struct lsock *s, size_t n, size_t skip)
{
    struct evbuffer *in = bufferevent_get_input(s->bev);
    s->res = malloc(n + 1);
    s->res_len = n;
    if (s->res)
        evbuffer_remove(in, s->res, n);
    else
        s->res_len = 0;
    evbuffer_drain(in, skip);
}

static void lsock_try_recv(struct lsock *s)
{
    struct evbuffer *in = s->bev ? bufferevent_get_input(s->bev) : NULL;
    size_t have = in ? evbuffer_get_length(in) : 0;
    if (s->rmode == 'l' && in) {
        size_t eol = 0;
        struct evbuffer_ptr p = evbuffer_search_eol(in, NULL, &eol,
                                                    EVBUFFER_EOL_CRLF);
        if (p.pos >= 0) {
            lsock_take(s, (size_t)p.pos, eol);
            lsock_finish(s, 1, NULL);
            return;
        }
        if (have > LNET_MAX_LINE) {
            lsock_finish(s, 0, "line too long");
            return;
        }
    } else if (s->rmode == 'n' && have >= s->rn) {
        lsock_take(s, s->rn, 0);
        lsock_finish(s, 1, NULL);
        return;
    }
    if (!s->eof)
        return;
    if (have)
        lsock_take(s, have, 0);
    if (s->rmode == 'a')
        lsock_finish(s, 1, NULL);
    else
        lsock_finish(s, 0, s->err[0] ? s->err : "closed");
}

/* sock:receive('*l' | '*a' | n) -> data | nil, err, partial */
static int l_sock_receive(lua_State *L)
{
    struct lsock *s = lsock_check(L);
    if (lua_type(L, 2) == LUA_TNUMBER) {
        lua_Integer n = lua_tointeger(L, 2);
        luaL_argcheck(L, n >= 0 && n <= LNET_READ_HIGH, 2, "bad size");
        s->rmode = 'n';
        s->rn = (size_t)n;
    } else {
        const char *pat = luaL_optstring(L, 2, "*l");
        if (strcmp(pat, "*l") == 0 || strcmp(pat, "l") == 0)
            s->rmode = 'l';
        else if (strcmp(pat, "*a") == 0 || strcmp(pat, "a") == 0)
            s->rmode = 'a';
        else
            return luaL_argerror(L, 2, "'*l', '*a' or a size");
    }
    if (s->op != OP_NONE)
        return push_fail(L, "busy");
    if (!s->bev)
        return push_fail(L, s->err[0] ? s->err : "closed");
    lua_async_check(L);
    lsock_begin(L, s, 1, OP_RECV);
    lsock_try_recv(s);            /* may finish at once: woken from the loop */
    return lua_async_wait(L, &s->a, lsock_cancel, s);
}

/* ---- streaming the message */

static void lsock_refill(struct lsock *s)
{
    if (!s->ms.m)
        return;
    struct evbuffer *out = bufferevent_get_output(s->bev);
    int r = msg_stream_fill(&s->ms, out, LNET_MSG_HIGH);
    if (r < 0) {
        lsock_finish(s, 0, errno == ENOMEM ? "out of memory" : "cannot read the message");
        return;
    }
    if (r == 0) {
        bufferevent_setwatermark(s->bev, EV_WRITE, LNET_MSG_LOW, 0);
        return;
    }
    bufferevent_setwatermark(s->bev, EV_WRITE, 0, 0);
    if (evbuffer_get_length(out) == 0)
        lsock_finish(s, 1, NULL);
}

/* sock:send_message(txn) -> bytes | nil, err: the transaction's message
 * (headers as edited, then the body) from msg/msg_stream.h as the socket
 * drains; on a plain socket the spilled body goes by reference. */
static int l_sock_send_message(lua_State *L)
{
    struct lsock *s = lsock_check(L);
    struct txn *t = lapi_check_txn(L, 2, NULL);
    if (!t->msg)
        return push_fail(L, "no message");
    const char *why = lsock_unusable(s);
    if (why)
        return push_fail(L, why);
    lua_async_check(L);
    lsock_begin(L, s, 1, OP_MSG);
    msg_stream_init(&s->ms, t->msg, 0, s->tls_want ? 0 : MSG_STREAM_FILES);
    if (msg_stream_by_reference(&s->ms))
        bufferevent_set_max_single_write(s->bev, MSG_STREAM_FILE_AHEAD);
    s->res_len = msg_size(t->msg);
    lsock_refill(s);
    return lua_async_wait(L, &s->a, lsock_cancel, s);
}

/* sock:starttls([{tls_verify=}]) -> true | nil, err */
static int l_sock_starttls(lua_State *L)
{
    struct lsock *s = lsock_check(L);
    const char *why = lsock_unusable(s);
    if (why)
        return push_fail(L, why);
    if (s->tls_want)
        return push_fail(L, "TLS already active");
    if (lua_istable(L, 2)) {
        lua_getfield(L, 2, "tls_verify");
        if (!lua_isnil(L, -1))
            s->tls_verify = lua_toboolean(L, -1);
        lua_pop(L, 1);
    }
    lua_async_check(L);
    if (lsock_start_tls(s) < 0)
        return push_fail(L, s->err);
    lsock_begin(L, s, 1, OP_CONNECT);
    return lua_async_wait(L, &s->a, lsock_cancel, s);
}

static int l_sock_settimeout(lua_State *L)
{
    struct lsock *s = lsock_check(L);
    double t = luaL_checknumber(L, 2);
    luaL_argcheck(L, t > 0, 2, "timeout must be positive");
    s->timeout = t;
    return 0;
}

static int l_sock_close(lua_State *L)
{
    struct lsock *s = lsock_check(L);
    if (s->op != OP_NONE)
        return push_fail(L, "busy");
    lsock_drop_bev(s);
    snprintf(s->err, sizeof s->err, "closed");
    lua_pushboolean(L, 1);
    return 1;
}

static int l_sock_gc(lua_State *L)
{
    struct lsock_ud *u = luaL_checkudata(L, 1, MT_SOCK);
    struct lsock *s = u->s;
    if (!s)
        return 0;
    u->s = NULL;
    if (!CHECK(s->op == OP_NONE))   /* an operation holds a ref */
        return 0;
    lsock_drop_bev(s);
    dns_cancel(s->dq);
    if (s->tmr)
        event_free(s->tmr);
    if (s->wake_ev)
        event_free(s->wake_ev);
    free(s->res);
    free(s->host);
    free(s);
    return 0;
}

static int l_sock_tostring(lua_State *L)
{
    struct lsock_ud *u = luaL_checkudata(L, 1, MT_SOCK);
    lua_pushfstring(L, "kasi.tcp.sock(%s)", u->s && u->s->host ? u->s->host : "closed");
    return 1;
}

/* ================================================================ open */

void lnet_open(lua_State *L)
{
    static const luaL_Reg dns_f[] = {
        { "query", l_dns_query }, { "query_many", l_dns_query_many },
        { "ptr", l_dns_ptr }, { "reverse", l_dns_reverse },
        { "rdns", l_dns_rdns }, { NULL, NULL } };
    static const luaL_Reg tcp_f[] = { { "connect", l_tcp_connect }, { NULL, NULL } };
    static const luaL_Reg sock_m[] = {
        { "send", l_sock_send }, { "receive", l_sock_receive },
        { "send_message", l_sock_send_message }, { "starttls", l_sock_starttls },
        { "settimeout", l_sock_settimeout }, { "close", l_sock_close },
        { NULL, NULL } };

    luaL_newmetatable(L, MT_SOCK);
    lua_newtable(L);
    luaL_register(L, NULL, sock_m);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_sock_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, l_sock_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 1);

    lua_newtable(L);
    luaL_register(L, NULL, dns_f);
    lua_setfield(L, -2, "dns");
    lua_newtable(L);
    luaL_register(L, NULL, tcp_f);
    lua_setfield(L, -2, "tcp");
}
