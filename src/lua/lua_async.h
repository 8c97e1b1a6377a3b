/* lua_async.h — suspending a plugin hook while C waits for something.
 *
 * Every hook call runs in its own coroutine. A C function called from Lua
 * (kasi.sleep, DNS, sockets...) that must wait for the event loop ends with
 *
 *     struct lua_async *a;
 *     ...start the I/O or timer, keeping `a` (and ud) in its state...
 *     return lua_async_wait(L, &a, my_cancel, my_state);
 *
 * which yields the hook's coroutine. Later, from an event callback, the
 * owner calls lua_async_wake(a, push, ud): push() puts the results on the
 * coroutine's stack and they become the return values of the C function.
 *
 * If the hook is abandoned before that (the session ended, the hook ran
 * past its time budget), the engine calls cancel(ud) instead, exactly once;
 * the owner then frees its state and must never touch `a` again. After
 * lua_async_wake `a` is gone as well. So each handle ends in exactly one
 * of: wake (by its owner) or cancel (by the engine). */
#ifndef KASI_LUA_ASYNC_H
#define KASI_LUA_ASYNC_H

#include <lua.h>

struct lua_async;
struct event_base;

typedef void (*lua_async_cancel_fn)(void *ud);
typedef int (*lua_async_push_fn)(lua_State *L, void *ud);

/* Suspend the running hook. Use as `return lua_async_wait(...)`. Raises a
 * Lua error (and does not call cancel) when L is not a hook's coroutine:
 * in register(), at load time, or inside a coroutine the plugin made. */
int lua_async_wait(lua_State *L, struct lua_async **out,
                   lua_async_cancel_fn cancel, void *ud);

/* Raise the error lua_async_wait would raise, before allocating state. */
void lua_async_check(lua_State *L);

/* Resume the hook with the values push() leaves on the stack (push may be
 * NULL: no values). Call it from an event callback, not from Lua code. */
void lua_async_wake(struct lua_async *a, lua_async_push_fn push, void *ud);

/* The worker's event base (for timers and sockets of async users). */
struct event_base *lua_async_base(void);

/* Seconds left in the running hook's time budget (L: the hook's
 * coroutine); a network call can use it to bound its own timeout. */
double lua_async_remaining(lua_State *L);

#endif
