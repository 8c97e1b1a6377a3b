/* tls.h — TLS for the SMTP listeners: the server contexts built from the
 * tls: section (one per certificate, chosen by SNI), their reload on SIGHUP,
 * and the bufferevents that carry a session over TLS (implicit TLS on
 * accept, or STARTTLS on top of the plain connection). Also the one client
 * context of every outgoing TLS connection (the downstream SMTP/LMTP client,
 * kasi.tcp), with the verify policy chosen per connection. */
#ifndef KASI_TLS_H
#define KASI_TLS_H

#include <stddef.h>

struct bufferevent;
struct event_base;
struct kasi_config;

/* Build the contexts from cfg->tls (cfg must outlive the module: reload
 * reads it again). No certificates configured: 0, and TLS is unavailable.
 * Otherwise 0, or -1 with "tls.certificates[N].cert: FILE: why" in err. */
int tls_init(const struct kasi_config *cfg, char *err, size_t errlen);
/* Load the certificate files again. On failure the contexts in use stay
 * (the error is logged) and -1 is returned. Open sessions are unaffected. */
int tls_reload(void);
/* A generation of contexts built from cfg without touching the live ones
 * (the supervisor keeps one per generation and installs it before each
 * fork). *out is NULL when cfg has no certificates. 0, or -1 with err. */
struct ssl_ctx_st;
int tls_prepare(const struct kasi_config *cfg, struct ssl_ctx_st **out, char *err,
                size_t errlen);
/* Make ctx (NULL: TLS off) the live contexts; takes its own reference. */
void tls_use(const struct kasi_config *cfg, struct ssl_ctx_st *ctx);
/* Release a reference from tls_prepare. */
void tls_drop(struct ssl_ctx_st *ctx);
/* Drop the contexts, server and client (sessions still open keep theirs
 * alive). */
void tls_free(void);
/* 1 when contexts are loaded. */
int tls_available(void);

/* A server-side TLS bufferevent on an accepted socket (implicit TLS), or
 * on top of an existing bufferevent (STARTTLS; `under` is freed with it).
 * The handshake starts at once; BEV_EVENT_CONNECTED reports its end.
 * NULL on failure (nothing was taken over). */
struct bufferevent *tls_wrap_socket(struct event_base *base, int fd);
struct bufferevent *tls_wrap_filter(struct event_base *base, struct bufferevent *under);
/* STARTTLS: what `plain` has queued (the 220) is written first; then the
 * socket moves to a new TLS bufferevent and plain is freed (or, when the
 * reply does not fit in the socket now, the filter as above). In both
 * cases the result replaces plain. NULL on failure (plain untouched). */
struct bufferevent *tls_wrap_starttls(struct event_base *base, struct bufferevent *plain);

/* Outgoing TLS. TLS_VERIFY_NONE: encrypt without checking the peer (what
 * MTAs do between hops unless told otherwise, RFC 7435); TLS_VERIFY_PEER:
 * the certificate must chain to the system's trusted CAs and name host. */
enum tls_verify { TLS_VERIFY_NONE = 0, TLS_VERIFY_PEER };

/* A client SSL for a connection to host (a name or a literal address; a
 * name is also sent as SNI). TLS 1.2 or later. NULL on failure. */
struct ssl_st *tls_client_new(const char *host, enum tls_verify verify);

/* After the handshake: protocol ("TLSv1.3"), cipher and the server name the
 * client asked for ("" when none). */
void tls_info(struct bufferevent *bev, char *version, size_t vlen, char *cipher,
              size_t clen, char *sni, size_t slen);
/* Why the TLS layer failed (after BEV_EVENT_ERROR), "" when it did not. */
void tls_error_text(struct bufferevent *bev, char *buf, size_t len);
/* Send close_notify (best effort: into the socket for implicit TLS, into
 * the plain bufferevent's output for STARTTLS). */
void tls_close_notify(struct bufferevent *bev);

#endif
