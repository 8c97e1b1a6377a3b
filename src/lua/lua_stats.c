/* lua_stats.c — statistics of the plugin engine: one count per plugin
 * call (answer and time, from plugins.c when a call's answer is folded),
 * the plugin names of each generation, and kasi.stats for plugins:
 *
 *   kasi.stats.incr(name [, labels [, n]])      counter += n (default 1)
 *   kasi.stats.observe(name, value [, labels])  count += 1, sum += value
 *
 * name: [a-z][a-z0-9_]*, under 48 characters, not ending in _total, _sum,
 * _count or _bucket; labels: a table of up to 8 string keys
 * ([a-zA-Z_][a-zA-Z0-9_]*, not "plugin") with string or number values.
 * A bad name, label or value raises; a full series table (256 series) or
 * a label set that is too long returns nil, err. The series appear in
 * /metrics as kasi_plugin_<name>_total / kasi_plugin_<name> (a summary)
 * with a plugin="..." label, and on the graph page. */
#include "lua/lua_stats.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>

#include "core/clock.h"
#include "core/stats.h"

#define LABELS_MAX 8

_Static_assert(HOOK_COUNT == STATS_HOOKS, "stats.h: STATS_HOOKS must equal HOOK_COUNT");
_Static_assert(HOOK_DENY == STATS_HOOK_DENY, "stats.h: STATS_HOOK_DENY must be HOOK_DENY");
_Static_assert((int)RC_DISCONNECT == (int)STATS_DISCONNECT, "answers line up");

void lstats_call(const struct lsess *ps, enum lcall how, const struct hook_result *res,
                 int engine_made)
{
    const struct lrun *r = &ps->run;
    const struct lplugin *p = &ps->gen->plug[r->plugin];
    int answer = !engine_made ? (int)res->rc
               : how == LCALL_TIMEOUT ? STATS_TIMEOUT : STATS_ERROR;
    double took = clock_now() - (r->deadline - p->timeout);
    stats_hook_call(p->name, r->in_deny ? HOOK_DENY : (int)r->hook, answer, took);
}

void lstats_generation(const struct lgen *g, int reload)
{
    if (!g) {
        stats_generation(0, 0, reload);
        return;
    }
    for (size_t i = 0; i < g->nplug; i++)
        stats_plugin_seen(g->plug[i].name);
    stats_generation(g->id, 1, reload);
}

/* ------------------------------------------------------- kasi.stats */

static int name_char(int ch, int first)
{
    return (ch >= 'a' && ch <= 'z') || ch == '_' || (!first && ch >= '0' && ch <= '9');
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

static const char *check_name(lua_State *L, int idx)
{
    const char *s = luaL_checkstring(L, idx);
    int good = *s && strlen(s) < STATS_METRIC && s[0] != '_';
    for (const char *p = s; good && *p; p++)
        good = name_char((unsigned char)*p, p == s);
    if (!good)
        luaL_error(L, "kasi.stats: bad metric name '%s' (expected [a-z][a-z0-9_]*, "
                   "under %d characters)", s, STATS_METRIC);
    if (ends_with(s, "_total") || ends_with(s, "_sum") || ends_with(s, "_count") ||
        ends_with(s, "_bucket"))
        luaL_error(L, "kasi.stats: metric name '%s' must not end in _total, _sum, "
                   "_count or _bucket (kasi adds the suffixes)", s);
    return s;
}

static void check_label_key(lua_State *L, const char *k)
{
    int good = *k && strcmp(k, "plugin") && strncmp(k, "__", 2);
    for (const char *p = k; good && *p; p++)
        good = name_char((unsigned char)*p | (*p >= 'A' && *p <= 'Z' ? 0x20 : 0), p == k);
    if (!good)
        luaL_error(L, "kasi.stats: bad label name '%s'", k);
}

struct label {
    const char *k;              /* anchored: a key of the table */
    char v[STATS_LABELS];       /* a copy: a number's text is not anchored */
};

/* Collect up to LABELS_MAX string pairs from the table at idx, sorted. */
static int collect_labels(lua_State *L, int idx, struct label *out)
{
    int n = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (lua_type(L, -2) != LUA_TSTRING)
            luaL_error(L, "kasi.stats: label names must be strings");
        int vt = lua_type(L, -1);
        if (vt != LUA_TSTRING && vt != LUA_TNUMBER)
            luaL_error(L, "kasi.stats: label '%s' must be a string or a number",
                       lua_tostring(L, -2));
        if (n == LABELS_MAX)
            luaL_error(L, "kasi.stats: at most %d labels", LABELS_MAX);
        const char *k = lua_tostring(L, -2);
        check_label_key(L, k);
        int at = n++;
        while (at > 0 && strcmp(out[at - 1].k, k) > 0) {
            out[at] = out[at - 1];
            at--;
        }
        out[at].k = k;
        snprintf(out[at].v, sizeof out[at].v, "%s", lua_tostring(L, -1));
        lua_pop(L, 1);
    }
    return n;
}

