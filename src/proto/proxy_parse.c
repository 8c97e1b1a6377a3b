/* proxy_parse.c — the PROXY protocol header, versions 1 (a text line) and
 * 2 (binary, with TLVs), as HAProxy's specification defines them. Strict
 * about structure (exact signature, single spaces, valid addresses and
 * ports without leading zeros, TLVs that fill the block exactly, a CRC32C
 * that matches); lenient about the content of text TLVs (unprintable
 * bytes become '?'). See proxy_parse.h. */
#include "proto/proxy_parse.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#define V1_PREFIX "PROXY "
#define V2_CMD_LOCAL 0x0
#define V2_CMD_PROXY 0x1
#define V2_AF_UNSPEC 0x0
#define V2_AF_INET 0x1
#define V2_AF_INET6 0x2
#define V2_AF_UNIX 0x3
#define V2_TP_UNSPEC 0x0
#define V2_TP_STREAM 0x1
#define V2_TP_DGRAM 0x2
#define V2_ADDR_INET 12
#define V2_ADDR_INET6 36
#define V2_ADDR_UNIX 216

#define TLV_AUTHORITY 0x02
#define TLV_CRC32C 0x03
#define TLV_UNIQUE_ID 0x05
#define TLV_SSL 0x20
#define TLV_SSL_VERSION 0x21
#define TLV_SSL_CIPHER 0x23
#define TLV_UNIQUE_ID_MAX 128
#define SSL_CLIENT_SSL 0x01

static const unsigned char v2_sig[12] = {
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A
};

static enum proxy_rc fail(const char **why, const char *text)
{
    *why = text;
    return PROXY_ERROR;
}

/* ---------------------------------------------------------------- CRC32C */

static unsigned crc32c_update(unsigned crc, const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
    }
    return crc;
}

unsigned proxy_crc32c(const unsigned char *p, size_t n)
{
    return ~crc32c_update(~0u, p, n);
}

/* ---------------------------------------------------------------- common */

/* Copy a text TLV, unprintable bytes as '?', cut to the room in out. */
static void copy_text(char *out, size_t outlen, const unsigned char *p, size_t n)
{
    size_t i = 0;
    for (; i < n && i + 1 < outlen; i++)
        out[i] = p[i] >= 0x20 && p[i] < 0x7f ? (char)p[i] : '?';
    out[i] = '\0';
}

static void set_in4(struct sockaddr_storage *ss, const unsigned char *addr,
                    const unsigned char *port)
{
    struct sockaddr_in *a = (struct sockaddr_in *)ss;
    memset(ss, 0, sizeof *ss);
    a->sin_family = AF_INET;
    memcpy(&a->sin_addr, addr, 4);
    memcpy(&a->sin_port, port, 2);      /* network order on the wire too */
}

static void set_in6(struct sockaddr_storage *ss, const unsigned char *addr,
                    const unsigned char *port)
{
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
    memset(ss, 0, sizeof *ss);
    a->sin6_family = AF_INET6;
    memcpy(&a->sin6_addr, addr, 16);
    memcpy(&a->sin6_port, port, 2);
}

/* ---------------------------------------------------------------- version 1 */

/* The line end of a version 1 header: its length with CRLF, 0 when not
 * there yet, -1 on a byte no header has (*why set). */
static long v1_line_end(const unsigned char *buf, size_t len, const char **why)
{
    size_t n = len < PROXY_V1_MAX ? len : PROXY_V1_MAX;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = buf[i];
        if (c == '\r') {
            if (i + 1 < len && buf[i + 1] != '\n')
                return (*why = "bare CR in a version 1 header"), -1;
            continue;
        }
        if (c == '\n')
            return i > 0 && buf[i - 1] == '\r' ? (long)i + 1
                                               : ((*why = "bare LF in a version 1 header"), -1);
        if (c < 0x20 || c > 0x7e)
            return (*why = "bad character in a version 1 header"), -1;
    }
    if (len >= PROXY_V1_MAX)
        return (*why = "version 1 header longer than 107 bytes"), -1;
    return 0;
}

/* Split "a b c" on single spaces into at most max words: their count, or
 * -1 on an empty word (two spaces, a leading or trailing one) or too many. */
static int v1_words(char *line, char **w, int max)
{
    int n = 0;
    char *p = line;
    for (;;) {
        if (n == max || *p == ' ' || *p == '\0')
            return -1;
        w[n++] = p;
        p += strcspn(p, " ");
        if (*p == '\0')
            return n;
        *p++ = '\0';
    }
}

/* A decimal port, 0..65535, without leading zeros. */
static int v1_port(const char *s, unsigned char out[2])
{
    size_t n = strlen(s);
    unsigned v = 0;
    if (n == 0 || n > 5 || (n > 1 && s[0] == '0'))
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > 65535)
        return -1;
    out[0] = (unsigned char)(v >> 8);
    out[1] = (unsigned char)v;
    return 0;
}

