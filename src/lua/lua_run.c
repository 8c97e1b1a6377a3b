/* lua_run.c — running one plugin call in its coroutine: the time budget
 * (a timer while it waits, a SIGALRM-armed count hook while it computes),
 * the memory cap switch, the watchdog marks, and the async primitive of
 * lua_async.h that lets C functions suspend the call. */
#include "lua/lua_engine.h"
#include "core/clock.h"
#include "lua/lua_async.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include <event2/event.h>
#include <lauxlib.h>

#include "core/log.h"
#include "core/watchdog.h"

struct lua_async {
    struct lsess *ps;
    lua_async_cancel_fn cancel;
    void *ud;
};

struct lsess *lrun_current;
static struct event_base *run_base;

/* Written by the main flow, read by the SIGALRM handler. */
static lua_State *volatile alarm_L;         /* coroutine running now */
static volatile double alarm_deadline;      /* its deadline */
static volatile double alarm_at;            /* when the timer fires, 0 idle */
static volatile sig_atomic_t alarm_hit;     /* the count hook was armed */


/* ------------------------------------------------------- the count hook */

static void count_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    luaL_error(L, "time budget exceeded");
}

static void arm_timer(double secs)
{
    struct itimerval it;
    memset(&it, 0, sizeof it);
    if (secs < 0.001)
        secs = 0.001;
    it.it_value = clock_tv(secs);
    setitimer(ITIMER_REAL, &it, NULL);
}

/* The timer is armed lazily and never disarmed: when it fires outside Lua
 * it does nothing; inside a call still within budget it re-arms for the
 * rest (setitimer is a plain system call, fine in a handler on Linux). */
static void on_alarm(int sig)
{
    int saved = errno;
    lua_State *L = alarm_L;
    (void)sig;
    alarm_at = 0;
    if (L) {
        double now = clock_now();
        if (now >= alarm_deadline) {
            alarm_hit = 1;
            lua_sethook(L, count_hook, LUA_MASKCOUNT, 1000);
        } else {
            alarm_at = alarm_deadline;
            arm_timer(alarm_deadline - now);
        }
    }
    errno = saved;
}

void lrun_setup(struct event_base *base)
{
    struct sigaction sa;
    run_base = base;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);
}

void lrun_shutdown(void)
{
    struct itimerval off;
    memset(&off, 0, sizeof off);
    setitimer(ITIMER_REAL, &off, NULL);
    alarm_at = 0;
    run_base = NULL;
}

static void enter_lua(lua_State *co, double deadline, double now)
{
    alarm_deadline = deadline;
    alarm_hit = 0;
    alarm_L = co;
    if (run_base && (alarm_at == 0 || alarm_at > deadline)) {
        alarm_at = deadline;
        arm_timer(deadline - now);
    }
    watchdog_enter(deadline - now);
}

static void leave_lua(lua_State *co)
{
    alarm_L = NULL;
    watchdog_leave();
    if (alarm_hit)
        lua_sethook(co, NULL, 0, 0);
}

/* ------------------------------------------------------- resuming */

static void wait_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct lsess *ps = arg;
    (void)fd;
    (void)what;
    lrun_abandon(ps);
    plugins_call_finished(ps, LCALL_TIMEOUT);
}

static int arm_wait(struct lsess *ps, double now)
{
    struct lrun *r = &ps->run;
    if (!r->wait_ev)
        r->wait_ev = evtimer_new(run_base, wait_timeout, ps);
    if (!r->wait_ev)
        return -1;
    struct timeval tv = clock_tv(r->deadline - now);
    evtimer_add(r->wait_ev, &tv);
    return 0;
}

enum lcall lrun_resume(struct lsess *ps, int nargs)
{
    struct lrun *r = &ps->run;
    struct lgen *g = ps->gen;
    double now = clock_now();
    if (now >= r->deadline)
        return LCALL_TIMEOUT;
    lrun_current = ps;
    lapi_set_plugin(g->plug[r->plugin].name);
    g->enforce = 1;
    enter_lua(r->co, r->deadline, now);
    int st = lua_resume(r->co, nargs);
    leave_lua(r->co);
    g->enforce = 0;
    lrun_current = NULL;
    lapi_set_plugin(NULL);
    if (st == 0)
        return LCALL_DONE;
    if (st == LUA_YIELD) {
        if (!r->async) {
            lua_settop(r->co, 0);
            lua_pushliteral(r->co, "coroutine.yield() outside a kasi call "
                                   "(a hook may only wait in kasi functions)");
            return LCALL_ERROR;
        }
        if (!run_base || arm_wait(ps, clock_now()) < 0) {
            lua_pushliteral(r->co, "cannot wait: no event loop");
            return LCALL_ERROR;
        }
        return LCALL_WAIT;
    }
    if (alarm_hit && clock_now() >= r->deadline)
        return LCALL_TIMEOUT;
    return LCALL_ERROR;
}

/* Drop the call in progress: cancel what it waits for, forget the
 * coroutine (the collector takes it). */
void lrun_abandon(struct lsess *ps)
{
    struct lrun *r = &ps->run;
    if (r->wait_ev)
        evtimer_del(r->wait_ev);
    if (r->async) {
        struct lua_async *a = r->async;
        r->async = NULL;
        if (a->cancel)
            a->cancel(a->ud);
        free(a);
    }
    if (r->co) {
        luaL_unref(ps->gen->L, LUA_REGISTRYINDEX, r->co_ref);
        r->co = NULL;
        r->co_ref = LUA_NOREF;
    }
}

/* ------------------------------------------------------- async */

void lua_async_check(lua_State *L)
{
    struct lsess *ps = lrun_current;
    if (!ps || ps->run.co != L || ps->run.async)
        luaL_error(L, "cannot wait here (only directly inside a hook)");
}

int lua_async_wait(lua_State *L, struct lua_async **out,
                   lua_async_cancel_fn cancel, void *ud)
{
    struct lsess *ps = lrun_current;
    lua_async_check(L);
    struct lua_async *a = calloc(1, sizeof *a);
    if (!a)
        return luaL_error(L, "out of memory");
    a->ps = ps;
    a->cancel = cancel;
    a->ud = ud;
    ps->run.async = a;
    *out = a;
    return lua_yield(L, 0);
}

void lua_async_wake(struct lua_async *a, lua_async_push_fn push, void *ud)
{
    struct lsess *ps = a->ps;
    struct lrun *r = &ps->run;
    int n = 0;
    r->async = NULL;
    free(a);
    if (r->wait_ev)
        evtimer_del(r->wait_ev);
    if (push) {
        int top = lua_gettop(r->co);
        push(r->co, ud);
        n = lua_gettop(r->co) - top;
    }
    enum lcall how = lrun_resume(ps, n);
    if (how != LCALL_WAIT)
        plugins_call_finished(ps, how);
}

struct event_base *lua_async_base(void)
{
    return run_base;
}

double lua_async_remaining(lua_State *L)
{
    struct lsess *ps = lrun_current;
    if (!ps || ps->run.co != L)
        return 0;
    double left = ps->run.deadline - clock_now();
    return left > 0 ? left : 0;
}
