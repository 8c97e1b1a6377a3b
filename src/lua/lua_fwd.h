/* lua_fwd.h — the downstream SMTP/LMTP client (smtp_client.h) as seen from
 * Lua: kasi.forward() hands the current message to the next MTA and
 * suspends the hook until it answered; kasi.forward_envelope() and
 * kasi.forward_chunks() give a plugin that speaks SMTP itself (over
 * kasi.tcp) the envelope parameters and the dot-stuffed message. */
#ifndef KASI_LUA_FWD_H
#define KASI_LUA_FWD_H

#include <lua.h>

/* Add forward, forward_envelope, forward_chunks and forward_pool to the
 * table on the top of the stack (the kasi table). */
void lfwd_open(lua_State *L);

/* Close the pooled downstream connections (engine shutdown). */
void lfwd_shutdown(void);

#endif
