/* reply.c — unit tests for the reply contract (proto/reply.c): the class
 * follows the answer on every hook, plugin codes and enhanced codes of the
 * wrong class or invalid are replaced, texts are split and bounded on the
 * wire, and the syntax checks of codes and enhanced codes. */
#include "proto/reply.h"
#include "tap.h"

#include <stdlib.h>

static struct hook_result answer(enum hook_rc rc, int code, const char *enh,
                                 const char *msg)
{
    struct hook_result r;
    memset(&r, 0, sizeof r);
    r.rc = rc;
    r.code = code;
    snprintf(r.enh, sizeof r.enh, "%s", enh ? enh : "");
    r.msg = msg ? strdup(msg) : NULL;
    return r;
}

/* reply_check then reply_answer, as the engine and the session do. */
static struct reply decide(enum hook_id h, struct hook_result *r, int *complained)
{
    char why[256];
    struct reply rep;
    *complained = reply_check(h, r, why, sizeof why);
    reply_answer(h, r, &rep);
    return rep;
}

static void test_syntax(void)
{
    ok(reply_code_valid(250) && reply_code_valid(559) && reply_code_valid(421),
       "250, 559, 421 are valid codes");
    ok(!reply_code_valid(999) && !reply_code_valid(199) && !reply_code_valid(260) &&
       !reply_code_valid(0) && !reply_code_valid(-1) && !reply_code_valid(600),
       "999, 199, 260, 0, -1, 600 are not");
    ok(reply_enh_valid("5.7.1", 550) && reply_enh_valid("4.999.123", 451) &&
       reply_enh_valid("2.0.0", 250), "x.y.z with 1-3 digit parts");
    ok(!reply_enh_valid("2.0.0", 550), "class must match the code");
    ok(!reply_enh_valid("9.9.9", 550) && !reply_enh_valid("3.0.0", 354),
       "classes 9 and 3 do not exist");
    ok(!reply_enh_valid("5.1234.1", 550) && !reply_enh_valid("5..1", 550) &&
       !reply_enh_valid("5.1.", 550) && !reply_enh_valid("5.1.1.1", 550) &&
       !reply_enh_valid("5.1.a", 550) && !reply_enh_valid("", 550) &&
       !reply_enh_valid(NULL, 550) && !reply_enh_valid("5.1.1 ", 550),
       "malformed enhanced codes");
}

/* Every hook x answer x custom code: the class follows the answer. */
static void test_classes(void)
{
    static const int codes[] = { 0, 250, 550, 451, 354, 999, -1, 221, 334 };
    static const char *const enhs[] = { "", "2.0.0", "4.3.0", "5.7.1", "9.9.9", "x" };
    int bad = 0, cases = 0;
    for (int h = 0; h < HOOK_COUNT; h++) {
        for (int rc = RC_NEXT; rc <= RC_DISCONNECT + 1; rc++) {
            for (size_t c = 0; c < sizeof codes / sizeof *codes; c++) {
                for (size_t e = 0; e < sizeof enhs / sizeof *enhs; e++) {
                    struct hook_result r = answer((enum hook_rc)rc, codes[c], enhs[e], "t");
                    int complained;
                    struct reply rep = decide((enum hook_id)h, &r, &complained);
                    int cls = rep.code / 100;
                    cases++;
                    if (h == HOOK_QUIT) {       /* QUIT cannot fail: 221 and close */
                        if (rep.code != 221 || rep.action != REPLY_CLOSE)
                            bad++, printf("# quit %d: %d\n", rc, rep.code);
                        hook_result_clear(&r);
                        continue;
                    }
                    if (rep.code && !reply_code_valid(rep.code))
                        bad++, printf("# %s %d: invalid code %d\n", hook_name(h), rc, rep.code);
                    if ((rc == RC_DENY || rc == RC_DENYDISCONNECT) && rep.code && cls != 5 &&
                        h != HOOK_RSET && h != HOOK_RCPT_OK &&
                        h != HOOK_QUEUE_OK)
                        bad++, printf("# %s DENY heard as %d\n", hook_name(h), rep.code);
                    if ((rc == RC_DENYSOFT || rc == RC_DISCONNECT || rc > RC_DISCONNECT) &&
                        rep.action != REPLY_ACCEPT && cls != 4)
                        bad++, printf("# %s rc %d heard as %d\n", hook_name(h), rc, rep.code);
                    if (rep.action == REPLY_ACCEPT && rep.code && cls != 2 &&
                        !(h == HOOK_DATA && rep.code == 354))
                        bad++, printf("# %s accept as %d\n", hook_name(h), rep.code);
                    if (rep.action != REPLY_ACCEPT && cls == 2)
                        bad++, printf("# %s refusal as %d\n", hook_name(h), rep.code);
                    if (rep.code == 354 && (h != HOOK_DATA || rep.action != REPLY_ACCEPT))
                        bad++, printf("# %s: 354 outside accepted DATA\n", hook_name(h));
                    if (rep.enh[0] && !reply_enh_valid(rep.enh, rep.code))
                        bad++, printf("# %s %d: %d %s\n", hook_name(h), rc, rep.code, rep.enh);
                    hook_result_clear(&r);
                }
            }
        }
    }
    is_int(bad, 0, "%d hook/answer/code/enh cases: every reply has the answer's class", cases);
}

