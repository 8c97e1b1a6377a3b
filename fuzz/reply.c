/* reply.c — fuzz target for the downstream client's reply handling
 * (src/net/smtp_client.h): a hostile or broken downstream MTA.
 *
 * Input: one byte of options (SMTP or LMTP, STARTTLS, AUTH, SMTPUTF8,
 * 8BITMIME, number of recipients), one byte of pacing, then everything the
 * downstream says. A listener on 127.0.0.1 inside this process plays the
 * downstream. Pacing bit 0 clear: it writes the whole input as soon as the
 * client connects and closes its sending side, so the client meets the
 * replies in whatever state it is in (greeting, EHLO capabilities,
 * STARTTLS, AUTH, MAIL, pipelined RCPTs, DATA, the final dot, LMTP's
 * per-recipient replies). Bit 0 set: it answers in turns, the greeting at
 * once and each later reply (up to the next final reply line) only when
 * the client has sent one more line, like a real server; after the last
 * turn it closes its sending side. One fwd_send() per input; the event loop
 * runs until its callback. Checked: the callback comes exactly once and
 * never by timeout (the client must notice the closed connection), the
 * result follows the mapping in smtp_client.h (2xx only as 250, and only
 * when the input holds a 354 and enough final replies for a whole
 * transaction; 4xx only as 451; enhanced codes of the right class), every
 * recipient has a fate of a known class. The line-level helpers
 * (fwd_parse_reply_line, fwd_split_enh, fwd_queue_id) also get every line.
 *
 * Logging goes through a stand-in for core/log.c that formats every
 * record (so bad format arguments still show) and prints nothing. */
#include "fuzz.h"
#include "core/log.h"
#include "msg/message.h"
#include "msg/msg_store.h"
#include "net/smtp_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

/* ---- log stand-in (FUZZ_VERBOSE=1 in the environment prints) */

static int verbose;

void log_setup(const char *target, int level)
{
    (void)target;
    (void)level;
}

int log_enabled(int level)
{
    (void)level;
    return 1;
}

void log_msg(int level, const char *fmt, ...)
{
    char line[2048];
    va_list ap;
    (void)level;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (verbose)
        fprintf(stderr, "log: %s\n", line);
}

/* ---- the fake downstream */

static struct {
    struct event_base *base;
    int lfd;
    char port[8];
    struct msg *m;
    /* this input */
    const uint8_t *bytes;
    size_t nbytes, sent;    /* written so far */
    int lockstep, closed;
    size_t turns, lines;    /* turns written, lines the client sent */
    int peer;               /* the accepted connection, -1 before */
    struct event *peer_ev;
    int calls;
    struct fwd_result res;  /* copied out of the callback */
    char *text, *qid;
} F;

static const char MESSAGE[] =
    "From: a@example.org\r\nTo: b@example.net\r\nSubject: fuzz\r\n\r\n"
    "body\r\n.leading dot\r\n";

static struct msg *make_message(void)
{
    struct msg_store *st = msg_store_new(1 << 20, "/tmp");
    FUZZ_CHECK(st && msg_store_append(st, MESSAGE, sizeof MESSAGE - 1) == 0);
    struct msg *m = msg_new(st);
    FUZZ_CHECK(m && msg_parse_headers(m) == 0);
    return m;
}

static int listen_loopback(char *port, size_t len)
{
    struct sockaddr_in a = { .sin_family = AF_INET };
    socklen_t alen = sizeof a;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    FUZZ_CHECK(fd >= 0);
    FUZZ_CHECK(bind(fd, (struct sockaddr *)&a, sizeof a) == 0);
    FUZZ_CHECK(listen(fd, 16) == 0);
    FUZZ_CHECK(getsockname(fd, (struct sockaddr *)&a, &alen) == 0);
    snprintf(port, len, "%d", ntohs(a.sin_port));
    return fd;
}

/* Is the line at l (len octets, without its LF and CR) a final reply line? */
static int final_line(const uint8_t *l, size_t len)
{
    return len == 3 || (len > 3 && l[3] == ' ');
}

/* Where the turn starting at off ends: after the next final line. */
static size_t turn_end(size_t off)
{
    for (size_t start = off, i = off; i < F.nbytes; i++) {
        if (F.bytes[i] != '\n')
            continue;
        size_t len = i - start;
        if (len && F.bytes[i - 1] == '\r')
            len--;
        if (final_line(F.bytes + start, len))
            return i + 1;
        start = i + 1;
    }
    return F.nbytes;
}

