/* tls.c — server TLS contexts and TLS bufferevents.
 *
 * One SSL_CTX per configured certificate, all with the same protocol and
 * cipher settings. The first is the default: every connection starts on
 * it, and its server-name callback moves the connection to the context
 * whose certificate matches the name the client asked for. A later entry
 * that names the same hosts as an earlier one with another key type (an
 * ECDSA certificate next to an RSA one) joins that entry's context:
 * OpenSSL then picks per handshake the certificate the client's signature
 * algorithms allow, ECDSA first.
 *
 * The contexts of one load form a generation owned by the first context
 * (as ex_data, freed with it). A reload builds a new generation and drops
 * the reference to the old one; connections still using it hold their own
 * references, so they finish on the certificates they started with. */
#include "net/tls.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>

#include "core/config.h"
#include "core/log.h"

/* TLS 1.2: forward secrecy and AEAD only. */
#define TLS_DEFAULT_CIPHERS \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:" \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:" \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

struct tls_gen {
    size_t n;
    SSL_CTX **ctx;      /* ctx[0] owns the generation; ctx[1..] are ours */
    X509 **leaf;        /* each context's certificate (borrowed) */
};

static struct {
    const struct kasi_config *cfg;
    SSL_CTX *cur;       /* the default context of the live generation */
    int ex_idx;         /* ex_data slot of the generation, -1 before use */
} tls_state = { NULL, NULL, -1 };

/* ---------------------------------------------------------- generations */

static void tls_gen_release(struct tls_gen *g, size_t first)
{
    if (!g)
        return;
    for (size_t i = first; i < g->n; i++)
        SSL_CTX_free(g->ctx[i]);
    free(g->ctx);
    free(g->leaf);
    free(g);
}

/* ex_data destructor: the default context is going away. */
static void tls_gen_free_cb(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx,
                            long argl, void *argp)
{
    (void)parent; (void)ad; (void)idx; (void)argl; (void)argp;
    tls_gen_release(ptr, 1);
}

/* Server name indication: switch to the first certificate valid for it. */
static int tls_sni_cb(SSL *ssl, int *alert, void *arg)
{
    const struct tls_gen *g = arg;
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    (void)alert;
    if (!name || !*name)
        return SSL_TLSEXT_ERR_NOACK;
    for (size_t i = 0; i < g->n; i++) {
        if (g->leaf[i] && X509_check_host(g->leaf[i], name, strlen(name), 0, NULL) == 1) {
            if (i > 0 && !SSL_set_SSL_CTX(ssl, g->ctx[i]))
                return SSL_TLSEXT_ERR_NOACK;
            return SSL_TLSEXT_ERR_OK;
        }
    }
    return SSL_TLSEXT_ERR_NOACK;    /* the default certificate, no ack */
}

/* ------------------------------------------------------------- building */

/* "what: why" with the first queued OpenSSL error as why. */
static void tls_fail(char *err, size_t errlen, const char *what, const char *file)
{
    unsigned long e = ERR_get_error();
    const char *why = e ? ERR_reason_error_string(e) : NULL;
    snprintf(err, errlen, "%s%s%s: %s", what, file ? ": " : "", file ? file : "",
             why ? why : "failed");
    ERR_clear_error();
}

static int tls_ctx_params(SSL_CTX *ctx, const struct tls_cfg *t, char *err, size_t errlen)
{
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);   /* idle sessions stay small */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);  /* tickets only */
    if (!SSL_CTX_set_min_proto_version(ctx, t->min_version)) {
        tls_fail(err, errlen, "tls.min_version", NULL);
        return -1;
    }
    if (!SSL_CTX_set_cipher_list(ctx, t->ciphers ? t->ciphers : TLS_DEFAULT_CIPHERS)) {
        tls_fail(err, errlen, "tls.ciphers", t->ciphers);
        return -1;
    }
    if (t->ciphersuites && !SSL_CTX_set_ciphersuites(ctx, t->ciphersuites)) {
        tls_fail(err, errlen, "tls.ciphersuites", t->ciphersuites);
        return -1;
    }
    return 0;
}

