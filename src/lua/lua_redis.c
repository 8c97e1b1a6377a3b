/* lua_redis.c — kasi.redis: Redis for plugins, over the worker's client
 * (net/redis.h). Every call that waits yields the hook's coroutine
 * (lua_async.h) and is bounded by redis.yaml's command_timeout and the
 * hook's budget; a runtime failure is nil, err.
 *
 *   kasi.redis.call(cmd, arg...)               -> reply | nil, err
 *   kasi.redis.pipeline({{cmd, arg...}, ...} [, {timeout=, wait=}])
 *       -> {reply, ...} | nil, err;  wait = false: true | nil, err at once
 *          (the commands are sent, their replies dropped: usable anywhere,
 *          in hook_disconnect too)
 *   kasi.redis.script(source)                  -> script
 *       script:eval(keys, args [, {timeout=}])  -> reply | nil, err
 *       (EVALSHA; on NOSCRIPT the same as EVAL, which loads it)
 *   kasi.redis.null                            -> a nil reply
 *
 * Replies: status and bulk strings are strings, integers numbers, arrays
 * tables, nil kasi.redis.null; an error reply is nil, "ERR ..." from call
 * and eval and {err = "ERR ..."} inside a pipeline's or an array's result.
 * Commands that would hold the shared connection (SUBSCRIBE, MONITOR,
 * blocking pops, WATCH, a MULTI left open) or change it (SELECT, AUTH,
 * QUIT) raise an error; MULTI ... EXEC goes in one pipeline.
 *
 * Each generation reads redis.yaml when it is built (lredis_load); the
 * generations with the same settings share one client, created at the
 * first command and closed with the last generation that uses it. */
#include "lua/lua_redis.h"
#include "lua/lua_async.h"
#include "lua/lua_engine.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/event.h>
#include <lauxlib.h>
#include <openssl/sha.h>

#include "core/config.h"
#include "core/log.h"
#include "net/redis.h"

#define MT_SCRIPT "kasi.redis.script"
#define LREDIS_MAX_CMDS 1000        /* commands in one pipeline */
#define LREDIS_MAX_ARGS 1024        /* words in one command */
#define LREDIS_MARGIN 0.1           /* seconds kept for the hook after a call */

/* ================================================================ clients */

struct lredis_conf {
    struct redis_settings set;
    int refs;                       /* generations using it */
    struct redis_client *client;    /* made at the first command */
    struct lredis_conf *next;
};

static struct lredis_conf *confs;

int lredis_load(struct lgen *g, char *err, size_t errlen)
{
    struct redis_settings s;
    if (redis_settings_load(g->cfg->dir, &s, err, errlen) < 0)
        return -1;
    struct lredis_conf *c = confs;
    while (c && memcmp(&c->set, &s, sizeof s) != 0)
        c = c->next;
    if (!c) {
        if (!(c = calloc(1, sizeof *c))) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        c->set = s;
        c->next = confs;
        confs = c;
    }
    c->refs++;
    g->redis = c;
    return 0;
}

