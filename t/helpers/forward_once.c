/* forward_once.c — test driver for the downstream client (smtp_client.h):
 * reads a message file and an envelope from the command line, forwards it
 * (optionally many times, with a number of jobs in flight) and prints the
 * results as "key=value" lines for the tests to check.
 *
 *   forward_once -H host -P port -f from -r rcpt [-r rcpt...] -m file
 *                [-l] [-T 0|1|2] [-a user:pass] [-8] [-u]
 *                [-x addr,name,helo,ident] [-n count] [-c concurrency]
 *                [-p pool_max] [-i pool_idle] [-t timeout] [-k cancel_after]
 *                [-s pause_between]
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "msg/message.h"
#include "msg/msg_store.h"
#include "net/smtp_client.h"

struct run {
    struct event_base *base;
    struct fwd_dest d;
    struct fwd_envelope env;
    struct msg *m;
    int total, started, finished, inflight, conc, ok, printed;
    int codes[600];
    double pause;
    struct event *next_ev;
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void print_result(const struct fwd_result *r)
{
    printf("code=%d\nenh=%s\ntext=%s\nfail=%d\nqueue_id=%s\n", r->code,
           r->enh, r->text ? r->text : "", (int)r->fail,
           r->queue_id ? r->queue_id : "");
    printf("naccepted=%zu\ntls=%d\nreused=%d\n", r->naccepted, r->tls,
           r->reused);
    for (size_t i = 0; i < r->nrcpt; i++)
        printf("rcpt%zu=%d %s %s\n", i, r->rcpt[i].code, r->rcpt[i].enh,
               r->rcpt[i].text ? r->rcpt[i].text : "");
}

static void start_more(struct run *R);

static void done_cb(void *arg, struct fwd_result *r)
{
    struct run *R = arg;
    R->finished++;
    R->inflight--;
    if (r->code >= 0 && r->code < 600)
        R->codes[r->code]++;
    R->ok += r->code == 250;
    if (R->total == 1 || !R->printed) {
        if (R->total > 1)
            printf("first_");
        print_result(r);
        R->printed = 1;
    } else if (R->pause > 0) {
        printf("job%d code=%d reused=%d\n", R->finished, r->code, r->reused);
    }
    if (R->finished == R->total)
        event_base_loopexit(R->base, NULL);
    else
        start_more(R);
}

static void next_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct run *R = arg;
    if (fwd_send(R->base, &R->d, &R->env, R->m, done_cb, R)) {
        R->started++;
        R->inflight++;
    }
}

static void start_more(struct run *R)
{
    if (R->pause > 0) {
        if (R->started < R->total && R->inflight == 0) {
            struct timeval tv = { (time_t)R->pause,
                (suseconds_t)((R->pause - (double)(time_t)R->pause) * 1e6) };
            evtimer_add(R->next_ev, &tv);
        }
        return;
    }
    while (R->started < R->total && R->inflight < R->conc) {
        if (!fwd_send(R->base, &R->d, &R->env, R->m, done_cb, R))
            break;
        R->started++;
        R->inflight++;
    }
}

static struct msg *load(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    struct msg_store *st = msg_store_new(1 << 20, "/tmp");
    char buf[65536];
    size_t n;
    while (st && (n = fread(buf, 1, sizeof buf, f)) > 0)
        if (msg_store_append(st, buf, n) < 0)
            break;
    fclose(f);
    if (!st || msg_store_failed(st))
        return NULL;
    struct msg *m = msg_new(st);
    if (m && msg_parse_headers(m) < 0) {
        msg_free(m);
        return NULL;
    }
    return m;
}

static void cancel_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct fwd_job **jp = arg;
    fwd_cancel(*jp);
    printf("cancelled=1\n");
}

static void split_xf(struct fwd_envelope *e, char *s)
{
    const char **slot[] = { &e->xf_addr, &e->xf_name, &e->xf_helo,
                            &e->xf_ident };
    for (size_t i = 0; i < 4 && s; i++) {
        char *c = strchr(s, ',');
        if (c)
            *c++ = '\0';
        *slot[i] = *s ? s : NULL;
        s = c;
    }
}

int main(int argc, char **argv)
{
    static struct run R;
    const char *rcpt[1000], *file = NULL;
    size_t nrcpt = 0;
    double cancel_after = 0, t = 0;
    int opt;
    signal(SIGPIPE, SIG_IGN);     /* as the server does */
    R.d.host = "127.0.0.1";
    R.d.port = "25";
    R.env.mail_from = "";
    R.env.xf_proto = "ESMTP";
    R.total = R.conc = 1;
    while ((opt = getopt(argc, argv, "H:P:f:r:m:lT:a:8ux:n:c:p:i:t:k:s:")) != -1) {
        switch (opt) {
        case 'H': R.d.host = optarg; break;
        case 'P': R.d.port = optarg; break;
        case 'f': R.env.mail_from = optarg; break;
        case 'r': if (nrcpt < 1000) rcpt[nrcpt++] = optarg; break;
        case 'm': file = optarg; break;
        case 'l': R.d.lmtp = 1; break;
        case 'T': R.d.starttls = (enum fwd_tls)atoi(optarg); break;
        case 'a': {
            char *c = strchr(optarg, ':');
            if (c)
                *c++ = '\0';
            R.d.auth_user = optarg;
            R.d.auth_pass = c ? c : "";
            break;
        }
        case '8': R.env.body = SMTP_BODY_8BITMIME; break;
        case 'u': R.env.smtputf8 = 1; break;
        case 'x': split_xf(&R.env, optarg); break;
        case 'n': R.total = atoi(optarg); break;
        case 'c': R.conc = atoi(optarg); break;
        case 'p': R.d.pool_max = (unsigned)atoi(optarg); break;
        case 'i': R.d.pool_idle = atof(optarg); break;
        case 't': t = atof(optarg); break;
        case 'k': cancel_after = atof(optarg); break;
        case 's': R.pause = atof(optarg); break;
        default: return 2;
        }
    }
    R.d.timeout_connect = R.d.timeout_cmd = R.d.timeout_data = t;
    R.env.rcpt = rcpt;
    R.env.nrcpt = nrcpt;
    if (!file || !(R.m = load(file))) {
        fprintf(stderr, "forward_once: cannot load the message\n");
        return 2;
    }
    R.base = event_base_new();
    R.next_ev = evtimer_new(R.base, next_cb, &R);
    double t0 = now();
    struct fwd_job *first = NULL;
    struct event *cev = NULL;
    if (cancel_after > 0) {
        first = fwd_send(R.base, &R.d, &R.env, R.m, done_cb, &R);
        struct timeval tv = { (time_t)cancel_after,
            (suseconds_t)((cancel_after - (double)(time_t)cancel_after) * 1e6) };
        cev = evtimer_new(R.base, cancel_cb, &first);
        evtimer_add(cev, &tv);
        struct timeval lim = { (time_t)cancel_after + 1, 0 };
        event_base_loopexit(R.base, &lim);
    } else {
        start_more(&R);
    }
    event_base_dispatch(R.base);
    double el = now() - t0;
    if (R.total > 1)
        printf("sent=%d ok=%d elapsed=%.3f rate=%.1f\n", R.finished, R.ok, el,
               el > 0 ? R.finished / el : 0.0);
    unsigned open, idle;
    fwd_pool_stats(&R.d, &open, &idle);
    printf("pool_open=%u pool_idle=%u\n", open, idle);
    fwd_pool_shutdown();
    if (cev)
        event_free(cev);
    event_free(R.next_ev);
    event_base_free(R.base);
    msg_free(R.m);
    return 0;
}
