/* lua_counter.c — kasi.counter: counters plugins share across every
 * worker process, kept in the supervisor's shared region
 * (core/shmcount.h), so they hold across worker restarts and reloads.
 *
 *   kasi.counter.incr(key[, n[, window]]) -> count | nil, err
 *   kasi.counter.get(key)                 -> count
 *   kasi.counter.hold(conn, key[, max])   -> true, count | false, count | nil, err
 *   kasi.counter.release(conn, key)       -> count
 *   kasi.counter.held(key)                -> count
 *   kasi.counter.exempt(ip)               -> true | false
 *
 * incr counts events in a sliding window of `window` seconds (none: for
 * as long as the server runs); hold counts something a connection has
 * while it lasts (at most `max` at once). A connection's holds are kept
 * in its userdata's environment and given back when it ends
 * (lcounter_conn_end, called by the engine) or when its worker dies (the
 * supervisor). Keys are the plugins' own: one namespace for all plugins,
 * apart from the core's. exempt tells whether an address is in
 * smtp.yaml's limits.exempt. Nothing here waits. */
#include "lua/lua_counter.h"
#include "lua/lua_engine.h"

#include <string.h>

#include <lauxlib.h>

#include "core/clock.h"
#include "core/config.h"
#include "core/netmask.h"
#include "core/shmcount.h"

#define HOLDS "counter_holds"   /* field of the conn's environment */
#define HOLD_KEYS 16            /* different keys one connection may hold */
#define NO_REGION "no shared counters here"

/* 'L' and the plugin's key into k; returns its length. Raises on a bad key. */
static size_t lcounter_key(lua_State *L, int idx, unsigned char k[SHMCOUNT_KEY_MAX])
{
    size_t len;
    const char *s = luaL_checklstring(L, idx, &len);
    if (len == 0 || len > SHMCOUNT_KEY_MAX - 1)
        luaL_error(L, "kasi.counter: a key is 1 to %d bytes", SHMCOUNT_KEY_MAX - 1);
    k[0] = 'L';
    memcpy(k + 1, s, len);
    return len + 1;
}

static int lcounter_fail(lua_State *L, const char *err)
{
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
}

static int lcounter_incr(lua_State *L)
{
    unsigned char k[SHMCOUNT_KEY_MAX];
    size_t klen = lcounter_key(L, 1, k);
    lua_Number n = luaL_optnumber(L, 2, 1);
    lua_Number window = luaL_optnumber(L, 3, 0);
    if (!(n >= 0 && n <= 4294967295.0) || n != (lua_Number)(unsigned long long)n)
        return luaL_error(L, "kasi.counter.incr: n is a whole number >= 0");
    if (!(window >= 0))
        return luaL_error(L, "kasi.counter.incr: window is seconds >= 0");
    if (!shmcount_ready())
        return lcounter_fail(L, NO_REGION);
    unsigned long long c = shmcount_add(k, klen, (unsigned)n, window, clock_now());
    if (c == ~0ULL)
        return lcounter_fail(L, NO_REGION);
    lua_pushnumber(L, (lua_Number)c);
    return 1;
}

static int lcounter_get(lua_State *L)
{
    unsigned char k[SHMCOUNT_KEY_MAX];
    size_t klen = lcounter_key(L, 1, k);
    lua_pushnumber(L, (lua_Number)shmcount_count(k, klen, clock_now()));
    return 1;
}

static int lcounter_held(lua_State *L)
{
    unsigned char k[SHMCOUNT_KEY_MAX];
    size_t klen = lcounter_key(L, 1, k);
    lua_pushnumber(L, (lua_Number)shmcount_held(k, klen));
    return 1;
}

/* Push the conn's table of holds (key -> times held), made on first use.
 * Raises for anything but a live conn. */
static void lcounter_holds(lua_State *L, int conn)
{
    lapi_check_conn(L, conn);
    lua_getfenv(L, conn);
    lua_getfield(L, -1, HOLDS);
    if (lua_istable(L, -1)) {
        lua_remove(L, -2);
        return;
    }
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, HOLDS);
    lua_remove(L, -2);
}

/* holds[key] += delta (nil at 0). */
static void lcounter_note(lua_State *L, int holds, int key, int delta)
{
    lua_pushvalue(L, key);
    lua_rawget(L, holds);
    lua_Integer n = lua_tointeger(L, -1) + delta;
    lua_pop(L, 1);
    lua_pushvalue(L, key);
    if (n > 0)
        lua_pushinteger(L, n);
    else
        lua_pushnil(L);
    lua_rawset(L, holds);
}

