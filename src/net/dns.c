/* dns.c — asynchronous DNS on the worker's libevent loop, with a small
 * TTL cache and the forward-confirmed reverse DNS of clients.
 *
 * Resolver library: c-ares. It is what Node.js uses, it resolves every
 * record type (libevent's evdns only does A, AAAA and PTR), it is fully
 * asynchronous, and it plugs into any event loop: it tells us which sockets
 * to watch (ARES_OPT_SOCK_STATE_CB) and when it next needs a timer
 * (ares_timeout), and we call ares_process_fd when either fires.
 *
 * Each query also has its own overall deadline timer, so the configured
 * timeout bounds the wait however c-ares backs off between tries. A query
 * that c-ares still holds after its caller got an answer (timeout) or
 * cancelled is freed when c-ares lets go of it. */
#include "net/dns.h"
#include "core/clock.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <ares.h>
#include <event2/event.h>

#include "core/config.h"
#include "core/config_table.h"
#include "core/log.h"
#include "msg/envelope.h"
#include "core/stats.h"
#include "core/yaml_tree.h"

/* ------------------------------------------------------------ state */

struct dns_sock {
    ares_socket_t fd;
    struct event *ev;
    struct dns_sock *next;
};

static struct {
    int ready;
    struct event_base *base;
    ares_channel ch;
    struct dns_sock *socks;
    struct event *timer;
    double timeout;        /* per try, seconds */
    int tries;
    size_t cache_max;
    double rdns_timeout;
} D;

struct dns_query {
    char *name;
    int type;
    dns_cb cb;
    void *ud;
    int done;              /* answered or cancelled */
    int in_ares;           /* c-ares still holds it */
    int cached;            /* answer from the cache, delivered by timer */
    int starting;          /* inside ares_query/ares_getaddrinfo */
    int has_early;         /* c-ares answered while starting: early */
    struct dns_result early;
    struct event *deadline;
    double started;        /* sent to the resolver (monotonic seconds) */
};

static void arm_timer(void);

/* ------------------------------------------------------------ names */

int dns_type_parse(const char *name)
{
    static const struct { const char *n; int t; } tab[] = {
        { "A", DNS_T_A }, { "AAAA", DNS_T_AAAA }, { "MX", DNS_T_MX },
        { "TXT", DNS_T_TXT }, { "PTR", DNS_T_PTR },
    };
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++)
        if (strcasecmp(name, tab[i].n) == 0)
            return tab[i].t;
    return 0;
}

const char *dns_type_name(int type)
{
    switch (type) {
    case DNS_T_A: return "A";
    case DNS_T_AAAA: return "AAAA";
    case DNS_T_MX: return "MX";
    case DNS_T_TXT: return "TXT";
    case DNS_T_PTR: return "PTR";
    case DNS_T_ADDR: return "ADDR";
    default: return "?";
    }
}

const char *dns_status_str(enum dns_status st)
{
    static const char *s[] = { "OK", "NXDOMAIN", "NODATA", "SERVFAIL",
                               "REFUSED", "timeout", "bad name", "error" };
    return (unsigned)st < sizeof s / sizeof s[0] ? s[st] : "error";
}

int dns_reverse_name(const char *ip, const char *zone, char *out, size_t outlen)
{
    unsigned char b[16];
    size_t used = 0;
    int n;
    if (inet_pton(AF_INET, ip, b) == 1) {
        n = snprintf(out, outlen, "%u.%u.%u.%u.%s", b[3], b[2], b[1], b[0],
                     zone ? zone : "in-addr.arpa");
        return n > 0 && (size_t)n < outlen ? 0 : -1;
    }
    if (inet_pton(AF_INET6, ip, b) != 1)
        return -1;
    static const char hex[] = "0123456789abcdef";
    for (int i = 15; i >= 0; i--) {
        if (used + 4 >= outlen)
            return -1;
        out[used++] = hex[b[i] & 15];
        out[used++] = '.';
        out[used++] = hex[b[i] >> 4];
        out[used++] = '.';
    }
    n = snprintf(out + used, outlen - used, "%s", zone ? zone : "ip6.arpa");
    return n > 0 && (size_t)n < outlen - used ? 0 : -1;
}