static void write_all(const uint8_t *p, size_t n)
{
    for (size_t off = 0; off < n;) {
        ssize_t w = write(F.peer, p + off, n - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;     /* the client went away first */
        off += (size_t)w;
    }
}

/* Write what is due; after the last byte, half-close: the client sees the
 * end of the connection after the replies. */
static void serve(void)
{
    if (F.closed)
        return;
    while (F.sent < F.nbytes && (!F.lockstep || F.turns <= F.lines)) {
        size_t end = F.lockstep ? turn_end(F.sent) : F.nbytes;
        write_all(F.bytes + F.sent, end - F.sent);
        F.sent = end;
        F.turns++;
    }
    if (F.sent == F.nbytes) {
        shutdown(F.peer, SHUT_WR);
        F.closed = 1;
    }
}

/* What the client sends: count its lines, answer when a turn is due. */
static void on_peer(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    (void)arg;
    char buf[65536];
    ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) {
        if (n == 0 || (errno != EAGAIN && errno != EINTR))
            event_del(F.peer_ev);
        return;
    }
    for (ssize_t i = 0; i < n; i++)
        F.lines += buf[i] == '\n';
    serve();
}

static void on_accept(evutil_socket_t lfd, short what, void *arg)
{
    (void)what;
    (void)arg;
    int fd;
    while ((fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) >= 0) {
        if (F.peer >= 0) {
            close(fd);  /* a second connection gets nothing */
            continue;
        }
        F.peer = fd;
        F.peer_ev = event_new(F.base, fd, EV_READ | EV_PERSIST, on_peer, NULL);
        FUZZ_CHECK(F.peer_ev && event_add(F.peer_ev, NULL) == 0);
        serve();
    }
}

static void on_done(void *arg, struct fwd_result *r)
{
    (void)arg;
    F.calls++;
    F.res = *r;
    F.res.rcpt = malloc((r->nrcpt ? r->nrcpt : 1) * sizeof *r->rcpt);
    FUZZ_CHECK(F.res.rcpt != NULL);
    memcpy(F.res.rcpt, r->rcpt, r->nrcpt * sizeof *r->rcpt);
    F.text = r->text ? strdup(r->text) : NULL;
    F.qid = r->queue_id ? strdup(r->queue_id) : NULL;
    for (size_t i = 0; i < r->nrcpt; i++)
        F.res.rcpt[i].text = NULL;      /* freed with r */
    if (verbose)
        fprintf(stderr, "result: %d %s %s fail=%d accepted=%zu\n", r->code,
                r->enh, r->text ? r->text : "", (int)r->fail, r->naccepted);
    event_base_loopbreak(F.base);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    verbose = getenv("FUZZ_VERBOSE") != NULL;
    F.base = event_base_new();
    FUZZ_CHECK(F.base != NULL);
    F.lfd = listen_loopback(F.port, sizeof F.port);
    struct event *ev = event_new(F.base, F.lfd, EV_READ | EV_PERSIST, on_accept, NULL);
    FUZZ_CHECK(ev && event_add(ev, NULL) == 0);
    F.m = make_message();
    return 0;
}

/* ---- what the input allows the result to be */

struct shape {
    size_t finals;      /* reply lines that end a reply ("250 ..." / "250") */
    int has_354;
};

/* Lines end at LF with an optional CR before it, as the client reads them. */
static struct shape input_shape(const uint8_t *p, size_t n)
{
    struct shape s = { 0, 0 };
    for (size_t start = 0, i = 0; i < n; i++) {
        if (p[i] != '\n')
            continue;
        const uint8_t *l = p + start;
        size_t len = i - start;
        if (len && l[len - 1] == '\r')
            len--;
        if (final_line(l, len)) {
            s.finals++;
            s.has_354 |= !memcmp(l, "354", 3);
        }
        start = i + 1;
    }
    return s;
}

static void check_reply_class(int code, const char *enh)
{
    FUZZ_CHECK(code == 0 || (code >= 200 && code < 600));
    FUZZ_CHECK(!enh[0] || (code && enh[0] == '0' + code / 100 && enh[1] == '.'));
    FUZZ_CHECK(strlen(enh) < 16);
}

