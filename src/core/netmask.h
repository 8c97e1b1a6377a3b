/* netmask.h — IP addresses and networks for the core's limits.
 *
 * An address is 16 bytes: IPv6 as is, IPv4 mapped (::ffff:a.b.c.d), so
 * "192.0.2.1" and "::ffff:192.0.2.1" are the same client and one
 * comparison serves both families. A network is an address and a prefix
 * length over those 16 bytes (an IPv4 /24 is stored as /120).
 *
 * Used by config.c (limits.exempt, the relay plugin's networks), smtp/server.c and smtp/session.c (the
 * network a client is counted under, exemptions) and lua/lua_counter.c.
 * Pure: no I/O, no globals; a list is owned by whoever filled it and freed
 * with netmask_list_free. */
#ifndef KASI_NETMASK_H
#define KASI_NETMASK_H

#include <stddef.h>

struct sockaddr;

#define NETMASK_BYTES 16

struct netmask {
    unsigned char addr[NETMASK_BYTES];  /* host bits are zero */
    unsigned bits;                      /* 0..128, over the 16 bytes */
};

struct netmask_list {
    struct netmask *nets;
    size_t n;
};

/* Text ("192.0.2.1", "2001:db8::1", "::ffff:192.0.2.1") to 16 bytes.
 * 0, or -1 when it is not an address. */
int netmask_addr(const char *s, unsigned char out[NETMASK_BYTES]);
/* The same from an AF_INET / AF_INET6 socket address. 0 or -1. */
int netmask_sockaddr(const struct sockaddr *sa, unsigned char out[NETMASK_BYTES]);
/* 1 when a is an IPv4 address (mapped). */
int netmask_is_v4(const unsigned char a[NETMASK_BYTES]);

/* "ADDR" or "ADDR/LEN" (IPv4 LEN 0..32, IPv6 0..128) into out. Host bits
 * set after the prefix are an error. 0, or -1 with a reason in *why. */
int netmask_parse(const char *s, struct netmask *out, const char **why);
/* The same, but host bits after the prefix are cleared, not refused: the
 * plugins' lists take "10.0.0.1/8" as 10.0.0.0/8 (lua/kasi/netmask.lua). */
int netmask_parse_lax(const char *s, struct netmask *out, const char **why);
/* "192.0.2.0/24", "2001:db8::/64" into buf. */
void netmask_format(const struct netmask *m, char *buf, size_t len);

/* The network of a: IPv4 addresses by their first v4bits (0..32), IPv6
 * ones by their first v6bits (0..128). */
void netmask_group(const unsigned char a[NETMASK_BYTES], unsigned v4bits,
                   unsigned v6bits, struct netmask *out);
/* A key for counting a's network (core/shmcount.h): tag, the network's
 * 16 bytes, its prefix length. */
#define NETMASK_KEY (NETMASK_BYTES + 2)
void netmask_key(const unsigned char a[NETMASK_BYTES], unsigned v4bits, unsigned v6bits,
                 char tag, unsigned char key[NETMASK_KEY]);
/* 1 when a lies in m. */
int netmask_contains(const struct netmask *m, const unsigned char a[NETMASK_BYTES]);

/* Append a copy of m. 0, or -1 when out of memory (l unchanged). */
int netmask_list_add(struct netmask_list *l, const struct netmask *m);
/* 1 when a lies in one of the networks of l. */
int netmask_list_match(const struct netmask_list *l, const unsigned char a[NETMASK_BYTES]);
void netmask_list_free(struct netmask_list *l);

#endif