/* ------------------------------------------------------------ results */

static void result_clear(struct dns_result *r)
{
    for (size_t i = 0; i < r->n; i++)
        free(r->ans[i].text);
    free(r->ans);
    r->ans = NULL;
    r->n = 0;
}

static int result_add(struct dns_result *r, const char *text, size_t len, int pref)
{
    struct dns_answer *a = realloc(r->ans, (r->n + 1) * sizeof *a);
    if (!a)
        return -1;
    r->ans = a;
    a[r->n].text = malloc(len + 1);
    if (!a[r->n].text)
        return -1;
    memcpy(a[r->n].text, text, len);
    a[r->n].text[len] = '\0';
    a[r->n].pref = pref;
    r->n++;
    return 0;
}

static int result_copy(struct dns_result *dst, const struct dns_result *src)
{
    *dst = *src;
    dst->ans = NULL;
    dst->n = 0;
    for (size_t i = 0; i < src->n; i++)
        if (result_add(dst, src->ans[i].text, strlen(src->ans[i].text),
                       src->ans[i].pref) < 0) {
            result_clear(dst);
            return -1;
        }
    return 0;
}

int dns_result_copy(struct dns_result *dst, const struct dns_result *src)
{
    return result_copy(dst, src);
}

void dns_result_clear(struct dns_result *r)
{
    result_clear(r);
}

/* ------------------------------------------------------------ cache */

#define CACHE_BUCKETS 4096

struct centry {
    char *key;                 /* "<type>:<lowercased name>" */
    struct dns_result r;
    double expires;            /* monotonic */
    struct centry *hnext;      /* bucket chain */
    struct centry *older, *newer;
};

static struct {
    struct centry *b[CACHE_BUCKETS];
    struct centry *oldest, *newest;
    size_t n;
    struct dns_result out;     /* what dns_cache_get hands out */
} C;

