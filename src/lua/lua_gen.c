/* lua_gen.c — building a plugin generation: a fresh lua_State with a
 * memory-capped allocator, the `kasi` library, and every plugin listed in
 * config/plugins loaded into its own environment, given its YAML config and
 * registered. Any failure discards the whole generation with an error that
 * names file and line, so a reload either fully succeeds or changes
 * nothing. */
#include "lua/lua_engine.h"
#include "lua/lua_redis.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

#include "core/config.h"
#include "core/config_table.h"
#include "core/log.h"
#include "core/paths.h"
#include "core/yaml_tree.h"

#define LGEN_MAX_PLUGINS 256

static unsigned lgen_counter;

void lgen_set_next_id(unsigned id)
{
    lgen_counter = id ? id - 1 : 0;
}

/* ------------------------------------------------------------ allocator */

static void *lgen_alloc(void *ud, void *p, size_t osize, size_t nsize)
{
    struct lgen *g = ud;
    if (nsize == 0) {
        free(p);
        g->mem_used -= osize;
        return NULL;
    }
    if (g->enforce && nsize > osize && g->mem_used + (nsize - osize) > g->mem_limit)
        return NULL;
    void *n = realloc(p, nsize);
    if (n)
        g->mem_used += nsize - osize;
    return n;
}

/* ------------------------------------------------------- search roots */

/* First the directory holding the config directory (a site's own plugins/
 * and lua/ override the shipped ones), then the shipped data directory
 * (core/paths.h: next to the binary, then the compiled-in one). */
int lgen_find(const struct kasi_config *cfg, const char *rel, char *out,
              size_t outlen)
{
    int len = snprintf(out, outlen, "%s/../%s", cfg->dir ? cfg->dir : "config", rel);
    if (len > 0 && (size_t)len < outlen && access(out, R_OK) == 0)
        return 0;
    return paths_find_shipped(rel, out, outlen);
}

/* ------------------------------------------------------- YAML to Lua */

static int scalar_number(const char *s, lua_Number *out)
{
    char *end;
    if (!*s || isspace((unsigned char)*s))
        return 0;
    errno = 0;
    double d = strtod(s, &end);
    if (*end || errno)
        return 0;
    if (!strpbrk(s, "0123456789"))     /* "inf", "nan" stay strings */
        return 0;
    *out = d;
    return 1;
}

static void push_scalar(lua_State *L, const struct ynode *n)
{
    const char *s = n->scalar ? n->scalar : "";
    lua_Number num;
    if (n->quoted)
        lua_pushstring(L, s);
    else if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE"))
        lua_pushboolean(L, 1);
    else if (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "FALSE"))
        lua_pushboolean(L, 0);
    else if (!*s || !strcmp(s, "~") || !strcmp(s, "null"))
        lua_pushnil(L);
    else if (scalar_number(s, &num))
        lua_pushnumber(L, num);
    else
        lua_pushstring(L, s);
}

/* Push n as a Lua value. For a map or a list, lines (a stack index) gets
 * an entry [the new table] = { [key or index] = line }, keys whose value
 * is empty included: the schema checker names lines from it. */
static void push_ynode(lua_State *L, const struct ynode *n, int lines)
{
    luaL_checkstack(L, 6, "yaml");
    if (n->type == YNODE_SCALAR) {
        push_scalar(L, n);
        return;
    }
    int seq = n->type == YNODE_SEQ;
    lua_createtable(L, seq ? (int)n->n : 0, seq ? 0 : (int)n->n);
    lua_pushvalue(L, -1);
    lua_createtable(L, seq ? (int)n->n : 0, seq ? 0 : (int)n->n);
    for (size_t i = 0; i < n->n; i++) {             /* tbl tbl lns */
        if (seq) {
            lua_pushinteger(L, n->items[i]->line);
            lua_rawseti(L, -2, (int)i + 1);
            push_ynode(L, n->items[i], lines);
            lua_rawseti(L, -3, (int)i + 1);
        } else {
            lua_pushinteger(L, n->key_lines[i]);
            lua_setfield(L, -2, n->keys[i]);
            lua_pushstring(L, n->keys[i]);
            push_ynode(L, n->items[i], lines);
            lua_rawset(L, -4);
        }
    }
    lua_rawset(L, lines);                           /* lines[tbl] = lns */
}

