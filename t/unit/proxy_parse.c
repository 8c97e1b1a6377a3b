/* proxy_parse.c — unit tests for the PROXY header parser: version 1 lines
 * (TCP4, TCP6, UNKNOWN and every malformed shape), version 2 blocks
 * (IPv4, IPv6, LOCAL, UNIX, UNSPEC, TLVs with SSL sub-TLVs and a CRC32C),
 * byte-at-a-time arrival (always "more" until the last byte, never a byte
 * past the header), and which versions a listener takes. */
#include "proto/proxy_parse.h"
#include "tap.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>

static enum proxy_rc parse(const char *s, size_t n, unsigned allow, struct proxy_hdr *h,
                           size_t *used, const char **why)
{
    return proxy_parse((const unsigned char *)s, n, allow, h, used, why);
}

/* "ip:port" of a parsed address. */
static const char *addr(const struct sockaddr_storage *ss, char *buf, size_t len)
{
    char ip[64];
    int port;
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const void *)ss;
        inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
        port = ntohs(a->sin6_port);
    } else {
        const struct sockaddr_in *a = (const void *)ss;
        inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
        port = ntohs(a->sin_port);
    }
    snprintf(buf, len, "%s:%d", ip, port);
    return buf;
}

/* Every strict prefix of a valid header is "more"; the whole is "done". */
static void bytewise(const char *s, size_t n, size_t want, const char *name)
{
    struct proxy_hdr h;
    size_t used;
    const char *why;
    int all_more = 1;
    for (size_t i = 0; i < want; i++)
        if (parse(s, i, PROXY_ALLOW_ANY, &h, &used, &why) != PROXY_MORE)
            all_more = 0;
    ok(all_more, "%s: every prefix is incomplete", name);
    enum proxy_rc rc = parse(s, n, PROXY_ALLOW_ANY, &h, &used, &why);
    ok(rc == PROXY_DONE && used == want, "%s: done at %zu bytes (got %zu)", name, want, used);
}

static void test_v1(void)
{
    struct proxy_hdr h;
    size_t used;
    const char *why;
    char a[80], b[80];
    const char *l = "PROXY TCP4 192.0.2.7 198.51.100.1 56324 25\r\nEHLO x\r\n";
    is_int(parse(l, strlen(l), PROXY_ALLOW_V1, &h, &used, &why), PROXY_DONE, "v1 TCP4");
    is_int(used, 44, "v1: used stops at CRLF");
    is_int(h.version, 1, "v1: version");
    is_str(addr(&h.src, a, sizeof a), "192.0.2.7:56324", "v1: source");
    is_str(addr(&h.dst, b, sizeof b), "198.51.100.1:25", "v1: destination");
    ok(!h.local, "v1: names a client");
    bytewise(l, strlen(l), 44, "v1 TCP4");

    l = "PROXY TCP6 2001:db8::7 2001:db8::1 65535 0\r\n";
    is_int(parse(l, strlen(l), PROXY_ALLOW_ANY, &h, &used, &why), PROXY_DONE, "v1 TCP6");
    is_str(addr(&h.src, a, sizeof a), "2001:db8::7:65535", "v1 TCP6 source");
    is_str(addr(&h.dst, b, sizeof b), "2001:db8::1:0", "v1 TCP6 destination");

    l = "PROXY UNKNOWN\r\n";
    ok(parse(l, strlen(l), PROXY_ALLOW_V1, &h, &used, &why) == PROXY_DONE && h.local,
       "v1 UNKNOWN: local");
    l = "PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n";
    ok(parse(l, strlen(l), PROXY_ALLOW_V1, &h, &used, &why) == PROXY_DONE && h.local &&
       used == strlen(l), "v1 UNKNOWN with addresses: ignored");
}

