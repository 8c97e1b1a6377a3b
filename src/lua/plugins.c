/* plugins.c — the plugin engine's side of the session contract (hooks.h)
 * and its life cycle (plugins.h): which generation a session uses, running
 * a hook's plugin chain (with the deny chain that may overturn a
 * rejection), turning Lua answers and failures into replies, and reload.
 *
 * A chain runs synchronously as long as no plugin waits; then
 * plugins_hook() answers at once. When a plugin waits (lua_async.h), the
 * chain continues from the event loop and ends in the session's hook_ctx.done(). */
#include "proto/hooks.h"
#include "proto/reply.h"
#include "core/check.h"
#include "core/clock.h"
#include "lua/plugins.h"
#include "lua/lua_engine.h"
#include "lua/lua_fwd.h"
#include "lua/lua_stats.h"
#include "lua/lua_counter.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <lauxlib.h>

#include "core/config.h"
#include "core/log.h"
#include "msg/envelope.h"

static struct {
    struct kasi_config *cfg;
    struct lgen *current;
    struct lgen *all;           /* every generation still alive */
} eng;

/* ------------------------------------------------------- generations */

static void gen_add(struct lgen *g)
{
    g->refs = 1;
    g->next = eng.all;
    eng.all = g;
    eng.current = g;
}

static void gen_release(struct lgen *g)
{
    if (--g->refs > 0)
        return;
    for (struct lgen **pp = &eng.all; *pp; pp = &(*pp)->next) {
        if (*pp == g) {
            *pp = g->next;
            break;
        }
    }
    if (eng.current == g)
        eng.current = NULL;
    log_msg(LOG_LVL_DEBUG, "plugin generation %u freed", g->id);
    lgen_free(g);
}

static struct lgen *gen_load(int serving, char *err, size_t errlen)
{
    struct lsettings set;
    if (lgen_settings(eng.cfg, &set, err, errlen) < 0)
        return NULL;
    return lgen_build(eng.cfg, serving, &set, err, errlen);
}

static void gen_log(const struct lgen *g, const char *what)
{
    char names[1024] = "";
    size_t off = 0;
    for (size_t i = 0; i < g->nplug && off < sizeof names; i++)
        off += (size_t)snprintf(names + off, sizeof names - off, "%s%s",
                                i ? " " : "", g->plug[i].name);
    log_msg(LOG_LVL_INFO, "plugins %s: generation %u: %s", what, g->id,
            g->nplug ? names : "(none)");
}

int plugins_init(struct kasi_config *cfg, struct event_base *base,
                 char *err, size_t errlen)
{
    eng.cfg = cfg;
    lrun_setup(base);
    struct lgen *g = gen_load(1, err, errlen);
    if (!g)
        return -1;
    gen_add(g);
    gen_log(g, "loaded");
    lstats_generation(g, 0);
    return 0;
}

int plugins_reload(void)
{
    char err[2048] = "";
    if (!eng.cfg)
        return -1;
    struct lgen *g = gen_load(1, err, sizeof err);
    if (!g) {
        log_msg(LOG_LVL_ERROR, "plugin reload failed, generation %u stays: %s",
                eng.current ? eng.current->id : 0, err);
        lstats_generation(NULL, 1);
        return -1;
    }
    struct lgen *old = eng.current;
    gen_add(g);
    if (old)
        gen_release(old);
    gen_log(g, "reloaded");
    lstats_generation(g, 1);
    return 0;
}

void plugins_set_generation(unsigned id)
{
    lgen_set_next_id(id);
}

void plugins_retire(void)
{
    struct lgen *g = eng.current;
    if (!g)
        return;
    eng.current = NULL;
    gen_release(g);
}

void plugins_free(void)
{
    while (eng.all) {
        struct lgen *g = eng.all;
        eng.all = g->next;
        lgen_free(g);
    }
    eng.current = NULL;
    lrun_shutdown();
    lfwd_shutdown();
}

int plugins_check(struct kasi_config *cfg, char *err, size_t errlen)
{
    struct kasi_config *saved = eng.cfg;
    eng.cfg = cfg;
    struct lgen *g = gen_load(0, err, errlen);
    eng.cfg = saved;
    if (!g)
        return -1;
    lgen_free(g);
    return 0;
}