static void test_findings(void)
{
    int complained;
    struct hook_result r = answer(RC_DENYSOFT, 250, "4.3.0", "queued");
    struct reply rep = decide(HOOK_QUEUE, &r, &complained);
    is_int(rep.code, 451, "DENYSOFT {code=250} at queue: 451");
    is_str(rep.enh, "4.3.0", "  with its enhanced code");
    ok(complained, "  and a complaint");
    is_int(rep.action, REPLY_REFUSE, "  a refusal");
    hook_result_clear(&r);

    r = answer(RC_DENY, 250, NULL, NULL);
    rep = decide(HOOK_DATA_POST, &r, &complained);
    is_int(rep.code, 550, "DENY {code=250} at data_post: 550");
    hook_result_clear(&r);

    r = answer(RC_DENY, 250, NULL, NULL);
    rep = decide(HOOK_RCPT, &r, &complained);
    is_int(rep.code, 550, "DENY {code=250} at rcpt: 550");
    is_int(rep.action, REPLY_REFUSE, "  refused");
    hook_result_clear(&r);

    r = answer(RC_DENYSOFT, 550, NULL, NULL);
    rep = decide(HOOK_RCPT, &r, &complained);
    is_int(rep.code, 450, "DENYSOFT {code=550} at rcpt: 450");
    hook_result_clear(&r);

    r = answer(RC_DENY, 354, NULL, NULL);
    rep = decide(HOOK_DATA, &r, &complained);
    is_int(rep.code, 554, "DENY {code=354} at data: 554");
    is_int(rep.action, REPLY_REFUSE, "  refused (stays in command mode)");
    hook_result_clear(&r);

    r = answer(RC_DENYSOFT, 354, NULL, NULL);
    rep = decide(HOOK_DATA, &r, &complained);
    is_int(rep.code, 451, "DENYSOFT {code=354} at data: 451");
    hook_result_clear(&r);

    r = answer(RC_OK, 354, NULL, NULL);
    rep = decide(HOOK_DATA, &r, &complained);
    ok(rep.code == 354 && complained, "OK {code=354} at data: 354 (the core's), complained");
    hook_result_clear(&r);

    r = answer(RC_DENY, 550, "2.0.0", NULL);
    rep = decide(HOOK_MAIL, &r, &complained);
    ok(rep.code == 550 && !strcmp(rep.enh, "5.7.1") && complained,
       "DENY 550 2.0.0: 550 5.7.1");
    hook_result_clear(&r);

    r = answer(RC_OK, 550, NULL, NULL);
    rep = decide(HOOK_QUEUE, &r, &complained);
    ok(rep.code == 250 && !strcmp(rep.enh, "2.0.0") && rep.action == REPLY_ACCEPT,
       "OK {code=550} at queue: 250 2.0.0");
    hook_result_clear(&r);

    r = answer(RC_DENY, 551, "5.7.9", "custom");
    rep = decide(HOOK_RCPT, &r, &complained);
    ok(rep.code == 551 && !strcmp(rep.enh, "5.7.9") && !strcmp(rep.text, "custom") &&
       !complained, "DENY 551 5.7.9 custom: kept as given");
    hook_result_clear(&r);

    r = answer(RC_DENYSOFT, 0, "5.7.1", NULL);
    rep = decide(HOOK_RCPT, &r, &complained);
    ok(rep.code == 450 && !strcmp(rep.enh, "4.7.1") && complained,
       "DENYSOFT with enh 5.7.1: 450 4.7.1");
    hook_result_clear(&r);

    r = answer(RC_OK, 0, "5.0.0", "fine");
    rep = decide(HOOK_MAIL, &r, &complained);
    ok(rep.code == 250 && !strcmp(rep.enh, "2.1.0") && !strcmp(rep.text, "fine"),
       "OK with enh 5.0.0 at mail: 250 2.1.0, text kept");
    hook_result_clear(&r);

    r = answer(RC_OK, 252, "2.0.0", "handled");
    rep = decide(HOOK_UNRECOGNIZED, &r, &complained);
    ok(rep.code == 252 && !complained, "OK 252 at unrecognized_command: kept");
    hook_result_clear(&r);
}

