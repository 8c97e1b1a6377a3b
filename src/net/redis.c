/* redis.c — the Redis client of redis.h over hiredis's async API.
 *
 * Why a library: Redis's protocol is simple, but a client that pipelines
 * on one connection, parses nested replies incrementally and survives
 * partial reads and resets is not; hiredis is the reference client,
 * written by the Redis authors, packaged everywhere, and comes with the
 * libevent adapter this loop needs. kasi keeps the policy: timeouts,
 * failover, fail-fast and recovery live here.
 *
 * Life of a request: each command is queued on the connection with a slot
 * of the request as hiredis's privdata; replies are copied into the
 * request as they come; the last one ends it. hiredis calls every pending
 * callback with a NULL reply when the connection goes (lost, failed to
 * connect, or dropped by us on a timeout), which ends the others. A
 * request is freed once it has ended and hiredis holds none of its slots.
 *
 * Which timeouts drop the connection: one that ran the full
 * command_timeout, or any once the server has answered nothing for that
 * long while it owes answers (c->heard). A shorter deadline (a call's own
 * timeout, a hook's nearly spent budget) ends only its request: the
 * server may just be busy with it, and the other callers' commands on the
 * connection are still answered; its late replies are dropped. */
#include "net/redis.h"
#include "core/clock.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <hiredis/adapters/libevent.h>

#include "core/config.h"
#include "core/config_table.h"
#include "core/log.h"
#include "core/yaml_tree.h"

/* ================================================================ settings */

static int set_server(struct cfg_ctx *c, const struct ynode *v, const char *key,
                      struct redis_server *out)
{
    const char *s = cfg_scalar(c, v, key, "\"IP:PORT\" or \"unix:PATH\"");
    char why[256], *host, *port;
    unsigned char bin[16];
    if (!s)
        return -1;
    memset(out, 0, sizeof *out);
    if (!strncmp(s, "unix:", 5)) {
        if (s[5] != '/' || strlen(s + 5) >= sizeof out->path)
            return cfg_fail(c, v->line, "%s: a UNIX socket is an absolute path under "
                            "108 bytes, got '%s'", key, s);
        snprintf(out->path, sizeof out->path, "%s", s + 5);
        return 0;
    }
    if (config_parse_listen(s, &host, &port, why, sizeof why) < 0)
        return cfg_fail(c, v->line, "%s: %s", key, why);
    int ip = inet_pton(strchr(host, ':') ? AF_INET6 : AF_INET, host, bin) == 1;
    snprintf(out->host, sizeof out->host, "%s", host);
    out->port = atoi(port);
    free(host);
    free(port);
    if (!ip)
        return cfg_fail(c, v->line, "%s: expected an IP address (no name is looked up), "
                        "got '%s'", key, s);
    if (out->port == 0)
        return cfg_fail(c, v->line, "%s: port 0, got '%s'", key, s);
    return 0;
}

static int set_servers(struct cfg_ctx *c, const struct ynode *v, const char *key,
                       const struct cfg_key *k)
{
    struct redis_settings *rs = c->base;
    (void)k;
    if (v->type != YNODE_SEQ || v->n == 0 || v->n > REDIS_MAX_SERVERS)
        return cfg_type_error(c, v, key, "a list of 1 to 8 servers");
    for (size_t i = 0; i < v->n; i++) {
        char item[CFG_KEYLEN];
        snprintf(item, sizeof item, "%s[%zu]", key, i);
        if (set_server(c, v->items[i], item, &rs->servers[i]) < 0)
            return -1;
    }
    rs->nservers = v->n;
    return 0;
}

static int set_text(struct cfg_ctx *c, const struct ynode *v, const char *key,
                    char *out, size_t len)
{
    const char *s = v->type == YNODE_SCALAR && cfg_is_null(v) ? ""
                                                              : cfg_scalar(c, v, key, "a string");
    if (!s)
        return -1;
    if (strlen(s) >= len)
        return cfg_fail(c, v->line, "%s: longer than %zu bytes", key, len - 1);
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p < 0x21 || *p == 0x7f)
            return cfg_fail(c, v->line, "%s: spaces and control characters are not allowed",
                            key);
    snprintf(out, len, "%s", s);
    return 0;
}

static int set_password(struct cfg_ctx *c, const struct ynode *v, const char *key,
                        const struct cfg_key *k)
{
    struct redis_settings *rs = c->base;
    (void)k;
    return set_text(c, v, key, rs->password, sizeof rs->password);
}

static int set_username(struct cfg_ctx *c, const struct ynode *v, const char *key,
                        const struct cfg_key *k)
{
    struct redis_settings *rs = c->base;
    (void)k;
    return set_text(c, v, key, rs->username, sizeof rs->username);
}