static enum proxy_rc v1_addrs(char **w, int inet6, struct proxy_hdr *h, const char **why)
{
    unsigned char src[16], dst[16], sp[2], dp[2];
    int af = inet6 ? AF_INET6 : AF_INET;
    if (inet_pton(af, w[2], src) != 1 || inet_pton(af, w[3], dst) != 1)
        return fail(why, inet6 ? "bad TCP6 address in a version 1 header"
                               : "bad TCP4 address in a version 1 header");
    if (v1_port(w[4], sp) < 0 || v1_port(w[5], dp) < 0)
        return fail(why, "bad port in a version 1 header");
    if (inet6) {
        set_in6(&h->src, src, sp);
        set_in6(&h->dst, dst, dp);
    } else {
        set_in4(&h->src, src, sp);
        set_in4(&h->dst, dst, dp);
    }
    return PROXY_DONE;
}

/* A whole line, CRLF included: "PROXY TCP4 SRC DST SPORT DPORT". */
static enum proxy_rc v1_line(const unsigned char *buf, size_t n, struct proxy_hdr *h,
                             const char **why)
{
    char line[PROXY_V1_MAX + 1];
    char *w[6];
    memcpy(line, buf, n - 2);
    line[n - 2] = '\0';
    h->version = 1;
    if (!strncmp(line, "PROXY UNKNOWN", 13) && (line[13] == '\0' || line[13] == ' ')) {
        h->local = 1;                   /* the rest of the line is ignored */
        return PROXY_DONE;
    }
    if (v1_words(line, w, 6) != 6)
        return fail(why, "version 1 header is not PROXY TCP4|TCP6 SRC DST SPORT DPORT");
    if (strcmp(w[1], "TCP4") && strcmp(w[1], "TCP6"))
        return fail(why, "unknown protocol in a version 1 header");
    return v1_addrs(w, w[1][3] == '6', h, why);
}

static enum proxy_rc parse_v1(const unsigned char *buf, size_t len, struct proxy_hdr *h,
                              size_t *used, const char **why)
{
    size_t pre = len < 6 ? len : 6;
    if (memcmp(buf, V1_PREFIX, pre) != 0)
        return fail(why, "not a PROXY header");
    long end = v1_line_end(buf, len, why);
    if (end <= 0)
        return end < 0 ? PROXY_ERROR : PROXY_MORE;
    enum proxy_rc rc = v1_line(buf, (size_t)end, h, why);
    if (rc == PROXY_DONE)
        *used = (size_t)end;
    return rc;
}

/* ---------------------------------------------------------------- version 2 */

struct tlv {
    unsigned type;
    const unsigned char *v;
    size_t len;
};

/* The next TLV of p[*off..end): 1, 0 at the end, -1 when it does not fit. */
static int tlv_next(const unsigned char *p, size_t *off, size_t end, struct tlv *t)
{
    if (*off == end)
        return 0;
    if (end - *off < 3)
        return -1;
    t->type = p[*off];
    t->len = (size_t)p[*off + 1] << 8 | p[*off + 2];
    if (t->len > end - *off - 3)
        return -1;
    t->v = p + *off + 3;
    *off += 3 + t->len;
    return 1;
}

static enum proxy_rc tlv_ssl(const struct tlv *t, struct proxy_hdr *h, const char **why)
{
    struct tlv s;
    size_t off = 5;
    int k;
    if (t->len < 5)
        return fail(why, "short SSL TLV");
    h->ssl = t->v[0] & SSL_CLIENT_SSL;
    while ((k = tlv_next(t->v, &off, t->len, &s)) > 0) {
        if (s.type == TLV_SSL_VERSION)
            copy_text(h->ssl_version, sizeof h->ssl_version, s.v, s.len);
        else if (s.type == TLV_SSL_CIPHER)
            copy_text(h->ssl_cipher, sizeof h->ssl_cipher, s.v, s.len);
    }
    return k < 0 ? fail(why, "malformed SSL sub-TLV") : PROXY_DONE;
}

/* CRC32C over the whole header with the checksum's own 4 bytes as zeros. */
static enum proxy_rc tlv_crc(const unsigned char *buf, size_t total, const struct tlv *t,
                             struct proxy_hdr *h, const char **why)
{
    static const unsigned char zero[4];
    if (t->len != 4)
        return fail(why, "CRC32C TLV is not 4 bytes");
    size_t at = (size_t)(t->v - buf);
    unsigned crc = crc32c_update(~0u, buf, at);
    crc = crc32c_update(crc, zero, 4);
    crc = ~crc32c_update(crc, buf + at + 4, total - at - 4);
    unsigned got = (unsigned)t->v[0] << 24 | (unsigned)t->v[1] << 16 |
                   (unsigned)t->v[2] << 8 | t->v[3];
    if (crc != got)
        return fail(why, "CRC32C mismatch");
    h->crc_checked = 1;
    return PROXY_DONE;
}