static void test_v1_errors(void)
{
    static const struct { const char *in, *name; } bad[] = {
        { "PROXY TCP4 192.0.2.7  198.51.100.1 1 25\r\n", "two spaces" },
        { "PROXY TCP4 192.0.2.7 198.51.100.1 1 25 \r\n", "trailing space" },
        { "PROXY  TCP4 192.0.2.7 198.51.100.1 1 25\r\n", "space after PROXY" },
        { "PROXY TCP4 192.0.2.7 198.51.100.1 01 25\r\n", "leading zero port" },
        { "PROXY TCP4 192.0.2.7 198.51.100.1 65536 25\r\n", "port over 65535" },
        { "PROXY TCP4 192.0.2.7 198.51.100.1 -1 25\r\n", "negative port" },
        { "PROXY TCP4 192.0.2.300 198.51.100.1 1 25\r\n", "bad IPv4" },
        { "PROXY TCP4 2001:db8::1 198.51.100.1 1 25\r\n", "IPv6 under TCP4" },
        { "PROXY TCP6 192.0.2.7 2001:db8::1 1 25\r\n", "IPv4 under TCP6" },
        { "PROXY UDP4 192.0.2.7 198.51.100.1 1 25\r\n", "unknown protocol" },
        { "PROXY TCP4 192.0.2.7 198.51.100.1 1\r\n", "missing port" },
        { "PROXY TCP4 192.0.2.7 198.51.100.1 1 25 7\r\n", "extra field" },
        { "PROXY TCP4 192.0.2.7 198.51.100.1 1 25\n", "bare LF" },
        { "PROXY TCP4 192.0.2.7\r198.51.100.1 1 25\r\n", "bare CR" },
        { "PROXY TCP4 192.0.2.7 198.51.100.1 1 25\t\r\n", "tab" },
        { "PROXY UNKNOWNX\r\n", "UNKNOWNX" },
        { "proxy TCP4 192.0.2.7 198.51.100.1 1 25\r\n", "lower case" },
        { "EHLO mx.example\r\n", "SMTP instead" },
        { "PROXX", "wrong prefix, short" },
        { "\r\nEHLO x\r\n", "CRLF then SMTP" },
    };
    struct proxy_hdr h;
    size_t used;
    const char *why;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        enum proxy_rc rc = parse(bad[i].in, strlen(bad[i].in), PROXY_ALLOW_ANY, &h, &used, &why);
        ok(rc == PROXY_ERROR && why && *why, "v1 refused: %s (%s)", bad[i].name,
           why ? why : "-");
    }
    char longl[200] = "PROXY TCP4 ";
    memset(longl + 11, '1', 120);
    ok(parse(longl, 106, PROXY_ALLOW_V1, &h, &used, &why) == PROXY_MORE,
       "v1: 106 bytes without CRLF: more");
    ok(parse(longl, 107, PROXY_ALLOW_V1, &h, &used, &why) == PROXY_ERROR,
       "v1: 107 bytes without CRLF: too long");
    const char *l = "PROXY TCP4 192.0.2.7 198.51.100.1 1 25\r";
    ok(parse(l, strlen(l), PROXY_ALLOW_V1, &h, &used, &why) == PROXY_MORE,
       "v1: CR at the end waits for its LF");
    l = "PROXY TCP4 192.0.2.7 198.51.100.1 1 25\r\n";
    ok(parse(l, strlen(l), PROXY_ALLOW_V2, &h, &used, &why) == PROXY_ERROR,
       "v1 on a v2-only listener");
}

/* ---- version 2 */

struct v2 {
    unsigned char b[PROXY_MAX_LEN + 64];
    size_t n;
};

static void v2_start(struct v2 *m, unsigned ver_cmd, unsigned fam)
{
    static const unsigned char sig[12] = { 0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A,
                                           0x51, 0x55, 0x49, 0x54, 0x0A };
    memcpy(m->b, sig, 12);
    m->b[12] = (unsigned char)ver_cmd;
    m->b[13] = (unsigned char)fam;
    m->n = 16;
}

static void v2_put(struct v2 *m, const void *p, size_t n)
{
    memcpy(m->b + m->n, p, n);
    m->n += n;
}

static void v2_tlv(struct v2 *m, unsigned type, const void *v, size_t n)
{
    unsigned char t[3] = { (unsigned char)type, (unsigned char)(n >> 8), (unsigned char)n };
    v2_put(m, t, 3);
    v2_put(m, v, n);
}

static void v2_end(struct v2 *m)
{
    size_t len = m->n - 16;
    m->b[14] = (unsigned char)(len >> 8);
    m->b[15] = (unsigned char)len;
}

/* 192.0.2.7:56324 -> 198.51.100.1:25 */
static void v2_inet(struct v2 *m, unsigned cmd)
{
    static const unsigned char a[12] = { 192, 0, 2, 7, 198, 51, 100, 1, 0xDC, 0x04, 0, 25 };
    v2_start(m, 0x20 | cmd, 0x11);
    v2_put(m, a, sizeof a);
}