/* ------------------------------------------------------- answers */

/* Lines of a message (string or array of strings) joined with '\n'. */
static char *message_text(lua_State *L, int idx)
{
    if (lua_type(L, idx) == LUA_TSTRING)
        return strdup(lua_tostring(L, idx));
    if (!lua_istable(L, idx))
        return NULL;
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    size_t n = lua_objlen(L, idx);
    for (size_t i = 1; i <= n; i++) {
        lua_rawgeti(L, idx, (int)i);
        const char *line = lua_tostring(L, -1);
        lua_pop(L, 1);
        if (i > 1)
            luaL_addchar(&b, '\n');
        luaL_addstring(&b, line ? line : "");
    }
    luaL_pushresult(&b);
    char *s = strdup(lua_tostring(L, -1));
    lua_pop(L, 1);
    return s;
}

/* A plugin's reply code as given: 0 none, -1 not a reply code at all
 * (reply_check decides whether it fits). */
static int answer_code(lua_State *co, int idx)
{
    if (lua_isnil(co, idx))
        return 0;
    if (!lua_isnumber(co, idx))
        return -1;
    lua_Number n = lua_tonumber(co, idx);
    return n >= 1 && n <= 999 && n == (lua_Number)(int)n ? (int)n : -1;
}

static void answer_enh(lua_State *co, int idx, char *enh, size_t len)
{
    size_t n = 0;
    const char *s = lua_isnil(co, idx) ? "" : lua_tolstring(co, idx, &n);
    if (!s || n >= len)
        s = "?";                        /* never a valid enhanced code */
    snprintf(enh, len, "%s", s);
}

/* rc[, msg | {code=, enh=, msg=}] on the coroutine's stack -> r.
 * Returns NULL or what is wrong with it. */
static const char *parse_answer(lua_State *co, struct hook_result *r)
{
    int top = lua_gettop(co);
    memset(r, 0, sizeof *r);
    if (top == 0 || lua_isnil(co, 1))
        return NULL;
    if (lua_type(co, 1) != LUA_TNUMBER)
        return "not a kasi answer (OK, NEXT, DENY...)";
    lua_Number rc = lua_tonumber(co, 1);
    if (rc < RC_NEXT || rc > RC_DISCONNECT || rc != (lua_Number)(int)rc)
        return "an unknown answer value";
    r->rc = (enum hook_rc)(int)rc;
    if (top < 2 || lua_isnil(co, 2))
        return NULL;
    if (lua_istable(co, 2)) {
        lua_getfield(co, 2, "code");
        lua_getfield(co, 2, "enh");
        lua_getfield(co, 2, "msg");
        int fields = !lua_isnil(co, -1) || !lua_isnil(co, -2) || !lua_isnil(co, -3);
        if (fields) {                   /* {code=, enh=, msg=}; else lines */
            r->code = answer_code(co, -3);
            answer_enh(co, -2, r->enh, sizeof r->enh);
            r->msg = message_text(co, lua_gettop(co));
        }
        lua_pop(co, 3);
        if (fields)
            return NULL;
    }
    r->msg = message_text(co, 2);
    return NULL;
}

/* ------------------------------------------------------- the chain */

static void run_reset(struct lsess *ps)
{
    struct lrun *r = &ps->run;
    lua_State *L = ps->gen->L;
    luaL_unref(L, LUA_REGISTRYINDEX, r->arg_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, r->deny_ref);
    hook_result_clear(&r->held);
    hook_result_clear(&r->out);
    struct event *ev = r->wait_ev;
    memset(r, 0, sizeof *r);
    r->wait_ev = ev;
    r->arg_ref = r->deny_ref = r->co_ref = LUA_NOREF;
}

