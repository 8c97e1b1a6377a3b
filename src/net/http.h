/* http.h — the worker's HTTP listener (libevent evhttp): the graph page
 * and its assets (embedded in the binary, see http_assets.c), /stats.json
 * and /metrics, read from the shared statistics region so that any worker
 * can answer for all of them. With http.token set, /stats.json and
 * /metrics need "Authorization: Bearer TOKEN" (401 without); the page
 * itself holds no data and is always served.
 *
 * The supervisor binds the socket (http_bind) before it forks, like the
 * SMTP listeners, for each generation that changes http.listen (see
 * generation.c); each worker serves it on its event loop (http_start). */
#ifndef KASI_HTTP_H
#define KASI_HTTP_H

#include <stddef.h>

struct event_base;
struct kasi_config;
struct http_server;

/* Bind cfg's http.listen. Returns the listening fd, -1 when none is
 * configured, -2 on error ("http.listen HOST:PORT: why" in err). */
int http_bind(const struct kasi_config *cfg, char *err, size_t errlen);

/* Serve fd on base (logs the page's URL). NULL on error (logged). */
struct http_server *http_start(struct event_base *base, int fd,
                               const struct kasi_config *cfg);
void http_free(struct http_server *h);

/* Constant-time comparison of the Authorization header with the token:
 * 1 when it is exactly "Bearer TOKEN". */
int http_bearer_ok(const char *header, const char *token);

/* The embedded page assets (http_assets.c). */
struct http_asset {
    const char *path;           /* "/", "/app.js" */
    const char *type;           /* Content-Type */
    const char *data;
    const char *end;
};
const struct http_asset *http_asset_find(const char *path);

#endif