/* Prometheus label value escaping into buf at *o; -1 when it does not fit. */
static int put_value(char *buf, size_t len, size_t *o, const char *v)
{
    for (; *v; v++) {
        const char *e = *v == '\\' ? "\\\\" : *v == '"' ? "\\\"" : *v == '\n' ? "\\n" : NULL;
        size_t n = e ? 2 : 1;
        if (*o + n + 1 >= len)
            return -1;
        memcpy(buf + *o, e ? e : v, n);
        *o += n;
    }
    return 0;
}

int lstats_labels(lua_State *L, int idx, char *buf, size_t len)
{
    struct label l[LABELS_MAX];
    size_t o = 0;
    buf[0] = '\0';
    if (lua_isnoneornil(L, idx))
        return 0;
    luaL_checktype(L, idx, LUA_TTABLE);
    int n = collect_labels(L, idx, l);
    for (int i = 0; i < n; i++) {
        int w = snprintf(buf + o, len - o, "%s%s=\"", i ? "," : "", l[i].k);
        if (w < 0 || o + (size_t)w >= len)
            return -1;
        o += (size_t)w;
        if (put_value(buf, len, &o, l[i].v) < 0 || o + 2 >= len)
            return -1;
        buf[o++] = '"';
        buf[o] = '\0';
    }
    return 0;
}

static int add(lua_State *L, const char *name, int labels_idx, int kind, double v)
{
    char labels[STATS_LABELS];
    const char *plugin = lapi_plugin();
    if (lstats_labels(L, labels_idx, labels, sizeof labels) < 0) {
        lua_pushnil(L);
        lua_pushstring(L, "labels too long");
        return 2;
    }
    if (stats_custom(plugin ? plugin : "lua", name, labels, kind, v) < 0) {
        lua_pushnil(L);
        lua_pushstring(L, "too many series");
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int l_incr(lua_State *L)
{
    const char *name = check_name(L, 1);
    lua_Integer n = luaL_optinteger(L, 3, 1);
    if (n < 0)
        luaL_error(L, "kasi.stats.incr: the count must not be negative");
    return add(L, name, 2, STATS_COUNTER, (double)n);
}

static int l_observe(lua_State *L)
{
    const char *name = check_name(L, 1);
    double v = luaL_checknumber(L, 2);
    if (!isfinite(v))
        luaL_error(L, "kasi.stats.observe: the value must be a finite number");
    return add(L, name, 3, STATS_SUMMARY, v);
}

void lstats_open(lua_State *L)
{
    static const luaL_Reg f[] = {
        { "incr", l_incr }, { "observe", l_observe }, { NULL, NULL } };
    lua_newtable(L);
    luaL_register(L, NULL, f);
    lua_setfield(L, -2, "stats");
}
