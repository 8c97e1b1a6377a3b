/* stats.c — unit tests of the statistics region (core/stats.c, the
 * history in core/stats_hist.c), the JSON reader (core/json.c) and the
 * label rendering of kasi.stats (lua/lua_stats.c). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

#include "core/json.h"
#include "core/stats.h"
#include "core/stats_region.h"
#include "lua/lua_stats.h"
#include "tap.h"

static void test_off(void)
{
    stats_hook_call("x", 0, STATS_OK, 0.001);      /* no region: nothing, no crash */
    stats_message(STATS_ACCEPTED, 10, 0, 0);
    ok(stats_snapshot() == NULL, "no region: no snapshot");
    ok(!stats_enabled(), "no region: disabled");
}

static void test_slots(void)
{
    ok(stats_region_create(2) == 0 && stats_enabled(), "a region with two slots");
    stats_plugin_seen("never_called");
    stats_worker_attach(0);
    stats_hook_call("a", 5, STATS_DENY, 0.000015);
    stats_hook_call("a", 5, STATS_NEXT, 0.003);
    stats_hook_call("a", STATS_HOOK_DENY, STATS_DENY, 0.001);   /* not a rejection */
    stats_message(STATS_ACCEPTED, 1500, 1, 0);
    stats_conn_open();
    pid_t pid = fork();
    if (pid == 0) {                         /* another worker, other slot */
        stats_worker_attach(1);
        stats_hook_call("a", 5, STATS_DENYSOFT, 0.5);
        stats_hook_call("b", 9, STATS_TIMEOUT, 60);
        stats_message(STATS_REJECTED, 0, 0, 1);
        stats_conn_open();
        _exit(0);
    }
    int st;
    waitpid(pid, &st, 0);
    stats_worker_state(1, 0);               /* reaped: its gauges are cleared */
    struct stats_snap *s = stats_snapshot();
    ok(s != NULL, "snapshot");
    int a = stats_snap_plugin(s, "a"), b = stats_snap_plugin(s, "b");
    ok(stats_snap_plugin(s, "never_called") >= 0, "a seen plugin has a row");
    ok(a >= 0 && b >= 0, "plugins from both slots");
    is_int(s->hook[a][5][STATS_DENY] + s->hook[a][5][STATS_DENYSOFT], 2,
           "denials summed over the slots");
    is_int(stats_snap_denials(s, (size_t)a), 2, "the deny hook's answers are not rejections");
    is_int(s->hook[b][9][STATS_TIMEOUT], 1, "a timeout");
    is_int(s->lat[b][STATS_LAT_BUCKETS - 1], 1, "60 s lands in +Inf");
    is_int(s->lat[a][0], 0, "15 us is not under 10 us");
    is_int(s->lat[a][1], 1, "15 us is under 20 us");
    is_int(s->msgs[STATS_ACCEPTED][1][0], 1, "accepted with TLS");
    is_int(s->msgs[STATS_REJECTED][0][1], 1, "rejected with AUTH");
    is_int(s->size[1], 1, "1500 bytes: the 2 KB bucket");
    is_int(s->open, 1, "open connections: the reaped worker's are gone");
    stats_snap_free(s);
}