/* ------------------------------------------------------- settings */

#define LGEN_KEY(name, fn, field, lo, hi) \
    CFG_FIELD(struct lsettings, name, fn, field, lo, hi)

static const struct cfg_key lgen_keys[] = {
    LGEN_KEY("timeout", cfg_set_seconds, timeout, 0, 86400),
    LGEN_KEY("memory_limit", cfg_set_size, memory_limit, 1u << 20, 1ULL << 40),
    { 0 }
};

/* config/lua.yaml: timeout, memory_limit. Missing file: defaults. */
int lgen_settings(const struct kasi_config *cfg, struct lsettings *set,
                  char *err, size_t errlen)
{
    char path[PATH_MAX];
    set->timeout = 30;
    set->memory_limit = 256u << 20;
    snprintf(path, sizeof path, "%s/lua.yaml", cfg->dir);
    return cfg_load_file(path, lgen_keys, set, err, errlen);
}

/* One "key=value" option from the plugin list line or the plugin's YAML
 * `plugin:` section. */
static int plugin_option(struct lplugin *p, const char *k, const char *v)
{
    char *end;
    if (!strcmp(k, "timeout")) {
        p->timeout = strtod(v, &end);
        return (p->timeout > 0 && !*end) ? 0 : -1;
    }
    if (!strcmp(k, "on_error")) {
        if (strcmp(v, "next") && strcmp(v, "fail"))
            return -1;
        p->on_error_next = !strcmp(v, "next");
        return 0;
    }
    if (!strcmp(k, "jit")) {
        int off = !strcmp(v, "off") || !strcmp(v, "false");
        if (!off && strcmp(v, "on") && strcmp(v, "true"))
            return -1;
        p->jit_off = off;
        return 0;
    }
    return -1;
}

/* ------------------------------------------------------- the list */

static int name_ok(const char *s)
{
    if (!*s || *s == '/' || strstr(s, ".."))
        return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr("_-./", *s))
            return 0;
    return 1;
}

/* Parse config/plugins into g->plug (names and line options). */
static int read_list(struct lgen *g, const struct kasi_config *cfg,
                     const struct lsettings *set, char *err, size_t errlen)
{
    char path[PATH_MAX], line[1024];
    snprintf(path, sizeof path, "%s/plugins", cfg->dir);
    FILE *f = fopen(path, "r");
    if (!f) {
        if (errno != ENOENT) {
            snprintf(err, errlen, "%s: %s", path, strerror(errno));
            return -1;
        }
        /* no list: the default, the local spool */
        g->plug = calloc(1, sizeof *g->plug);
        if (!g->plug || !(g->plug[0].name = strdup("queue/spool")))
            return -1;
        g->plug[0].timeout = set->timeout;
        g->nplug = 1;
        return 0;
    }
    g->plug = calloc(LGEN_MAX_PLUGINS, sizeof *g->plug);
    int lineno = 0, rc = g->plug ? 0 : -1;
    while (rc == 0 && fgets(line, sizeof line, f)) {
        lineno++;
        char *hash = strchr(line, '#'), *save = NULL;
        if (hash)
            *hash = '\0';
        char *tok = strtok_r(line, " \t\r\n", &save);
        if (!tok)
            continue;
        if (!name_ok(tok) || g->nplug == LGEN_MAX_PLUGINS) {
            snprintf(err, errlen, "%s:%d: bad plugin name '%s'", path, lineno, tok);
            rc = -1;
            break;
        }
        struct lplugin *p = &g->plug[g->nplug++];
        p->name = strdup(tok);
        p->timeout = set->timeout;
        while (rc == 0 && (tok = strtok_r(NULL, " \t\r\n", &save))) {
            if (!strcmp(tok, "unsafe")) {
                p->unsafe = 1;
                continue;
            }
            char *eq = strchr(tok, '=');
            if (eq)
                *eq = '\0';
            if (!eq || plugin_option(p, tok, eq + 1) < 0) {
                snprintf(err, errlen, "%s:%d: %s: bad option '%s'", path, lineno,
                         p->name, tok);
                rc = -1;
            }
        }
    }
    fclose(f);
    return rc;
}

/* ------------------------------------------------------- loading */

