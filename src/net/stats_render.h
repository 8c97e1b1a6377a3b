/* stats_render.h — a statistics snapshot (core/stats.h) as text: the
 * Prometheus exposition format for /metrics and the JSON document behind
 * the graph page and `kasi top` (/stats.json). Pure formatting into an
 * evbuffer; called by http.c for each request. */
#ifndef KASI_STATS_RENDER_H
#define KASI_STATS_RENDER_H

struct evbuffer;
struct stats_snap;

/* Name of an answer index (enum stats_answer): "OK", ..., "error", "timeout". */
const char *stats_answer_name(int a);

void stats_render_metrics(struct evbuffer *out, const struct stats_snap *s);

/* range: "1h", "24h" or "30d" (the history window). host: the server's
 * name. Returns 0, or -1 for an unknown range or no memory. */
int stats_render_json(struct evbuffer *out, const struct stats_snap *s,
                      const char *range, const char *host);

#endif
