/* dns.h — asynchronous DNS for the worker's event loop: A, AAAA, MX, TXT
 * and PTR queries with a TTL-respecting cache, resolvers from
 * config/dns.yaml or /etc/resolv.conf, and the forward-confirmed reverse
 * DNS of each client, started at connect. Callbacks always run from the
 * event loop, never inside the call that started the query. */
#ifndef KASI_DNS_H
#define KASI_DNS_H

#include <stddef.h>

struct event_base;
struct conn;

enum dns_type {
    DNS_T_A = 1, DNS_T_PTR = 12, DNS_T_MX = 15, DNS_T_TXT = 16, DNS_T_AAAA = 28,
    /* Not a record type: a host name's addresses the way getaddrinfo(3)
     * finds them (/etc/hosts, then A and AAAA), IPv6 and IPv4 mixed in the
     * order to try. A literal address answers itself. */
    DNS_T_ADDR = 0x10000
};

enum dns_status {
    DNS_OK = 0,
    DNS_NXDOMAIN,     /* the name does not exist */
    DNS_NODATA,       /* the name exists, no record of that type */
    DNS_SERVFAIL,     /* the server failed (or sent garbage) */
    DNS_REFUSED,      /* the server refused / could not be reached */
    DNS_TIMEOUT,      /* no answer in time */
    DNS_BADNAME,      /* the query name is malformed */
    DNS_ERROR         /* anything else (out of memory, shutdown) */
};

struct dns_answer {
    char *text;       /* A/AAAA/ADDR: address; MX: exchange; TXT: the
                         strings joined; PTR: the name */
    int pref;         /* MX preference, else 0 */
};

struct dns_result {
    enum dns_status status;
    int type;
    size_t n;
    struct dns_answer *ans;   /* MX: sorted by preference */
    unsigned ttl;             /* seconds the answer may be cached */
};

/* Deep copy (0, or -1 out of memory) and release of a result's answers. */
int dns_result_copy(struct dns_result *dst, const struct dns_result *src);
void dns_result_clear(struct dns_result *r);

typedef void (*dns_cb)(const struct dns_result *r, void *ud);

struct dns_query;

/* Settings, from <confdir>/dns.yaml (optional; strict like smtp.yaml):
 *   servers: ["127.0.0.1:5353", "[::1]:53"]   (default: /etc/resolv.conf)
 *   timeout: 2         seconds per try
 *   tries: 2
 *   cache_size: 10000  answers kept (0: no cache)
 *   rdns_timeout: 5    seconds for a client's reverse DNS */
struct dns_settings {
    char servers[1024];   /* "IP[:PORT],..." for c-ares; "" = resolv.conf */
    double timeout;
    unsigned tries;
    size_t cache_size;
    double rdns_timeout;
};

/* Defaults, then <confdir>/dns.yaml. 0, or -1 with "file:line: key: why"
 * in err. kasi -t and the start-up check call it; dns_init reads it too. */
int dns_settings_load(const char *confdir, struct dns_settings *set, char *err,
                      size_t errlen);

/* Start the resolver with dns_settings_load's settings. Returns 0, or -1
 * with a message in err. The worker calls it once at start; queries before
 * that fail. */
int dns_init(struct event_base *base, const char *confdir, char *err,
             size_t errlen);
/* Drop the channel and the cache (pending callbacks are not called). */
void dns_shutdown(void);

/* Parse a type name ("A", "mx"...); 0 when unknown. */
int dns_type_parse(const char *name);
const char *dns_type_name(int type);
/* "NXDOMAIN", "NODATA", "SERVFAIL", "REFUSED", "timeout", ... */
const char *dns_status_str(enum dns_status st);

/* Start a query; cb runs later, exactly once, unless dns_cancel is called
 * first. timeout: overall seconds (<= 0: the configured timeout * tries).
 * Returns NULL only when the query cannot be started (cb never runs). */
struct dns_query *dns_query(const char *name, int type, double timeout,
                            dns_cb cb, void *ud);
void dns_cancel(struct dns_query *q);
/* A cached answer, or NULL (the result is valid until the next call into
 * this module). */
const struct dns_result *dns_cache_get(const char *name, int type);

/* The PTR query name of an address: "4.3.2.1.in-addr.arpa" or the IPv6
 * nibble form under ip6.arpa. With zone != NULL the suffix is ".zone"
 * instead (DNSBL form, RFC 5782). Returns 0, -1 if ip is not an address. */
int dns_reverse_name(const char *ip, const char *zone, char *out, size_t outlen);

/* A DNS response (wire format) as a result of the given type: status,
 * answers in the documented shape (MX sorted by preference, TXT strings
 * of one record joined), the smallest TTL. Pure; exposed for the tests. */
void dns_parse_answer(int type, const unsigned char *buf, int len,
                      struct dns_result *r);

/* ---- reverse DNS of a client (forward-confirmed) */

/* Start the lookup for c->remote_ip; fills c->rdns and c->rdns_confirmed
 * when done. Never delays the caller. */
void dns_rdns_start(struct conn *c);
/* Forget the lookup (the session goes away). */
void dns_rdns_cancel(struct conn *c);
/* 1 when the lookup of c has finished (or never started), else 0. */
int dns_rdns_done(const struct conn *c);
/* Have cb(ud) called when the lookup of c finishes. Returns 0 when
 * registered, 1 when it has already finished (cb is not called). One
 * waiter per connection. */
int dns_rdns_wait(struct conn *c, void (*cb)(void *ud), void *ud);
void dns_rdns_unwait(struct conn *c);

#endif
