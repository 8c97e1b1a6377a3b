/* lua_net.h — the network side of the `kasi` Lua library: kasi.dns
 * (queries, parallel queries, the client's reverse DNS) and kasi.tcp
 * (TCP / UNIX / TLS client sockets, streaming the message). Every call
 * that waits yields the hook's coroutine (lua_async.h). */
#ifndef KASI_LUA_NET_H
#define KASI_LUA_NET_H

#include <lua.h>

/* Add dns and tcp to the table on the top of the stack (the kasi table). */
void lnet_open(lua_State *L);

#endif