static int make_arg(struct lsess *ps, enum hook_id h, void *arg)
{
    lua_State *L = ps->gen->L;
    struct conn *s = ps->hc->conn;
    switch (h) {
    case HOOK_HELO:
    case HOOK_EHLO:
        lua_pushstring(L, s->helo ? s->helo : "");
        return luaL_ref(L, LUA_REGISTRYINDEX);
    case HOOK_UNRECOGNIZED:
    case HOOK_DATA:             /* the command: "DATA" or "BDAT" */
        lua_pushstring(L, arg ? (const char *)arg : "");
        return luaL_ref(L, LUA_REGISTRYINDEX);
    case HOOK_AUTH:             /* {mechanism=, user=, password=} */
        return arg ? lapi_creds_new(ps, (const struct auth_creds *)arg) : LUA_NOREF;
    case HOOK_MAIL:
        return s->txn ? lapi_addr_new(ps, -1) : LUA_NOREF;
    case HOOK_RCPT:
    case HOOK_RCPT_OK:
        if (!s->txn || !arg)
            return LUA_NOREF;
        return lapi_addr_new(ps, (int)((struct smtp_rcpt *)arg - s->txn->rcpt));
    default:
        return LUA_NOREF;
    }
}

/* The deny hook's argument: what was rejected, by whom. */
static int make_deny_arg(struct lsess *ps)
{
    lua_State *L = ps->gen->L;
    struct lrun *r = &ps->run;
    lua_createtable(L, 0, 6);
    lua_pushstring(L, hook_name(r->hook));
    lua_setfield(L, -2, "hook");
    lua_pushstring(L, ps->gen->plug[r->held_plugin].name);
    lua_setfield(L, -2, "plugin");
    lua_pushinteger(L, r->held.rc);
    lua_setfield(L, -2, "rc");
    struct reply rep;               /* what the client would hear: defaults filled */
    reply_answer(r->hook, &r->held, &rep);
    lua_pushinteger(L, rep.code);
    lua_setfield(L, -2, "code");
    lua_pushstring(L, rep.enh ? rep.enh : "");
    lua_setfield(L, -2, "enh");
    if (r->held.msg || rep.text) {
        lua_pushstring(L, r->held.msg ? r->held.msg : rep.text);
        lua_setfield(L, -2, "msg");
    }
    return luaL_ref(L, LUA_REGISTRYINDEX);
}

static void push_ref(lua_State *co, int ref)
{
    if (ref == LUA_NOREF || ref == LUA_REFNIL)
        lua_pushnil(co);
    else
        lua_rawgeti(co, LUA_REGISTRYINDEX, ref);
}

/* Start plugin idx on the current hook (or the deny hook). */
static enum lcall call_start(struct lsess *ps, size_t idx)
{
    struct lgen *g = ps->gen;
    struct lrun *r = &ps->run;
    struct lplugin *p = &g->plug[idx];
    enum hook_id h = r->in_deny ? HOOK_DENY : r->hook;
    r->plugin = idx;
    r->co = lgen_thread(g, &r->co_ref);
    r->deadline = clock_now() + p->timeout;
    lua_rawgeti(r->co, LUA_REGISTRYINDEX, p->hook_ref[h]);
    lua_rawgeti(r->co, LUA_REGISTRYINDEX, ps->conn_ref);
    push_ref(r->co, lapi_txn_ref(ps));
    push_ref(r->co, r->in_deny ? r->deny_ref : r->arg_ref);
    return lrun_resume(ps, 3);
}

/* A plugin call ended badly: log once, abandon, answer per on_error. */
static void call_failed(struct lsess *ps, enum lcall how, struct hook_result *res)
{
    struct lrun *r = &ps->run;
    struct lgen *g = ps->gen;
    struct lplugin *p = &g->plug[r->plugin];
    enum hook_id h = r->in_deny ? HOOK_DENY : r->hook;
    if (how == LCALL_TIMEOUT) {
        conn_log(ps->hc->conn, LOG_LVL_ERROR, "plugin %s: hook_%s ran past its time budget "
             "(%.3g s)%s", p->name, hook_name(h), p->timeout,
             p->on_error_next ? ", on_error: next" : "");
    } else {
        const char *msg = r->co ? lua_tostring(r->co, -1) : NULL;
        if (r->co)
            luaL_traceback(g->L, r->co, msg ? msg : "(error object is not a string)", 0);
        else
            lua_pushstring(g->L, msg ? msg : "error");
        conn_log(ps->hc->conn, LOG_LVL_ERROR, "plugin %s: hook_%s failed%s: %s", p->name,
             hook_name(h), p->on_error_next ? " (on_error: next)" : "",
             lua_tostring(g->L, -1));
        lua_pop(g->L, 1);
    }
    lrun_abandon(ps);
    if (g->mem_used > g->mem_limit / 2)
        lua_gc(g->L, LUA_GCCOLLECT, 0);
    if (p->on_error_next) {
        memset(res, 0, sizeof *res);
        res->rc = RC_NEXT;
    } else {
        reply_failure(r->hook, how == LCALL_TIMEOUT, res);
    }
}

