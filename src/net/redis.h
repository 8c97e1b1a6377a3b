/* redis.h — a Redis client for the event loop: one multiplexed connection
 * (commands pipelined on it, replies in order), over hiredis and its
 * libevent adapter. Used by lua/lua_redis.c (kasi.redis); one client per
 * worker process and per set of settings (config/redis.yaml).
 *
 * Nothing here blocks: connecting, sending and reading run on the loop;
 * addresses are IP literals or UNIX socket paths (never a name to resolve).
 * Every request ends exactly once, in its callback, from the loop (never
 * from inside redis_send), unless it is cancelled first: with all its
 * replies, or with an error ("timeout", "not connected: ...", "connection
 * lost: ..."). Failure policy: a request that times out after the full
 * command_timeout drops the connection (a server that does not answer one
 * command in that time answers none), and so does any timeout once the
 * server has answered nothing for command_timeout while it owes answers;
 * a shorter deadline of the caller's ends only that request (the others on
 * the connection go on). After a failed connection
 * or a dropped one, requests fail at once for retry_interval seconds; the
 * first one after it connects again, to the next server of the list. So an
 * outage costs each caller at most its timeout, and the client recovers by
 * itself when Redis is back. */
#ifndef KASI_REDIS_H
#define KASI_REDIS_H

#include <stddef.h>

struct event_base;

#define REDIS_MAX_SERVERS 8

struct redis_server {
    char host[64];          /* IP literal, "" for a UNIX socket */
    int port;
    char path[108];         /* UNIX socket path, "" for TCP */
};

/* config/redis.yaml. Compared with memcmp: keep it zero-filled. */
struct redis_settings {
    struct redis_server servers[REDIS_MAX_SERVERS];
    size_t nservers;        /* default: one, 127.0.0.1:6379 */
    unsigned db;            /* SELECT, default 0 */
    char username[128];     /* AUTH user (Redis 6 ACL), "" none */
    char password[256];     /* AUTH, "" none */
    double connect_timeout; /* seconds, default 1 */
    double command_timeout; /* seconds per request, default 0.5 */
    double retry_interval;  /* fail fast this long after a failure, default 1 */
    unsigned max_pending;   /* commands in flight, default 10000 */
};

/* Read DIR/redis.yaml (a missing file: the defaults). 0, or -1 with
 * "file:line: key: why" in err. */
int redis_settings_load(const char *confdir, struct redis_settings *s, char *err,
                        size_t errlen);

enum redis_type { RV_NIL, RV_STATUS, RV_ERROR, RV_INTEGER, RV_STRING, RV_ARRAY };

/* A reply (a copy of hiredis's, owned by the request's callback until it
 * returns). */
struct redis_value {
    enum redis_type type;
    long long integer;
    char *str;              /* STATUS, ERROR, STRING */
    size_t len;
    struct redis_value *elem;   /* ARRAY */
    size_t n;
};

/* One command: argc words. */
struct redis_cmd {
    int argc;
    const char **argv;
    const size_t *argvlen;
};

/* Free n values and the array that holds them (NULL: nothing). */
void redis_values_free(struct redis_value *v, size_t n);

struct redis_client;
struct redis_req;

/* err NULL: replies[0..n) one per command, in order; the callback may take
 * them (move a value out and zero it: what is left is freed when it
 * returns). err set: replies NULL. */
typedef void (*redis_done_fn)(void *ud, struct redis_value *replies, size_t n,
                              const char *err);

struct redis_client *redis_client_new(struct event_base *base,
                                      const struct redis_settings *s);
/* Close the connection; pending requests end without their callbacks. */
void redis_client_free(struct redis_client *c);
const struct redis_settings *redis_client_settings(const struct redis_client *c);

/* Send n commands in one write. done (may be NULL: replies dropped) gets
 * them within timeout seconds (<= 0: command_timeout). Returns the
 * request, or NULL with *err when it cannot be sent now (done is never
 * called then). */
struct redis_req *redis_send(struct redis_client *c, const struct redis_cmd *cmds,
                             size_t n, double timeout, redis_done_fn done, void *ud,
                             const char **err);
/* The caller no longer wants the answer: done will not be called. */
void redis_cancel(struct redis_req *r);

#endif