static enum proxy_rc v2_parse(const struct v2 *m, struct proxy_hdr *h, size_t *used,
                              const char **why)
{
    return proxy_parse(m->b, m->n, PROXY_ALLOW_V2, h, used, why);
}

static void test_v2(void)
{
    struct v2 m;
    struct proxy_hdr h;
    size_t used;
    const char *why;
    char a[80], b[80];
    v2_inet(&m, 1);
    v2_end(&m);
    is_int(v2_parse(&m, &h, &used, &why), PROXY_DONE, "v2 INET");
    is_int(used, 28, "v2 INET: 28 bytes");
    is_str(addr(&h.src, a, sizeof a), "192.0.2.7:56324", "v2 INET source");
    is_str(addr(&h.dst, b, sizeof b), "198.51.100.1:25", "v2 INET destination");
    ok(h.version == 2 && !h.local, "v2 INET: version 2, a client");
    v2_put(&m, "EHLO x\r\n", 8);
    bytewise((const char *)m.b, m.n, 28, "v2 INET");

    unsigned char a6[36] = { 0x20, 0x01, 0x0d, 0xb8, [15] = 7,
                             0x20, 0x01, 0x0d, 0xb8, [31] = 1, 0x01, 0xBB, 0x00, 0x19 };
    v2_start(&m, 0x21, 0x21);
    v2_put(&m, a6, sizeof a6);
    v2_end(&m);
    is_int(v2_parse(&m, &h, &used, &why), PROXY_DONE, "v2 INET6");
    is_str(addr(&h.src, a, sizeof a), "2001:db8::7:443", "v2 INET6 source");
    is_str(addr(&h.dst, b, sizeof b), "2001:db8::1:25", "v2 INET6 destination");

    v2_inet(&m, 0);             /* LOCAL, with an address block it must ignore */
    v2_end(&m);
    ok(v2_parse(&m, &h, &used, &why) == PROXY_DONE && h.local && used == 28, "v2 LOCAL");
    v2_start(&m, 0x20, 0x00);
    v2_end(&m);
    ok(v2_parse(&m, &h, &used, &why) == PROXY_DONE && h.local && used == 16,
       "v2 LOCAL without a block");
    v2_start(&m, 0x21, 0x00);
    v2_put(&m, "junk", 4);
    v2_end(&m);
    ok(v2_parse(&m, &h, &used, &why) == PROXY_DONE && h.local, "v2 PROXY UNSPEC: local");
    unsigned char un[216] = "/run/client.sock";
    v2_start(&m, 0x21, 0x31);
    v2_put(&m, un, sizeof un);
    v2_end(&m);
    ok(v2_parse(&m, &h, &used, &why) == PROXY_DONE && h.local && used == 232,
       "v2 UNIX stream: local");
}

static void test_v2_tlvs(void)
{
    struct v2 m;
    struct proxy_hdr h;
    size_t used;
    const char *why;
    unsigned char ssl[64] = { 0x01, 0, 0, 0, 0 };
    size_t sn = 5;
    const unsigned char sv[] = { 0x21, 0, 7, 'T', 'L', 'S', 'v', '1', '.', '3' };
    const unsigned char sc[] = { 0x23, 0, 6, 'A', 'E', 'S', '1', '2', '8' };
    memcpy(ssl + sn, sv, sizeof sv);
    sn += sizeof sv;
    memcpy(ssl + sn, sc, sizeof sc);
    sn += sizeof sc;
    v2_inet(&m, 1);
    v2_tlv(&m, 0x01, "smtp", 4);                    /* ALPN: skipped */
    v2_tlv(&m, 0x02, "mx.example\x01", 11);         /* AUTHORITY */
    v2_tlv(&m, 0x05, "abc-123", 7);                 /* UNIQUE_ID */
    v2_tlv(&m, 0x20, ssl, sn);
    v2_tlv(&m, 0x04, "\0\0\0", 3);                  /* NOOP */
    v2_tlv(&m, 0xE0, "custom", 6);
    v2_end(&m);
    is_int(v2_parse(&m, &h, &used, &why), PROXY_DONE, "v2 with TLVs");
    is_int(used, m.n, "v2 with TLVs: whole header used");
    is_str(h.authority, "mx.example?", "authority, unprintable as ?");
    is_str(h.unique_id, "abc-123", "unique id");
    ok(h.ssl, "SSL: client used TLS");
    is_str(h.ssl_version, "TLSv1.3", "SSL version");
    is_str(h.ssl_cipher, "AES128", "SSL cipher");

    /* CRC32C: a right one is checked, a wrong one refused */
    v2_inet(&m, 1);
    v2_tlv(&m, 0x03, "\0\0\0\0", 4);
    v2_end(&m);
    unsigned crc = proxy_crc32c(m.b, m.n);
    m.b[m.n - 4] = (unsigned char)(crc >> 24);
    m.b[m.n - 3] = (unsigned char)(crc >> 16);
    m.b[m.n - 2] = (unsigned char)(crc >> 8);
    m.b[m.n - 1] = (unsigned char)crc;
    ok(v2_parse(&m, &h, &used, &why) == PROXY_DONE && h.crc_checked, "CRC32C checked");
    m.b[20] ^= 1;               /* one bit of the destination address */
    ok(v2_parse(&m, &h, &used, &why) == PROXY_ERROR, "CRC32C mismatch refused (%s)",
       why ? why : "-");
    is_int(proxy_crc32c((const unsigned char *)"123456789", 9), 0xE3069283u,
           "CRC32C check value");
}

