/* dns.c — unit tests of the pure parts of the DNS module: reverse names
 * (in-addr.arpa, ip6.arpa, DNSBL form) and type / status names. */
#include <string.h>

#include "net/dns.h"
#include "tap.h"

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
    return done_testing();
}