static enum proxy_rc v2_tlvs(const unsigned char *buf, size_t off, size_t total,
                             struct proxy_hdr *h, const char **why)
{
    struct tlv t;
    int k;
    enum proxy_rc rc = PROXY_DONE;
    while (rc == PROXY_DONE && (k = tlv_next(buf, &off, total, &t)) > 0) {
        if (t.type == TLV_AUTHORITY)
            copy_text(h->authority, sizeof h->authority, t.v, t.len);
        else if (t.type == TLV_UNIQUE_ID && t.len > TLV_UNIQUE_ID_MAX)
            rc = fail(why, "unique ID TLV longer than 128 bytes");
        else if (t.type == TLV_UNIQUE_ID)
            copy_text(h->unique_id, sizeof h->unique_id, t.v, t.len);
        else if (t.type == TLV_SSL)
            rc = tlv_ssl(&t, h, why);
        else if (t.type == TLV_CRC32C)
            rc = tlv_crc(buf, total, &t, h, why);
    }
    if (rc == PROXY_DONE && k < 0)
        rc = fail(why, "malformed TLV");
    return rc;
}

/* The address block of a PROXY command; *off: where the TLVs start. */
static enum proxy_rc v2_addrs(const unsigned char *buf, size_t total, struct proxy_hdr *h,
                              size_t *off, const char **why)
{
    unsigned af = buf[13] >> 4, tp = buf[13] & 0xF;
    size_t alen = total - PROXY_V2_FIXED;
    const unsigned char *a = buf + PROXY_V2_FIXED;
    if (af > V2_AF_UNIX || tp > V2_TP_DGRAM)
        return fail(why, "unknown address family or transport");
    if (tp == V2_TP_DGRAM)
        return fail(why, "datagram transport on a stream listener");
    static const size_t need[] = { 0, V2_ADDR_INET, V2_ADDR_INET6, V2_ADDR_UNIX };
    if (alen < need[af])
        return fail(why, "address block shorter than its family needs");
    *off = PROXY_V2_FIXED + need[af];
    if (af == V2_AF_INET && tp == V2_TP_STREAM) {
        set_in4(&h->src, a, a + 8);
        set_in4(&h->dst, a + 4, a + 10);
    } else if (af == V2_AF_INET6 && tp == V2_TP_STREAM) {
        set_in6(&h->src, a, a + 32);
        set_in6(&h->dst, a + 16, a + 34);
    } else {
        h->local = 1;           /* UNSPEC or a UNIX socket: nothing to use */
    }
    if (af == V2_AF_UNSPEC)
        *off = total;           /* the block means nothing: skip it whole */
    return PROXY_DONE;
}

static enum proxy_rc parse_v2(const unsigned char *buf, size_t len, struct proxy_hdr *h,
                              size_t *used, const char **why)
{
    size_t pre = len < sizeof v2_sig ? len : sizeof v2_sig;
    if (memcmp(buf, v2_sig, pre) != 0)
        return fail(why, "not a PROXY header");
    if (len < PROXY_V2_FIXED)
        return PROXY_MORE;
    if (buf[12] >> 4 != 2)
        return fail(why, "version 2 signature with another version");
    unsigned cmd = buf[12] & 0xF;
    if (cmd > V2_CMD_PROXY)
        return fail(why, "unknown version 2 command");
    size_t total = PROXY_V2_FIXED + ((size_t)buf[14] << 8 | buf[15]);
    if (total > PROXY_MAX_LEN)
        return fail(why, "version 2 header longer than kasi takes (2048 bytes)");
    if (len < total)
        return PROXY_MORE;
    h->version = 2;
    size_t off = total;
    enum proxy_rc rc = PROXY_DONE;
    if (cmd == V2_CMD_LOCAL)
        h->local = 1;           /* a health check: the block is ignored */
    else if ((rc = v2_addrs(buf, total, h, &off, why)) == PROXY_DONE)
        rc = v2_tlvs(buf, off, total, h, why);
    if (rc == PROXY_DONE)
        *used = total;
    return rc;
}

/* ---------------------------------------------------------------- entry */

enum proxy_rc proxy_parse(const unsigned char *buf, size_t len, unsigned allow,
                          struct proxy_hdr *h, size_t *used, const char **why)
{
    memset(h, 0, sizeof *h);
    *used = 0;
    *why = NULL;
    if (len == 0)
        return PROXY_MORE;
    if (buf[0] == 'P') {
        if (!(allow & PROXY_ALLOW_V1))
            return fail(why, "version 1 header on a version 2 listener");
        return parse_v1(buf, len, h, used, why);
    }
    if (buf[0] == v2_sig[0]) {
        if (!(allow & PROXY_ALLOW_V2))
            return fail(why, "version 2 header on a version 1 listener");
        return parse_v2(buf, len, h, used, why);
    }
    return fail(why, "not a PROXY header");
}