void lredis_release(struct lgen *g)
{
    struct lredis_conf *c = g->redis;
    g->redis = NULL;
    if (!c || --c->refs > 0)
        return;
    for (struct lredis_conf **pp = &confs; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    redis_client_free(c->client);
    free(c);
}

/* The client of L's generation, or NULL with *err (no loop: kasi -t). */
static struct redis_client *lredis_client(lua_State *L, const char **err)
{
    void *ud;
    lua_getallocf(L, &ud);
    struct lgen *g = ud;
    struct lredis_conf *c = g ? g->redis : NULL;
    if (!c || !g->serving || !lua_async_base()) {
        *err = "not serving (no event loop)";
        return NULL;
    }
    if (!c->client)
        c->client = redis_client_new(lua_async_base(), &c->set);
    if (!c->client)
        *err = "out of memory";
    return c->client;
}

/* ================================================================ commands */

/* Commands refused on the shared connection (the caller's mistake). */
static int lredis_forbidden(const char *name, size_t len)
{
    static const char *const no[] = {
        "SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "UNSUBSCRIBE", "PUNSUBSCRIBE", "MONITOR",
        "SELECT", "AUTH", "HELLO", "QUIT", "RESET", "WATCH", "UNWATCH", "BLPOP", "BRPOP",
        "BRPOPLPUSH", "BLMOVE", "BLMPOP", "BZPOPMIN", "BZPOPMAX", "BZMPOP", "WAIT", NULL
    };
    for (int i = 0; no[i]; i++)
        if (strlen(no[i]) == len && !strncasecmp(name, no[i], len))
            return 1;
    return 0;
}

static int is_word(const struct redis_cmd *c, const char *w)
{
    return strlen(w) == c->argvlen[0] && !strncasecmp(c->argv[0], w, c->argvlen[0]);
}

/* The words of the command at table index idx (or the stack from first to
 * the top when idx is 0), pointing into Lua strings that stay on the stack
 * while the command is sent. Raises on a bad word. */
static void lredis_words(lua_State *L, int idx, int first, struct redis_cmd *c,
                         const char **argv, size_t *lens)
{
    int n = idx ? (int)lua_objlen(L, idx) : lua_gettop(L) - first + 1;
    if (n < 1 || n > LREDIS_MAX_ARGS)
        luaL_error(L, "kasi.redis: a command is 1 to %d words", LREDIS_MAX_ARGS);
    for (int i = 0; i < n; i++) {
        int at = first + i;
        if (idx) {
            lua_rawgeti(L, idx, i + 1);
            at = lua_gettop(L);     /* left on the stack: keeps the string alive */
        }
        int t = lua_type(L, at);
        if (t != LUA_TSTRING && t != LUA_TNUMBER)
            luaL_error(L, "kasi.redis: word %d of a command is a %s, not a string or "
                       "number", i + 1, lua_typename(L, t));
        argv[i] = lua_tolstring(L, at, &lens[i]);
    }
    *c = (struct redis_cmd){ n, argv, lens };
    if (lredis_forbidden(argv[0], lens[0]))
        luaL_error(L, "kasi.redis: %s is not allowed on the shared connection", argv[0]);
}

/* ================================================================ replies */

static void push_value(lua_State *L, const struct redis_value *v);

static void push_array(lua_State *L, const struct redis_value *v)
{
    lua_createtable(L, (int)v->n, 0);
    for (size_t i = 0; i < v->n; i++) {
        push_value(L, &v->elem[i]);
        lua_rawseti(L, -2, (int)i + 1);
    }
}

/* One value; an error reply as {err = text}. */
static void push_value(lua_State *L, const struct redis_value *v)
{
    switch (v->type) {
    case RV_NIL: lua_pushlightuserdata(L, NULL); break;
    case RV_INTEGER: lua_pushnumber(L, (lua_Number)v->integer); break;
    case RV_ARRAY: push_array(L, v); break;
    case RV_ERROR:
        lua_createtable(L, 0, 1);
        lua_pushlstring(L, v->str, v->len);
        lua_setfield(L, -2, "err");
        break;
    default: lua_pushlstring(L, v->str, v->len); break;
    }
}

/* ================================================================ waiting */

enum lredis_kind { OP_CALL, OP_PIPELINE, OP_EVAL };

struct lredis_op {
    struct lua_async *a;
    struct event *wake_ev;
    struct redis_client *client;
    struct redis_req *req;          /* NULL once answered */
    enum lredis_kind kind;
    double timeout;
    struct redis_value *vals;       /* the replies, taken from the request */
    size_t n;
    char err[256];                  /* "" when answered */
    /* OP_EVAL: the command again, as EVAL, should the script be unknown */
    struct redis_cmd again;
    char **words;
    size_t *lens;
};

static void op_free(struct lredis_op *op);

static void op_done(void *ud, struct redis_value *replies, size_t n, const char *err)
{
    struct lredis_op *op = ud;
    op->req = NULL;
    if (err) {
        snprintf(op->err, sizeof op->err, "%s", err);
    } else if ((op->vals = calloc(n, sizeof *op->vals))) {
        memcpy(op->vals, replies, n * sizeof *replies);    /* moved, not copied */
        memset(replies, 0, n * sizeof *replies);
        op->n = n;
    } else {
        snprintf(op->err, sizeof op->err, "out of memory");
    }
    event_active(op->wake_ev, EV_TIMEOUT, 0);   /* Lua runs from the loop */
}

/* An unknown script: send the same as EVAL (which also loads it). */
static int op_retry_eval(struct lredis_op *op)
{
    const char *err;
    if (!op->words || op->n != 1 || op->vals[0].type != RV_ERROR ||
        strncmp(op->vals[0].str, "NOSCRIPT", 8) != 0)
        return 0;
    redis_values_free(op->vals, op->n);
    op->vals = NULL;
    op->n = 0;
    op->req = redis_send(op->client, &op->again, 1, op->timeout, op_done, op, &err);
    if (!op->req)
        snprintf(op->err, sizeof op->err, "%s", err);
    free(op->words);                /* one retry only */
    op->words = NULL;
    return op->req != NULL;
}

static int op_push(lua_State *L, void *ud)
{
    struct lredis_op *op = ud;
    if (op->err[0]) {
        lua_pushnil(L);
        lua_pushstring(L, op->err);
    } else if (op->kind == OP_PIPELINE) {
        lua_createtable(L, (int)op->n, 0);
        for (size_t i = 0; i < op->n; i++) {
            push_value(L, &op->vals[i]);
            lua_rawseti(L, -2, (int)i + 1);
        }
    } else if (op->vals[0].type == RV_ERROR) {
        lua_pushnil(L);
        lua_pushlstring(L, op->vals[0].str, op->vals[0].len);
    } else {
        push_value(L, &op->vals[0]);
    }
    op_free(op);
    return 0;
}

static void op_wake(evutil_socket_t fd, short what, void *arg)
{
    struct lredis_op *op = arg;
    (void)fd;
    (void)what;
    if (op->kind == OP_EVAL && !op->err[0] && op_retry_eval(op))
        return;                     /* asked again: wait for that answer */
    lua_async_wake(op->a, op_push, op);
}

static void op_free(struct lredis_op *op)
{
    redis_cancel(op->req);
    redis_values_free(op->vals, op->n);
    if (op->wake_ev)
        event_free(op->wake_ev);
    free(op->words);
    free(op);
}

/* The hook was abandoned: the answer, should it come, goes nowhere. */
static void op_cancel(void *ud)
{
    op_free(ud);
}

static struct lredis_op *op_new(lua_State *L, struct redis_client *client,
                                enum lredis_kind kind, double timeout)
{
    struct lredis_op *op = calloc(1, sizeof *op);
    if (!op || !(op->wake_ev = evtimer_new(lua_async_base(), op_wake, op))) {
        free(op);
        luaL_error(L, "out of memory");
    }
    op->client = client;
    op->kind = kind;
    /* within the hook's budget, with a margin: the call ends first and
     * the hook still answers */
    double left = lua_async_remaining(L) - LREDIS_MARGIN;
    double t = timeout > 0 ? timeout : redis_client_settings(client)->command_timeout;
    op->timeout = left < t ? (left > LREDIS_MARGIN ? left : LREDIS_MARGIN) : t;
    return op;
}

/* Send and yield; a failure to send is nil, err at once. */
static int op_start(lua_State *L, struct lredis_op *op, const struct redis_cmd *cmds,
                    size_t n)
{
    const char *err;
    op->req = redis_send(op->client, cmds, n, op->timeout, op_done, op, &err);
    if (!op->req) {
        op_free(op);
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    return lua_async_wait(L, &op->a, op_cancel, op);
}

static int fail(lua_State *L, const char *err)
{
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
}

/* ================================================================ API */

static double opt_number(lua_State *L, int idx, const char *key, double dflt)
{
    double v = dflt;
    if (lua_istable(L, idx)) {
        lua_getfield(L, idx, key);
        if (lua_isnumber(L, -1))
            v = lua_tonumber(L, -1);
        lua_pop(L, 1);
    }
    return v;
}

static int opt_wait(lua_State *L, int idx)
{
    int wait = 1;
    if (lua_istable(L, idx)) {
        lua_getfield(L, idx, "wait");
        wait = lua_isnil(L, -1) || lua_toboolean(L, -1);
        lua_pop(L, 1);
    }
    return wait;
}

/* kasi.redis.call(cmd, arg...) */
static int l_call(lua_State *L)
{
    const char *argv[LREDIS_MAX_ARGS], *err;
    size_t lens[LREDIS_MAX_ARGS];
    struct redis_cmd c;
    lredis_words(L, 0, 1, &c, argv, lens);
    if (is_word(&c, "MULTI") || is_word(&c, "EXEC") || is_word(&c, "DISCARD"))
        return luaL_error(L, "kasi.redis.call: %s goes in a pipeline", argv[0]);
    lua_async_check(L);
    struct redis_client *client = lredis_client(L, &err);
    if (!client)
        return fail(L, err);
    return op_start(L, op_new(L, client, OP_CALL, 0), &c, 1);
}

/* MULTI must be closed by EXEC or DISCARD within the same pipeline. */
static void check_multi(lua_State *L, const struct redis_cmd *cmds, size_t n)
{
    int open = 0;
    for (size_t i = 0; i < n; i++) {
        if (is_word(&cmds[i], "MULTI")) {
            if (open)
                luaL_error(L, "kasi.redis.pipeline: MULTI inside MULTI");
            open = 1;
        } else if (is_word(&cmds[i], "EXEC") || is_word(&cmds[i], "DISCARD")) {
            if (!open)
                luaL_error(L, "kasi.redis.pipeline: %s without MULTI", cmds[i].argv[0]);
            open = 0;
        }
    }
    if (open)
        luaL_error(L, "kasi.redis.pipeline: MULTI without EXEC");
}

/* Words of every command of the table at 1, kept on the stack. */
static struct redis_cmd *pipeline_cmds(lua_State *L, size_t *np, const char ***words,
                                       size_t **lens)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    size_t n = lua_objlen(L, 1), total = 0;
    if (n < 1 || n > LREDIS_MAX_CMDS)
        luaL_error(L, "kasi.redis.pipeline: 1 to %d commands", LREDIS_MAX_CMDS);
    for (size_t i = 0; i < n; i++) {
        lua_rawgeti(L, 1, (int)i + 1);
        if (!lua_istable(L, -1))
            luaL_error(L, "kasi.redis.pipeline: command %d is not a table", (int)i + 1);
        total += lua_objlen(L, -1);
        lua_pop(L, 1);
    }
    struct redis_cmd *cmds = lua_newuserdata(L, n * sizeof *cmds);  /* freed by the GC */
    *words = lua_newuserdata(L, (total + 1) * sizeof **words);
    *lens = lua_newuserdata(L, (total + 1) * sizeof **lens);
    luaL_checkstack(L, (int)(total + n) + 8, "kasi.redis.pipeline: too many words");
    for (size_t i = 0, at = 0; i < n; i++) {
        lua_rawgeti(L, 1, (int)i + 1);
        if (lua_objlen(L, -1) > LREDIS_MAX_ARGS)
            luaL_error(L, "kasi.redis: a command is 1 to %d words", LREDIS_MAX_ARGS);
        lredis_words(L, lua_gettop(L), 0, &cmds[i], *words + at, *lens + at);
        at += (size_t)cmds[i].argc;
    }
    *np = n;
    return cmds;
}

/* kasi.redis.pipeline(cmds [, opts]) */
static int l_pipeline(lua_State *L)
{
    const char **words, *err;
    size_t *lens, n;
    int wait = opt_wait(L, 2);
    double timeout = opt_number(L, 2, "timeout", 0);
    lua_settop(L, 2);
    struct redis_cmd *cmds = pipeline_cmds(L, &n, &words, &lens);
    check_multi(L, cmds, n);
    if (wait)
        lua_async_check(L);
    struct redis_client *client = lredis_client(L, &err);
    if (!client)
        return fail(L, err);
    if (!wait) {
        if (!redis_send(client, cmds, n, timeout, NULL, NULL, &err))
            return fail(L, err);
        lua_pushboolean(L, 1);
        return 1;
    }
    return op_start(L, op_new(L, client, OP_PIPELINE, timeout), cmds, n);
}

/* ---- scripts */

struct lscript {
    char sha[41];
    size_t len;
    char src[];
};

/* kasi.redis.script(source) */
static int l_script(lua_State *L)
{
    size_t len;
    const char *src = luaL_checklstring(L, 1, &len);
    unsigned char md[SHA_DIGEST_LENGTH];
    struct lscript *s = lua_newuserdata(L, sizeof *s + len + 1);
    SHA1((const unsigned char *)src, len, md);
    for (int i = 0; i < SHA_DIGEST_LENGTH; i++)
        snprintf(s->sha + 2 * i, 3, "%02x", md[i]);
    s->len = len;
    memcpy(s->src, src, len + 1);
    luaL_getmetatable(L, MT_SCRIPT);
    lua_setmetatable(L, -2);
    return 1;
}

/* The EVAL form of an EVALSHA command, copied (the retry comes later). */
static int eval_copy(struct lredis_op *op, const struct lscript *s, const struct redis_cmd *c)
{
    size_t bytes = s->len + 1;
    for (int i = 2; i < c->argc; i++)
        bytes += c->argvlen[i] + 1;
    size_t n = (size_t)c->argc;
    op->words = malloc(n * (sizeof(char *) + sizeof(size_t)) + bytes);
    if (!op->words)
        return -1;
    op->lens = (size_t *)(op->words + n);
    char *p = (char *)(op->lens + n);
    op->words[0] = "EVAL";
    op->lens[0] = 4;
    for (size_t i = 1; i < n; i++) {
        const char *w = i == 1 ? s->src : c->argv[i];
        size_t len = i == 1 ? s->len : c->argvlen[i];
        memcpy(p, w, len);
        p[len] = '\0';
        op->words[i] = p;
        op->lens[i] = len;
        p += len + 1;
    }
    op->again = (struct redis_cmd){ c->argc, (const char **)op->words, op->lens };
    return 0;
}

/* Push the words of the list at idx onto the stack; their count. */
static int push_list(lua_State *L, int idx, const char *what)
{
    if (lua_isnoneornil(L, idx))
        return 0;
    luaL_checktype(L, idx, LUA_TTABLE);
    int n = (int)lua_objlen(L, idx);
    luaL_checkstack(L, n + 4, "kasi.redis: too many script arguments");
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, idx, i);
        if (!lua_isstring(L, -1))
            luaL_error(L, "kasi.redis: script %s[%d] is not a string or number", what, i);
    }
    return n;
}