/* Raise when the connection holds HOLD_KEYS other keys already: the gauge
 * table is sized by connections, a plugin must not fill it alone. */
static void lcounter_room(lua_State *L, int holds, int key)
{
    int n = 0;
    lua_pushvalue(L, key);
    lua_rawget(L, holds);
    int have = !lua_isnil(L, -1);
    lua_pop(L, 1);
    if (have)
        return;
    lua_pushnil(L);
    while (lua_next(L, holds)) {
        lua_pop(L, 1);
        n++;
    }
    if (n >= HOLD_KEYS)
        luaL_error(L, "kasi.counter.hold: a connection holds at most %d keys", HOLD_KEYS);
}

static int lcounter_hold(lua_State *L)
{
    unsigned char k[SHMCOUNT_KEY_MAX];
    size_t klen = lcounter_key(L, 2, k);
    lua_Number max = luaL_optnumber(L, 3, 0);
    unsigned count;
    if (!(max >= 0 && max <= 4294967295.0))
        return luaL_error(L, "kasi.counter.hold: max is a number >= 0");
    lcounter_holds(L, 1);
    lcounter_room(L, lua_gettop(L), 2);
    enum shmcount_rc rc = shmcount_hold(k, klen, (unsigned)max, &count);
    if (rc == SHMCOUNT_FULL)
        return lcounter_fail(L, "counter table full");
    if (rc == SHMCOUNT_ERROR)
        return lcounter_fail(L, NO_REGION);
    if (rc == SHMCOUNT_OK)
        lcounter_note(L, lua_gettop(L), 2, 1);
    lua_pushboolean(L, rc == SHMCOUNT_OK);
    lua_pushnumber(L, count);
    return 2;
}

static int lcounter_release(lua_State *L)
{
    unsigned char k[SHMCOUNT_KEY_MAX];
    size_t klen = lcounter_key(L, 2, k);
    lcounter_holds(L, 1);
    lua_pushvalue(L, 2);
    lua_rawget(L, -2);
    int mine = lua_tointeger(L, -1) > 0;
    lua_pop(L, 1);
    if (mine) {
        shmcount_drop(k, klen);
        lcounter_note(L, lua_gettop(L), 2, -1);
    }
    lua_pushnumber(L, shmcount_held(k, klen));
    return 1;
}

static int lcounter_exempt(lua_State *L)
{
    const struct kasi_config *cfg = lua_touserdata(L, lua_upvalueindex(1));
    unsigned char a[NETMASK_BYTES];
    const char *ip = luaL_checkstring(L, 1);
    lua_pushboolean(L, netmask_addr(ip, a) == 0 && netmask_list_match(&cfg->exempt, a));
    return 1;
}

void lcounter_conn_end(struct lsess *ps)
{
    lua_State *L = ps->gen->L;
    unsigned char k[SHMCOUNT_KEY_MAX];
    if (ps->conn_ref == LUA_NOREF)
        return;
    lua_rawgeti(L, LUA_REGISTRYINDEX, ps->conn_ref);
    lua_getfenv(L, -1);
    lua_getfield(L, -1, HOLDS);
    if (lua_istable(L, -1)) {
        lua_pushnil(L);
        while (lua_next(L, -2)) {           /* key string, times held */
            size_t len;
            const char *s = lua_tolstring(L, -2, &len);
            k[0] = 'L';
            if (len < SHMCOUNT_KEY_MAX)
                memcpy(k + 1, s, len);
            for (lua_Integer n = lua_tointeger(L, -1); len < SHMCOUNT_KEY_MAX && n > 0; n--)
                shmcount_drop(k, len + 1);
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 3);
}

void lcounter_open(lua_State *L, const struct kasi_config *cfg)
{
    static const luaL_Reg f[] = {
        { "incr", lcounter_incr }, { "get", lcounter_get }, { "hold", lcounter_hold },
        { "release", lcounter_release }, { "held", lcounter_held }, { NULL, NULL } };
    lua_newtable(L);
    luaL_register(L, NULL, f);
    lua_pushlightuserdata(L, (void *)cfg);
    lua_pushcclosure(L, lcounter_exempt, 1);
    lua_setfield(L, -2, "exempt");
    lua_setfield(L, -2, "counter");
}