static void test_nexts(void)
{
    struct hook_result r = answer(RC_NEXT, 250, "2.0.0", "x");
    struct reply rep;
    reply_answer(HOOK_QUEUE, &r, &rep);
    ok(rep.code == 451 && rep.action == REPLY_REFUSE, "NEXT at queue: 451, refused");
    reply_answer(HOOK_UNRECOGNIZED, &r, &rep);
    ok(rep.code == 500 && rep.action == REPLY_REFUSE, "NEXT at unrecognized_command: 500");
    reply_answer(HOOK_AUTH, &r, &rep);
    ok(rep.code == 535 && rep.action == REPLY_REFUSE, "NEXT at auth: 535");
    reply_answer(HOOK_RCPT, &r, &rep);
    ok(rep.code == 250 && rep.action == REPLY_ACCEPT && !strcmp(rep.text, "Ok"),
       "NEXT at rcpt: 250 Ok (its text unused)");
    reply_answer(HOOK_DATA_POST, &r, &rep);
    ok(rep.code == 0 && rep.action == REPLY_ACCEPT, "NEXT at data_post: go on, no reply");
    hook_result_clear(&r);

    r = answer((enum hook_rc)42, 250, NULL, NULL);
    reply_answer(HOOK_QUEUE, &r, &rep);
    ok(rep.code == 451 && rep.action == REPLY_REFUSE, "an unknown answer at queue: 451");
    reply_answer(HOOK_CONNECT, &r, &rep);
    ok(rep.code == 421 && rep.action == REPLY_CLOSE, "refused at connect: closes");
    r.rc = RC_DENY;
    reply_answer(HOOK_RSET, &r, &rep);
    ok(rep.code == 250 && rep.action == REPLY_ACCEPT, "DENY at rset: RSET still 250");
    reply_answer(HOOK_RCPT_OK, &r, &rep);
    ok(rep.code == 0 && rep.action == REPLY_ACCEPT, "DENY at rcpt_ok: nothing");
    reply_answer(HOOK_QUIT, &r, &rep);
    ok(rep.code == 221 && rep.action == REPLY_CLOSE, "DENY at quit: 221 and close");
    r.rc = RC_DISCONNECT;
    reply_answer(HOOK_QUEUE_OK, &r, &rep);
    ok(rep.code == 421 && rep.action == REPLY_CLOSE, "DISCONNECT at queue_ok: 421, close");
    reply_answer(HOOK_DISCONNECT, &r, &rep);
    ok(rep.code == 0 && rep.action == REPLY_ACCEPT, "the disconnect hook never replies");

    struct hook_result f;
    reply_failure(HOOK_RCPT, 1, &f);
    reply_answer(HOOK_RCPT, &f, &rep);
    ok(rep.code == 451 && !strcmp(rep.enh, "4.4.5"), "a timeout: 451 4.4.5");
    hook_result_clear(&f);
    reply_failure(HOOK_CONNECT, 0, &f);
    reply_answer(HOOK_CONNECT, &f, &rep);
    ok(rep.code == 421 && rep.action == REPLY_CLOSE, "a failure at connect: 421, close");
    hook_result_clear(&f);
}

/* Parse wire output: count lines, check each. Returns the number of lines
 * or -1 when one is malformed. */
static int wire_lines(const char *buf, size_t n, int code, size_t *longest)
{
    int lines = 0;
    char want[4];
    snprintf(want, sizeof want, "%03d", code);
    *longest = 0;
    for (size_t i = 0; i < n;) {
        const char *eol = memchr(buf + i, '\n', n - i);
        if (!eol || eol == buf + i || eol[-1] != '\r')
            return -1;
        size_t len = (size_t)(eol - (buf + i)) + 1;
        if (memcmp(buf + i, want, 3) || memchr(buf + i, '\r', len - 2))
            return -1;
        char sep = buf[i + 3];
        int last = i + len == n;
        if ((last && sep != ' ') || (!last && sep != '-'))
            return -1;
        if (len > *longest)
            *longest = len;
        lines++;
        i += len;
    }
    return lines;
}