/* script:eval(keys, args [, opts]) */
static int l_script_eval(lua_State *L)
{
    const struct lscript *s = luaL_checkudata(L, 1, MT_SCRIPT);
    double timeout = opt_number(L, 4, "timeout", 0);
    const char *err;
    lua_settop(L, 3);
    lua_pushliteral(L, "EVALSHA");
    lua_pushstring(L, s->sha);
    int nkeys = push_list(L, 2, "keys");
    lua_pushinteger(L, nkeys);
    lua_insert(L, -(nkeys + 1));            /* EVALSHA sha nkeys keys... */
    if (push_list(L, 3, "args") + nkeys + 3 > LREDIS_MAX_ARGS)
        return luaL_error(L, "kasi.redis: too many script arguments");
    const char *argv[LREDIS_MAX_ARGS];
    size_t lens[LREDIS_MAX_ARGS];
    struct redis_cmd c;
    lredis_words(L, 0, 4, &c, argv, lens);
    lua_async_check(L);
    struct redis_client *client = lredis_client(L, &err);
    if (!client)
        return fail(L, err);
    struct lredis_op *op = op_new(L, client, OP_EVAL, timeout);
    if (eval_copy(op, s, &c) < 0) {
        op_free(op);
        return luaL_error(L, "out of memory");
    }
    return op_start(L, op, &c, 1);
}

static int l_script_index(lua_State *L)
{
    const struct lscript *s = luaL_checkudata(L, 1, MT_SCRIPT);
    const char *k = luaL_checkstring(L, 2);
    if (!strcmp(k, "sha"))
        lua_pushstring(L, s->sha);
    else if (!strcmp(k, "eval"))
        lua_pushcfunction(L, l_script_eval);
    else
        lua_pushnil(L);
    return 1;
}

void lredis_open(lua_State *L)
{
    static const luaL_Reg f[] = {
        { "call", l_call }, { "pipeline", l_pipeline }, { "script", l_script },
        { NULL, NULL }
    };
    luaL_newmetatable(L, MT_SCRIPT);
    lua_pushcfunction(L, l_script_index);
    lua_setfield(L, -2, "__index");
    lua_pushliteral(L, "kasi.redis.script");
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 1);
    lua_newtable(L);
    luaL_register(L, NULL, f);
    lua_pushlightuserdata(L, NULL);
    lua_setfield(L, -2, "null");
    lua_setfield(L, -2, "redis");
}
