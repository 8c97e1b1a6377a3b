/* netmask.c — addresses and networks as 16 bytes (see netmask.h). */
#include "core/netmask.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static const unsigned char v4_mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

int netmask_is_v4(const unsigned char a[NETMASK_BYTES])
{
    return memcmp(a, v4_mapped, sizeof v4_mapped) == 0;
}

int netmask_addr(const char *s, unsigned char out[NETMASK_BYTES])
{
    memset(out, 0, NETMASK_BYTES);
    if (inet_pton(AF_INET, s, out + 12) == 1) {
        memcpy(out, v4_mapped, sizeof v4_mapped);
        return 0;
    }
    return inet_pton(AF_INET6, s, out) == 1 ? 0 : -1;
}

int netmask_sockaddr(const struct sockaddr *sa, unsigned char out[NETMASK_BYTES])
{
    if (sa->sa_family == AF_INET6) {
        memcpy(out, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr,
               NETMASK_BYTES);
        return 0;
    }
    if (sa->sa_family != AF_INET)
        return -1;
    memcpy(out, v4_mapped, sizeof v4_mapped);
    memcpy(out + 12, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
    return 0;
}

/* Clear every bit after the first `bits`. */
static void clear_host(unsigned char a[NETMASK_BYTES], unsigned bits)
{
    for (unsigned i = 0; i < NETMASK_BYTES; i++) {
        unsigned keep = bits > i * 8 ? bits - i * 8 : 0;
        if (keep < 8)
            a[i] &= (unsigned char)(0xff00u >> keep);
    }
}

/* Digits 0..max, nothing else. */
static int parse_len(const char *s, unsigned max, unsigned *out)
{
    unsigned v = 0;
    if (!*s || strlen(s) > 3)
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        v = v * 10 + (unsigned)(*s - '0');
    }
    if (v > max)
        return -1;
    *out = v;
    return 0;
}

static int parse_net(const char *s, struct netmask *out, const char **why, int strict)
{
    char text[INET6_ADDRSTRLEN + 8];
    const char *slash = strchr(s, '/');
    size_t alen = slash ? (size_t)(slash - s) : strlen(s);
    if (alen >= sizeof text || alen == 0) {
        *why = "expected an address or ADDRESS/LENGTH";
        return -1;
    }
    memcpy(text, s, alen);
    text[alen] = '\0';
    if (netmask_addr(text, out->addr) < 0) {
        *why = "expected an address or ADDRESS/LENGTH";
        return -1;
    }
    int v4 = netmask_is_v4(out->addr) && !strchr(text, ':');
    unsigned len = v4 ? 32 : 128;
    if (slash && parse_len(slash + 1, v4 ? 32 : 128, &len) < 0) {
        *why = v4 ? "the prefix length of an IPv4 network is 0 to 32"
                  : "the prefix length of an IPv6 network is 0 to 128";
        return -1;
    }
    out->bits = v4 ? 96 + len : len;
    unsigned char masked[NETMASK_BYTES];
    memcpy(masked, out->addr, sizeof masked);
    clear_host(masked, out->bits);
    if (memcmp(masked, out->addr, sizeof masked) != 0 && strict) {
        *why = "address bits set after the prefix length";
        return -1;
    }
    memcpy(out->addr, masked, sizeof masked);
    return 0;
}

int netmask_parse(const char *s, struct netmask *out, const char **why)
{
    return parse_net(s, out, why, 1);
}

int netmask_parse_lax(const char *s, struct netmask *out, const char **why)
{
    return parse_net(s, out, why, 0);
}

void netmask_format(const struct netmask *m, char *buf, size_t len)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    int v4 = netmask_is_v4(m->addr) && m->bits >= 96;
    inet_ntop(v4 ? AF_INET : AF_INET6, v4 ? m->addr + 12 : m->addr, ip, sizeof ip);
    snprintf(buf, len, "%s/%u", ip, v4 ? m->bits - 96 : m->bits);
}

void netmask_group(const unsigned char a[NETMASK_BYTES], unsigned v4bits,
                   unsigned v6bits, struct netmask *out)
{
    int v4 = netmask_is_v4(a);
    memcpy(out->addr, a, NETMASK_BYTES);
    out->bits = v4 ? 96 + (v4bits > 32 ? 32 : v4bits) : (v6bits > 128 ? 128 : v6bits);
    clear_host(out->addr, out->bits);
}

void netmask_key(const unsigned char a[NETMASK_BYTES], unsigned v4bits, unsigned v6bits,
                 char tag, unsigned char key[NETMASK_KEY])
{
    struct netmask m;
    netmask_group(a, v4bits, v6bits, &m);
    key[0] = (unsigned char)tag;
    memcpy(key + 1, m.addr, NETMASK_BYTES);
    key[NETMASK_KEY - 1] = (unsigned char)m.bits;
}

int netmask_contains(const struct netmask *m, const unsigned char a[NETMASK_BYTES])
{
    unsigned char masked[NETMASK_BYTES];
    memcpy(masked, a, sizeof masked);
    clear_host(masked, m->bits);
    return memcmp(masked, m->addr, sizeof masked) == 0;
}

int netmask_list_add(struct netmask_list *l, const struct netmask *m)
{
    struct netmask *n = realloc(l->nets, (l->n + 1) * sizeof *n);
    if (!n)
        return -1;
    n[l->n++] = *m;
    l->nets = n;
    return 0;
}

int netmask_list_match(const struct netmask_list *l, const unsigned char a[NETMASK_BYTES])
{
    for (size_t i = 0; i < l->n; i++)
        if (netmask_contains(&l->nets[i], a))
            return 1;
    return 0;
}

void netmask_list_free(struct netmask_list *l)
{
    free(l->nets);
    l->nets = NULL;
    l->n = 0;
}