static SSL_CTX *tls_ctx_new(const struct tls_cfg *t, size_t i, char *err, size_t errlen)
{
    const struct tls_cert_cfg *cc = &t->certs[i];
    char what[64];
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        tls_fail(err, errlen, "tls", NULL);
        return NULL;
    }
    if (tls_ctx_params(ctx, t, err, errlen) < 0)
        goto fail;
    snprintf(what, sizeof what, "tls.certificates[%zu].cert", i);
    if (SSL_CTX_use_certificate_chain_file(ctx, cc->cert) != 1) {
        tls_fail(err, errlen, what, cc->cert);
        goto fail;
    }
    snprintf(what, sizeof what, "tls.certificates[%zu].key", i);
    if (SSL_CTX_use_PrivateKey_file(ctx, cc->key, SSL_FILETYPE_PEM) != 1) {
        tls_fail(err, errlen, what, cc->key);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        tls_fail(err, errlen, what, cc->key);
        goto fail;
    }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

/* Whether two certificates name the same hosts: equal subject and equal
 * subject alternative names. */
static int tls_same_names(X509 *a, X509 *b)
{
    if (X509_NAME_cmp(X509_get_subject_name(a), X509_get_subject_name(b)) != 0)
        return 0;
    int ia = X509_get_ext_by_NID(a, NID_subject_alt_name, -1);
    int ib = X509_get_ext_by_NID(b, NID_subject_alt_name, -1);
    if (ia < 0 || ib < 0)
        return ia == ib;
    return ASN1_OCTET_STRING_cmp(X509_EXTENSION_get_data(X509_get_ext(a, ia)),
                                 X509_EXTENSION_get_data(X509_get_ext(b, ib))) == 0;
}

static int tls_key_type(X509 *x)
{
    EVP_PKEY *k = X509_get0_pubkey(x);
    return k ? EVP_PKEY_get_base_id(k) : NID_undef;
}

/* The context of an earlier entry that names the same hosts as leaf and
 * has no certificate of leaf's key type yet (so that one listener serves
 * RSA and ECDSA, picked by what the client can verify); NULL when none. */
static SSL_CTX *tls_pair_of(const struct tls_gen *g, X509 *leaf, int **types)
{
    int type = tls_key_type(leaf);
    for (size_t k = 0; k < g->n; k++) {
        if (!tls_same_names(g->leaf[k], leaf))
            continue;
        int has = 0;
        for (int *t = types[k]; *t != NID_undef && !has; t++)
            has = *t == type;
        if (!has)
            return g->ctx[k];
    }
    return NULL;
}

/* Load entry i into ctx as its certificate of another key type. */
static int tls_ctx_add(SSL_CTX *ctx, const struct tls_cfg *t, size_t i, char *err,
                       size_t errlen)
{
    char what[64];
    snprintf(what, sizeof what, "tls.certificates[%zu].cert", i);
    if (SSL_CTX_use_certificate_chain_file(ctx, t->certs[i].cert) != 1) {
        tls_fail(err, errlen, what, t->certs[i].cert);
        return -1;
    }
    snprintf(what, sizeof what, "tls.certificates[%zu].key", i);
    if (SSL_CTX_use_PrivateKey_file(ctx, t->certs[i].key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        tls_fail(err, errlen, what, t->certs[i].key);
        return -1;
    }
    return 0;
}

/* Add entry i: its own context, or a second key type in an earlier one. */
static int tls_gen_add(struct tls_gen *g, const struct tls_cfg *t, size_t i, int **types,
                       char *err, size_t errlen)
{
    SSL_CTX *ctx = tls_ctx_new(t, i, err, errlen);
    if (!ctx)
        return -1;
    X509 *leaf = SSL_CTX_get0_certificate(ctx);
    SSL_CTX *pair = tls_pair_of(g, leaf, types);
    if (pair) {
        size_t k = 0;
        while (g->ctx[k] != pair)
            k++;
        int *tk = types[k];
        while (*tk != NID_undef)
            tk++;
        *tk = tls_key_type(leaf);
        SSL_CTX_free(ctx);
        return tls_ctx_add(pair, t, i, err, errlen);
    }
    g->ctx[g->n] = ctx;
    g->leaf[g->n] = leaf;
    types[g->n][0] = tls_key_type(leaf);
    g->n++;
    return 0;
}

/* A new generation; returns its default context or NULL with err. */
static SSL_CTX *tls_build(const struct tls_cfg *t, char *err, size_t errlen)
{
    struct tls_gen *g = calloc(1, sizeof *g);
    int **types = calloc(t->ncerts, sizeof *types);    /* key types per context */
    if (g) {
        g->ctx = calloc(t->ncerts, sizeof *g->ctx);
        g->leaf = calloc(t->ncerts, sizeof *g->leaf);
    }
    for (size_t i = 0; types && i < t->ncerts; i++)
        if (!(types[i] = calloc(t->ncerts + 1, sizeof **types)))  /* NID_undef is 0 */
            break;
    int rc = g && g->ctx && g->leaf && types && (t->ncerts == 0 || types[t->ncerts - 1]) ? 0 : -1;
    if (rc < 0)
        snprintf(err, errlen, "tls: out of memory");
    for (size_t i = 0; rc == 0 && i < t->ncerts; i++)
        rc = tls_gen_add(g, t, i, types, err, errlen);
    for (size_t i = 0; types && i < t->ncerts; i++)
        free(types[i]);
    free(types);
    if (rc < 0) {
        tls_gen_release(g, 0);
        return NULL;
    }
    SSL_CTX *c0 = g->ctx[0];
    if (!SSL_CTX_set_ex_data(c0, tls_state.ex_idx, g)) {
        tls_fail(err, errlen, "tls", NULL);
        tls_gen_release(g, 0);
        return NULL;
    }
    SSL_CTX_set_tlsext_servername_callback(c0, tls_sni_cb);
    SSL_CTX_set_tlsext_servername_arg(c0, g);
    return c0;
}

/* ---------------------------------------------------------------- API */

int tls_prepare(const struct kasi_config *cfg, struct ssl_ctx_st **out, char *err,
                size_t errlen)
{
    *out = NULL;
    if (cfg->tls.ncerts == 0)
        return 0;
    if (tls_state.ex_idx < 0)
        tls_state.ex_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, tls_gen_free_cb);
    if (tls_state.ex_idx < 0) {
        tls_fail(err, errlen, "tls", NULL);
        return -1;
    }
    *out = tls_build(&cfg->tls, err, errlen);
    return *out ? 0 : -1;
}

