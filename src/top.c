/* top.c — `kasi [-c DIR] top`: the graph page's plugin table in the
 * terminal. Fetches /stats.json from the http.listen of DIR/smtp.yaml
 * (with http.token when set) over a blocking loopback connection, prints
 * the header and the plugins ranked by rejections in the last hour; on a
 * terminal it repeats every 2 s until interrupted. Called by main(). */
#include "top.h"

#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "core/config.h"
#include "core/json.h"

#define TOP_TIMEOUT 5           /* seconds for connect, send and receive */
#define TOP_MAX (16 << 20)      /* the largest answer read */

/* A wildcard listen address is reached on loopback. */
static const char *connect_host(const char *h)
{
    if (!strcmp(h, "0.0.0.0"))
        return "127.0.0.1";
    return !strcmp(h, "::") ? "::1" : h;
}

static int dial(const struct kasi_config *cfg)
{
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV };
    struct addrinfo *res;
    if (getaddrinfo(connect_host(cfg->http_host), cfg->http_port, &hints, &res) != 0)
        return -1;
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct timeval tv = { TOP_TIMEOUT, 0 };
    if (fd >= 0) {
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        if (connect(fd, res->ai_addr, res->ai_addrlen) < 0) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    return fd;
}

/* GET path; the whole answer (HTTP/1.0: until the server closes). */
static char *fetch(const struct kasi_config *cfg, const char *path, size_t *len)
{
    int fd = dial(cfg);
    if (fd < 0)
        return NULL;
    char req[1024];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: %s\r\n%s%s%s\r\n", path,
                     cfg->http_host, cfg->http_token ? "Authorization: Bearer " : "",
                     cfg->http_token ? cfg->http_token : "", cfg->http_token ? "\r\n" : "");
    char *buf = NULL;
    size_t used = 0, cap = 0;
    if (n > 0 && (size_t)n < sizeof req && send(fd, req, (size_t)n, MSG_NOSIGNAL) == n) {
        for (;;) {
            if (used + 4096 + 1 > cap) {
                char *nb = cap < TOP_MAX ? realloc(buf, cap = cap ? cap * 2 : 65536) : NULL;
                if (!nb)
                    break;
                buf = nb;
            }
            ssize_t r = recv(fd, buf + used, cap - used - 1, 0);
            if (r <= 0)
                break;
            used += (size_t)r;
        }
    }
    close(fd);
    if (buf)
        buf[used] = '\0';
    *len = used;
    return buf;
}

/* The body of a 200 answer, or NULL with the status line in why. */
static const char *body_of(const char *resp, char *why, size_t len)
{
    const char *end = strstr(resp, "\r\n\r\n");
    int code = 0;
    if (sscanf(resp, "HTTP/%*d.%*d %d", &code) != 1 || !end)
        code = -1;
    if (code == 200)
        return end + 4;
    const char *eol = strstr(resp, "\r\n");
    snprintf(why, len, "%.*s", eol ? (int)(eol - resp) : 60, resp);
    return NULL;
}

static void fmt_secs(char *buf, size_t len, double s)
{
    if (s < 0.001)
        snprintf(buf, len, "%.0fus", s * 1e6);
    else if (s < 1)
        snprintf(buf, len, "%.1fms", s * 1e3);
    else
        snprintf(buf, len, "%.2fs", s);
}

static void fmt_age(char *buf, size_t len, double secs)
{
    long s = (long)secs;
    if (s >= 86400)
        snprintf(buf, len, "%ldd %ldh", s / 86400, s % 86400 / 3600);
    else if (s >= 3600)
        snprintf(buf, len, "%ldh %ldm", s / 3600, s % 3600 / 60);
    else
        snprintf(buf, len, "%ldm %lds", s / 60, s % 60);
}

static double outcome(const struct json *doc, const char *what, const char *o)
{
    return json_num(json_get(json_get(doc, what), o), 0);
}

/* "2 worker(s)", or "1 of 2 worker(s)" while fewer run than configured. */
static void fmt_workers(char *buf, size_t len, const struct json *doc)
{
    const struct json *w = json_get(doc, "workers");
    double running = json_num(json_get(w, "running"), 0);
    double configured = json_num(json_get(w, "configured"), 0);
    if (configured > 0 && configured != running)
        snprintf(buf, len, "%.0f of %.0f worker(s)", running, configured);
    else
        snprintf(buf, len, "%.0f worker(s)", running);
}