#define REDIS_KEY(name, fn, field, lo, hi) \
    CFG_FIELD(struct redis_settings, name, fn, field, lo, hi)

static const struct cfg_key redis_keys[] = {
    CFG_FN("servers", set_servers),
    REDIS_KEY("db", cfg_set_uint, db, 0, 15),
    CFG_FN("username", set_username),
    CFG_FN("password", set_password),
    REDIS_KEY("connect_timeout", cfg_set_seconds, connect_timeout, 0, 60),
    REDIS_KEY("command_timeout", cfg_set_seconds, command_timeout, 0, 60),
    REDIS_KEY("retry_interval", cfg_set_seconds, retry_interval, 0, 300),
    REDIS_KEY("max_pending", cfg_set_uint, max_pending, 1, 1000000),
    { 0 }
};

int redis_settings_load(const char *confdir, struct redis_settings *s, char *err,
                        size_t errlen)
{
    char path[1024];
    memset(s, 0, sizeof *s);
    snprintf(s->servers[0].host, sizeof s->servers[0].host, "127.0.0.1");
    s->servers[0].port = 6379;
    s->nservers = 1;
    s->connect_timeout = 1;
    s->command_timeout = 0.5;
    s->retry_interval = 1;
    s->max_pending = 10000;
    snprintf(path, sizeof path, "%s/redis.yaml", confdir ? confdir : "config");
    int rc = cfg_load_file(path, redis_keys, s, err, errlen);
    if (rc == 0 && s->password[0] == '\0' && s->username[0])
        rc = (snprintf(err, errlen, "%s: username: needs a password", path), -1);
    return rc;
}

/* ================================================================ values */

static void value_clear(struct redis_value *v)
{
    for (size_t i = 0; i < v->n; i++)
        value_clear(&v->elem[i]);
    free(v->elem);
    free(v->str);
    memset(v, 0, sizeof *v);
}

void redis_values_free(struct redis_value *v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        value_clear(&v[i]);
    free(v);
}

/* A deep copy of r into v. 0, or -1 when out of memory (v cleared). */
static int value_copy(struct redis_value *v, const redisReply *r)
{
    memset(v, 0, sizeof *v);
    switch (r->type) {
    case REDIS_REPLY_INTEGER: v->type = RV_INTEGER; v->integer = r->integer; return 0;
    case REDIS_REPLY_NIL: v->type = RV_NIL; return 0;
    case REDIS_REPLY_ARRAY:
        v->type = RV_ARRAY;
        if (r->elements && !(v->elem = calloc(r->elements, sizeof *v->elem)))
            return -1;
        for (; v->n < r->elements; v->n++)
            if (value_copy(&v->elem[v->n], r->element[v->n]) < 0) {
                value_clear(v);
                return -1;
            }
        return 0;
    default:
        v->type = r->type == REDIS_REPLY_STATUS ? RV_STATUS
                : r->type == REDIS_REPLY_ERROR ? RV_ERROR : RV_STRING;
        v->len = r->len;
        if (!(v->str = malloc(r->len + 1)))
            return -1;
        memcpy(v->str, r->str, r->len);
        v->str[r->len] = '\0';
        return 0;
    }
}

/* ================================================================ client */

enum rc_state { RC_DOWN, RC_CONNECTING, RC_UP };

struct redis_client {
    struct event_base *base;
    struct redis_settings set;
    redisAsyncContext *ac;      /* NULL while down */
    enum rc_state state;
    size_t next;                /* the server to try next */
    double retry_at;            /* fail fast until then */
    int down;                   /* in an outage (logged once) */
    int seen;                   /* connected at least once */
    int closing;                /* redis_client_free: no more callbacks */
    char err[200];              /* why the last connection failed or went */
    struct event *conn_tmr;     /* connect deadline */
    unsigned pending;           /* commands hiredis holds for us */
    double heard;               /* last reply, or when pending left 0 */
};

struct redis_slot {
    struct redis_req *req;
    size_t i;
};

struct redis_req {
    struct redis_client *c;
    redis_done_fn done;         /* NULL: nobody wants the answer */
    void *ud;
    size_t n, got, outstanding;
    double timeout;             /* seconds it may wait */
    int finished;
    const char *fail;           /* set when a command could not be queued */
    struct event *tmr;
    struct redis_value *replies;
    struct redis_slot slot[];
};

static const char *server_name(const struct redis_client *c, size_t i, char *buf, size_t len)
{
    const struct redis_server *s = &c->set.servers[i % c->set.nservers];
    if (s->path[0])
        snprintf(buf, len, "unix:%s", s->path);
    else
        snprintf(buf, len, strchr(s->host, ':') ? "[%s]:%d" : "%s:%d", s->host, s->port);
    return buf;
}