void tls_use(const struct kasi_config *cfg, struct ssl_ctx_st *ctx)
{
    if (ctx)
        SSL_CTX_up_ref(ctx);
    SSL_CTX_free(tls_state.cur);
    tls_state.cur = ctx;
    tls_state.cfg = cfg;
}

void tls_drop(struct ssl_ctx_st *ctx)
{
    SSL_CTX_free(ctx);
}

int tls_init(const struct kasi_config *cfg, char *err, size_t errlen)
{
    SSL_CTX *ctx;
    tls_free();
    tls_state.cfg = cfg;
    if (tls_prepare(cfg, &ctx, err, errlen) < 0)
        return -1;
    tls_state.cur = ctx;
    return 0;
}

int tls_reload(void)
{
    char err[1024];
    if (!tls_state.cfg || tls_state.cfg->tls.ncerts == 0)
        return 0;
    SSL_CTX *n = tls_build(&tls_state.cfg->tls, err, sizeof err);
    if (!n) {
        log_msg(LOG_LVL_ERROR, "TLS reload failed, keeping the old certificates: %s",
                err);
        return -1;
    }
    SSL_CTX_free(tls_state.cur);
    tls_state.cur = n;
    log_msg(LOG_LVL_INFO, "TLS certificates reloaded (%zu)", tls_state.cfg->tls.ncerts);
    return 0;
}

/* ------------------------------------------------------- client side */

static SSL_CTX *client_ctx;