static unsigned hash_str(const char *s)
{
    unsigned h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static void cache_key(char *out, size_t len, const char *name, int type)
{
    int n = snprintf(out, len, "%d:", type);
    size_t i = n > 0 ? (size_t)n : 0;
    for (; *name && i + 1 < len; name++)
        out[i++] = (char)tolower((unsigned char)*name);
    if (i > 0 && out[i - 1] == '.')   /* "example.com." == "example.com" */
        i--;
    out[i] = '\0';
}

static void cache_unlink(struct centry *e)
{
    struct centry **pp = &C.b[hash_str(e->key) % CACHE_BUCKETS];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    if (e->older)
        e->older->newer = e->newer;
    else
        C.oldest = e->newer;
    if (e->newer)
        e->newer->older = e->older;
    else
        C.newest = e->older;
    C.n--;
    result_clear(&e->r);
    free(e->key);
    free(e);
}

static struct centry *cache_find(const char *key)
{
    struct centry *e = C.b[hash_str(key) % CACHE_BUCKETS];
    while (e && strcmp(e->key, key) != 0)
        e = e->hnext;
    if (e && e->expires <= clock_now()) {
        cache_unlink(e);
        return NULL;
    }
    return e;
}

static void cache_put(const char *name, int type, const struct dns_result *r)
{
    char key[300];
    if (D.cache_max == 0 || r->ttl == 0)
        return;
    cache_key(key, sizeof key, name, type);
    struct centry *old = cache_find(key);
    if (old)
        cache_unlink(old);
    while (C.n >= D.cache_max && C.oldest)
        cache_unlink(C.oldest);
    struct centry *e = calloc(1, sizeof *e);
    if (!e || !(e->key = strdup(key)) || result_copy(&e->r, r) < 0) {
        if (e)
            free(e->key);
        free(e);
        return;
    }
    e->expires = clock_now() + r->ttl;
    unsigned h = hash_str(key) % CACHE_BUCKETS;
    e->hnext = C.b[h];
    C.b[h] = e;
    e->older = C.newest;
    if (C.newest)
        C.newest->newer = e;
    else
        C.oldest = e;
    C.newest = e;
    C.n++;
}

const struct dns_result *dns_cache_get(const char *name, int type)
{
    char key[300];
    cache_key(key, sizeof key, name, type);
    struct centry *e = cache_find(key);
    if (!e)
        return NULL;
    result_clear(&C.out);
    if (result_copy(&C.out, &e->r) < 0)
        return NULL;
    double left = e->expires - clock_now();
    C.out.ttl = left > 1 ? (unsigned)left : 1;
    return &C.out;
}

static void cache_free(void)
{
    while (C.oldest)
        cache_unlink(C.oldest);
    result_clear(&C.out);
}

/* ------------------------------------------------------------ parsing */

/* The smallest TTL of the answer section (c-ares's parsers drop it for
 * most types). 0 when there is none. */
static unsigned answer_ttl(const unsigned char *buf, int len)
{
    if (len < 12)
        return 0;
    unsigned qd = (unsigned)(buf[4] << 8 | buf[5]);
    unsigned an = (unsigned)(buf[6] << 8 | buf[7]);
    const unsigned char *p = buf + 12, *end = buf + len;
    unsigned best = 0;
    for (unsigned i = 0; i < qd + an; i++) {
        char *name;
        long nlen;
        if (ares_expand_name(p, buf, len, &name, &nlen) != ARES_SUCCESS)
            return best;
        ares_free_string(name);
        p += nlen;
        if (i < qd) {
            p += 4;
            continue;
        }
        if (end - p < 10)
            return best;
        unsigned ttl = (unsigned)p[4] << 24 | (unsigned)p[5] << 16 |
                       (unsigned)p[6] << 8 | p[7];
        unsigned rdlen = (unsigned)(p[8] << 8 | p[9]);
        if (i == qd || ttl < best)
            best = ttl;
        p += 10 + rdlen;
        if (p > end)
            return best;
    }
    return best;
}

static int parse_a(const unsigned char *buf, int len, struct dns_result *r)
{
    struct ares_addrttl a[64];
    int n = 64;
    int st = ares_parse_a_reply(buf, len, NULL, a, &n);
    for (int i = 0; st == ARES_SUCCESS && i < n; i++) {
        char ip[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &a[i].ipaddr, ip, sizeof ip);
        if (result_add(r, ip, strlen(ip), 0) < 0)
            return ARES_ENOMEM;
    }
    return st;
}

static int parse_aaaa(const unsigned char *buf, int len, struct dns_result *r)
{
    struct ares_addr6ttl a[64];
    int n = 64;
    int st = ares_parse_aaaa_reply(buf, len, NULL, a, &n);
    for (int i = 0; st == ARES_SUCCESS && i < n; i++) {
        char ip[INET6_ADDRSTRLEN];
        inet_ntop(AF_INET6, &a[i].ip6addr, ip, sizeof ip);
        if (result_add(r, ip, strlen(ip), 0) < 0)
            return ARES_ENOMEM;
    }
    return st;
}

static int mx_cmp(const void *a, const void *b)
{
    const struct dns_answer *x = a, *y = b;
    if (x->pref != y->pref)
        return x->pref < y->pref ? -1 : 1;
    return strcmp(x->text, y->text);
}

static int parse_mx(const unsigned char *buf, int len, struct dns_result *r)
{
    struct ares_mx_reply *mx = NULL;
    int st = ares_parse_mx_reply(buf, len, &mx);
    for (struct ares_mx_reply *m = mx; st == ARES_SUCCESS && m; m = m->next)
        if (result_add(r, m->host, strlen(m->host), m->priority) < 0)
            st = ARES_ENOMEM;
    if (mx)
        ares_free_data(mx);
    if (st == ARES_SUCCESS && r->n > 1)
        qsort(r->ans, r->n, sizeof r->ans[0], mx_cmp);
    return st;
}

/* TXT: the character strings of one record are joined. */
static int parse_txt(const unsigned char *buf, int len, struct dns_result *r)
{
    struct ares_txt_ext *txt = NULL;
    int st = ares_parse_txt_reply_ext(buf, len, &txt);
    for (struct ares_txt_ext *t = txt; st == ARES_SUCCESS && t; t = t->next) {
        if (t->record_start || r->n == 0) {
            if (result_add(r, (const char *)t->txt, t->length, 0) < 0)
                st = ARES_ENOMEM;
            continue;
        }
        struct dns_answer *a = &r->ans[r->n - 1];
        size_t have = strlen(a->text);
        char *s = realloc(a->text, have + t->length + 1);
        if (!s) {
            st = ARES_ENOMEM;
            break;
        }
        memcpy(s + have, t->txt, t->length);
        s[have + t->length] = '\0';
        a->text = s;
    }
    if (txt)
        ares_free_data(txt);
    return st;
}

static int parse_ptr(const unsigned char *buf, int len, struct dns_result *r)
{
    struct hostent *h = NULL;
    unsigned char dummy[4] = { 0, 0, 0, 0 };
    int st = ares_parse_ptr_reply(buf, len, dummy, sizeof dummy, AF_INET, &h);
    if (st != ARES_SUCCESS)
        return st;
    if (result_add(r, h->h_name, strlen(h->h_name), 0) < 0)
        st = ARES_ENOMEM;
    for (char **al = h->h_aliases; st == ARES_SUCCESS && al && *al; al++)
        if (strcasecmp(*al, h->h_name) != 0 &&
            result_add(r, *al, strlen(*al), 0) < 0)
            st = ARES_ENOMEM;
    ares_free_hostent(h);
    return st;
}

static enum dns_status map_status(int st)
{
    switch (st) {
    case ARES_SUCCESS: return DNS_OK;
    case ARES_ENOTFOUND: return DNS_NXDOMAIN;
    case ARES_ENODATA: return DNS_NODATA;
    case ARES_ESERVFAIL: case ARES_EFORMERR: case ARES_EBADRESP:
        return DNS_SERVFAIL;
    case ARES_EREFUSED: case ARES_ECONNREFUSED: return DNS_REFUSED;
    case ARES_ETIMEOUT: return DNS_TIMEOUT;
    case ARES_EBADNAME: return DNS_BADNAME;
    default: return DNS_ERROR;
    }
}

void dns_parse_answer(int type, const unsigned char *buf, int len,
                      struct dns_result *r)
{
    int st;
    switch (type) {
    case DNS_T_A: st = parse_a(buf, len, r); break;
    case DNS_T_AAAA: st = parse_aaaa(buf, len, r); break;
    case DNS_T_MX: st = parse_mx(buf, len, r); break;
    case DNS_T_TXT: st = parse_txt(buf, len, r); break;
    default: st = parse_ptr(buf, len, r); break;
    }
    if (st == ARES_SUCCESS && r->n == 0)
        st = ARES_ENODATA;
    r->status = map_status(st);
    if (r->status != DNS_OK)
        result_clear(r);
    r->ttl = r->status == DNS_OK ? answer_ttl(buf, len) : 0;
}

/* ------------------------------------------------------------ queries */

static void query_free(struct dns_query *q)
{
    result_clear(&q->early);
    if (q->deadline)
        event_free(q->deadline);
    free(q->name);
    free(q);
}

static void deliver(struct dns_query *q, const struct dns_result *r)
{
    q->done = 1;
    if (!q->cached)
        stats_dns(clock_now() - q->started);
    if (q->deadline)
        event_del(q->deadline);
    q->cb(r, q->ud);
}

/* An answer that c-ares gives from inside the call that starts the query
 * (/etc/hosts, an immediate failure) is held and delivered from the
 * event loop: callbacks never run inside dns_query(). Takes r. */
static void deliver_or_hold(struct dns_query *q, struct dns_result *r)
{
    if (q->starting) {
        q->early = *r;
        q->has_early = 1;
        return;
    }
    deliver(q, r);
    result_clear(r);
}

static void on_ares_answer(void *arg, int status, int timeouts,
                           unsigned char *buf, int len)
{
    struct dns_query *q = arg;
    (void)timeouts;
    q->in_ares = 0;
    if (!q->done && status != ARES_EDESTRUCTION) {
        struct dns_result r = { .type = q->type };
        if (status == ARES_SUCCESS)
            dns_parse_answer(q->type, buf, len, &r);
        else
            r.status = map_status(status);
        if (r.status == DNS_NXDOMAIN || r.status == DNS_NODATA)
            r.ttl = 60;           /* negative answers: a short while */
        cache_put(q->name, q->type, &r);
        deliver_or_hold(q, &r);
    }
    if (q->done || status == ARES_EDESTRUCTION)
        query_free(q);
}

/* A getaddrinfo answer as a list of address strings. */
static void addrinfo_result(const struct ares_addrinfo *ai, struct dns_result *r)
{
    char ip[INET6_ADDRSTRLEN];
    r->status = DNS_NODATA;
    r->ttl = 3600;
    for (const struct ares_addrinfo_node *n = ai ? ai->nodes : NULL; n; n = n->ai_next) {
        const void *a = n->ai_family == AF_INET6
            ? (const void *)&((const struct sockaddr_in6 *)n->ai_addr)->sin6_addr
            : (const void *)&((const struct sockaddr_in *)n->ai_addr)->sin_addr;
        if (!inet_ntop(n->ai_family, a, ip, sizeof ip) ||
            result_add(r, ip, strlen(ip), 0) < 0)
            continue;
        r->status = DNS_OK;
        if (n->ai_ttl >= 0 && (unsigned)n->ai_ttl < r->ttl)
            r->ttl = (unsigned)n->ai_ttl;
    }
}

static void on_ares_addrinfo(void *arg, int status, int timeouts,
                             struct ares_addrinfo *ai)
{
    struct dns_query *q = arg;
    (void)timeouts;
    q->in_ares = 0;
    if (!q->done && status != ARES_EDESTRUCTION) {
        struct dns_result r = { .type = q->type };
        if (status == ARES_SUCCESS)
            addrinfo_result(ai, &r);
        else
            r.status = map_status(status);
        if (r.status == DNS_NXDOMAIN || r.status == DNS_NODATA)
            r.ttl = 60;
        cache_put(q->name, q->type, &r);
        deliver_or_hold(q, &r);
    }
    if (ai)
        ares_freeaddrinfo(ai);
    if (q->done || status == ARES_EDESTRUCTION)
        query_free(q);
}

static void start_ares(struct dns_query *q)
{
    q->in_ares = 1;
    if (q->type == DNS_T_ADDR) {
        struct ares_addrinfo_hints hints;
        memset(&hints, 0, sizeof hints);
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        ares_getaddrinfo(D.ch, q->name, NULL, &hints, on_ares_addrinfo, q);
    } else {
        ares_query(D.ch, q->name, 1 /* class IN */, q->type, on_ares_answer, q);
    }
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct dns_query *q = arg;
    (void)fd;
    (void)what;
    if (q->done)
        return;
    if (q->has_early) {
        deliver(q, &q->early);
    } else if (q->cached) {
        const struct dns_result *c = dns_cache_get(q->name, q->type);
        struct dns_result miss = { .status = DNS_ERROR, .type = q->type };
        deliver(q, c ? c : &miss);
    } else {
        struct dns_result r = { .status = DNS_TIMEOUT, .type = q->type };
        deliver(q, &r);
    }
    if (!q->in_ares)
        query_free(q);
}

struct dns_query *dns_query(const char *name, int type, double timeout,
                            dns_cb cb, void *ud)
{
    if (!D.ready)
        return NULL;
    struct dns_query *q = calloc(1, sizeof *q);
    if (!q || !(q->name = strdup(name)))
        goto fail;
    q->type = type;
    q->cb = cb;
    q->ud = ud;
    q->deadline = evtimer_new(D.base, on_deadline, q);
    if (!q->deadline)
        goto fail;
    if (dns_cache_get(name, type)) {
        q->cached = 1;
        event_active(q->deadline, EV_TIMEOUT, 0);
        return q;
    }
    if (timeout <= 0)
        timeout = D.timeout * D.tries;
    struct timeval tv = clock_tv(timeout);
    evtimer_add(q->deadline, &tv);
    q->starting = 1;
    q->started = clock_now();
    start_ares(q);
    q->starting = 0;
    if (q->has_early)
        event_active(q->deadline, EV_TIMEOUT, 0);
    else if (q->in_ares)
        arm_timer();
    return q;   /* an answer given at once is delivered from the loop */
fail:
    if (q)
        free(q->name);
    free(q);
    return NULL;
}

void dns_cancel(struct dns_query *q)
{
    if (!q || q->done)
        return;
    q->done = 1;
    event_del(q->deadline);
    if (!q->in_ares)
        query_free(q);
}

/* ------------------------------------------------------------ event loop */

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    ares_process_fd(D.ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    arm_timer();
}

static void arm_timer(void)
{
    struct timeval tv, *t;
    if (!D.timer)
        return;
    t = ares_timeout(D.ch, NULL, &tv);
    if (t)
        evtimer_add(D.timer, t);
    else
        evtimer_del(D.timer);
}

static void on_sock(evutil_socket_t fd, short what, void *arg)
{
    (void)arg;
    ares_process_fd(D.ch, (what & EV_READ) ? fd : ARES_SOCKET_BAD,
                    (what & EV_WRITE) ? fd : ARES_SOCKET_BAD);
    arm_timer();
}

static void sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
    struct dns_sock **pp = &D.socks;
    (void)data;
    while (*pp && (*pp)->fd != fd)
        pp = &(*pp)->next;
    struct dns_sock *s = *pp;
    if (s) {
        event_free(s->ev);
        if (!readable && !writable) {
            *pp = s->next;
            free(s);
            return;
        }
    } else {
        if (!readable && !writable)
            return;
        s = calloc(1, sizeof *s);
        if (!s)
            return;
        s->fd = fd;
        s->next = D.socks;
        D.socks = s;
    }
    short ev = EV_PERSIST | (readable ? EV_READ : 0) | (writable ? EV_WRITE : 0);
    s->ev = event_new(D.base, fd, ev, on_sock, NULL);
    if (s->ev)
        event_add(s->ev, NULL);
}

