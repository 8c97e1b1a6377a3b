/* smtp_client.c (unit) — the downstream client's pure helpers: xtext,
 * reply lines, enhanced codes and the queue id in "queued as" (the
 * dot-stuffing it sends with is in msg_stream.c). The network side is in
 * t/40-forward-client.t. */
#include <stdlib.h>

#include "net/smtp_client.h"
#include "tap.h"

static void test_xtext(void)
{
    char *x = fwd_xtext("a b+c=d\x01\xc3\xa9[x]");
    is_str(x, "a+20b+2Bc+3Dd+01+C3+A9[x]", "xtext escapes space, +, =, controls, 8-bit");
    free(x);
}

static void test_reply(void)
{
    int code, more;
    const char *t;
    ok(fwd_parse_reply_line("250-PIPELINING", &code, &more, &t) == 0 &&
       code == 250 && more && strcmp(t, "PIPELINING") == 0, "continuation line");
    ok(fwd_parse_reply_line("354 go", &code, &more, &t) == 0 && code == 354 &&
       !more && strcmp(t, "go") == 0, "last line");
    ok(fwd_parse_reply_line("250", &code, &more, &t) == 0 && *t == '\0', "bare code");
    ok(fwd_parse_reply_line("25x ok", &code, &more, &t) < 0, "garbled code refused");
    ok(fwd_parse_reply_line("250+ok", &code, &more, &t) < 0, "bad separator refused");
    ok(fwd_parse_reply_line("650 x", &code, &more, &t) < 0, "6xx refused");

    char enh[16];
    is_str(fwd_split_enh("2.1.5 Ok", 250, enh), "Ok", "enhanced code split off");
    is_str(enh, "2.1.5", "enhanced code");
    is_str(fwd_split_enh("5.1.1 no", 250, enh), "5.1.1 no", "class must match the code");
    is_str(enh, "", "no enhanced code");
    is_str(fwd_split_enh("4.7.1000 x", 451, enh), "4.7.1000 x", "too many digits");
    is_str(fwd_split_enh("Ok", 250, enh), "Ok", "plain text");
}

static void test_queue_id(void)
{
    char *q = fwd_queue_id("Ok: queued as 4XyZ12AB");
    is_str(q, "4XyZ12AB", "queue id parsed");
    free(q);
    q = fwd_queue_id("2.0.0 Ok: Queued as ABC.1 (more)");
    is_str(q, "ABC.1", "case-insensitive, stops at a space");
    free(q);
    ok(fwd_queue_id("Ok") == NULL, "no queue id");
}

int main(void)
{
    test_xtext();
    test_reply();
    test_queue_id();
    return done_testing();
}
