/* dns.c — unit tests of the pure parts of the DNS module: reverse names
 * (in-addr.arpa, ip6.arpa, DNSBL form), type / status names, and the
 * parsing of wire-format answers into the one shape per record type. */
#include <string.h>

#include "net/dns.h"
#include "tap.h"

/* ---- a tiny DNS response builder: header, one question, answers */

struct wire { unsigned char b[1024]; int n; };

static void put16(struct wire *w, int v) { w->b[w->n++] = (unsigned char)(v >> 8); w->b[w->n++] = (unsigned char)v; }
static void put32(struct wire *w, long v) { put16(w, (int)(v >> 16)); put16(w, (int)(v & 0xffff)); }

static void put_name(struct wire *w, const char *name)
{
    while (*name) {
        const char *dot = strchr(name, '.');
        int len = dot ? (int)(dot - name) : (int)strlen(name);
        w->b[w->n++] = (unsigned char)len;
        memcpy(w->b + w->n, name, (size_t)len);
        w->n += len;
        name += len + (dot ? 1 : 0);
    }
    w->b[w->n++] = 0;
}

static void begin(struct wire *w, const char *qname, int type, int nans, int rcode)
{
    w->n = 0;
    put16(w, 0x1234);                    /* id */
    put16(w, 0x8180 | rcode);            /* response, RD, RA */
    put16(w, 1);
    put16(w, nans);
    put16(w, 0);
    put16(w, 0);
    put_name(w, qname);
    put16(w, type);
    put16(w, 1);
}

/* An answer RR for the question's name (a pointer to offset 12). */
static void rr(struct wire *w, int type, long ttl, const void *rdata, int rdlen)
{
    put16(w, 0xc00c);
    put16(w, type);
    put16(w, 1);
    put32(w, ttl);
    put16(w, rdlen);
    memcpy(w->b + w->n, rdata, (size_t)rdlen);
    w->n += rdlen;
}

static void test_parse(void)
{
    struct wire w;
    struct dns_result r;
    static const unsigned char a1[] = { 192, 0, 2, 1 }, a2[] = { 192, 0, 2, 2 };

    begin(&w, "mx.example", DNS_T_A, 2, 0);
    rr(&w, DNS_T_A, 300, a1, 4);
    rr(&w, DNS_T_A, 60, a2, 4);
    memset(&r, 0, sizeof r);
    dns_parse_answer(DNS_T_A, w.b, w.n, &r);
    is_int(r.status, DNS_OK, "A: ok");
    is_int((long long)r.n, 2, "A: two addresses");
    is_str(r.n > 1 ? r.ans[1].text : NULL, "192.0.2.2", "A: as text");
    is_int(r.ttl, 60, "A: the smallest TTL");
    dns_result_clear(&r);

    unsigned char mx[64];
    struct wire t;
    begin(&w, "example", DNS_T_MX, 2, 0);
    t.n = 0; put16(&t, 20); put_name(&t, "mx2.example"); memcpy(mx, t.b, (size_t)t.n);
    rr(&w, DNS_T_MX, 300, mx, t.n);
    t.n = 0; put16(&t, 10); put_name(&t, "mx1.example"); memcpy(mx, t.b, (size_t)t.n);
    rr(&w, DNS_T_MX, 300, mx, t.n);
    memset(&r, 0, sizeof r);
    dns_parse_answer(DNS_T_MX, w.b, w.n, &r);
    is_int((long long)r.n, 2, "MX: two exchanges");
    is_str(r.n ? r.ans[0].text : NULL, "mx1.example", "MX: sorted by preference");
    is_int(r.n ? r.ans[0].pref : -1, 10, "MX: with its preference");
    dns_result_clear(&r);

    static const unsigned char txt[] = { 3, 'a', 'b', 'c', 2, 'd', 'e' };
    begin(&w, "example", DNS_T_TXT, 1, 0);
    rr(&w, DNS_T_TXT, 300, txt, sizeof txt);
    memset(&r, 0, sizeof r);
    dns_parse_answer(DNS_T_TXT, w.b, w.n, &r);
    is_int((long long)r.n, 1, "TXT: one record");
    is_str(r.n ? r.ans[0].text : NULL, "abcde", "TXT: the strings of a record joined");
    dns_result_clear(&r);

    begin(&w, "none.example", DNS_T_A, 0, 3);
    memset(&r, 0, sizeof r);
    dns_parse_answer(DNS_T_A, w.b, w.n, &r);
    /* c-ares reports NXDOMAIN as the query's status, before any parsing */
    ok(r.status != DNS_OK && r.n == 0, "an NXDOMAIN packet parses to no answers");

    begin(&w, "mx.example", DNS_T_AAAA, 0, 0);
    memset(&r, 0, sizeof r);
    dns_parse_answer(DNS_T_AAAA, w.b, w.n, &r);
    is_int(r.status, DNS_NODATA, "no records of the type: NODATA");

    memset(&r, 0, sizeof r);
    dns_parse_answer(DNS_T_A, w.b, 7, &r);
    ok(r.status != DNS_OK && r.n == 0, "a truncated packet is an error, not an answer");
    dns_result_clear(&r);
}

int main(void)
{
    char out[256];
    is_int(dns_reverse_name("192.0.2.1", NULL, out, sizeof out), 0, "IPv4 ok");
    is_str(out, "1.2.0.192.in-addr.arpa", "IPv4 in-addr.arpa");
    dns_reverse_name("127.0.0.2", "zen.spamhaus.org", out, sizeof out);
    is_str(out, "2.0.0.127.zen.spamhaus.org", "IPv4 DNSBL form");
    dns_reverse_name("2001:db8::567:89ab", "bl.example", out, sizeof out);
    is_str(out, "b.a.9.8.7.6.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.example",
           "IPv6 nibbles (RFC 5782 example)");
    dns_reverse_name("::1", NULL, out, sizeof out);
    is_str(out, "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa",
           "IPv6 ip6.arpa");
    is_int(dns_reverse_name("not an ip", NULL, out, sizeof out), -1, "bad address");
    is_int(dns_reverse_name("::1", NULL, out, 20), -1, "short buffer");
    is_int(dns_reverse_name("1.2.3.4", "x", out, 8), -1, "short buffer v4");
    is_int(dns_type_parse("mx"), DNS_T_MX, "type mx");
    is_int(dns_type_parse("AAAA"), DNS_T_AAAA, "type AAAA");
    is_int(dns_type_parse("SRV"), 0, "unsupported type");
    is_str(dns_type_name(DNS_T_TXT), "TXT", "type name");
    is_str(dns_status_str(DNS_NXDOMAIN), "NXDOMAIN", "status NXDOMAIN");
    is_str(dns_status_str(DNS_TIMEOUT), "timeout", "status timeout");
    test_parse();
    return done_testing();
}
