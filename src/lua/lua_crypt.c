/* lua_crypt.c — password hashes for authentication plugins.
 *
 *   kasi.crypt_check(hash)              -> true | false, reason
 *   kasi.crypt_verify(password, hash)   -> true | false | nil, err
 *
 * A modern crypt(3) hash (yescrypt, SHA-512-crypt, bcrypt) is slow on
 * purpose, so crypt_verify computes it in a helper thread and suspends the
 * calling hook meanwhile (lua_async.h): the event loop keeps serving. The
 * thread touches nothing but its job; it signals the loop through a pipe.
 * The password copy is wiped when the job ends. A hook abandoned meanwhile
 * (session gone, time budget over) leaves the job to finish unobserved. */
#include "lua/lua_crypt.h"
#include "lua/lua_async.h"
#include "core/log.h"
#include "core/thread.h"

#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <lauxlib.h>

#define LCRYPT_MAX_JOBS 16      /* hashes computed at once, process-wide */
#define LCRYPT_MAX_INPUT 1024   /* longest password or hash accepted */

struct lcrypt_job {
    char *password, *hash;
    int match;                  /* written by the thread */
    int fds[2];                 /* the thread writes one byte to fds[1] */
    pthread_t thread;
    struct event *ev;
    struct lua_async *a;
};

static int lcrypt_running;

int lcrypt_hash_ok(const char *s, const char **why)
{
    if (!s || s[0] != '$') {
        *why = "not a crypt(3) hash (plaintext passwords are refused)";
        return -1;
    }
    if (strlen(s) > LCRYPT_MAX_INPUT || crypt_checksalt(s) != CRYPT_SALT_OK) {
        *why = "unsupported or legacy hash method (use yescrypt or SHA-512-crypt)";
        return -1;
    }
    return 0;
}

/* Equal strings, in time that depends on the lengths only. */
static int lcrypt_equal(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    unsigned char diff = la != lb;
    for (size_t i = 0; i < la && i < lb; i++)
        diff |= (unsigned char)(a[i] ^ b[i]);
    return diff == 0;
}

static void *lcrypt_thread(void *arg)
{
    struct lcrypt_job *j = arg;
    struct crypt_data *cd = calloc(1, sizeof *cd);
    if (cd) {
        const char *out = crypt_r(j->password, j->hash, cd);
        j->match = out && out[0] == '$' && lcrypt_equal(out, j->hash);
        explicit_bzero(cd, sizeof *cd);
        free(cd);
    }
    char byte = 1;
    ssize_t n;
    do
        n = write(j->fds[1], &byte, 1);
    while (n < 0 && errno == EINTR);
    return NULL;
}

static void lcrypt_free(struct lcrypt_job *j)
{
    if (j->ev)
        event_free(j->ev);
    if (j->fds[0] >= 0)
        close(j->fds[0]);
    if (j->fds[1] >= 0)
        close(j->fds[1]);
    if (j->password) {
        explicit_bzero(j->password, strlen(j->password));
        free(j->password);
    }
    free(j->hash);
    free(j);
}

/* The hook was abandoned: the thread cannot be stopped, so the job is
 * freed when it ends, without waking anyone. */
static void lcrypt_cancel(void *ud)
{
    struct lcrypt_job *j = ud;
    j->a = NULL;
}

static int lcrypt_push(lua_State *L, void *ud)
{
    lua_pushboolean(L, *(int *)ud);
    return 1;
}

static void lcrypt_done(evutil_socket_t fd, short what, void *arg)
{
    struct lcrypt_job *j = arg;
    struct lua_async *a = j->a;
    char byte;
    (void)what;
    if (read(fd, &byte, 1) != 1 && errno == EAGAIN)
        return;                 /* spurious: not written yet */
    pthread_join(j->thread, NULL);
    lcrypt_running--;
    int match = j->match;
    lcrypt_free(j);
    if (a)
        lua_async_wake(a, lcrypt_push, &match);
    else
        log_msg(LOG_LVL_DEBUG, "crypt: a hash ended after its hook was abandoned");
}

/* Start the thread (signals blocked: timers stay with the loop). */
static int lcrypt_spawn(struct lcrypt_job *j)
{
    return thread_start(&j->thread, NULL, lcrypt_thread, j) == 0 ? 0 : -1;
}

static struct lcrypt_job *lcrypt_job_new(const char *pw, const char *hash)
{
    struct event_base *base = lua_async_base();
    struct lcrypt_job *j = calloc(1, sizeof *j);
    if (!j)
        return NULL;
    j->fds[0] = j->fds[1] = -1;
    j->password = strdup(pw);
    j->hash = strdup(hash);
    if (!base || !j->password || !j->hash || pipe2(j->fds, O_CLOEXEC | O_NONBLOCK) < 0 ||
        !(j->ev = event_new(base, j->fds[0], EV_READ | EV_PERSIST, lcrypt_done, j))) {
        lcrypt_free(j);
        return NULL;
    }
    return j;
}

static int lcrypt_fail(lua_State *L, const char *err)
{
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
}

static int k_crypt_verify(lua_State *L)
{
    size_t plen;
    const char *pw = luaL_checklstring(L, 1, &plen);
    const char *hash = luaL_checkstring(L, 2), *why;
    if (lcrypt_hash_ok(hash, &why) < 0)
        return lcrypt_fail(L, why);
    if (plen > LCRYPT_MAX_INPUT || strlen(pw) != plen) {
        lua_pushboolean(L, 0);  /* never matches; no need to hash */
        return 1;
    }
    lua_async_check(L);
    if (lcrypt_running >= LCRYPT_MAX_JOBS)
        return lcrypt_fail(L, "too many password checks at once");
    struct lcrypt_job *j = lcrypt_job_new(pw, hash);
    if (!j)
        return lcrypt_fail(L, "out of resources");
    if (event_add(j->ev, NULL) < 0 || lcrypt_spawn(j) < 0) {
        lcrypt_free(j);
        return lcrypt_fail(L, "cannot start a password check");
    }
    lcrypt_running++;
    return lua_async_wait(L, &j->a, lcrypt_cancel, j);
}

static int k_crypt_check(lua_State *L)
{
    const char *why;
    if (lcrypt_hash_ok(luaL_checkstring(L, 1), &why) == 0) {
        lua_pushboolean(L, 1);
        return 1;
    }
    lua_pushboolean(L, 0);
    lua_pushstring(L, why);
    return 2;
}

void lcrypt_open(lua_State *L)
{
    lua_pushcfunction(L, k_crypt_verify);
    lua_setfield(L, -2, "crypt_verify");
    lua_pushcfunction(L, k_crypt_check);
    lua_setfield(L, -2, "crypt_check");
}