static void print_head(const struct json *doc)
{
    char up[32], reload[64] = "never", workers[64];
    double now = json_num(json_get(doc, "now"), 0);
    double lr = json_num(json_get(doc, "last_reload"), 0);
    fmt_age(up, sizeof up, now - json_num(json_get(doc, "started"), now));
    if (lr > 0) {
        char ago[32];
        fmt_age(ago, sizeof ago, now - lr);
        snprintf(reload, sizeof reload, "%s ago", ago);
    }
    fmt_workers(workers, sizeof workers, doc);
    printf("kasi %s on %s: up %s, %s, generation %.0f, last reload %s, "
           "%.0f open connection(s)\n", json_str(json_get(doc, "version"), "?"),
           json_str(json_get(doc, "host"), "?"), up, workers,
           json_num(json_get(doc, "generation"), 0), reload,
           json_num(json_get(doc, "open_connections"), 0));
    printf("messages: %.0f accepted, %.0f rejected, %.0f deferred, %.0f dropped; "
           "recipients: %.0f accepted, %.0f rejected, %.0f deferred\n\n",
           outcome(doc, "messages", "accepted"), outcome(doc, "messages", "rejected"),
           outcome(doc, "messages", "deferred"), outcome(doc, "messages", "dropped"),
           outcome(doc, "recipients", "accepted"), outcome(doc, "recipients", "rejected"),
           outcome(doc, "recipients", "deferred"));
}

static void print_plugins(const struct json *doc)
{
    const struct json *pl = json_get(doc, "plugins");
    printf("%-28s %10s %12s %7s %9s %9s %8s %8s\n", "plugin", "calls", "rejected(1h)",
           "share", "p50", "p99", "errors", "timeouts");
    for (size_t i = 0; pl && pl->type == JSON_ARR && i < pl->n; i++) {
        const struct json *p = pl->items[i];
        char p50[16], p99[16];
        fmt_secs(p50, sizeof p50, json_num(json_get(p, "p50"), 0));
        fmt_secs(p99, sizeof p99, json_num(json_get(p, "p99"), 0));
        printf("%-28s %10.0f %12.0f %6.1f%% %9s %9s %8.0f %8.0f\n",
               json_str(json_get(p, "name"), "?"), json_num(json_get(p, "calls"), 0),
               json_num(json_get(p, "window_rejections"), 0),
               100 * json_num(json_get(p, "share"), 0), p50, p99,
               json_num(json_get(p, "errors"), 0), json_num(json_get(p, "timeouts"), 0));
    }
}

/* One fetch and print. 0, or 1 with the reason on stderr. */
static int top_once(const struct kasi_config *cfg)
{
    size_t len;
    char why[256] = "", err[128];
    char *resp = fetch(cfg, "/stats.json?range=1h", &len);
    if (!resp) {
        fprintf(stderr, "kasi top: %s:%s: %s\n", cfg->http_host, cfg->http_port,
                strerror(errno ? errno : ECONNREFUSED));
        return 1;
    }
    const char *body = body_of(resp, why, sizeof why);
    struct json *doc = body ? json_parse(body, len - (size_t)(body - resp), err, sizeof err)
                            : NULL;
    if (!doc)
        fprintf(stderr, "kasi top: %s\n", body ? err : why);
    else {
        print_head(doc);
        print_plugins(doc);
        fflush(stdout);
    }
    json_free(doc);
    free(resp);
    return doc ? 0 : 1;
}

static volatile sig_atomic_t top_stop;

static void on_int(int sig)
{
    (void)sig;
    top_stop = 1;
}

int top_main(const struct kasi_config *cfg)
{
    if (!cfg->http_host) {
        fprintf(stderr, "kasi top: no http.listen in %s/smtp.yaml\n", cfg->dir);
        return 1;
    }
    if (!strcmp(cfg->http_port, "0")) {
        fprintf(stderr, "kasi top: http.listen in %s/smtp.yaml has port 0 (any free "
                "port): give it a fixed one\n", cfg->dir);
        return 1;
    }
    if (!isatty(STDOUT_FILENO))
        return top_once(cfg);
    signal(SIGINT, on_int);
    const struct timespec pause = { 2, 0 };
    int rc = 0;
    while (!top_stop && rc == 0) {
        printf("\033[H\033[2J");
        rc = top_once(cfg);
        nanosleep(&pause, NULL);
    }
    return rc;
}