static void check_result(size_t nrcpt, const struct shape *s)
{
    const struct fwd_result *r = &F.res;
    FUZZ_CHECK(F.calls == 1);
    FUZZ_CHECK(r->fail != FWD_FAIL_TIMEOUT && r->fail != FWD_FAIL_BUSY);
    FUZZ_CHECK(r->code == 250 || r->code == 451 || (r->code >= 500 && r->code < 600));
    FUZZ_CHECK((r->code == 250) == (r->fail == FWD_OK && r->code / 100 == 2));
    check_reply_class(r->code, r->enh);
    FUZZ_CHECK(r->nrcpt == nrcpt && r->naccepted <= nrcpt);
    if (r->code == 250) {
        /* greeting, EHLO, MAIL, a RCPT, 354, the dot */
        FUZZ_CHECK(s->has_354 && s->finals >= 6 && r->naccepted >= 1);
    }
    for (size_t i = 0; i < r->nrcpt; i++)
        check_reply_class(r->rcpt[i].code, r->rcpt[i].enh);
    if (F.qid)
        FUZZ_CHECK(F.qid[0] && !strpbrk(F.qid, " \r\n"));
}

/* The building blocks on every line, as conn_line meets them. */
static void check_lines(const uint8_t *p, size_t n)
{
    for (size_t start = 0, i = 0; i <= n; i++) {
        if (i < n && p[i] != '\n')
            continue;
        char *line = strndup((const char *)p + start, i - start);
        FUZZ_CHECK(line != NULL);
        int code, more;
        const char *text;
        if (fwd_parse_reply_line(line, &code, &more, &text) == 0) {
            FUZZ_CHECK(code >= 200 && code < 600);
            FUZZ_CHECK(text >= line && text <= line + strlen(line));
            char enh[16];
            const char *rest = fwd_split_enh(text, code, enh);
            FUZZ_CHECK(rest >= text && rest <= text + strlen(text));
            check_reply_class(code, enh);
            char *id = fwd_queue_id(rest);
            FUZZ_CHECK(!id || (id[0] && strstr(line, id)));
            free(id);
        }
        free(line);
        start = i + 1;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    static const char *const rcpts[4] = { "r1@example.net", "r2@example.net",
                                          "r3@example.net", "r4@example.net" };
    uint8_t o = data[0];
    struct fwd_dest d = {
        .host = "127.0.0.1", .port = F.port, .lmtp = o & 1,
        .starttls = (enum fwd_tls)(((o >> 1) & 3) % 3),
        .auth_user = (o & 8) ? "user" : NULL, .auth_pass = (o & 8) ? "pass" : NULL,
        .helo = "fuzz.example", .timeout_connect = 5, .timeout_cmd = 5,
        .timeout_data = 5, .pool_max = 0, .pool_idle = 0,
    };
    size_t nrcpt = 1 + ((o >> 6) & 3);
    struct fwd_envelope env = {
        .mail_from = (o & 16) ? "s\xc3\xa9@example.org" : "s@example.org",
        .rcpt = rcpts, .nrcpt = nrcpt,
        .body = (o & 32) ? SMTP_BODY_8BITMIME : SMTP_BODY_NONE,
        .smtputf8 = (o & 16) != 0,
        .xf_addr = "192.0.2.1", .xf_name = "client.example", .xf_helo = "helo",
        .xf_proto = "ESMTP", .xf_ident = "ID1", .xf_port = 25,
    };
    F.bytes = data + 2;
    F.nbytes = size - 2;
    F.sent = F.turns = F.lines = 0;
    F.closed = 0;
    F.lockstep = data[1] & 1;
    F.peer = -1;
    F.calls = 0;
    FUZZ_CHECK(fwd_send(F.base, &d, &env, F.m, on_done, NULL) != NULL);
    while (F.calls == 0)
        FUZZ_CHECK(event_base_loop(F.base, EVLOOP_ONCE) == 0);
    struct shape s = input_shape(F.bytes, F.nbytes);
    check_result(nrcpt, &s);
    fwd_pool_shutdown();
    if (F.peer >= 0) {
        event_free(F.peer_ev);
        close(F.peer);
    }
    for (int fd; (fd = accept4(F.lfd, NULL, NULL, SOCK_CLOEXEC)) >= 0;)
        close(fd);      /* nothing of this input may reach the next one */
    free(F.res.rcpt);
    free(F.text);
    free(F.qid);
    check_lines(F.bytes, F.nbytes);
    return 0;
}