static void test_format(void)
{
    char buf[REPLY_WIRE_MAX];
    size_t longest;
    size_t n = reply_format(buf, sizeof buf, 550, "5.7.1", "one");
    buf[n] = '\0';
    is_str(buf, "550 5.7.1 one\r\n", "one line");
    n = reply_format(buf, sizeof buf, 250, "", "mx\nPIPELINING\nSIZE 10");
    buf[n] = '\0';
    is_str(buf, "250-mx\r\n250-PIPELINING\r\n250 SIZE 10\r\n", "multi-line without enh");
    n = reply_format(buf, sizeof buf, 550, "5.7.1", "a\r\nb\rc\nd\r\n\r\n");
    buf[n] = '\0';
    is_str(buf, "550-5.7.1 a\r\n550-5.7.1 b\r\n550-5.7.1 c\r\n550 5.7.1 d\r\n",
           "CRLF, CR and LF all end lines; trailing ones dropped");
    n = reply_format(buf, sizeof buf, 550, "5.7.1", "x\r\n250 2.0.0 forged\r\nRSET");
    is_int(wire_lines(buf, n, 550, &longest), 3, "an injected reply line stays a 550 line");
    n = reply_format(buf, sizeof buf, 451, "4.3.0", "tab\there\x01\x7f");
    buf[n] = '\0';
    is_str(buf, "451 4.3.0 tab here  \r\n", "control bytes become spaces");
    n = reply_format(buf, sizeof buf, 250, "2.1.0", "");
    buf[n] = '\0';
    is_str(buf, "250 2.1.0 \r\n", "empty text");
    n = reply_format(buf, sizeof buf, 250, NULL, NULL);
    buf[n] = '\0';
    is_str(buf, "250 \r\n", "no enh, no text");

    char *big = malloc(10241);
    memset(big, 'x', 10240);
    big[10240] = '\0';
    n = reply_format(buf, sizeof buf, 550, "5.7.1", big);
    ok(wire_lines(buf, n, 550, &longest) == 1 && longest <= REPLY_LINE_MAX,
       "a 10 KB line is cut to one line of %zu bytes", longest);
    for (int i = 0; i < 10240; i += 10)
        big[i] = '\n';
    n = reply_format(buf, sizeof buf, 550, "5.7.1", big);
    is_int(wire_lines(buf, n, 550, &longest), REPLY_LINES_MAX,
           "1024 lines: %d sent", REPLY_LINES_MAX);
    /* a cut never splits a UTF-8 sequence */
    for (int i = 0; i + 1 < 10240; i += 2) {
        big[i] = (char)0xc3;
        big[i + 1] = (char)0xa9;
    }
    n = reply_format(buf, sizeof buf, 550, "5.7.1", big);
    ok(n >= 3 && (unsigned char)buf[n - 3] == 0xa9, "cut on a UTF-8 boundary");

    struct hook_result r = answer(RC_DENY, 0, NULL, big);
    char why[256];
    ok(reply_check(HOOK_RCPT, &r, why, sizeof why) && strlen(r.msg) <= REPLY_TEXT_MAX,
       "reply_check cuts a long text: %s", why);
    hook_result_clear(&r);
    free(big);

    char small[20];
    n = reply_format(small, sizeof small, 550, "5.7.1", "a long line that does not fit");
    ok(n <= sizeof small && n >= 2 && small[n - 1] == '\n', "a small buffer: cut, still a line");
}

static void test_core(void)
{
    int bad = 0;
    for (int i = 0; i < RPL_COUNT; i++) {
        const struct reply_std *c = reply_core((enum reply_id)i);
        if (!reply_code_valid(c->code) || !c->text ||
            (c->enh[0] && !reply_enh_valid(c->enh, c->code)))
            bad++, printf("# core reply %d: %d %s\n", i, c->code, c->enh);
    }
    is_int(bad, 0, "every core reply has a valid code and enhanced code");
}

int main(void)
{
    test_syntax();
    test_classes();
    test_findings();
    test_nexts();
    test_format();
    test_core();
    return done_testing();
}