static int traceback(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    luaL_traceback(L, L, msg ? msg : "(error object is not a string)", 1);
    return 1;
}

static int pcall_tb(lua_State *L, int nargs, int nres)
{
    int base = lua_gettop(L) - nargs;
    lua_pushcfunction(L, traceback);
    lua_insert(L, base);
    int rc = lua_pcall(L, nargs, nres, base);
    lua_remove(L, base);
    return rc;
}

/* Check the YAML root and apply its `plugin:` section. */
static int plugin_section(const char *path, const struct ynode *root,
                          struct lplugin *p, char *err, size_t errlen)
{
    if (root->type != YNODE_MAP) {
        snprintf(err, errlen, "%s:%d: expected a map of settings at the top level",
                 path, root->line);
        return -1;
    }
    const struct ynode *ps = ytree_get(root, "plugin");
    for (size_t i = 0; ps && ps->type == YNODE_MAP && i < ps->n; i++) {
        if (ps->items[i]->type != YNODE_SCALAR ||
            plugin_option(p, ps->keys[i], ps->items[i]->scalar) < 0) {
            snprintf(err, errlen, "%s:%d: plugin.%s: unknown key or bad value",
                     path, ps->key_lines[i], ps->keys[i]);
            return -1;
        }
    }
    return 0;
}

/* A plugin's YAML config as a table on the stack, and above it the table
 * of its lines (see push_ynode), both without the `plugin:` section. A
 * missing file is an empty table. */
static int push_plugin_config(lua_State *L, const char *path, struct lplugin *p,
                              char *err, size_t errlen)
{
    if (access(path, F_OK) != 0) {
        lua_newtable(L);
        lua_newtable(L);
        return 0;
    }
    struct ynode *root = ytree_load_file(path, err, errlen);
    if (!root || plugin_section(path, root, p, err, errlen) < 0) {
        ytree_free(root);
        return -1;
    }
    lua_newtable(L);                                /* lines */
    push_ynode(L, root, lua_gettop(L));             /* lines cfg */
    ytree_free(root);
    lua_pushnil(L);
    lua_setfield(L, -2, "plugin");
    lua_insert(L, -2);                              /* cfg lines */
    lua_pushvalue(L, -2);
    lua_rawget(L, -2);                              /* cfg lines cfglines */
    lua_pushnil(L);
    lua_setfield(L, -2, "plugin");
    lua_pop(L, 1);
    return 0;
}

/* The plugin's environment from kasi.sandbox: its own table, reads fall
 * back to the safe base (or, unsafe, to every global). Leaves env on the
 * stack; 0 or -1 with the error message on the stack instead. */
static int push_env(lua_State *L, const struct lplugin *p)
{
    char real[PATH_MAX];
    lua_getfield(L, LUA_REGISTRYINDEX, "kasi.sandbox_env");
    lua_pushstring(L, p->name);
    lua_pushstring(L, realpath(p->path, real) ? real : p->path);
    lua_pushboolean(L, p->unsafe);
    return lua_pcall(L, 3, 1, 0) == 0 ? 0 : -1;
}

static void jit_off(lua_State *L, int fn)
{
    lua_getglobal(L, "jit");
    if (lua_istable(L, -1)) {
        lua_getfield(L, -1, "off");
        lua_pushvalue(L, fn);
        lua_pushboolean(L, 1);
        lua_pcall(L, 2, 0, 0) == 0 ? (void)0 : lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

/* Collect hook_* functions of the plugin table at the top of the stack. */
static void collect_hooks(lua_State *L, struct lplugin *p)
{
    for (int h = 0; h < HOOK_COUNT; h++) {
        char key[64];
        snprintf(key, sizeof key, "hook_%s", hook_name(h));
        lua_getfield(L, -1, key);
        p->hook_ref[h] = lua_isfunction(L, -1) ? luaL_ref(L, LUA_REGISTRYINDEX)
                                               : (lua_pop(L, 1), LUA_NOREF);
    }
    /* a HELO check also guards EHLO, and the other way round */
    if (p->hook_ref[HOOK_EHLO] == LUA_NOREF && p->hook_ref[HOOK_HELO] != LUA_NOREF) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, p->hook_ref[HOOK_HELO]);
        p->hook_ref[HOOK_EHLO] = luaL_ref(L, LUA_REGISTRYINDEX);
    } else if (p->hook_ref[HOOK_HELO] == LUA_NOREF && p->hook_ref[HOOK_EHLO] != LUA_NOREF) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, p->hook_ref[HOOK_EHLO]);
        p->hook_ref[HOOK_HELO] = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    /* catch typos: a hook_ name we do not know */
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "";
        int known = strncmp(k, "hook_", 5) != 0;
        for (int h = 0; !known && h < HOOK_COUNT; h++)
            known = !strcmp(k + 5, hook_name(h));
        if (!known)
            log_msg(LOG_LVL_WARN, "plugin %s: %s is not a hook", p->name, k);
        lua_pop(L, 1);
    }
}