/* The connection failed or went: note why, log it once per outage, and
 * fail fast for a while when backoff is set. */
static void rc_down(struct redis_client *c, const char *what, const char *why, int backoff)
{
    char name[140];
    c->state = RC_DOWN;
    c->ac = NULL;
    snprintf(c->err, sizeof c->err, "%s: %s", what, why);
    if (backoff)
        c->retry_at = clock_now() + c->set.retry_interval;
    log_msg(c->down ? LOG_LVL_DEBUG : LOG_LVL_WARN, "redis %s: %s",
            server_name(c, c->next, name, sizeof name), c->err);
    c->down = 1;
    c->next++;
    evtimer_del(c->conn_tmr);
}

/* Close the connection ourselves (a timeout, a refused AUTH, a replica):
 * hiredis ends every pending command with a NULL reply. */
static void rc_drop(struct redis_client *c, const char *why)
{
    redisAsyncContext *ac = c->ac;
    if (!ac)
        return;
    rc_down(c, "connection dropped", why, 1);
    redisAsyncFree(ac);         /* deferred by hiredis inside its callbacks */
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct redis_client *c = ac->data;
    char name[140];
    if (ac != c->ac)
        return;
    if (status != REDIS_OK) {           /* hiredis frees ac after this */
        rc_down(c, "cannot connect", ac->errstr[0] ? ac->errstr : "error", 1);
        return;
    }
    evtimer_del(c->conn_tmr);
    c->state = RC_UP;
    if (c->down || !c->seen)
        log_msg(LOG_LVL_INFO, "redis %s: connected", server_name(c, c->next, name, sizeof name));
    c->down = 0;
    c->seen = 1;
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct redis_client *c = ac->data;
    (void)status;
    if (ac == c->ac)                    /* the server went: reconnect at once */
        rc_down(c, "connection lost", ac->errstr[0] ? ac->errstr : "closed", 0);
}

static void on_connect_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct redis_client *c = arg;
    redisAsyncContext *ac = c->ac;
    (void)fd;
    (void)what;
    if (!ac || c->state != RC_CONNECTING)
        return;
    rc_down(c, "cannot connect", "timeout", 1);
    redisAsyncFree(ac);
}

/* AUTH and SELECT, queued before anything else: a refusal drops the
 * connection (every command after it would fail the same way). */
static void on_setup(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct redis_client *c = privdata;
    const redisReply *r = reply;
    char why[200];
    if (!r || ac != c->ac || r->type != REDIS_REPLY_ERROR)
        return;
    snprintf(why, sizeof why, "setup refused: %.150s", r->str);
    rc_drop(c, why);
}

static void rc_setup(struct redis_client *c)
{
    char db[16];
    if (c->set.password[0] && c->set.username[0])
        redisAsyncCommand(c->ac, on_setup, c, "AUTH %s %s", c->set.username, c->set.password);
    else if (c->set.password[0])
        redisAsyncCommand(c->ac, on_setup, c, "AUTH %s", c->set.password);
    if (c->set.db) {
        snprintf(db, sizeof db, "%u", c->set.db);
        redisAsyncCommand(c->ac, on_setup, c, "SELECT %s", db);
    }
}

/* Start connecting to the next server. 0, or -1 with *err. */
static int rc_connect(struct redis_client *c, const char **err)
{
    const struct redis_server *s = &c->set.servers[c->next % c->set.nservers];
    if (clock_now() < c->retry_at) {
        *err = c->err;
        return -1;
    }
    redisAsyncContext *ac = s->path[0] ? redisAsyncConnectUnix(s->path)
                                       : redisAsyncConnect(s->host, s->port);
    if (!ac || ac->err) {
        rc_down(c, "cannot connect", ac ? ac->errstr : "out of memory", 1);
        if (ac)
            redisAsyncFree(ac);
        *err = c->err;
        return -1;
    }
    ac->data = c;
    redisLibeventAttach(ac, c->base);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    c->ac = ac;
    c->state = RC_CONNECTING;
    struct timeval tv = clock_tv(c->set.connect_timeout);
    evtimer_add(c->conn_tmr, &tv);
    rc_setup(c);
    return 0;
}

struct redis_client *redis_client_new(struct event_base *base,
                                      const struct redis_settings *s)
{
    struct redis_client *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->base = base;
    c->set = *s;
    c->conn_tmr = evtimer_new(base, on_connect_timeout, c);
    if (!c->conn_tmr) {
        free(c);
        return NULL;
    }
    return c;
}

const struct redis_settings *redis_client_settings(const struct redis_client *c)
{
    return &c->set;
}

/* ================================================================ requests */