/* ------------------------------------------------------------ setup */

/* One resolver: an IP address, optionally with a port ("127.0.0.1:53",
 * "[::1]:53", "::1"). Appended to the c-ares server list in set->servers. */
static int set_server(struct cfg_ctx *c, const struct ynode *v, const char *key)
{
    const char *what = "a resolver address \"IP\" or \"IP:PORT\"";
    const char *s = cfg_scalar(c, v, key, what);
    if (!s)
        return -1;
    char host[64], *port = NULL;
    unsigned char buf[16];
    const char *colon = strrchr(s, ':');
    if (s[0] == '[' && colon && colon > s && colon[-1] == ']') {
        snprintf(host, sizeof host, "%.*s", (int)(colon - s - 2), s + 1);
        port = (char *)colon + 1;
    } else if (colon && strchr(s, ':') == colon) {
        snprintf(host, sizeof host, "%.*s", (int)(colon - s), s);
        port = (char *)colon + 1;
    } else {
        snprintf(host, sizeof host, "%s", s);
    }
    unsigned long long num = 1;
    if ((inet_pton(AF_INET, host, buf) != 1 && inet_pton(AF_INET6, host, buf) != 1) ||
        (port && (strlen(port) > 5 || cfg_parse_uint(port, &num) < 0 || num < 1 ||
                  num > 65535)))
        return cfg_type_error(c, v, key, what);
    struct dns_settings *set = c->base;
    size_t have = strlen(set->servers);
    if (have + strlen(s) + 2 > sizeof set->servers)
        return cfg_fail(c, v->line, "%s: too many servers", key);
    snprintf(set->servers + have, sizeof set->servers - have, "%s%s", have ? "," : "", s);
    return 0;
}