/* A file named by a "file" value of a plugin's schema, for the checker. */
static int lgen_read_file(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    FILE *f = fopen(path, "rb");
    luaL_Buffer b;
    char buf[4096];
    size_t n;
    if (!f) {
        lua_pushnil(L);
        lua_pushstring(L, strerror(errno));
        return 2;
    }
    luaL_buffinit(L, &b);
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        luaL_addlstring(&b, buf, n);
    int bad = ferror(f);
    fclose(f);
    luaL_pushresult(&b);
    if (bad) {
        lua_pushnil(L);
        lua_pushstring(L, "read error");
        return 2;
    }
    return 1;
}

/* P (the plugin table) at -3, cfg at -2, lines at -1: check cfg against
 * P.schema and leave P and the checked cfg. Without a schema cfg is passed
 * as it is (with a warning when the file has keys). */
static int check_config(lua_State *L, const struct lplugin *p, const char *path,
                        char *err, size_t errlen)
{
    lua_getfield(L, -3, "schema");
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        lua_pushnil(L);
        if (lua_next(L, -3)) {
            lua_pop(L, 2);
            log_msg(LOG_LVL_WARN, "plugin %s declares no schema: %s is not checked",
                    p->name, path);
        }
        lua_pop(L, 1);                              /* P cfg */
        return 0;
    }
    lua_getfield(L, LUA_REGISTRYINDEX, "kasi.schema_check");
    lua_insert(L, -4);                              /* P check cfg lines schema */
    lua_insert(L, -3);                              /* P check schema cfg lines */
    lua_pushcfunction(L, lgen_read_file);
    if (pcall_tb(L, 4, 3) != 0) {
        snprintf(err, errlen, "plugin %s: schema: %s", p->name, lua_tostring(L, -1));
        return -1;
    }
    if (lua_isnil(L, -3)) {
        int line = (int)lua_tointeger(L, -2);
        if (line > 0)
            snprintf(err, errlen, "%s:%d: %s", path, line, lua_tostring(L, -1));
        else
            snprintf(err, errlen, "%s: %s", path, lua_tostring(L, -1));
        return -1;
    }
    lua_pop(L, 2);                                  /* P checked */
    return 0;
}

/* Run the plugin's chunk (at the top) in env (below it); leaves the plugin
 * table: what the chunk returned, or env for the globals style. */
static int run_chunk(lua_State *L, const struct lplugin *p, char *err, size_t errlen)
{
    lua_pushvalue(L, -2);
    lua_setfenv(L, -2);                             /* env chunk */
    if (pcall_tb(L, 0, 1) != 0) {
        snprintf(err, errlen, "plugin %s: %s", p->name, lua_tostring(L, -1));
        return -1;
    }
    if (!lua_istable(L, -1))
        lua_pop(L, 1);                              /* globals style: env */
    else
        lua_remove(L, -2);
    return 0;
}

/* P.register(cfg), P and cfg on the stack; leaves P. */
static int call_register(lua_State *L, const struct lplugin *p, char *err, size_t errlen)
{
    lua_getfield(L, -2, "register");
    if (!lua_isfunction(L, -1)) {
        lua_pop(L, 2);
        return 0;
    }
    lua_insert(L, -2);
    if (pcall_tb(L, 1, 0) != 0) {
        snprintf(err, errlen, "plugin %s: register: %s", p->name, lua_tostring(L, -1));
        return -1;
    }
    return 0;
}