/* Pages of [p, p + len) in memory (mincore), -1 on error. */
static long resident_pages(const void *p, size_t len)
{
    long pg = sysconf(_SC_PAGESIZE);
    uintptr_t a = ((uintptr_t)p + (uintptr_t)pg - 1) & ~((uintptr_t)pg - 1);
    uintptr_t e = ((uintptr_t)p + len) & ~((uintptr_t)pg - 1);
    if (e <= a)
        return 0;
    size_t n = (e - a) / (size_t)pg;
    unsigned char *v = calloc(n, 1);
    long in = 0;
    if (!v || mincore((void *)a, e - a, v) < 0) {
        free(v);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        in += v[i] & 1;
    free(v);
    return in;
}

static void test_workers(void)
{
    ok(stats_region_create(STATS_MAX_SLOTS + 1) < 0, "no more than STATS_MAX_SLOTS slots");
    ok(stats_region_create(8) == 0, "a region with eight slots");
    stats_worker_state(2, 4242);            /* started, running */
    stats_worker_state(5, 4343);            /* started, then reaped */
    stats_worker_state(5, 0);
    stats_worker_attach(7);                 /* the supervisor's own: no worker */
    stats_workers_configured(2);
    stats_message(STATS_ACCEPTED, 0, 0, 0);
    struct stats_snap *s = stats_snapshot();
    is_int(s->nworkers, 2, "only slots a worker was started in are listed");
    ok(s->workers[0].slot == 2 && s->workers[0].pid == 4242 && s->workers[1].slot == 5 &&
       s->workers[1].pid == 0, "in slot order, with their pids");
    is_int(s->running, 1, "one of them running");
    is_int(s->configured, 2, "two configured");
    is_int(s->msgs[STATS_ACCEPTED][0][0], 1, "the attached slot is summed");
    long in = resident_pages(&stats_r->slot[3], 2 * sizeof stats_r->slot[0]);
    is_int(in, 0, "a snapshot faults in no page of the unused slots");
    stats_snap_free(s);
    stats_region_free();
}

static void test_quantile(void)
{
    uint64_t b[STATS_LAT_BUCKETS] = { 0 };
    ok(stats_quantile(b, 0.5) == 0, "empty: 0");
    b[3] = 100;                             /* all in (50 us, 100 us] */
    double q = stats_quantile(b, 0.5);
    ok(fabs(q - 75e-6) < 1e-9, "p50 interpolated in its bucket (%g)", q);
    b[STATS_LAT_BUCKETS - 1] = 10000;
    ok(stats_quantile(b, 0.99) == stats_lat_bound(STATS_LAT_BUCKETS - 2),
       "+Inf: the last finite bound");
}

static void test_custom(void)
{
    ok(stats_custom("p", "hits", "zone=\"z\"", STATS_COUNTER, 2) == 0, "a counter");
    stats_custom("p", "hits", "zone=\"z\"", STATS_COUNTER, 3);
    stats_custom("p", "score", "", STATS_SUMMARY, 2.5);
    stats_custom("p", "score", "", STATS_SUMMARY, -1);
    int full = 0;
    for (int i = 0; i < STATS_SERIES + 5; i++) {
        char l[32];
        snprintf(l, sizeof l, "n=\"%d\"", i);
        full |= stats_custom("p", "many", l, STATS_COUNTER, 1) < 0;
    }
    ok(full, "the series table fills up and says so");
    struct stats_snap *s = stats_snapshot();
    int seen = 0;
    for (size_t i = 0; i < s->nseries; i++) {
        if (!strcmp(s->series[i].name, "hits"))
            seen += s->series[i].count == 5;
        if (!strcmp(s->series[i].name, "score"))
            seen += s->series[i].count == 2 && s->series[i].sum == 1.5;
    }
    is_int(seen, 2, "counter and summary add up");
    stats_snap_free(s);
}

/* Rows of a history file that count nothing. */
static int zero_rows(const char *path)
{
    FILE *f = fopen(path, "r");
    char line[8192];
    int n = 0;
    while (f && fgets(line, sizeof line, f)) {
        long long t;
        unsigned long long m[4];
        if ((line[0] == 'm' || line[0] == 'h') &&
            sscanf(line + 1, " %lld %llu %llu %llu %llu", &t, &m[0], &m[1], &m[2], &m[3]) == 5 &&
            !(m[0] | m[1] | m[2] | m[3]) && !strchr(line, '='))
            n++;
    }
    if (f)
        fclose(f);
    return n;
}

static void test_history(void)
{
    char path[] = "/tmp/kasi-stats-unit-XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    stats_tick(time(NULL), NULL);
    stats_hook_call("a", 5, STATS_DENY, 0.001);
    stats_message(STATS_ACCEPTED, 0, 0, 0);
    ok(stats_history_save(path) == 0, "history saved");
    struct stats_snap *s = stats_snapshot();
    struct stats_window w;
    ok(stats_window_get(s, "1h", &w) == 0 && w.npoints == 60 && w.step == 60, "1 h window");
    int a = stats_snap_plugin(s, "a");
    uint64_t deny = 0, acc = 0;
    for (size_t i = 0; i < w.npoints; i++) {
        deny += w.points[i].deny[a];
        acc += w.points[i].msgs[STATS_ACCEPTED];
    }
    is_int(deny, 3, "the window holds every rejection of a");
    is_int(acc, 2, "and every accepted message");
    stats_window_free(&w);
    ok(stats_window_get(s, "7y", &w) < 0, "unknown range");
    stats_snap_free(s);
    stats_tick(time(NULL) + 60, NULL);     /* a minute that counts nothing */
    ok(stats_history_save(path) == 0, "history saved again");
    is_int(zero_rows(path), 0, "rows without traffic are not written");
    stats_region_free();

    stats_region_create(1);
    ok(stats_history_load(path) == 0, "history loaded into a new region");
    stats_tick(time(NULL), NULL);
    s = stats_snapshot();
    a = stats_snap_plugin(s, "a");
    ok(stats_window_get(s, "30d", &w) == 0 && w.npoints == 120, "30 d window");
    deny = 0;
    for (size_t i = 0; i < w.npoints; i++)
        deny += a >= 0 ? w.points[i].deny[a] : 0;
    is_int(deny, 3, "the hourly rows came back from the file");
    is_int(s->hook[a][5][STATS_DENY], 0, "counters did not");
    stats_window_free(&w);
    stats_snap_free(s);
    FILE *f = fopen(path, "w");
    fputs("not a stats file\n", f);
    fclose(f);
    ok(stats_history_load(path) < 0, "a foreign file is refused");
    unlink(path);
    stats_region_free();
}

static void test_json(void)
{
    char err[128];
    const char *doc = "{\"a\": [1, -2.5e1, true, null], \"s\": \"x\\u00e9\\ud83d\\ude00\\n\"}";
    struct json *j = json_parse(doc, strlen(doc), err, sizeof err);
    ok(j != NULL, "parse an object");
    const struct json *a = json_get(j, "a");
    ok(a && a->type == JSON_ARR && a->n == 4, "its array");
    ok(json_num(a->items[1], 0) == -25, "a number with an exponent");
    ok(a->items[2]->type == JSON_BOOL && a->items[2]->num == 1, "true");
    is_str(json_str(json_get(j, "s"), NULL), "x\xc3\xa9\xf0\x9f\x98\x80\n",
           "escapes and a surrogate pair");
    json_free(j);
    static const char *const bad[] = {
        "", "{", "[1,]", "{\"a\" 1}", "01", "1.", "\"\\x\"", "\"a\nb\"", "tru",
        "\"\\ud800\"", "[1] 2", "{\"a\":1,}", "-", "1e",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        j = json_parse(bad[i], strlen(bad[i]), err, sizeof err);
        ok(j == NULL, "refused: bad text %zu (%s)", i, err);
        json_free(j);
    }
    char deep[200];
    memset(deep, '[', sizeof deep);
    ok(json_parse(deep, sizeof deep, err, sizeof err) == NULL && strstr(err, "deeply"),
       "nesting is limited");
}

static int render(lua_State *L, const char *code, char *buf, size_t len)
{
    if (luaL_dostring(L, code))
        return -2;
    return lstats_labels(L, lua_gettop(L), buf, len);
}

static void test_labels(void)
{
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    char buf[STATS_LABELS];
    ok(render(L, "return { zone = 'z\"q', b = 2 }", buf, sizeof buf) == 0, "labels");
    is_str(buf, "b=\"2\",zone=\"z\\\"q\"", "sorted and escaped");
    ok(render(L, "return { a = string.rep('x', 300) }", buf, sizeof buf) < 0,
       "too long for the table");
    lua_close(L);
}

int main(void)
{
    test_off();
    test_slots();
    test_quantile();
    test_custom();
    test_history();
    test_workers();
    test_json();
    test_labels();
    return done_testing();
}
