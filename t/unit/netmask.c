/* Unit tests for src/core/netmask.c: addresses, networks, grouping by
 * prefix (IPv4 /24, IPv6 /64 with synthetic addresses) and lists. */
#include "core/netmask.h"
#include "tap.h"

#include <arpa/inet.h>
#include <netinet/in.h>

static int same_group(const char *a, const char *b, unsigned v4, unsigned v6)
{
    unsigned char x[16], y[16];
    struct netmask gx, gy;
    if (netmask_addr(a, x) < 0 || netmask_addr(b, y) < 0)
        return -1;
    netmask_group(x, v4, v6, &gx);
    netmask_group(y, v4, v6, &gy);
    return gx.bits == gy.bits && !memcmp(gx.addr, gy.addr, 16);
}

static const char *parse_err(const char *s)
{
    struct netmask m;
    const char *why = NULL;
    return netmask_parse(s, &m, &why) < 0 ? why : NULL;
}

static const char *fmt(const char *s)
{
    static char buf[64];
    struct netmask m;
    const char *why;
    if (netmask_parse(s, &m, &why) < 0)
        return why;
    netmask_format(&m, buf, sizeof buf);
    return buf;
}

int main(void)
{
    unsigned char a[16], b[16];
    ok(netmask_addr("192.0.2.1", a) == 0 && netmask_is_v4(a), "IPv4 address");
    ok(netmask_addr("::ffff:192.0.2.1", b) == 0 && !memcmp(a, b, 16),
       "IPv4-mapped IPv6 is the same client");
    ok(netmask_addr("2001:db8::1", a) == 0 && !netmask_is_v4(a), "IPv6 address");
    ok(netmask_addr("example.org", a) < 0, "a name is not an address");
    ok(netmask_addr("192.0.2.1/24", a) < 0, "a network is not an address");

    struct sockaddr_in sin = { .sin_family = AF_INET };
    inet_pton(AF_INET, "198.51.100.7", &sin.sin_addr);
    netmask_addr("198.51.100.7", b);
    ok(netmask_sockaddr((struct sockaddr *)&sin, a) == 0 && !memcmp(a, b, 16),
       "from a sockaddr_in");
    struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6 };
    inet_pton(AF_INET6, "2001:db8::7", &sin6.sin6_addr);
    netmask_addr("2001:db8::7", b);
    ok(netmask_sockaddr((struct sockaddr *)&sin6, a) == 0 && !memcmp(a, b, 16),
       "from a sockaddr_in6");

    is_int(same_group("2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:ffff", 32, 64), 1,
           "IPv6 /64: one network");
    is_int(same_group("2001:db8:1:2::1", "2001:db8:1:3::1", 32, 64), 0,
           "IPv6 /64: the next /64 is another");
    is_int(same_group("2001:db8:1:2::1", "2001:db8:1:3::1", 32, 48), 1, "IPv6 /48: one");
    is_int(same_group("2001:db8::1", "2001:db8::2", 32, 128), 0, "IPv6 /128: each address");
    is_int(same_group("127.0.0.1", "127.0.0.2", 32, 64), 0, "IPv4 /32: each address");
    is_int(same_group("127.0.0.1", "127.0.0.200", 24, 64), 1, "IPv4 /24: one network");
    is_int(same_group("127.0.0.1", "127.0.1.1", 24, 64), 0, "IPv4 /24: the next is another");
    is_int(same_group("10.1.2.3", "10.200.0.1", 8, 64), 1, "IPv4 /8");
    is_int(same_group("0.0.0.1", "::1", 0, 0), 0, "IPv4 and IPv6 never share a group");

    is_str(fmt("192.0.2.0/24"), "192.0.2.0/24", "IPv4 network");
    is_str(fmt("192.0.2.9"), "192.0.2.9/32", "an IPv4 address is a /32");
    is_str(fmt("::1"), "::1/128", "an IPv6 address is a /128");
    is_str(fmt("2001:db8::/32"), "2001:db8::/32", "IPv6 network");
    is_str(fmt("0.0.0.0/0"), "0.0.0.0/0", "every IPv4 address");
    ok(parse_err("192.0.2.1/24") != NULL, "host bits set: refused (%s)", parse_err("192.0.2.1/24"));
    ok(parse_err("192.0.2.0/33") != NULL, "IPv4 /33: refused");
    ok(parse_err("::/129") != NULL, "IPv6 /129: refused");
    ok(parse_err("10.0.0.0/") != NULL, "empty length: refused");
    ok(parse_err("10.0.0.0/8x") != NULL, "junk after the length: refused");
    ok(parse_err("/8") != NULL, "no address: refused");
    ok(parse_err("mx.example.org") != NULL, "a name: refused");
    {
        struct netmask lax;
        const char *w;
        char buf[64];
        ok(netmask_parse_lax("10.1.2.3/8", &lax, &w) == 0, "lax: host bits taken");
        netmask_format(&lax, buf, sizeof buf);
        is_str(buf, "10.0.0.0/8", "lax: and cleared");
        ok(netmask_parse_lax("10.0.0.0/33", &lax, &w) < 0, "lax: IPv4 /33 still refused");
    }

    struct netmask_list l = { 0 };
    struct netmask m;
    const char *why;
    netmask_parse("127.0.0.0/8", &m, &why);
    netmask_list_add(&l, &m);
    netmask_parse("::1", &m, &why);
    netmask_list_add(&l, &m);
    netmask_addr("127.9.9.9", a);
    ok(netmask_list_match(&l, a), "127.9.9.9 in 127.0.0.0/8");
    netmask_addr("::ffff:127.0.0.1", a);
    ok(netmask_list_match(&l, a), "::ffff:127.0.0.1 in 127.0.0.0/8");
    netmask_addr("::1", a);
    ok(netmask_list_match(&l, a), "::1 in the list");
    netmask_addr("::2", a);
    ok(!netmask_list_match(&l, a), "::2 not");
    netmask_addr("128.0.0.1", a);
    ok(!netmask_list_match(&l, a), "128.0.0.1 not");
    netmask_list_free(&l);
    ok(l.n == 0 && !l.nets, "freed list is empty");
    ok(!netmask_list_match(&l, a), "an empty list matches nothing");
    return done_testing();
}