static void req_free(struct redis_req *r)
{
    for (size_t i = 0; r->replies && i < r->n; i++)
        value_clear(&r->replies[i]);
    free(r->replies);
    if (r->tmr)
        event_free(r->tmr);
    free(r);
}

/* End the request once: its callback, then its replies are dropped. */
static void req_finish(struct redis_req *r, const char *err)
{
    if (r->finished)
        return;
    r->finished = 1;
    evtimer_del(r->tmr);
    if (r->done && !r->c->closing)
        r->done(r->ud, err ? NULL : r->replies, r->n, err);
    for (size_t i = 0; i < r->n; i++)
        value_clear(&r->replies[i]);
}

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct redis_slot *sl = privdata;
    struct redis_req *r = sl->req;
    struct redis_client *c = r->c;
    const redisReply *rep = reply;
    char why[200];
    c->pending--;
    r->outstanding--;
    if (rep)
        c->heard = clock_now();
    if (!rep && ac == c->ac)            /* going before we knew: the server's doing */
        snprintf(why, sizeof why, "connection lost: %s", ac->errstr[0] ? ac->errstr : "closed");
    if (!rep)
        req_finish(r, ac == c->ac ? why : c->err);
    else if (!r->finished && value_copy(&r->replies[sl->i], rep) < 0)
        req_finish(r, "out of memory");
    else if (!r->finished && ++r->got == r->n)
        req_finish(r, r->fail);
    if (rep && rep->type == REDIS_REPLY_ERROR && !strncmp(rep->str, "READONLY", 8) &&
        ac == c->ac)
        rc_drop(c, "the server is a replica");     /* try the next one */
    if (r->finished && r->outstanding == 0)
        req_free(r);
}

/* The server owes answers and has given none for command_timeout. */
static int rc_stalled(const struct redis_client *c)
{
    return c->ac && c->pending > 0 && clock_now() - c->heard >= c->set.command_timeout;
}

static void on_req_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct redis_req *r = arg;
    struct redis_client *c = r->c;
    int full = r->timeout >= c->set.command_timeout;
    (void)fd;
    (void)what;
    req_finish(r, "timeout");
    if (full || rc_stalled(c))
        rc_drop(c, "no answer in time");   /* may free r: not touched after */
}

static struct redis_req *req_new(struct redis_client *c, size_t n, double timeout,
                                 redis_done_fn done, void *ud)
{
    struct redis_req *r = calloc(1, sizeof *r + n * sizeof r->slot[0]);
    if (!r)
        return NULL;
    r->c = c;
    r->n = n;
    r->done = done;
    r->ud = ud;
    r->timeout = timeout > 0 ? timeout : c->set.command_timeout;
    r->replies = calloc(n, sizeof *r->replies);
    r->tmr = evtimer_new(c->base, on_req_timeout, r);
    struct timeval tv = clock_tv(r->timeout);
    if (!r->replies || !r->tmr || evtimer_add(r->tmr, &tv) < 0) {
        req_free(r);
        return NULL;
    }
    return r;
}

struct redis_req *redis_send(struct redis_client *c, const struct redis_cmd *cmds,
                             size_t n, double timeout, redis_done_fn done, void *ud,
                             const char **err)
{
    if (n == 0 || c->pending + n > c->set.max_pending) {
        *err = n ? "too many commands waiting" : "no command";
        return NULL;
    }
    if (!c->ac && rc_connect(c, err) < 0)
        return NULL;
    struct redis_req *r = req_new(c, n, timeout, done, ud);
    if (!r) {
        *err = "out of memory";
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        r->slot[i] = (struct redis_slot){ r, i };
        if (redisAsyncCommandArgv(c->ac, on_reply, &r->slot[i], cmds[i].argc,
                                  cmds[i].argv, cmds[i].argvlen) != REDIS_OK) {
            r->fail = "cannot queue the command";
            r->n = i;                   /* end when those queued have answered */
            break;
        }
        if (c->pending++ == 0)
            c->heard = clock_now();     /* owed answers from now on */
        r->outstanding++;
    }
    if (r->outstanding == 0) {
        req_free(r);
        *err = "cannot queue the command";
        return NULL;
    }
    return r;
}

void redis_cancel(struct redis_req *r)
{
    if (r)
        r->done = NULL;         /* its slots stay with hiredis until answered */
}

void redis_client_free(struct redis_client *c)
{
    if (!c)
        return;
    redisAsyncContext *ac = c->ac;
    c->ac = NULL;
    c->state = RC_DOWN;
    c->closing = 1;
    snprintf(c->err, sizeof c->err, "client closed");
    if (ac)
        redisAsyncFree(ac);     /* frees every request; c is still there */
    event_free(c->conn_tmr);
    free(c);
}
