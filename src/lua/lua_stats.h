/* lua_stats.h — the plugin engine's side of the statistics (core/stats.h):
 * counting each plugin call where the engine folds its answer
 * (plugins.c), and the `kasi.stats` library plugins use for their own
 * counters (kasi.stats.incr, kasi.stats.observe). */
#ifndef KASI_LUA_STATS_H
#define KASI_LUA_STATS_H

#include <lua.h>

#include "lua/lua_engine.h"

/* Add kasi.stats to the table on top of the stack (the kasi table). */
void lstats_open(lua_State *L);

/* The plugin call of ps->run just ended with `how`; res is its answer,
 * engine_made when the engine made it (error, timeout, bad answer). */
void lstats_call(const struct lsess *ps, enum lcall how, const struct hook_result *res,
                 int engine_made);

/* Give every plugin of a new generation its row in the statistics. */
void lstats_generation(const struct lgen *g, int reload);

/* Validate and render a label table at idx as `a="x",b="y"` (keys
 * sorted) into buf. Raises on a bad key; returns -1 when it does not fit. */
int lstats_labels(lua_State *L, int idx, char *buf, size_t len);

#endif
