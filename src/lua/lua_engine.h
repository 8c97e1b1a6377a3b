/* lua_engine.h — internals shared by the plugin engine's modules:
 *   lua_gen.c   a generation: one lua_State with every plugin loaded
 *   lua_api.c   the objects plugins see (conn, txn, addresses) and the
 *               C functions of the `kasi` library
 *   lua_run.c   running hooks in coroutines: budget, count hook, async
 *   plugins.c   the session side: hook chains, answers, reload */
#ifndef KASI_LUA_ENGINE_H
#define KASI_LUA_ENGINE_H

#include <stddef.h>
#include <lua.h>

#include "proto/hooks.h"

struct session;
struct event;
struct event_base;
struct kasi_config;
struct lua_async;

struct lplugin {
    char *name;                 /* "queue/spool" */
    char *path;                 /* the file loaded */
    double timeout;             /* seconds per hook call */
    int on_error_next;          /* on_error: next */
    int jit_off;                /* jit: false */
    int unsafe;                 /* `unsafe` on its line: no sandbox */
    int hook_ref[HOOK_COUNT];   /* registry refs of hook functions, LUA_NOREF */
};

struct lgen {
    lua_State *L;
    const struct kasi_config *cfg;  /* the configuration it was built from */
    int serving;                /* 1 in a worker, 0 under kasi -t */
    unsigned id;                /* generation number, 1.. */
    int refs;                   /* sessions using it, +1 while current */
    size_t mem_used, mem_limit; /* bytes; the limit binds plugin code only */
    int enforce;                /* the limit applies now (plugin code runs) */
    struct lplugin *plug;
    size_t nplug;
    size_t *chain[HOOK_COUNT];  /* plugin indices that take each hook */
    size_t nchain[HOOK_COUNT];
    int *pool;                  /* idle coroutines (registry refs) */
    size_t npool, pool_cap;
    struct lredis_conf *redis;  /* its redis.yaml and client (lua_redis.c) */
    struct lgen *next;          /* every live generation */
};

/* Engine-wide settings, from config/lua.yaml (optional). */
struct lsettings {
    double timeout;             /* default hook budget, 30 s */
    size_t memory_limit;        /* per generation, default 256 MiB */
};

/* One hook chain in progress for a session. */
struct lrun {
    int active;
    enum hook_id hook;
    int arg_ref;                /* the hook's argument in the registry */
    size_t pos;                 /* chain index of the plugin being called */
    int in_deny;                /* running the deny chain */
    size_t deny_pos;
    struct hook_result held;    /* the rejection the deny chain judges */
    size_t held_plugin;
    int sync;                   /* inside plugins_hook: answer directly */
    struct hook_result out;     /* the answer when it finishes */
    int deny_ref;               /* the deny hook's argument */
    /* the plugin call in progress */
    size_t plugin;              /* index in gen->plug */
    lua_State *co;
    int co_ref;
    double deadline;            /* monotonic seconds */
    struct lua_async *async;    /* set while waiting */
    struct event *wait_ev;      /* budget timer while waiting */
};

/* Per-session engine state (session->engine). */
struct lsess {
    struct hook_ctx *hc;        /* the session's side (proto/hooks.h) */
    struct lgen *gen;
    int conn_ref;               /* conn userdata */
    int txn_ref;                /* txn userdata of the current transaction */
    unsigned txn_serial;        /* the txn txn_ref shows: its serial */
    struct lrun run;
};

/* ---- lua_gen.c */
struct lgen *lgen_build(const struct kasi_config *cfg, int serving,
                        const struct lsettings *set, char *err, size_t errlen);
void lgen_free(struct lgen *g);
/* The id the next generation built gets (then counting up from it). */
void lgen_set_next_id(unsigned id);
int lgen_settings(const struct kasi_config *cfg, struct lsettings *set,
                  char *err, size_t errlen);
/* Find a file under the search roots ("plugins/x.lua", "lua/kasi.lua"). */
int lgen_find(const struct kasi_config *cfg, const char *rel, char *out,
              size_t outlen);
/* Push a coroutine from the pool (creating one if empty). */
lua_State *lgen_thread(struct lgen *g, int *ref);
void lgen_thread_put(struct lgen *g, lua_State *co, int ref);

/* ---- lua_api.c */
void lapi_open(lua_State *L, struct lgen *g);
struct conn;
struct txn;
/* The conn / txn object at idx, live; raises on a wrong type or a stale
 * handle. lapi_check_txn also gives the transaction's connection (cp). */
struct conn *lapi_check_conn(lua_State *L, int idx);
struct txn *lapi_check_txn(lua_State *L, int idx, struct conn **cp);
/* Objects of a session, created in the generation's state. */
int lapi_conn_new(struct lsess *ps);                /* registry ref */
void lapi_conn_invalidate(struct lsess *ps);
int lapi_txn_ref(struct lsess *ps);                 /* ref, LUA_NOREF none */
int lapi_addr_new(struct lsess *ps, int index);     /* -1: MAIL FROM */
struct auth_creds;
/* hook_auth's argument: a table {mechanism=, user=, password=}. */
int lapi_creds_new(struct lsess *ps, const struct auth_creds *c);
/* Record a plugin's answer in conn.results / txn.results. */
void lapi_record(struct lsess *ps, const char *plugin, enum hook_id h,
                 const struct hook_result *r);
void lapi_set_plugin(const char *name);             /* for log prefixes */
const char *lapi_plugin(void);

/* ---- lua_run.c */
enum lcall { LCALL_DONE, LCALL_WAIT, LCALL_ERROR, LCALL_TIMEOUT };
/* Resume the run's coroutine with nargs values on its stack. */
enum lcall lrun_resume(struct lsess *ps, int nargs);
void lrun_abandon(struct lsess *ps);  /* drop the call in progress */
void lrun_setup(struct event_base *base);
void lrun_shutdown(void);
/* Called when an async call or timer ends the plugin call (plugins.c). */
void plugins_call_finished(struct lsess *ps, enum lcall how);
extern struct lsess *lrun_current;    /* session whose Lua code runs now */

#endif