static int set_servers(struct cfg_ctx *c, const struct ynode *v, const char *key,
                       const struct cfg_key *k)
{
    (void)k;
    if (cfg_is_null(v))
        return 0;
    if (v->type != YNODE_SEQ || v->n == 0)
        return cfg_type_error(c, v, key, "a list of resolver addresses");
    for (size_t i = 0; i < v->n; i++) {
        char item[CFG_KEYLEN];
        snprintf(item, sizeof item, "%s[%zu]", key, i);
        if (set_server(c, v->items[i], item) < 0)
            return -1;
    }
    return 0;
}

#define DNS_KEY(name, fn, field, lo, hi) \
    CFG_FIELD(struct dns_settings, name, fn, field, lo, hi)

static const struct cfg_key dns_keys[] = {
    CFG_FN("servers", set_servers),
    DNS_KEY("timeout", cfg_set_seconds, timeout, 0, 300),
    DNS_KEY("tries", cfg_set_uint, tries, 1, 20),
    DNS_KEY("cache_size", cfg_set_count, cache_size, 0, 10000000),
    DNS_KEY("rdns_timeout", cfg_set_seconds, rdns_timeout, 0, 300),
    { 0 }
};

int dns_settings_load(const char *confdir, struct dns_settings *set, char *err,
                      size_t errlen)
{
    char path[1024];
    memset(set, 0, sizeof *set);
    set->timeout = 2;
    set->tries = 2;
    set->cache_size = 10000;
    set->rdns_timeout = 5;
    snprintf(path, sizeof path, "%s/dns.yaml", confdir ? confdir : "config");
    return cfg_load_file(path, dns_keys, set, err, errlen);
}