static SSL_CTX *client_ctx_get(void)
{
    if (client_ctx)
        return client_ctx;
    client_ctx = SSL_CTX_new(TLS_client_method());
    if (!client_ctx)
        return NULL;
    SSL_CTX_set_default_verify_paths(client_ctx);
    SSL_CTX_set_min_proto_version(client_ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(client_ctx, SSL_MODE_RELEASE_BUFFERS);
    return client_ctx;
}

static int is_ip_literal(const char *host)
{
    unsigned char tmp[16];
    return inet_pton(AF_INET, host, tmp) == 1 || inet_pton(AF_INET6, host, tmp) == 1;
}

SSL *tls_client_new(const char *host, enum tls_verify verify)
{
    SSL_CTX *ctx = client_ctx_get();
    SSL *ssl = ctx ? SSL_new(ctx) : NULL;
    if (!ssl)
        return NULL;
    int name = host && host[0] && host[0] != '/' && !is_ip_literal(host);
    if (name)
        SSL_set_tlsext_host_name(ssl, host);
    SSL_set_verify(ssl, verify == TLS_VERIFY_PEER ? SSL_VERIFY_PEER : SSL_VERIFY_NONE,
                   NULL);
    if (verify == TLS_VERIFY_PEER && host && host[0] != '/' &&
        (name ? SSL_set1_host(ssl, host) : X509_VERIFY_PARAM_set1_ip_asc(
                    SSL_get0_param(ssl), host)) != 1) {
        SSL_free(ssl);
        return NULL;
    }
    return ssl;
}

void tls_free(void)
{
    SSL_CTX_free(tls_state.cur);
    tls_state.cur = NULL;
    SSL_CTX_free(client_ctx);
    client_ctx = NULL;
}

int tls_available(void)
{
    return tls_state.cur != NULL;
}

/* ------------------------------------------------------- bufferevents */

struct bufferevent *tls_wrap_socket(struct event_base *base, int fd)
{
    SSL *ssl = tls_state.cur ? SSL_new(tls_state.cur) : NULL;
    if (!ssl)
        return NULL;
    struct bufferevent *bev = bufferevent_openssl_socket_new(
        base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        SSL_free(ssl);
        return NULL;
    }
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

struct bufferevent *tls_wrap_filter(struct event_base *base, struct bufferevent *under)
{
    SSL *ssl = tls_state.cur ? SSL_new(tls_state.cur) : NULL;
    if (!ssl)
        return NULL;
    struct bufferevent *bev = bufferevent_openssl_filter_new(
        base, under, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        SSL_free(ssl);
        return NULL;
    }
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

/* Write what plain has queued straight to its socket. 1 when all of it
 * went (the usual case: a short reply into an empty socket buffer). */
static int tls_flush_plain(struct bufferevent *plain, evutil_socket_t fd)
{
    struct evbuffer *out = bufferevent_get_output(plain);
    int all = 1;
    evbuffer_unfreeze(out, 1);          /* a bufferevent's output drains only by itself */
    while (all && evbuffer_get_length(out) > 0)
        all = evbuffer_write(out, fd) > 0;
    evbuffer_freeze(out, 1);
    return all && evbuffer_get_length(bufferevent_get_input(plain)) == 0;
}

/* STARTTLS without a filter: once the 220 is in the socket, the plain
 * bufferevent lets go of the descriptor and an OpenSSL socket
 * bufferevent takes it over, so an idle TLS session keeps one set of
 * buffers and events instead of two (and OpenSSL reads the socket itself,
 * with no BIO pair in between). When the reply cannot be written at once,
 * the filter on top of the plain bufferevent does the same job. */
struct bufferevent *tls_wrap_starttls(struct event_base *base, struct bufferevent *plain)
{
    evutil_socket_t fd = bufferevent_getfd(plain);
    if (fd < 0 || !tls_flush_plain(plain, fd)) {
        log_msg(LOG_LVL_DEBUG, "STARTTLS: replies still queued, TLS runs as a filter");
        return tls_wrap_filter(base, plain);
    }
    SSL *ssl = tls_state.cur ? SSL_new(tls_state.cur) : NULL;
    if (!ssl)
        return NULL;
    bufferevent_disable(plain, EV_READ | EV_WRITE);
    bufferevent_setfd(plain, -1);       /* freeing it no longer closes fd */
    struct bufferevent *bev = bufferevent_openssl_socket_new(
        base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        SSL_free(ssl);
        bufferevent_setfd(plain, fd);
        return NULL;
    }
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    bufferevent_free(plain);
    return bev;
}

void tls_info(struct bufferevent *bev, char *version, size_t vlen, char *cipher,
              size_t clen, char *sni, size_t slen)
{
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    const char *name = ssl ? SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name) : NULL;
    snprintf(version, vlen, "%s", ssl ? SSL_get_version(ssl) : "");
    snprintf(cipher, clen, "%s", ssl ? SSL_get_cipher_name(ssl) : "");
    snprintf(sni, slen, "%s", name ? name : "");
    for (char *p = sni; *p; p++)        /* the client's text goes to logs */
        if ((unsigned char)*p < 0x21 || (unsigned char)*p > 0x7e)
            *p = '?';
}

void tls_error_text(struct bufferevent *bev, char *buf, size_t len)
{
    unsigned long e, first = 0;
    while ((e = bufferevent_get_openssl_error(bev)) != 0)
        if (!first)
            first = e;
    buf[0] = '\0';
    if (first)
        ERR_error_string_n(first, buf, len);
}

void tls_close_notify(struct bufferevent *bev)
{
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    if (!ssl || !SSL_is_init_finished(ssl))
        return;
    SSL_shutdown(ssl);          /* queues the alert; the peer's is not awaited */
    ERR_clear_error();
}