static int load_chunk(lua_State *L, struct lplugin *p, char *err, size_t errlen)
{
    if (push_env(L, p) < 0) {
        snprintf(err, errlen, "plugin %s: environment: %s", p->name, lua_tostring(L, -1));
        return -1;
    }
    if (luaL_loadfile(L, p->path) != 0) {
        snprintf(err, errlen, "plugin %s: %s", p->name, lua_tostring(L, -1));
        return -1;
    }
    if (p->jit_off)
        jit_off(L, lua_gettop(L));
    if (p->unsafe)
        log_msg(LOG_LVL_WARN, "plugin %s runs unsafe: it has the whole standard "
                "library (io, os, debug, ffi)", p->name);
    return run_chunk(L, p, err, errlen);
}

static int load_plugin(struct lgen *g, const struct kasi_config *cfg,
                       struct lplugin *p, char *err, size_t errlen)
{
    lua_State *L = g->L;
    char rel[PATH_MAX], path[PATH_MAX], yaml[PATH_MAX];
    int top = lua_gettop(L), rc = -1;
    snprintf(rel, sizeof rel, "plugins/%s.lua", p->name);
    if (lgen_find(cfg, rel, path, sizeof path) < 0) {
        snprintf(err, errlen, "plugin %s: %s not found", p->name, rel);
        return -1;
    }
    p->path = strdup(path);
    snprintf(yaml, sizeof yaml, "%s/%s.yaml", cfg->dir, p->name);
    lapi_set_plugin(p->name);
    if (p->path && push_plugin_config(L, yaml, p, err, errlen) == 0 &&
        load_chunk(L, p, err, errlen) == 0) {         /* cfg lines P */
        lua_insert(L, -3);
        if (check_config(L, p, yaml, err, errlen) == 0 &&   /* P cfg */
            call_register(L, p, err, errlen) == 0) {        /* P */
            collect_hooks(L, p);
            rc = 0;
        }
    }
    lapi_set_plugin(NULL);
    lua_settop(L, top);
    return rc;
}

/* Real path of a file, or nil: kasi.sandbox checks loadfile's paths. */
static int lgen_realpath(lua_State *L)
{
    char real[PATH_MAX];
    if (realpath(luaL_checkstring(L, 1), real))
        lua_pushstring(L, real);
    else
        lua_pushnil(L);
    return 1;
}

/* require(name) into the registry under key; 0 or -1 with the message. */
static int registry_module(lua_State *L, const char *name, const char *field,
                           const char *key)
{
    lua_getglobal(L, "require");
    lua_pushstring(L, name);
    if (pcall_tb(L, 1, 1) != 0)
        return -1;
    lua_getfield(L, -1, field);
    lua_setfield(L, LUA_REGISTRYINDEX, key);
    return 0;
}

/* kasi.sandbox.setup(plugin dirs, realpath); keeps its env() and the
 * schema checker in the registry. */
static int setup_sandbox(lua_State *L, const struct kasi_config *cfg)
{
    char dirs[2][PATH_MAX + 16], real[PATH_MAX];
    int top = lua_gettop(L);
    if (registry_module(L, "kasi.schema", "check", "kasi.schema_check") < 0 ||
        registry_module(L, "kasi.sandbox", "env", "kasi.sandbox_env") < 0)
        return -1;
    lua_getfield(L, -1, "setup");
    lua_newtable(L);
    /* where lgen_find looks: the site's plugins/, then the shipped one */
    snprintf(dirs[0], sizeof dirs[0], "%s/../plugins", cfg->dir ? cfg->dir : "config");
    if (paths_find_shipped("plugins", dirs[1], sizeof dirs[1]) < 0)
        dirs[1][0] = '\0';
    for (int i = 0, k = 0; i < 2; i++) {
        if (dirs[i][0] && realpath(dirs[i], real)) {
            lua_pushstring(L, real);
            lua_rawseti(L, -2, ++k);
        }
    }
    lua_pushcfunction(L, lgen_realpath);
    int rc = pcall_tb(L, 2, 0);
    if (rc == 0)
        lua_settop(L, top);
    return rc == 0 ? 0 : -1;
}