static int open_channel(const char *servers, char *err, size_t errlen)
{
    struct ares_options o;
    memset(&o, 0, sizeof o);
    o.sock_state_cb = sock_state;
    o.timeout = (int)(D.timeout * 1000);
    o.tries = D.tries;
    o.flags = ARES_FLAG_NOSEARCH;
    int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES |
               ARES_OPT_FLAGS;
    int st = ares_init_options(&D.ch, &o, mask);
    if (st == ARES_SUCCESS && servers[0])
        st = ares_set_servers_ports_csv(D.ch, servers);
    if (st != ARES_SUCCESS) {
        snprintf(err, errlen, "dns: %s (servers: %s)", ares_strerror(st),
                 servers[0] ? servers : "resolv.conf");
        if (D.ch)
            ares_destroy(D.ch);
        D.ch = NULL;
        return -1;
    }
    return 0;
}

int dns_init(struct event_base *base, const char *confdir, char *err,
             size_t errlen)
{
    char ebuf[512];
    if (D.ready)
        return 0;
    if (!err) {
        err = ebuf;
        errlen = sizeof ebuf;
    }
    if (!base) {
        snprintf(err, errlen, "dns: no event loop");
        return -1;
    }
    struct dns_settings set;
    if (dns_settings_load(confdir, &set, err, errlen) < 0) {
        log_msg(LOG_LVL_ERROR, "%s", err);
        return -1;
    }
    D.timeout = set.timeout;
    D.tries = (int)set.tries;
    D.cache_max = set.cache_size;
    D.rdns_timeout = set.rdns_timeout;
    if (ares_library_init(ARES_LIB_INIT_ALL) != ARES_SUCCESS ||
        open_channel(set.servers, err, errlen) < 0) {
        log_msg(LOG_LVL_ERROR, "%s", err);
        return -1;
    }
    D.base = base;
    D.timer = evtimer_new(base, on_timer, NULL);
    D.ready = 1;
    log_msg(LOG_LVL_DEBUG, "dns: servers %s, timeout %gs x %d, cache %zu",
            set.servers[0] ? set.servers : "from resolv.conf", D.timeout, D.tries,
            D.cache_max);
    return 0;
}

