/* lua_redis.h — kasi.redis, Redis for plugins (config/redis.yaml), and the
 * generation's share of the per-worker clients (net/redis.h). */
#ifndef KASI_LUA_REDIS_H
#define KASI_LUA_REDIS_H

#include <stddef.h>
#include <lua.h>

struct lgen;

/* Add kasi.redis to the table on top of the stack (the kasi table). */
void lredis_open(lua_State *L);

/* Read redis.yaml for generation g (strict; the generation fails to load
 * on an error). 0, or -1 with "file:line: key: why" in err. */
int lredis_load(struct lgen *g, char *err, size_t errlen);
/* The generation goes: a client no generation uses any more is closed. */
void lredis_release(struct lgen *g);

#endif
