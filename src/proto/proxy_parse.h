/* proxy_parse.h — the PROXY protocol header (versions 1 and 2), which a
 * load balancer sends before anything else on a connection to name the
 * client it relays: its address and port, the address it connected to,
 * and (version 2) extra fields in TLVs.
 *
 * Pure: bytes in, a result out; no I/O, no allocation, no globals. The
 * PROXY header phase (smtp/proxyhdr.c) feeds it what has arrived so far and
 * reads no byte past the header, so the SMTP session (or the TLS handshake
 * of an implicit-TLS listener) starts exactly where the header ends. */
#ifndef KASI_PROXY_PARSE_H
#define KASI_PROXY_PARSE_H

#include <stddef.h>
#include <sys/socket.h>

/* Which versions a listener accepts (proxy_protocol: v1 | v2 | any). */
#define PROXY_ALLOW_V1 1u
#define PROXY_ALLOW_V2 2u
#define PROXY_ALLOW_ANY (PROXY_ALLOW_V1 | PROXY_ALLOW_V2)

#define PROXY_V1_MAX 107        /* longest version 1 line, CRLF included */
#define PROXY_V2_FIXED 16       /* signature, command, family, length */
#define PROXY_MAX_LEN 2048      /* longest header kasi takes (v2 with TLVs) */

enum proxy_rc {
    PROXY_ERROR = -1,   /* not a valid header: *why says what is wrong */
    PROXY_MORE = 0,     /* incomplete: every byte so far is header, read on */
    PROXY_DONE = 1      /* complete: *used bytes, the result is filled */
};

/* What a header says. With `local` set (version 2 LOCAL, version 1
 * UNKNOWN, or a family other than TCP over IPv4/IPv6) it names no client:
 * the connection's own addresses stand (a balancer's health check). */
struct proxy_hdr {
    int version;                    /* 1 or 2 */
    int local;
    struct sockaddr_storage src;    /* the client (AF_INET / AF_INET6) */
    struct sockaddr_storage dst;    /* the address the client connected to */
    /* version 2 TLVs kasi understands ("" / 0 when absent) */
    char authority[256];            /* PP2_TYPE_AUTHORITY: the name the client asked for (SNI) */
    char unique_id[129];            /* PP2_TYPE_UNIQUE_ID, as hex */
    int ssl;                        /* PP2_TYPE_SSL: the client spoke TLS to the balancer */
    char ssl_version[32];           /* its PP2_SUBTYPE_SSL_VERSION */
    char ssl_cipher[64];            /* its PP2_SUBTYPE_SSL_CIPHER */
    int crc_checked;                /* a PP2_TYPE_CRC32C was present and matched */
};

/* Parse the header at the start of buf[0..len), taking the versions in
 * allow. PROXY_DONE: *used is the header's length and *h is filled.
 * PROXY_MORE: no verdict yet, and all len bytes belong to the header (the
 * caller may consume them). PROXY_ERROR: *why is a static text for the
 * log. */
enum proxy_rc proxy_parse(const unsigned char *buf, size_t len, unsigned allow,
                          struct proxy_hdr *h, size_t *used, const char **why);

/* The CRC-32C (Castagnoli) of p[0..n), as PP2_TYPE_CRC32C carries it. */
unsigned proxy_crc32c(const unsigned char *p, size_t n);

#endif