void dns_shutdown(void)
{
    if (!D.ready)
        return;
    ares_destroy(D.ch);       /* callbacks see ARES_EDESTRUCTION */
    while (D.socks) {
        struct dns_sock *s = D.socks;
        D.socks = s->next;
        if (s->ev)
            event_free(s->ev);
        free(s);
    }
    if (D.timer)
        event_free(D.timer);
    cache_free();
    ares_library_cleanup();
    memset(&D, 0, sizeof D);
}

/* ------------------------------------------------------------ rdns */

struct dns_rdns {
    struct conn *c;
    struct dns_query *q;
    double deadline;
    char name[256];
    void (*wcb)(void *);
    void *wud;
};

static void rdns_finish(struct dns_rdns *j, int confirmed)
{
    struct conn *c = j->c;
    if (j->name[0]) {
        free(c->rdns);
        c->rdns = strdup(j->name);
    }
    c->rdns_confirmed = confirmed && c->rdns;
    c->rdns_job = NULL;
    conn_log(c, LOG_LVL_DEBUG, "rdns %s %s", c->rdns ? c->rdns : "unknown",
         c->rdns_confirmed ? "confirmed" : "not confirmed");
    void (*cb)(void *) = j->wcb;
    void *ud = j->wud;
    free(j);
    if (cb)
        cb(ud);
}