/* A plugin returned something that is not an answer: a temporary failure
 * whatever its on_error says (never an accept). */
static void bad_answer(struct lsess *ps, const char *bad, struct hook_result *res)
{
    struct lrun *r = &ps->run;
    const char *v = luaL_typename(r->co, 1);
    if (lua_type(r->co, 1) == LUA_TNUMBER || lua_type(r->co, 1) == LUA_TSTRING)
        v = lua_tostring(r->co, 1);
    conn_log(ps->hc->conn, LOG_LVL_ERROR, "plugin %s: hook_%s failed: it returned %.40s, "
             "%s: a temporary failure", ps->gen->plug[r->plugin].name,
             hook_name(r->in_deny ? HOOK_DENY : r->hook), v, bad);
    reply_failure(r->hook, 0, res);
}

/* Check the reply parts of a plugin's answer; log what is replaced. */
static void check_answer(struct lsess *ps, struct hook_result *res)
{
    struct lrun *r = &ps->run;
    enum hook_id h = r->in_deny ? HOOK_DENY : r->hook;
    char why[256];
    if (!reply_check(h, res, why, sizeof why))
        return;
    struct reply rep;
    reply_answer(h, res, &rep);
    conn_log(ps->hc->conn, LOG_LVL_WARN, "plugin %s: hook_%s: %s; replying %d%s%s",
             ps->gen->plug[r->plugin].name, hook_name(h), why, rep.code,
             rep.enh[0] ? " " : "", rep.enh);
}

/* The answer of the call that just ended. */
static void call_answer(struct lsess *ps, enum lcall how, struct hook_result *res,
                        int *engine_made)
{
    struct lrun *r = &ps->run;
    *engine_made = 0;
    if (how == LCALL_DONE) {
        const char *bad = parse_answer(r->co, res);
        if (bad) {
            hook_result_clear(res);
            bad_answer(ps, bad, res);
            *engine_made = 1;
        } else {
            check_answer(ps, res);
        }
        lgen_thread_put(ps->gen, r->co, r->co_ref);
        r->co = NULL;
        r->co_ref = LUA_NOREF;
    } else {
        call_failed(ps, how, res);
        *engine_made = 1;
    }
    if (res->rc != RC_NEXT)
        snprintf(res->plugin, sizeof res->plugin, "%s", ps->gen->plug[r->plugin].name);
}

/* Fold one plugin's answer into the chain. Returns 1 when the chain is
 * finished (r->out holds the answer). */
static int call_result(struct lsess *ps, enum lcall how)
{
    struct lrun *r = &ps->run;
    struct hook_result res;
    int engine_made;
    call_answer(ps, how, &res, &engine_made);
    lstats_call(ps, how, &res, engine_made);
    if (r->in_deny) {
        r->deny_pos++;
        if (res.rc == RC_OK) {          /* the rejection is overturned */
            conn_log(ps->hc->conn, LOG_LVL_INFO, "plugin %s: deny of %s by %s overturned",
                 ps->gen->plug[r->plugin].name, hook_name(r->hook),
                 ps->gen->plug[r->held_plugin].name);
            hook_result_clear(&r->held);
            luaL_unref(ps->gen->L, LUA_REGISTRYINDEX, r->deny_ref);
            r->deny_ref = LUA_NOREF;
            r->in_deny = 0;
            r->pos++;
        }
        hook_result_clear(&res);
        return 0;
    }
    if (res.rc != RC_NEXT && !engine_made)
        lapi_record(ps, ps->gen->plug[r->plugin].name, r->hook, &res);
    if (res.rc == RC_NEXT) {            /* a text with NEXT is dropped */
        hook_result_clear(&res);
        r->pos++;
        return 0;
    }
    if (res.rc != RC_OK && !engine_made && r->hook != HOOK_DISCONNECT &&
        ps->gen->nchain[HOOK_DENY]) {
        r->held = res;
        r->held_plugin = r->plugin;
        r->in_deny = 1;
        r->deny_pos = 0;
        r->deny_ref = make_deny_arg(ps);
        return 0;
    }
    r->out = res;
    return 1;
}