static int open_library(struct lgen *g, const struct kasi_config *cfg,
                        char *err, size_t errlen)
{
    lua_State *L = g->L;
    char path[PATH_MAX];
    luaL_openlibs(L);
    if (lgen_find(cfg, "lua/kasi.lua", path, sizeof path) < 0) {
        snprintf(err, errlen, "lua/kasi.lua not found");
        return -1;
    }
    /* require() looks next to kasi.lua */
    char *slash = strrchr(path, '/');
    lua_getglobal(L, "package");
    lua_pushfstring(L, "%s/?.lua", (*slash = '\0', path));
    lua_setfield(L, -2, "path");
    lua_pop(L, 1);
    *slash = '/';
    if (lredis_load(g, err, errlen) < 0)    /* redis.yaml, strict */
        return -1;
    lapi_open(L, g);
    lua_getglobal(L, "kasi");               /* where plugins find their files */
    lua_pushstring(L, cfg->dir ? cfg->dir : "config");
    lua_setfield(L, -2, "config_dir");
    lua_pop(L, 1);
    if (luaL_loadfile(L, path) != 0 || pcall_tb(L, 0, 0) != 0 ||
        setup_sandbox(L, cfg) < 0) {
        snprintf(err, errlen, "%s", lua_tostring(L, -1));
        lua_pop(L, 1);
        return -1;
    }
    return 0;
}

static int build_chains(struct lgen *g)
{
    for (int h = 0; h < HOOK_COUNT; h++) {
        g->chain[h] = calloc(g->nplug ? g->nplug : 1, sizeof(size_t));
        if (!g->chain[h])
            return -1;
        for (size_t i = 0; i < g->nplug; i++)
            if (g->plug[i].hook_ref[h] != LUA_NOREF)
                g->chain[h][g->nchain[h]++] = i;
    }
    return 0;
}

struct lgen *lgen_build(const struct kasi_config *cfg, int serving,
                        const struct lsettings *set, char *err, size_t errlen)
{
    struct lgen *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    g->cfg = cfg;
    g->serving = serving;
    g->mem_limit = set->memory_limit;
    g->L = lua_newstate(lgen_alloc, g);
    if (!g->L) {
        snprintf(err, errlen, "cannot create a Lua state");
        free(g);
        return NULL;
    }
    g->id = ++lgen_counter;
    int rc = read_list(g, cfg, set, err, errlen);
    if (rc == 0)
        rc = open_library(g, cfg, err, errlen);
    for (size_t i = 0; rc == 0 && i < g->nplug; i++)
        rc = load_plugin(g, cfg, &g->plug[i], err, errlen);
    if (rc == 0)
        rc = build_chains(g);
    if (rc < 0) {
        if (!*err)
            snprintf(err, errlen, "out of memory loading plugins");
        lgen_free(g);
        return NULL;
    }
    lua_gc(g->L, LUA_GCCOLLECT, 0);
    return g;
}

void lgen_free(struct lgen *g)
{
    if (!g)
        return;
    if (g->L)
        lua_close(g->L);
    lredis_release(g);
    for (size_t i = 0; i < g->nplug; i++) {
        free(g->plug[i].name);
        free(g->plug[i].path);
    }
    free(g->plug);
    for (int h = 0; h < HOOK_COUNT; h++)
        free(g->chain[h]);
    free(g->pool);
    free(g);
}

/* ------------------------------------------------------- coroutine pool */

lua_State *lgen_thread(struct lgen *g, int *ref)
{
    if (g->npool) {
        *ref = g->pool[--g->npool];
        lua_rawgeti(g->L, LUA_REGISTRYINDEX, *ref);
        lua_State *co = lua_tothread(g->L, -1);
        lua_pop(g->L, 1);
        return co;
    }
    lua_State *co = lua_newthread(g->L);
    *ref = luaL_ref(g->L, LUA_REGISTRYINDEX);
    return co;
}

/* Keep a coroutine that finished cleanly for the next call. */
void lgen_thread_put(struct lgen *g, lua_State *co, int ref)
{
    lua_settop(co, 0);
    if (g->npool == g->pool_cap) {
        size_t cap = g->pool_cap ? g->pool_cap * 2 : 16;
        int *n = cap <= 1024 ? realloc(g->pool, cap * sizeof *n) : NULL;
        if (!n) {
            luaL_unref(g->L, LUA_REGISTRYINDEX, ref);
            return;
        }
        g->pool = n;
        g->pool_cap = cap;
    }
    g->pool[g->npool++] = ref;
}