static void test_v2_errors(void)
{
    struct v2 m;
    struct proxy_hdr h;
    size_t used;
    const char *why;
    struct { const char *name; unsigned vc, fam; int tlv; size_t cut; } bad[] = {
        { "version 1 nibble", 0x11, 0x11, 0, 0 },
        { "command 2", 0x22, 0x11, 0, 0 },
        { "family 4", 0x21, 0x41, 0, 0 },
        { "transport 3", 0x21, 0x13, 0, 0 },
        { "datagram", 0x21, 0x12, 0, 0 },
        { "IPv6 family with an IPv4 block", 0x21, 0x21, 0, 0 },
        { "TLV overrunning the block", 0x21, 0x11, 1, 0 },
        { "two stray bytes after the block", 0x21, 0x11, 2, 0 },
        { "unique id over 128 bytes", 0x21, 0x11, 3, 0 },
        { "short SSL TLV", 0x21, 0x11, 4, 0 },
        { "CRC32C of 3 bytes", 0x21, 0x11, 5, 0 },
    };
    static const unsigned char a[12] = { 192, 0, 2, 7, 198, 51, 100, 1, 0, 1, 0, 25 };
    unsigned char big[200];
    memset(big, 'x', sizeof big);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        v2_start(&m, bad[i].vc, bad[i].fam);
        v2_put(&m, a, sizeof a);
        if (bad[i].tlv == 1)
            v2_put(&m, "\x02\x00\x09mx", 5);
        if (bad[i].tlv == 2)
            v2_put(&m, "\x02\x00", 2);
        if (bad[i].tlv == 3)
            v2_tlv(&m, 0x05, big, 129);
        if (bad[i].tlv == 4)
            v2_tlv(&m, 0x20, "\x01\0\0", 3);
        if (bad[i].tlv == 5)
            v2_tlv(&m, 0x03, "\0\0\0", 3);
        v2_end(&m);
        ok(v2_parse(&m, &h, &used, &why) == PROXY_ERROR && why,
           "v2 refused: %s (%s)", bad[i].name, why ? why : "-");
    }
    v2_start(&m, 0x21, 0x11);
    m.b[14] = 0x08;             /* 2048 + 16 bytes announced */
    m.b[15] = 0x00;
    ok(proxy_parse(m.b, 16, PROXY_ALLOW_V2, &h, &used, &why) == PROXY_ERROR,
       "v2 longer than kasi takes, refused at the fixed part");
    v2_inet(&m, 1);
    v2_end(&m);
    m.b[3] = 'X';
    ok(v2_parse(&m, &h, &used, &why) == PROXY_ERROR, "v2 signature mismatch");
    v2_inet(&m, 1);
    v2_end(&m);
    ok(proxy_parse(m.b, m.n, PROXY_ALLOW_V1, &h, &used, &why) == PROXY_ERROR,
       "v2 on a v1-only listener");
    ok(proxy_parse(m.b, 0, PROXY_ALLOW_ANY, &h, &used, &why) == PROXY_MORE,
       "nothing yet: more");
}

int main(void)
{
    test_v1();
    test_v1_errors();
    test_v2();
    test_v2_tlvs();
    test_v2_errors();
    return done_testing();
}