static int same_ip(const char *a, const char *b)
{
    unsigned char x[16], y[16];
    int fa = strchr(a, ':') ? AF_INET6 : AF_INET;
    int fb = strchr(b, ':') ? AF_INET6 : AF_INET;
    return fa == fb && inet_pton(fa, a, x) == 1 && inet_pton(fb, b, y) == 1 &&
           memcmp(x, y, fa == AF_INET ? 4 : 16) == 0;
}

static void rdns_forward_done(const struct dns_result *r, void *ud)
{
    struct dns_rdns *j = ud;
    int confirmed = 0;
    j->q = NULL;
    for (size_t i = 0; r->status == DNS_OK && i < r->n; i++)
        if (same_ip(r->ans[i].text, j->c->remote_ip))
            confirmed = 1;
    rdns_finish(j, confirmed);
}

static void rdns_ptr_done(const struct dns_result *r, void *ud)
{
    struct dns_rdns *j = ud;
    j->q = NULL;
    if (r->status != DNS_OK || r->n == 0 ||
        strlen(r->ans[0].text) >= sizeof j->name) {
        rdns_finish(j, 0);
        return;
    }
    snprintf(j->name, sizeof j->name, "%s", r->ans[0].text);
    double left = j->deadline - clock_now();
    int type = strchr(j->c->remote_ip, ':') ? DNS_T_AAAA : DNS_T_A;
    if (left > 0.01)
        j->q = dns_query(j->name, type, left, rdns_forward_done, j);
    if (!j->q)
        rdns_finish(j, 0);
}

void dns_rdns_start(struct conn *c)
{
    char rev[128];
    if (c->rdns_job || c->rdns ||
        dns_reverse_name(c->remote_ip, NULL, rev, sizeof rev) < 0)
        return;
    if (!D.ready)
        return;
    struct dns_rdns *j = calloc(1, sizeof *j);
    if (!j)
        return;
    j->c = c;
    j->deadline = clock_now() + D.rdns_timeout;
    j->q = dns_query(rev, DNS_T_PTR, D.rdns_timeout, rdns_ptr_done, j);
    if (!j->q) {
        free(j);
        return;
    }
    c->rdns_job = j;
}

void dns_rdns_cancel(struct conn *c)
{
    struct dns_rdns *j = c->rdns_job;
    if (!j)
        return;
    dns_cancel(j->q);
    free(j);
    c->rdns_job = NULL;
}

int dns_rdns_done(const struct conn *c)
{
    return c->rdns_job == NULL;
}

int dns_rdns_wait(struct conn *c, void (*cb)(void *ud), void *ud)
{
    struct dns_rdns *j = c->rdns_job;
    if (!j)
        return 1;
    j->wcb = cb;
    j->wud = ud;
    return 0;
}

void dns_rdns_unwait(struct conn *c)
{
    struct dns_rdns *j = c->rdns_job;
    if (j) {
        j->wcb = NULL;
        j->wud = NULL;
    }
}
