/* stats_render.c — /metrics (Prometheus text format 0.0.4) and
 * /stats.json from a snapshot. Every family gets HELP and TYPE once;
 * counters end in _total, histograms carry cumulative buckets, _sum and
 * _count, so that `promtool check metrics` has nothing to say. */
#include "net/stats_render.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "core/stats.h"
#include "core/version.h"
#include "proto/hooks.h"

static const char *const outcome_names[STATS_OUTCOMES] = {
    "accepted", "rejected", "deferred", "dropped",
};

const char *stats_answer_name(int a)
{
    if (a == STATS_ERROR)
        return "error";
    if (a == STATS_TIMEOUT)
        return "timeout";
    return hook_rc_name((enum hook_rc)a);
}

/* A label value or JSON string body: backslash, quote and newline escaped
 * (JSON also gets the other control characters as \u00XX). */
static void put_escaped(struct evbuffer *out, const char *s, int json)
{
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '\\' || ch == '"')
            evbuffer_add_printf(out, "\\%c", ch);
        else if (ch == '\n')
            evbuffer_add(out, "\\n", 2);
        else if (json && ch < 0x20)
            evbuffer_add_printf(out, "\\u%04x", ch);
        else
            evbuffer_add(out, s, 1);
    }
}

static void head(struct evbuffer *out, const char *name, const char *type,
                 const char *help)
{
    evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name_bucket{labels,le=...} lines, then _sum and _count. labels may be "". */
static void histogram(struct evbuffer *out, const char *name, const char *labels,
                      const uint64_t *b, int nb, double (*bound)(int), double sum)
{
    uint64_t cum = 0;
    const char *sep = labels[0] ? "," : "";
    for (int i = 0; i < nb; i++) {
        cum += b[i];
        if (i < nb - 1)
            evbuffer_add_printf(out, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep,
                                bound(i), (unsigned long long)cum);
        else
            evbuffer_add_printf(out, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels,
                                sep, (unsigned long long)cum);
    }
    const char *o = labels[0] ? "{" : "", *c = labels[0] ? "}" : "";
    evbuffer_add_printf(out, "%s_sum%s%s%s %.9g\n%s_count%s%s%s %llu\n", name, o, labels,
                        c, sum, name, o, labels, c, (unsigned long long)cum);
}

static void plugin_label(char *buf, size_t len, const char *name)
{
    size_t o = 0;
    o += (size_t)snprintf(buf, len, "plugin=\"");
    for (const char *p = name; *p && o + 3 < len; p++) {
        if (*p == '\\' || *p == '"')
            buf[o++] = '\\';
        buf[o++] = *p;
    }
    snprintf(buf + o, len - o, "\"");
}

/* ------------------------------------------------------- /metrics */

static void metrics_hooks(struct evbuffer *out, const struct stats_snap *s)
{
    head(out, "kasi_hook_calls_total", "counter",
         "Plugin hook calls by plugin, hook and answer.");
    for (size_t p = 0; p < s->nplug; p++)
        for (int h = 0; h < STATS_HOOKS; h++)
            for (int a = 0; a < STATS_ANSWERS; a++) {
                if (!s->hook[p][h][a])
                    continue;
                evbuffer_add(out, "kasi_hook_calls_total{plugin=\"", 30);
                put_escaped(out, s->names[p], 0);
                evbuffer_add_printf(out, "\",hook=\"%s\",answer=\"%s\"} %llu\n",
                                    hook_name((enum hook_id)h), stats_answer_name(a),
                                    (unsigned long long)s->hook[p][h][a]);
            }
    head(out, "kasi_plugin_rejections_total", "counter",
         "Deny-class answers (DENY, DENYSOFT, DENYDISCONNECT, DISCONNECT) by plugin.");
    for (size_t p = 0; p < s->nplug; p++) {
        evbuffer_add(out, "kasi_plugin_rejections_total{plugin=\"", 37);
        put_escaped(out, s->names[p], 0);
        evbuffer_add_printf(out, "\"} %llu\n", (unsigned long long)stats_snap_denials(s, p));
    }
    head(out, "kasi_hook_duration_seconds", "histogram",
         "Time plugin hook calls took, by plugin.");
    for (size_t p = 0; p < s->nplug; p++) {
        char lbl[STATS_NAME * 2 + 16];
        plugin_label(lbl, sizeof lbl, s->names[p]);
        histogram(out, "kasi_hook_duration_seconds", lbl, s->lat[p], STATS_LAT_BUCKETS,
                  stats_lat_bound, s->lat_sum[p]);
    }
}

static void outcome_family(struct evbuffer *out, const char *name, const char *help,
                           const uint64_t *v)
{
    head(out, name, "counter", help);
    for (int o = 0; o < STATS_OUTCOMES; o++)
        evbuffer_add_printf(out, "%s{outcome=\"%s\"} %llu\n", name, outcome_names[o],
                            (unsigned long long)v[o]);
}

static void one(struct evbuffer *out, const char *name, const char *type,
                const char *help, double v)
{
    head(out, name, type, help);
    evbuffer_add_printf(out, "%s %.17g\n", name, v);
}

static void metrics_traffic(struct evbuffer *out, const struct stats_snap *s)
{
    static const char *const yn[2] = { "no", "yes" };
    head(out, "kasi_messages_total", "counter",
         "Transactions by outcome, TLS and authentication.");
    for (int o = 0; o < STATS_OUTCOMES; o++)
        for (int i = 0; i < 4; i++)
            evbuffer_add_printf(out, "kasi_messages_total{outcome=\"%s\",tls=\"%s\","
                                "auth=\"%s\"} %llu\n", outcome_names[o], yn[i >> 1],
                                yn[i & 1], (unsigned long long)s->msgs[o][i >> 1][i & 1]);
    outcome_family(out, "kasi_recipients_total", "Recipients decided by the rcpt hook.",
                   s->rcpts);
    outcome_family(out, "kasi_connections_total", "Connections by outcome of the "
                   "connect decision (dropped: closed before it).", s->conns);
    one(out, "kasi_connections_tls_total", "counter", "Connections that used TLS.",
        (double)s->conn_tls);
    one(out, "kasi_connections_auth_total", "counter", "Connections that authenticated.",
        (double)s->conn_auth);
    one(out, "kasi_connections_refused_total", "counter",
        "Connections refused at accept by the connection limits.", (double)s->conn_refused);
    head(out, "kasi_message_size_bytes", "histogram", "Size of received messages.");
    histogram(out, "kasi_message_size_bytes", "", s->size, STATS_SIZE_BUCKETS,
              stats_size_bound, s->size_sum);
    head(out, "kasi_dns_duration_seconds", "histogram", "DNS queries sent to a resolver.");
    histogram(out, "kasi_dns_duration_seconds", "", s->dns, STATS_LAT_BUCKETS,
              stats_lat_bound, s->dns_sum);
    head(out, "kasi_downstream_duration_seconds", "histogram",
         "Downstream (SMTP/LMTP) transactions, from hand-over to the final reply.");
    histogram(out, "kasi_downstream_duration_seconds", "", s->down, STATS_LAT_BUCKETS,
              stats_lat_bound, s->down_sum);
}

static void metrics_process(struct evbuffer *out, const struct stats_snap *s)
{
    uint64_t restarts = 0;
    one(out, "kasi_open_connections", "gauge", "Connections open now.", (double)s->open);
    one(out, "kasi_workers", "gauge", "Worker processes running.", (double)s->running);
    one(out, "kasi_workers_configured", "gauge",
        "Worker processes the live generation runs (workers:).", (double)s->configured);
    for (unsigned w = 0; w < s->nworkers; w++)
        restarts += s->workers[w].restarts;
    one(out, "kasi_worker_restarts_total", "counter",
        "Workers the supervisor started again after one ended.", (double)restarts);
    head(out, "kasi_plugin_generation", "gauge",
         "Live plugin generation of each running worker, by slot.");
    for (unsigned w = 0; w < s->nworkers; w++)
        if (s->workers[w].pid)
            evbuffer_add_printf(out, "kasi_plugin_generation{worker=\"%u\"} %u\n",
                                s->workers[w].slot, s->workers[w].generation);
    head(out, "kasi_reloads_total", "counter", "Plugin reloads (SIGHUP) by result.");
    evbuffer_add_printf(out, "kasi_reloads_total{result=\"ok\"} %llu\n"
                        "kasi_reloads_total{result=\"failed\"} %llu\n",
                        (unsigned long long)s->reloads_ok,
                        (unsigned long long)s->reloads_failed);
    one(out, "kasi_last_reload_timestamp_seconds", "gauge",
        "When the last reload ran (0: none since start).", (double)s->last_reload);
    one(out, "kasi_start_time_seconds", "gauge", "When the statistics began.",
        (double)s->started);
}

/* Plugin-defined series, grouped into families by name and kind. */
static void metrics_custom(struct evbuffer *out, const struct stats_snap *s)
{
    char *done = calloc(s->nseries ? s->nseries : 1, 1);
    if (!done)
        return;
    for (size_t i = 0; i < s->nseries; i++) {
        const struct stats_series *e = &s->series[i];
        if (done[i] || !e->kind)
            continue;
        char fam[STATS_METRIC + 32];
        int ctr = e->kind == STATS_COUNTER;
        snprintf(fam, sizeof fam, "kasi_plugin_%s%s", e->name, ctr ? "_total" : "");
        head(out, fam, ctr ? "counter" : "summary", ctr ? "Plugin-defined counter "
             "(kasi.stats.incr)." : "Plugin-defined observations (kasi.stats.observe).");
        for (size_t j = i; j < s->nseries; j++) {
            const struct stats_series *f = &s->series[j];
            if (done[j] || f->kind != e->kind || strcmp(f->name, e->name))
                continue;
            done[j] = 1;
            char lbl[STATS_NAME * 2 + STATS_LABELS + 16];
            plugin_label(lbl, sizeof lbl, f->plugin);
            if (f->labels[0])
                snprintf(lbl + strlen(lbl), sizeof lbl - strlen(lbl), ",%s", f->labels);
            if (ctr)
                evbuffer_add_printf(out, "%s{%s} %llu\n", fam, lbl,
                                    (unsigned long long)f->count);
            else
                evbuffer_add_printf(out, "%s_sum{%s} %.17g\n%s_count{%s} %llu\n", fam, lbl,
                                    f->sum, fam, lbl, (unsigned long long)f->count);
        }
    }
    free(done);
}

void stats_render_metrics(struct evbuffer *out, const struct stats_snap *s)
{
    metrics_hooks(out, s);
    metrics_traffic(out, s);
    metrics_process(out, s);
    metrics_custom(out, s);
}

/* ------------------------------------------------------- /stats.json */

static void jstr(struct evbuffer *out, const char *s)
{
    evbuffer_add(out, "\"", 1);
    put_escaped(out, s, 1);
    evbuffer_add(out, "\"", 1);
}

static void joutcomes(struct evbuffer *out, const char *key, const uint64_t *v)
{
    evbuffer_add_printf(out, "\"%s\":{", key);
    for (int o = 0; o < STATS_OUTCOMES; o++)
        evbuffer_add_printf(out, "%s\"%s\":%llu", o ? "," : "", outcome_names[o],
                            (unsigned long long)v[o]);
    evbuffer_add(out, "}", 1);
}

static void jlatency(struct evbuffer *out, const char *key, const uint64_t *b, double sum)
{
    uint64_t n = 0;
    for (int i = 0; i < STATS_LAT_BUCKETS; i++)
        n += b[i];
    evbuffer_add_printf(out, ",\"%s\":{\"count\":%llu,\"sum\":%.6f,\"p50\":%.6f,"
                        "\"p99\":%.6f}", key, (unsigned long long)n, sum,
                        stats_quantile(b, 0.5), stats_quantile(b, 0.99));
}

static void json_head(struct evbuffer *out, const struct stats_snap *s, const char *host)
{
    unsigned gen = 0;
    evbuffer_add(out, "{\"version\":", 11);
    jstr(out, KASI_VERSION);
    evbuffer_add(out, ",\"host\":", 8);
    jstr(out, host ? host : "");
    evbuffer_add_printf(out, ",\"now\":%lld,\"started\":%lld,\"workers\":{\"running\":%u,"
                        "\"configured\":%u,\"list\":[", (long long)s->now,
                        (long long)s->started, s->running, s->configured);
    for (unsigned w = 0; w < s->nworkers; w++) {
        const struct stats_worker *k = &s->workers[w];
        if (k->pid && k->generation > gen)
            gen = k->generation;
        evbuffer_add_printf(out, "%s{\"slot\":%u,\"pid\":%d,\"generation\":%u,\"open\":%lld,"
                            "\"restarts\":%llu}", w ? "," : "", k->slot, (int)k->pid,
                            k->generation, (long long)k->open,
                            (unsigned long long)k->restarts);
    }
    evbuffer_add_printf(out, "]},\"generation\":%u,\"last_reload\":%lld,\"reloads\":"
                        "{\"ok\":%llu,\"failed\":%llu},\"open_connections\":%lld,", gen,
                        (long long)s->last_reload, (unsigned long long)s->reloads_ok,
                        (unsigned long long)s->reloads_failed, (long long)s->open);
}

static void json_traffic(struct evbuffer *out, const struct stats_snap *s)
{
    uint64_t msgs[STATS_OUTCOMES], tls = 0, auth = 0, size_n = 0;
    for (int o = 0; o < STATS_OUTCOMES; o++) {
        msgs[o] = s->msgs[o][0][0] + s->msgs[o][0][1] + s->msgs[o][1][0] + s->msgs[o][1][1];
        tls += s->msgs[o][1][0] + s->msgs[o][1][1];
        auth += s->msgs[o][0][1] + s->msgs[o][1][1];
    }
    for (int i = 0; i < STATS_SIZE_BUCKETS; i++)
        size_n += s->size[i];
    joutcomes(out, "messages", msgs);
    evbuffer_add_printf(out, ",\"messages_tls\":%llu,\"messages_auth\":%llu,",
                        (unsigned long long)tls, (unsigned long long)auth);
    joutcomes(out, "recipients", s->rcpts);
    evbuffer_add(out, ",", 1);
    joutcomes(out, "connections", s->conns);
    evbuffer_add_printf(out, ",\"connections_tls\":%llu,\"connections_auth\":%llu,"
                        "\"connections_refused\":%llu,\"message_size\":{\"count\":%llu,"
                        "\"sum\":%.0f}", (unsigned long long)s->conn_tls,
                        (unsigned long long)s->conn_auth,
                        (unsigned long long)s->conn_refused, (unsigned long long)size_n,
                        s->size_sum);
    jlatency(out, "dns", s->dns, s->dns_sum);
    jlatency(out, "downstream", s->down, s->down_sum);
}

static void json_plugin_hooks(struct evbuffer *out, const struct stats_snap *s, size_t p)
{
    int first = 1;
    evbuffer_add(out, ",\"hooks\":{", 10);
    for (int h = 0; h < STATS_HOOKS; h++) {
        uint64_t calls = 0;
        for (int a = 0; a < STATS_ANSWERS; a++)
            calls += s->hook[p][h][a];
        if (!calls)
            continue;
        evbuffer_add_printf(out, "%s\"%s\":{\"calls\":%llu", first ? "" : ",",
                            hook_name((enum hook_id)h), (unsigned long long)calls);
        for (int a = 0; a < STATS_ANSWERS; a++)
            if (s->hook[p][h][a])
                evbuffer_add_printf(out, ",\"%s\":%llu", stats_answer_name(a),
                                    (unsigned long long)s->hook[p][h][a]);
        evbuffer_add(out, "}", 1);
        first = 0;
    }
    evbuffer_add(out, "}", 1);
}

static void json_plugin(struct evbuffer *out, const struct stats_snap *s, size_t p,
                        uint64_t window, uint64_t window_total)
{
    uint64_t calls = 0, ans[STATS_ANSWERS] = { 0 };
    for (int h = 0; h < STATS_HOOKS; h++)
        for (int a = 0; a < STATS_ANSWERS; a++) {
            ans[a] += s->hook[p][h][a];
            calls += s->hook[p][h][a];
        }
    evbuffer_add(out, "{\"name\":", 8);
    jstr(out, s->names[p]);
    evbuffer_add_printf(out, ",\"calls\":%llu,\"rejections\":%llu,\"window_rejections\":"
                        "%llu,\"share\":%.6f,\"errors\":%llu,\"timeouts\":%llu,"
                        "\"p50\":%.6f,\"p99\":%.6f,\"mean\":%.6f,\"answers\":{",
                        (unsigned long long)calls,
                        (unsigned long long)stats_snap_denials(s, p),
                        (unsigned long long)window,
                        window_total ? (double)window / (double)window_total : 0.0,
                        (unsigned long long)ans[STATS_ERROR],
                        (unsigned long long)ans[STATS_TIMEOUT],
                        stats_quantile(s->lat[p], 0.5), stats_quantile(s->lat[p], 0.99),
                        calls ? s->lat_sum[p] / (double)calls : 0.0);
    for (int a = 0; a < STATS_ANSWERS; a++)
        evbuffer_add_printf(out, "%s\"%s\":%llu", a ? "," : "", stats_answer_name(a),
                            (unsigned long long)ans[a]);
    evbuffer_add(out, "}", 1);
    json_plugin_hooks(out, s, p);
    evbuffer_add(out, "}", 1);
}

static const uint64_t *sort_key;

static int by_key_desc(const void *a, const void *b)
{
    uint64_t x = sort_key[*(const size_t *)a], y = sort_key[*(const size_t *)b];
    if (x != y)
        return x < y ? 1 : -1;
    return *(const size_t *)a < *(const size_t *)b ? -1 : 1;
}

/* Plugins ranked by rejections within the window (ties: first loaded). */
static void json_plugins(struct evbuffer *out, const struct stats_snap *s,
                         const struct stats_window *w, uint64_t *win, size_t *order)
{
    uint64_t total = 0;
    for (size_t p = 0; p < s->nplug; p++) {
        win[p] = 0;
        for (size_t i = 0; i < w->npoints; i++)
            win[p] += w->points[i].deny[p];
        total += win[p];
        order[p] = p;
    }
    sort_key = win;
    qsort(order, s->nplug, sizeof *order, by_key_desc);
    evbuffer_add(out, ",\"plugins\":[", 12);
    for (size_t i = 0; i < s->nplug; i++) {
        if (i)
            evbuffer_add(out, ",", 1);
        json_plugin(out, s, order[i], win[order[i]], total);
    }
    evbuffer_add(out, "]", 1);
}

static void json_series(struct evbuffer *out, const struct stats_snap *s,
                        const struct stats_window *w, const char *range)
{
    static const char *const keys[STATS_OUTCOMES] = {
        "accepted", "rejected", "deferred", "dropped" };
    evbuffer_add_printf(out, ",\"range\":\"%s\",\"step\":%d,\"series\":{\"t\":[", range,
                        w->step);
    for (size_t i = 0; i < w->npoints; i++)
        evbuffer_add_printf(out, "%s%lld", i ? "," : "", (long long)w->points[i].t);
    for (int o = 0; o < STATS_OUTCOMES; o++) {
        evbuffer_add_printf(out, "],\"%s\":[", keys[o]);
        for (size_t i = 0; i < w->npoints; i++)
            evbuffer_add_printf(out, "%s%llu", i ? "," : "",
                                (unsigned long long)w->points[i].msgs[o]);
    }
    evbuffer_add(out, "],\"deny\":{", 10);
    for (size_t p = 0; p < s->nplug; p++) {
        evbuffer_add(out, p ? ",\"" : "\"", p ? 2 : 1);
        put_escaped(out, s->names[p], 1);
        evbuffer_add(out, "\":[", 3);
        for (size_t i = 0; i < w->npoints; i++)
            evbuffer_add_printf(out, "%s%llu", i ? "," : "",
                                (unsigned long long)w->points[i].deny[p]);
        evbuffer_add(out, "]", 1);
    }
    evbuffer_add(out, "}}", 2);
}

static void json_custom(struct evbuffer *out, const struct stats_snap *s)
{
    int first = 1;
    evbuffer_add(out, ",\"custom\":[", 11);
    for (size_t i = 0; i < s->nseries; i++) {
        const struct stats_series *e = &s->series[i];
        if (!e->kind)
            continue;
        evbuffer_add(out, first ? "{\"plugin\":" : ",{\"plugin\":", first ? 10 : 11);
        jstr(out, e->plugin);
        evbuffer_add(out, ",\"name\":", 8);
        jstr(out, e->name);
        evbuffer_add(out, ",\"labels\":", 10);
        jstr(out, e->labels);
        evbuffer_add_printf(out, ",\"kind\":\"%s\",\"count\":%llu,\"sum\":%.9g}",
                            e->kind == STATS_COUNTER ? "counter" : "summary",
                            (unsigned long long)e->count, e->sum);
        first = 0;
    }
    evbuffer_add(out, "]", 1);
}

int stats_render_json(struct evbuffer *out, const struct stats_snap *s,
                      const char *range, const char *host)
{
    struct stats_window w;
    if (!range)
        range = "1h";
    if (stats_window_get(s, range, &w) < 0)
        return -1;
    uint64_t *win = calloc(s->nplug + 1, sizeof *win);
    size_t *order = calloc(s->nplug + 1, sizeof *order);
    if (!win || !order) {
        free(win);
        free(order);
        stats_window_free(&w);
        return -1;
    }
    json_head(out, s, host);
    json_traffic(out, s);
    json_plugins(out, s, &w, win, order);
    json_series(out, s, &w, range);
    json_custom(out, s);
    evbuffer_add(out, "}\n", 2);
    free(win);
    free(order);
    stats_window_free(&w);
    return 0;
}
