/* lua_counter.h — kasi.counter, the plugins' counters shared by every
 * worker process (see lua_counter.c). */
#ifndef KASI_LUA_COUNTER_H
#define KASI_LUA_COUNTER_H

#include <lua.h>

struct kasi_config;
struct lsess;

/* Add kasi.counter to the table on top of the stack (the kasi table);
 * cfg (its limits.exempt) must outlive the state. */
void lcounter_open(lua_State *L, const struct kasi_config *cfg);

/* The session is ending: give back what its conn still holds. Called by
 * the engine before the conn userdata is invalidated. */
void lcounter_conn_end(struct lsess *ps);

#endif
