/* proxy.c — fuzz target for the PROXY header parser (src/proto/proxy_parse.h).
 *
 * Input: one byte of options (which versions the listener takes), then the
 * bytes a balancer might send. Checked: every verdict is one of the three,
 * an error always says why; a complete header is between 15 and
 * PROXY_MAX_LEN bytes, never past the input; the same header alone, or
 * followed by anything, parses to the same result and length; every strict
 * prefix of it is "more" (so the header phase never reads past it and
 * never gives up early); an incomplete input is incomplete at every
 * prefix too; a header that names a client gives both addresses the same
 * family, IPv4 or IPv6; text TLVs come out printable. */
#include "fuzz.h"
#include "proto/proxy_parse.h"

#include <string.h>

static void check_text(const char *s)
{
    for (; *s; s++)
        FUZZ_CHECK(*s >= 0x20 && *s < 0x7f);
}

static void check_done(const struct proxy_hdr *h, size_t used, size_t len)
{
    FUZZ_CHECK(used >= 15 && used <= len && used <= PROXY_MAX_LEN);
    FUZZ_CHECK(h->version == 1 || h->version == 2);
    if (!h->local) {
        int f = h->src.ss_family;
        FUZZ_CHECK(f == AF_INET || f == AF_INET6);
        FUZZ_CHECK(h->dst.ss_family == f);
    }
    check_text(h->authority);
    check_text(h->unique_id);
    check_text(h->ssl_version);
    check_text(h->ssl_cipher);
}

/* Sampled strict prefixes (all of them for short inputs) are "more". */
static void check_prefixes(const uint8_t *p, size_t n, unsigned allow,
                           struct fuzz_rng *rng)
{
    struct proxy_hdr h;
    size_t used;
    const char *why;
    size_t step = n > 64 ? n / 32 : 1;
    for (size_t i = 0; i < n; i += 1 + fuzz_rng_below(rng, step))
        FUZZ_CHECK(proxy_parse(p, i, allow, &h, &used, &why) == PROXY_MORE);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned allow = (data[0] % 3) + 1;         /* v1, v2, any */
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    struct fuzz_rng rng;
    fuzz_rng_seed(&rng, data, size);
    struct proxy_hdr h, h2;
    size_t used, used2;
    const char *why;
    enum proxy_rc rc = proxy_parse(p, n, allow, &h, &used, &why);
    FUZZ_CHECK(rc == PROXY_ERROR || rc == PROXY_MORE || rc == PROXY_DONE);
    if (rc == PROXY_ERROR) {
        FUZZ_CHECK(why && why[0]);
        return 0;
    }
    if (rc == PROXY_MORE) {
        FUZZ_CHECK(n < PROXY_MAX_LEN);
        check_prefixes(p, n, allow, &rng);
        return 0;
    }
    check_done(&h, used, n);
    FUZZ_CHECK(proxy_parse(p, used, allow, &h2, &used2, &why) == PROXY_DONE);
    FUZZ_CHECK(used2 == used && memcmp(&h, &h2, sizeof h) == 0);
    check_prefixes(p, used, allow, &rng);
    FUZZ_CHECK(proxy_parse(p, used, PROXY_ALLOW_ANY, &h2, &used2, &why) == PROXY_DONE);
    return 0;
}
