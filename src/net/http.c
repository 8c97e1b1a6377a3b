/* http.c — the stats HTTP server of a worker (see http.h): routing, the
 * Bearer token check, and the three kinds of answer (an embedded asset,
 * the JSON document, the Prometheus text). Requests are small and
 * answered at once from a snapshot of the shared region; nothing here
 * blocks. */
#include "net/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "core/config.h"
#include "core/fdio.h"
#include "core/log.h"
#include "core/stats.h"
#include "net/stats_render.h"

#define HTTP_TIMEOUT 10         /* seconds for a request to arrive */

struct http_server {
    struct evhttp *http;
    const struct kasi_config *cfg;
};

/* ------------------------------------------------------- binding */

int http_bind(const struct kasi_config *cfg, char *err, size_t errlen)
{
    if (!cfg->http_host)
        return -1;
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV };
    struct addrinfo *res;
    int rc = getaddrinfo(cfg->http_host, cfg->http_port, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "http.listen %s:%s: %s", cfg->http_host, cfg->http_port,
                 gai_strerror(rc));
        return -2;
    }
    int fd = fdio_listen(res, 64);
    if (fd < 0)
        snprintf(err, errlen, "http.listen %s:%s: %s", cfg->http_host, cfg->http_port,
                 strerror(errno));
    freeaddrinfo(res);
    return fd < 0 ? -2 : fd;
}

static void log_url(int fd)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char ip[64] = "?";
    int port = 0;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET6) {
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, ip, sizeof ip);
            port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
        } else {
            inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, ip, sizeof ip);
            port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        }
    }
    log_msg(LOG_LVL_INFO, ss.ss_family == AF_INET6 ? "http: stats page at http://[%s]:%d/"
                                                   : "http: stats page at http://%s:%d/",
            ip, port);
}

/* ------------------------------------------------------- answers */

int http_bearer_ok(const char *header, const char *token)
{
    static const char prefix[] = "Bearer ";
    if (!header || strncmp(header, prefix, sizeof prefix - 1))
        return 0;
    const char *got = header + sizeof prefix - 1;
    size_t gl = strlen(got), tl = strlen(token);
    unsigned char diff = gl != tl;
    for (size_t i = 0; i < tl; i++)
        diff |= (unsigned char)(token[i] ^ (i < gl ? got[i] : 0));
    return diff == 0;
}

static void reply(struct evhttp_request *req, int code, const char *reason,
                  const char *type, struct evbuffer *body)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", type);
    evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
    evhttp_add_header(h, "Cache-Control", "no-store");
    evhttp_send_reply(req, code, reason, body);
}

static void reply_text(struct evhttp_request *req, int code, const char *reason,
                       const char *text)
{
    struct evbuffer *b = evbuffer_new();
    if (b)
        evbuffer_add_printf(b, "%s\n", text);
    reply(req, code, reason, "text/plain; charset=utf-8", b);
    if (b)
        evbuffer_free(b);
}

static void serve_asset(struct evhttp_request *req, const struct http_asset *a)
{
    struct evbuffer *b = evbuffer_new();
    if (!b) {
        evhttp_send_error(req, 500, "Out of memory");
        return;
    }
    evbuffer_add_reference(b, a->data, (size_t)(a->end - a->data), NULL, NULL);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Security-Policy",
                      "default-src 'self'; img-src 'self' data:");
    reply(req, 200, "OK", a->type, b);
    evbuffer_free(b);
}

/* The "range" query parameter, copied into buf ("1h" when absent). */
static const char *query_range(struct evhttp_request *req, char *buf, size_t len)
{
    const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
    const char *q = u ? evhttp_uri_get_query(u) : NULL;
    struct evkeyvalq params;
    snprintf(buf, len, "1h");
    if (!q || evhttp_parse_query_str(q, &params) < 0)
        return buf;
    const char *r = evhttp_find_header(&params, "range");
    if (r)
        snprintf(buf, len, "%s", r);
    evhttp_clear_headers(&params);
    return buf;
}

static void serve_data(struct evhttp_request *req, struct http_server *h, int json)
{
    struct stats_snap *s = stats_snapshot();
    struct evbuffer *b = evbuffer_new();
    char range[16];
    int rc = 0;
    if (!s || !b) {
        reply_text(req, 503, "Service Unavailable", "statistics unavailable");
    } else if (json) {
        rc = stats_render_json(b, s, query_range(req, range, sizeof range),
                               h->cfg->hostname);
        if (rc < 0)
            reply_text(req, 400, "Bad Request", "range must be 1h, 24h or 30d");
        else
            reply(req, 200, "OK", "application/json", b);
    } else {
        stats_render_metrics(b, s);
        reply(req, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", b);
    }
    if (b)
        evbuffer_free(b);
    stats_snap_free(s);
}

static int authorized(struct evhttp_request *req, const struct http_server *h)
{
    if (!h->cfg->http_token)
        return 1;
    const char *auth = evhttp_find_header(evhttp_request_get_input_headers(req),
                                          "Authorization");
    if (http_bearer_ok(auth, h->cfg->http_token))
        return 1;
    evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate",
                      "Bearer realm=\"kasi\"");
    reply_text(req, 401, "Unauthorized", "a Bearer token is required");
    return 0;
}

static void route(struct evhttp_request *req, void *arg)
{
    struct http_server *h = arg;
    const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
    const char *path = u ? evhttp_uri_get_path(u) : NULL;
    if (!path || !*path)
        path = "/";
    const struct http_asset *a = http_asset_find(path);
    if (a) {
        serve_asset(req, a);
        return;
    }
    int json = !strcmp(path, "/stats.json");
    if (!json && strcmp(path, "/metrics")) {
        reply_text(req, 404, "Not Found", "not found");
        return;
    }
    if (authorized(req, h))
        serve_data(req, h, json);
}

struct http_server *http_start(struct event_base *base, int fd,
                               const struct kasi_config *cfg)
{
    struct http_server *h = calloc(1, sizeof *h);
    if (!h || !(h->http = evhttp_new(base))) {
        free(h);
        log_msg(LOG_LVL_ERROR, "http: out of memory");
        return NULL;
    }
    h->cfg = cfg;
    evhttp_set_allowed_methods(h->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
    evhttp_set_timeout(h->http, HTTP_TIMEOUT);
    evhttp_set_max_headers_size(h->http, 16384);
    evhttp_set_max_body_size(h->http, 0);
    evhttp_set_gencb(h->http, route, h);
    if (!evhttp_accept_socket_with_handle(h->http, fd)) {
        log_msg(LOG_LVL_ERROR, "http: cannot serve the listener: %s", strerror(errno));
        http_free(h);
        return NULL;
    }
    log_url(fd);
    return h;
}

void http_free(struct http_server *h)
{
    if (!h)
        return;
    if (h->http)
        evhttp_free(h->http);
    free(h);
}