/* Run plugins until the chain ends (1) or one waits (0). */
static int chain_step(struct lsess *ps)
{
    struct lrun *r = &ps->run;
    struct lgen *g = ps->gen;
    for (;;) {
        enum hook_id h = r->in_deny ? HOOK_DENY : r->hook;
        size_t pos = r->in_deny ? r->deny_pos : r->pos;
        if (pos >= g->nchain[h]) {
            if (!r->in_deny) {
                memset(&r->out, 0, sizeof r->out);
                return 1;
            }
            r->out = r->held;               /* the rejection stands */
            memset(&r->held, 0, sizeof r->held);
            r->in_deny = 0;
            return 1;
        }
        enum lcall how = call_start(ps, g->chain[h][pos]);
        if (how == LCALL_WAIT)
            return 0;
        if (call_result(ps, how))
            return 1;
    }
}

void plugins_call_finished(struct lsess *ps, enum lcall how)
{
    if (!call_result(ps, how) && !chain_step(ps))
        return;                             /* waiting again */
    struct hook_result out = ps->run.out;
    memset(&ps->run.out, 0, sizeof out);
    run_reset(ps);
    ps->hc->done(ps->hc, &out);
}

/* ------------------------------------------------------- sessions */

static struct lsess *sess_get(struct hook_ctx *hc)
{
    if (hc->engine)
        return hc->engine;
    if (!eng.current)
        return NULL;
    struct lsess *ps = calloc(1, sizeof *ps);
    if (!ps)
        return NULL;
    ps->hc = hc;
    ps->gen = eng.current;
    ps->gen->refs++;
    ps->conn_ref = ps->txn_ref = LUA_NOREF;
    run_reset(ps);
    hc->engine = ps;
    return ps;
}

static int engine_hook(struct hook_ctx *hc, enum hook_id h, void *arg,
                       struct hook_result *res)
{
    struct lsess *ps = sess_get(hc);
    memset(res, 0, sizeof *res);
    if (!ps || !ps->gen->nchain[h])
        return 1;
    if (!CHECK(!ps->run.active)) {          /* one hook at a time */
        lrun_abandon(ps);
        run_reset(ps);
    }
    struct lrun *r = &ps->run;
    r->active = 1;
    r->hook = h;
    if (ps->conn_ref == LUA_NOREF)
        ps->conn_ref = lapi_conn_new(ps);
    r->arg_ref = make_arg(ps, h, arg);
    if (!chain_step(ps))
        return 0;
    *res = r->out;
    memset(&r->out, 0, sizeof r->out);
    run_reset(ps);
    return 1;
}

static void engine_cancel(struct hook_ctx *hc)
{
    struct lsess *ps = hc->engine;
    if (ps && ps->run.active) {
        lrun_abandon(ps);
        run_reset(ps);
    }
}

static void engine_end(struct hook_ctx *hc)
{
    struct lsess *ps = hc->engine;
    if (!ps)
        return;
    engine_cancel(hc);
    lcounter_conn_end(ps);                  /* its kasi.counter holds */
    lapi_conn_invalidate(ps);
    if (ps->run.wait_ev)
        event_free(ps->run.wait_ev);
    gen_release(ps->gen);
    hc->engine = NULL;
    free(ps);
}

/* After a burst the garbage of its sessions sits between live blocks and
 * keeps the allocator from giving pages back: collect it all first. */
static void engine_release(void)
{
    for (struct lgen *g = eng.all; g; g = g->next) {
        int before = lua_gc(g->L, LUA_GCCOUNT, 0);
        lua_gc(g->L, LUA_GCCOLLECT, 0);
        log_msg(LOG_LVL_DEBUG, "plugin generation %u: garbage collected, %d -> %d KiB",
                g->id, before, lua_gc(g->L, LUA_GCCOUNT, 0));
    }
}

const struct hook_engine plugins_engine = { engine_hook, engine_cancel, engine_end,
                                            engine_release };

