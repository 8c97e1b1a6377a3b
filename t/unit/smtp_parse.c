/* smtp_parse.c — unit tests for the SMTP command parsers: verb split,
 * RFC 5321 paths (quoted local parts, literals, source routes, UTF-8,
 * length limits), ESMTP parameters of MAIL/RCPT, BDAT and HELO. */
#include "proto/smtp_parse.h"
#include "tap.h"

#include <stdlib.h>

static const struct smtp_parse_opts EHLO = { 1, 0, 0 };
static const struct smtp_parse_opts HELO = { 0, 0, 0 };
static const struct smtp_parse_opts UTF8 = { 1, 1, 0 };
static const struct smtp_parse_opts LIMIT = { 1, 0, 1000 };

/* ---- command split ---- */

static int split(const char *line, struct smtp_cmd *c, smtp_status *st)
{
    return smtp_cmd_split(line, strlen(line), c, st);
}

static void check_verb(const char *line, enum smtp_verb want, const char *arg)
{
    struct smtp_cmd c;
    smtp_status st;
    int rc = split(line, &c, &st);

    is_int(rc, 0, "'%s': accepted", line);
    is_int(c.verb, want, "'%s': verb %s", line, smtp_verb_name(want));
    ok(c.arg_len == strlen(arg) && strncmp(c.arg, arg, c.arg_len) == 0,
       "'%s': arg '%s'", line, arg);
    is_int(st.code, 0, "'%s': no status", line);
}

static void check_split_err(const char *line, size_t len, int code,
                            const char *enh, enum smtp_verb verb,
                            const char *name)
{
    struct smtp_cmd c;
    smtp_status st;
    int rc = smtp_cmd_split(line, len, &c, &st);

    is_int(rc, -1, "%s: refused", name);
    is_int(st.code, code, "%s: code", name);
    is_str(st.enh, enh, "%s: enhanced code", name);
    is_int(c.verb, verb, "%s: verb", name);
}

static void test_split(void)
{
    struct smtp_cmd c;
    smtp_status st;

    check_verb("HELO mx.example.com", SMTP_HELO, "mx.example.com");
    check_verb("ehlo mx.example.com", SMTP_EHLO, "mx.example.com");
    check_verb("EhLo   mx.example.com  ", SMTP_EHLO, "mx.example.com");
    check_verb("MAIL FROM:<a@b.c>", SMTP_MAIL, "<a@b.c>");
    check_verb("mail from:<a@b.c> SIZE=10", SMTP_MAIL, "<a@b.c> SIZE=10");
    check_verb("MAIL FROM: <a@b.c>", SMTP_MAIL, "<a@b.c>");
    check_verb("MAIL FROM:  <a@b.c>   ", SMTP_MAIL, "<a@b.c>");
    check_verb("Mail From:<>", SMTP_MAIL, "<>");
    check_verb("RCPT TO:<x@y.z>", SMTP_RCPT, "<x@y.z>");
    check_verb("rcpt to: <x@y.z> NOTIFY=NEVER", SMTP_RCPT,
               "<x@y.z> NOTIFY=NEVER");
    check_verb("DATA", SMTP_DATA, "");
    check_verb("data ", SMTP_DATA, "");
    check_verb("BDAT 100 LAST", SMTP_BDAT, "100 LAST");
    check_verb("RSET", SMTP_RSET, "");
    check_verb("NOOP hello there", SMTP_NOOP, "hello there");
    check_verb("QUIT", SMTP_QUIT, "");
    check_verb("VRFY user", SMTP_VRFY, "user");
    check_verb("EXPN list", SMTP_EXPN, "list");
    check_verb("HELP", SMTP_HELP, "");
    check_verb("starttls", SMTP_STARTTLS, "");
    check_verb("AUTH PLAIN AGFiAGM=", SMTP_AUTH, "PLAIN AGFiAGM=");
    check_verb("QUIT\t", SMTP_QUIT, "");

    split("MAIL FROM:<a@b.c>", &c, &st);
    is_int(c.verb_len, 10, "MAIL verb covers 'MAIL FROM:'");
    ok(strncmp(c.verb_str, "MAIL FROM:", c.verb_len) == 0, "MAIL verb_str");
    split("rcpt to:<a@b.c>", &c, &st);
    ok(c.verb_len == 8 && strncmp(c.verb_str, "rcpt to:", 8) == 0,
       "RCPT verb as sent");
    is_str(c.arg, "<a@b.c>", "RCPT arg");
    split("XYZZY plugh", &c, &st);
    ok(c.verb_len == 5 && strncmp(c.verb_str, "XYZZY", 5) == 0,
       "unknown verb still reported");
    ok(c.arg_len == 5 && strncmp(c.arg, "plugh", 5) == 0,
       "unknown verb: arg reported");
    is_str(st.text, "Command unrecognized", "unknown verb text");

    check_split_err("XYZZY", 5, 500, "5.5.2", SMTP_UNKNOWN, "unknown verb");
    check_split_err("", 0, 500, "5.5.2", SMTP_UNKNOWN, "empty line");
    check_split_err(" QUIT", 5, 500, "5.5.2", SMTP_UNKNOWN, "leading space");
    check_split_err("QU\0IT", 5, 500, "5.5.2", SMTP_UNKNOWN, "NUL in verb");
    check_split_err("NOOP a\0b", 8, 500, "5.5.2", SMTP_UNKNOWN, "NUL in arg");
    check_split_err("QUIT\xc3\xa9", 6, 500, "5.5.2", SMTP_UNKNOWN,
                    "8-bit in verb");
    check_split_err("\xff\xfe", 2, 500, "5.5.2", SMTP_UNKNOWN, "binary verb");
    check_split_err("DATA2", 5, 500, "5.5.2", SMTP_UNKNOWN, "verb prefix");
    check_split_err("MAILFROM:<a@b>", 14, 500, "5.5.2", SMTP_UNKNOWN,
                    "MAILFROM glued");
    check_split_err("MAIL", 4, 501, "5.5.4", SMTP_MAIL, "MAIL alone");
    check_split_err("MAIL TO:<a@b>", 13, 501, "5.5.4", SMTP_MAIL,
                    "MAIL TO:");
    check_split_err("MAIL FROM <a@b>", 15, 501, "5.5.4", SMTP_MAIL,
                    "MAIL FROM without colon");
    check_split_err("RCPT FROM:<a@b>", 15, 501, "5.5.4", SMTP_RCPT,
                    "RCPT FROM:");
    check_split_err("RCPT", 4, 501, "5.5.4", SMTP_RCPT, "RCPT alone");

    is_str(smtp_verb_name(SMTP_STARTTLS), "STARTTLS", "verb name");
    is_str(smtp_verb_name(SMTP_VERB_COUNT), "UNKNOWN", "verb name range");
}

/* ---- addresses through MAIL and RCPT ---- */

static void check_mail_ok(const char *arg, const char *local,
                          const char *domain, const char *fmt)
{
    struct smtp_mail m;
    smtp_status st;
    int rc = smtp_parse_mail(arg, &EHLO, &m, &st);
    char *f;

    is_int(rc, 0, "MAIL '%s': accepted", arg);
    if (rc) {
        printf("#   %d %s %s\n", st.code, st.enh, st.text);
        return;
    }
    is_str(m.addr.local, local, "MAIL '%s': local part", arg);
    is_str(m.addr.domain, domain, "MAIL '%s': domain", arg);
    f = smtp_addr_format(&m.addr);
    is_str(f, fmt, "MAIL '%s': formatted", arg);
    free(f);
    smtp_mail_clear(&m);
}

static void check_mail_err(const char *arg, const struct smtp_parse_opts *o,
                           int code, const char *enh)
{
    struct smtp_mail m;
    smtp_status st;
    int rc = smtp_parse_mail(arg, o, &m, &st);

    is_int(rc, -1, "MAIL '%.60s': refused", arg);
    is_int(st.code, code, "MAIL '%.60s': code %d", arg, code);
    is_str(st.enh, enh, "MAIL '%.60s': %s", arg, enh);
    ok(m.addr.local == NULL && m.auth == NULL && m.size == -1,
       "MAIL '%.60s': result cleared", arg);
    smtp_mail_clear(&m);
}

static void check_rcpt_ok(const char *arg, const struct smtp_parse_opts *o,
                          const char *local, const char *domain)
{
    struct smtp_rcpt r;
    smtp_status st;
    int rc = smtp_parse_rcpt(arg, o, &r, &st);

    is_int(rc, 0, "RCPT '%s': accepted", arg);
    if (rc) {
        printf("#   %d %s %s\n", st.code, st.enh, st.text);
        return;
    }
    is_str(r.addr.local, local, "RCPT '%s': local part", arg);
    is_str(r.addr.domain, domain, "RCPT '%s': domain", arg);
    smtp_rcpt_clear(&r);
}

static void check_rcpt_err(const char *arg, const struct smtp_parse_opts *o,
                           int code, const char *enh)
{
    struct smtp_rcpt r;
    smtp_status st;
    int rc = smtp_parse_rcpt(arg, o, &r, &st);

    is_int(rc, -1, "RCPT '%.60s': refused", arg);
    is_int(st.code, code, "RCPT '%.60s': code %d", arg, code);
    is_str(st.enh, enh, "RCPT '%.60s': %s", arg, enh);
    ok(r.addr.local == NULL && r.notify == NULL, "RCPT '%.60s': cleared", arg);
    smtp_rcpt_clear(&r);
}

static void test_addr_valid(void)
{
    struct smtp_mail m;
    smtp_status st;

    check_mail_ok("<user@example.com>", "user", "example.com",
                  "user@example.com");
    check_mail_ok("<First.Last@Example.COM>", "First.Last", "Example.COM",
                  "First.Last@Example.COM");
    check_mail_ok("<a+tag@b.c>", "a+tag", "b.c", "a+tag@b.c");
    check_mail_ok("<!#$%&'*+-/=?^_`{|}~@x.y>", "!#$%&'*+-/=?^_`{|}~", "x.y",
                  "!#$%&'*+-/=?^_`{|}~@x.y");
    check_mail_ok("<u@localhost>", "u", "localhost", "u@localhost");
    check_mail_ok("<u@a-b.c-d.e>", "u", "a-b.c-d.e", "u@a-b.c-d.e");
    check_mail_ok("<u@1.2.3.4.example>", "u", "1.2.3.4.example",
                  "u@1.2.3.4.example");
    check_mail_ok("<\"john doe\"@example.com>", "\"john doe\"",
                  "example.com", "\"john doe\"@example.com");
    check_mail_ok("<\"a\\\"b\"@c.d>", "\"a\\\"b\"", "c.d", "\"a\\\"b\"@c.d");
    check_mail_ok("<\"a\\\\b\"@c.d>", "\"a\\\\b\"", "c.d", "\"a\\\\b\"@c.d");
    check_mail_ok("<\"a>b@c\"@d.e>", "\"a>b@c\"", "d.e", "\"a>b@c\"@d.e");
    check_mail_ok("<\"\"@d.e>", "\"\"", "d.e", "\"\"@d.e");
    check_mail_ok("<u@[192.0.2.1]>", "u", "[192.0.2.1]", "u@[192.0.2.1]");
    check_mail_ok("<u@[IPv6:2001:db8::1]>", "u", "[IPv6:2001:db8::1]",
                  "u@[IPv6:2001:db8::1]");
    check_mail_ok("<u@[ipv6:::1]>", "u", "[ipv6:::1]", "u@[ipv6:::1]");
    check_mail_ok("<u@[IPv6:::ffff:192.0.2.1]>", "u",
                  "[IPv6:::ffff:192.0.2.1]", "u@[IPv6:::ffff:192.0.2.1]");
    check_mail_ok("<u@[-tag:x]>", "u", "[-tag:x]", "u@[-tag:x]");
    check_mail_ok("<u@d.e>\t", "u", "d.e", "u@d.e");
    check_mail_ok("<u@[x-tag:some-content]>", "u", "[x-tag:some-content]",
                  "u@[x-tag:some-content]");
    check_mail_ok("<@relay.example:u@d.e>", "u", "d.e", "u@d.e");
    check_mail_ok("<@a.example,@b.example:u@d.e>", "u", "d.e", "u@d.e");
    check_mail_ok("  <u@d.e>  ", "u", "d.e", "u@d.e");

    is_int(smtp_parse_mail("<>", &EHLO, &m, &st), 0, "null sender");
    ok(m.addr.is_null && !m.addr.is_postmaster, "null sender: is_null");
    ok(m.addr.domain == NULL, "null sender: no domain");
    is_str(m.addr.local, "", "null sender: empty local");
    smtp_mail_clear(&m);
    is_int(smtp_parse_mail("<u@[192.0.2.1]>", &EHLO, &m, &st), 0, "literal");
    ok(m.addr.is_literal, "literal flagged");
    ok(!m.addr.is_utf8, "literal not utf8");
    smtp_mail_clear(&m);
    is_int(smtp_parse_mail("<u@d.e>", &EHLO, &m, &st), 0, "plain");
    ok(!m.addr.is_literal && !m.addr.is_null, "plain not literal or null");
    is_int(m.size, -1, "size absent: -1");
    is_int(m.body, SMTP_BODY_NONE, "body absent");
    smtp_mail_clear(&m);
}

static void test_addr_invalid(void)
{
    const char *bad[] = {
        "u@d.e", "<u@d.e", "u@d.e>", "<u@d.e> >", "<<u@d.e>>",
        "<ud.e>", "<u@>", "<@d.e>", "<u@@d.e>", "<u@d..e>", "<u@.d.e>",
        "<u@d.e.>", "<u@-d.e>", "<u@d-.e>", "<u@d.-e>", "<u@d_e.f>",
        "<.u@d.e>", "<u.@d.e>", "<u..v@d.e>", "<u v@d.e>", "<u(c)@d.e>",
        "<\"unterminated@d.e>", "<\"a\"b@d.e>", "<\"a\\\x01\"@d.e>",
        "<\"a\x01\"@d.e>", "<u@[1.2.3]>", "<u@[1.2.3.256]>",
        "<u@[01.2.3.4]>", "<u@[IPv6:1::2::3]>", "<u@[IPv6:1.2.3.4]>",
        "<u@[IPv6:]>", "<u@[]>", "<u@[tag:]>",
        "<u@[tag-:x]>", "<u@[a b:c]>", "<u@[1.2.3.4]x>", "<u@[x:a[b]>",
        "<u@d.e", "<u@d.e]>", "<u@d.e>x", "<@a:@b:u@d.e>", "<@a,u@d.e>",
        "<@:u@d.e>", "<@[1.2.3.4]:u@d.e>", "<postmaster>",
        "<u\t@d.e>", "",
    };

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct smtp_mail m;
        smtp_status st;
        int rc = smtp_parse_mail(bad[i], &EHLO, &m, &st);
        ok(rc == -1 && st.code == 501, "MAIL '%s' refused with 501", bad[i]);
        if (rc == 0 || st.code != 501)
            printf("#   got %d %d %s\n", rc, st.code, st.text);
        smtp_mail_clear(&m);
    }
    check_mail_err("<ud.e>", &EHLO, 501, "5.1.7");
    check_mail_err("ud.e", &EHLO, 501, "5.5.4");
    check_rcpt_err("<ud.e>", &EHLO, 501, "5.1.3");
    check_rcpt_err("x@y.z", &EHLO, 501, "5.5.4");
}

static void test_postmaster_null(void)
{
    struct smtp_rcpt r;
    smtp_status st;
    char *f;

    is_int(smtp_parse_rcpt("<postmaster>", &EHLO, &r, &st), 0,
           "RCPT <postmaster>");
    ok(r.addr.is_postmaster && r.addr.domain == NULL, "postmaster flagged");
    f = smtp_addr_format(&r.addr);
    is_str(f, "postmaster", "postmaster formatted");
    free(f);
    smtp_rcpt_clear(&r);
    is_int(smtp_parse_rcpt("<PostMaster>", &EHLO, &r, &st), 0,
           "RCPT <PostMaster> any case");
    is_str(r.addr.local, "PostMaster", "postmaster local as sent");
    smtp_rcpt_clear(&r);
    check_rcpt_ok("<Postmaster@example.com>", &EHLO, "Postmaster",
                  "example.com");
    check_rcpt_ok("<@relay.example:x@y.z>", &EHLO, "x", "y.z");
    check_rcpt_ok("<x@[IPv6:::1]>", &EHLO, "x", "[IPv6:::1]");
    check_rcpt_err("<>", &EHLO, 501, "5.1.3");
    check_rcpt_err("<postmasterx>", &EHLO, 501, "5.1.3");
    check_rcpt_err("<postmaster", &EHLO, 501, "5.1.3");
    check_mail_err("<postmaster>", &EHLO, 501, "5.1.7");
}

/* A string of n copies of c. */
static char *rep(char c, size_t n)
{
    char *s = malloc(n + 1);

    memset(s, c, n);
    s[n] = '\0';
    return s;
}

/* A domain of exactly n octets made of 63-octet labels. */
static char *domain_of(size_t n)
{
    char *s = rep('a', n);

    for (size_t i = 63; i < n; i += 64)
        s[i] = '.';
    if (n && s[n - 1] == '.')
        s[n - 1] = 'b';
    return s;
}

static void test_lengths(void)
{
    char buf[1400], want[1200];
    char *l64 = rep('l', 64), *l65 = rep('l', 65);
    char *d64 = rep('d', 64);
    char *d240 = domain_of(240), *d255 = domain_of(255), *d256 = domain_of(256);

    snprintf(buf, sizeof buf, "<%s@d.e>", l64);
    snprintf(want, sizeof want, "%s@d.e", l64);
    check_mail_ok(buf, l64, "d.e", want);
    snprintf(buf, sizeof buf, "<%s@d.e>", l65);
    check_mail_err(buf, &EHLO, 501, "5.1.7");
    check_rcpt_err(buf, &EHLO, 501, "5.1.3");
    snprintf(buf, sizeof buf, "<u@%s>", d240);
    check_rcpt_ok(buf, &EHLO, "u", d240);
    snprintf(buf, sizeof buf, "<u@%s>", d255);       /* path 259 */
    check_rcpt_err(buf, &EHLO, 501, "5.1.3");
    snprintf(buf, sizeof buf, "<u@%s>", d256);
    check_rcpt_err(buf, &EHLO, 501, "5.1.3");
    snprintf(buf, sizeof buf, "<%s@%s>", l64, d240 + 51);   /* 256 total */
    is_int(strlen(buf), 256, "path of 256 octets built");
    check_rcpt_ok(buf, &EHLO, l64, d240 + 51);
    snprintf(buf, sizeof buf, "<%s@a%s>", l64, d240 + 51);  /* 257 */
    check_rcpt_err(buf, &EHLO, 501, "5.1.3");
    snprintf(want, sizeof want, "%s.e", d64);      /* 64-octet label: lenient */
    snprintf(buf, sizeof buf, "<u@%s>", want);
    check_rcpt_ok(buf, &EHLO, "u", want);
    free(l64); free(l65); free(d64);
    free(d240); free(d255); free(d256);
}

static void test_utf8(void)
{
    struct smtp_mail m;
    smtp_status st;

    check_mail_err("<j\xc3\xb6rg@example.com>", &EHLO, 553, "5.6.7");
    check_mail_err("<jorg@b\xc3\xbc" "cher.example>", &EHLO, 553, "5.6.7");
    is_int(smtp_parse_mail("<j\xc3\xb6rg@b\xc3\xbc" "cher.example> SMTPUTF8",
                           &EHLO, &m, &st), 0, "UTF-8 with SMTPUTF8");
    ok(m.addr.is_utf8 && m.smtputf8, "UTF-8 flagged");
    is_str(m.addr.local, "j\xc3\xb6rg", "UTF-8 local kept");
    is_str(m.addr.domain, "b\xc3\xbc" "cher.example", "UTF-8 domain kept");
    smtp_mail_clear(&m);
    is_int(smtp_parse_mail("<\"j\xe2\x82\xac\"@x.y> SMTPUTF8", &EHLO, &m, &st),
           0, "UTF-8 in quoted local part");
    smtp_mail_clear(&m);
    is_int(smtp_parse_mail("<\xf0\x9f\x98\x80@x.y> SMTPUTF8", &EHLO, &m, &st),
           0, "4-byte UTF-8");
    smtp_mail_clear(&m);
    check_mail_err("<j\xc3@x.y> SMTPUTF8", &EHLO, 501, "5.1.7");
    check_mail_err("<j\xc0\xaf@x.y> SMTPUTF8", &EHLO, 501, "5.1.7");
    check_mail_err("<j\xed\xa0\x80@x.y> SMTPUTF8", &EHLO, 501, "5.1.7");
    check_mail_err("<j\xf4\x90\x80\x80@x.y> SMTPUTF8", &EHLO, 501, "5.1.7");
    check_mail_err("<j\xff@x.y> SMTPUTF8", &EHLO, 501, "5.1.7");
    check_mail_err("<j@x\xc3\xb6-.y> SMTPUTF8", &EHLO, 501, "5.1.7");
    check_mail_err("<j\xc3\xb6@x.y> SMTPUTF8", &HELO, 555, "5.5.4");
    check_mail_ok("<ascii@x.y> SMTPUTF8", "ascii", "x.y", "ascii@x.y");

    check_rcpt_err("<j\xc3\xb6rg@x.y>", &EHLO, 553, "5.6.7");
    check_rcpt_ok("<j\xc3\xb6rg@x.y>", &UTF8, "j\xc3\xb6rg", "x.y");
    check_rcpt_ok("<u@\xe4\xbe\x8b\xe3\x81\x88.jp>", &UTF8, "u",
                  "\xe4\xbe\x8b\xe3\x81\x88.jp");
    check_rcpt_err("<j\xc3(@x.y>", &UTF8, 501, "5.1.3");

    /* UTF-8 only in the source route (found by fuzzing): the path needs
     * SMTPUTF8, but the kept mailbox is plain ASCII */
    check_mail_err("<@r.\xc3\xa9x,@r2.ex:a@b.ae>", &EHLO, 553, "5.6.7");
    is_int(smtp_parse_mail("<@r.\xc3\xa9x,@r2.ex:a@b.ae> SMTPUTF8", &EHLO, &m,
                           &st), 0, "UTF-8 route with SMTPUTF8");
    ok(!m.addr.is_utf8, "UTF-8 route: ASCII mailbox not flagged");
    smtp_mail_clear(&m);
    check_rcpt_err("<@r.\xc3\xa9x:a@b.ae>", &EHLO, 553, "5.6.7");
}

/* ---- ESMTP parameters ---- */

static void test_mail_params(void)
{
    struct smtp_mail m;
    smtp_status st;

    is_int(smtp_parse_mail("<a@b.c> SIZE=12345 BODY=8BITMIME SMTPUTF8 "
                           "AUTH=<> ENVID=QQ314159 RET=HDRS", &EHLO, &m, &st),
           0, "all MAIL params");
    is_int(m.size, 12345, "SIZE");
    is_int(m.body, SMTP_BODY_8BITMIME, "BODY=8BITMIME");
    is_int(m.smtputf8, 1, "SMTPUTF8");
    is_str(m.auth, "<>", "AUTH=<>");
    is_str(m.envid, "QQ314159", "ENVID");
    is_str(m.ret, "HDRS", "RET");
    smtp_mail_clear(&m);
    is_int(m.size, -1, "cleared size is -1");

    is_int(smtp_parse_mail("<> size=0 body=7bit ret=full auth=a+2Bb@c.d",
                           &EHLO, &m, &st), 0, "params case-insensitive");
    is_int(m.size, 0, "SIZE=0");
    is_int(m.body, SMTP_BODY_7BIT, "BODY=7BIT");
    is_str(m.ret, "full", "RET kept as sent");
    is_str(m.auth, "a+2Bb@c.d", "AUTH xtext");
    smtp_mail_clear(&m);

    is_int(smtp_parse_mail("<a@b.c>   SIZE=1    BODY=7BIT  ", &EHLO, &m, &st),
           0, "extra spaces between params");
    smtp_mail_clear(&m);
    is_int(smtp_parse_mail("<a@b.c> SIZE=99999999999999999999", &EHLO, &m,
                           &st), 0, "20-digit SIZE without a limit");
    ok(m.size > 0, "huge SIZE clamped, positive");
    smtp_mail_clear(&m);
    is_int(smtp_parse_mail("<a@b.c> SIZE=1000", &LIMIT, &m, &st), 0,
           "SIZE at the limit");
    smtp_mail_clear(&m);

    check_mail_err("<a@b.c> SIZE=1001", &LIMIT, 552, "5.3.4");
    check_mail_err("<a@b.c> SIZE=99999999999999999999", &LIMIT, 552, "5.3.4");
    smtp_parse_mail("<a@b.c> SIZE=1001", &LIMIT, &m, &st);
    is_str(st.text, "Message size exceeds fixed maximum message size",
           "SIZE text");
    check_mail_err("<a@b.c> SIZE=999999999999999999999", &EHLO, 501, "5.5.4");
    check_mail_err("<a@b.c> SIZE=", &EHLO, 501, "5.5.4");
    check_mail_err("<a@b.c> SIZE", &EHLO, 501, "5.5.4");
    check_mail_err("<a@b.c> SIZE=-1", &EHLO, 501, "5.5.4");
    check_mail_err("<a@b.c> SIZE=1k", &EHLO, 501, "5.5.4");
    check_mail_err("<a@b.c> SIZE=+1", &EHLO, 501, "5.5.4");
    check_mail_err("<a@b.c> BODY=BINARYMIME", &EHLO, 555, "5.5.4");
    check_mail_err("<a@b.c> BODY=9BIT", &EHLO, 501, "5.5.4");
    check_mail_err("<a@b.c> BODY", &EHLO, 501, "5.5.4");
    check_mail_err("<a@b.c> SMTPUTF8=yes", &EHLO, 501, "5.5.4");
    check_mail_err("<a@b.c> AUTH", &EHLO, 501, "5.5.4");
    check_mail_err("<a@b.c> AUTH=a+2", &EHLO, 501, "5.5.4");
    check_mail_err("<a@b.c> AUTH=a+zz", &EHLO, 501, "5.5.4");
    check_mail_err("<a@b.c> ENVID=", &EHLO, 501, "5.5.4");
    check_mail_err("<a@b.c> RET=ALL", &EHLO, 501, "5.5.4");
    check_mail_err("<a@b.c> RET", &EHLO, 501, "5.5.4");
    check_mail_err("<a@b.c> SIZE=1 SIZE=2", &EHLO, 501, "5.5.4");
    check_mail_err("<a@b.c> SMTPUTF8 smtputf8", &EHLO, 501, "5.5.4");
    smtp_parse_mail("<a@b.c> BODY=7BIT body=8BITMIME", &EHLO, &m, &st);
    is_str(st.text, "Duplicate parameter", "duplicate text");
    check_mail_err("<a@b.c> FOO=bar", &EHLO, 555, "5.5.4");
    check_mail_err("<a@b.c> X-FOO", &EHLO, 555, "5.5.4");
    check_mail_err("<a@b.c> NOTIFY=NEVER", &EHLO, 555, "5.5.4");
    smtp_parse_mail("<a@b.c> FOO=bar", &EHLO, &m, &st);
    is_str(st.text, "Unsupported parameter", "unknown param text");
    check_mail_err("<a@b.c> SIZE=10", &HELO, 555, "5.5.4");
    check_mail_err("<a@b.c> BODY=8BITMIME", &HELO, 555, "5.5.4");
    check_mail_err("<a@b.c> -X=1", &EHLO, 501, "5.5.4");
    check_mail_err("<a@b.c> X_Y=1", &EHLO, 501, "5.5.4");
    check_mail_err("<a@b.c> =1", &EHLO, 501, "5.5.4");
    check_mail_err("<a@b.c> SIZE==1", &EHLO, 501, "5.5.4");
    check_mail_err("<a@b.c> ENVID=a=b", &EHLO, 501, "5.5.4");
    check_mail_err("<a@b.c> ENVID=a\x01", &EHLO, 501, "5.5.4");
    check_mail_err("<a@b.c> ENVID=\xc3\xa9", &EHLO, 501, "5.5.4");
    check_mail_err("<a@b.c>SIZE=1", &EHLO, 501, "5.5.4");
    check_mail_err("<a@b.c> SIZE=1\tBODY=7BIT", &EHLO, 501, "5.5.4");
    check_mail_err("<a@b.c> A=1 B=1 C=1 D=1 E=1 F=1 G=1 H=1 I=1 J=1 K=1 "
                   "L=1 M=1 N=1 O=1 P=1 Q=1", &EHLO, 555, "5.5.4");
    check_mail_ok("<a@b.c> ", "a", "b.c", "a@b.c");
}

static void test_rcpt_params(void)
{
    struct smtp_rcpt r;
    smtp_status st;

    is_int(smtp_parse_rcpt("<x@y.z> NOTIFY=SUCCESS,FAILURE "
                           "ORCPT=rfc822;x+40y.z", &EHLO, &r, &st), 0,
           "RCPT DSN params");
    is_str(r.notify, "SUCCESS,FAILURE", "NOTIFY");
    is_str(r.orcpt, "rfc822;x+40y.z", "ORCPT");
    smtp_rcpt_clear(&r);
    is_int(smtp_parse_rcpt("<x@y.z> notify=never", &EHLO, &r, &st), 0,
           "NOTIFY=never");
    smtp_rcpt_clear(&r);
    is_int(smtp_parse_rcpt("<x@y.z> NOTIFY=DELAY,SUCCESS,FAILURE", &EHLO, &r,
                           &st), 0, "NOTIFY all three");
    smtp_rcpt_clear(&r);

    check_rcpt_err("<x@y.z> NOTIFY=NEVER,SUCCESS", &EHLO, 501, "5.5.4");
    check_rcpt_err("<x@y.z> NOTIFY=SUCCESS,SUCCESS", &EHLO, 501, "5.5.4");
    check_rcpt_err("<x@y.z> NOTIFY=SUCCESS,", &EHLO, 501, "5.5.4");
    check_rcpt_err("<x@y.z> NOTIFY=,SUCCESS", &EHLO, 501, "5.5.4");
    check_rcpt_err("<x@y.z> NOTIFY=SOMETIMES", &EHLO, 501, "5.5.4");
    check_rcpt_err("<x@y.z> NOTIFY", &EHLO, 501, "5.5.4");
    check_rcpt_err("<x@y.z> ORCPT=x@y.z", &EHLO, 501, "5.5.4");
    check_rcpt_err("<x@y.z> ORCPT=rfc822;", &EHLO, 501, "5.5.4");
    check_rcpt_err("<x@y.z> ORCPT=;x@y.z", &EHLO, 501, "5.5.4");
    check_rcpt_err("<x@y.z> ORCPT=rfc822;x+4", &EHLO, 501, "5.5.4");
    check_rcpt_err("<x@y.z> NOTIFY=NEVER notify=NEVER", &EHLO, 501, "5.5.4");
    check_rcpt_err("<x@y.z> SIZE=10", &EHLO, 555, "5.5.4");
    check_rcpt_err("<x@y.z> FOO", &EHLO, 555, "5.5.4");
    check_rcpt_err("<x@y.z> NOTIFY=NEVER", &HELO, 555, "5.5.4");
    check_rcpt_err("<x@y.z>NOTIFY=NEVER", &EHLO, 501, "5.5.4");
    check_rcpt_ok("<x@y.z>   ", &HELO, "x", "y.z");
}

/* ---- smtp_addr_parse ---- */

static void test_addr_parse(void)
{
    struct smtp_addr a;
    smtp_status st;
    char *f;

    is_int(smtp_addr_parse("user@example.com", 0, &a, &st), 0, "addr_parse");
    f = smtp_addr_format(&a);
    is_str(f, "user@example.com", "addr_parse round trip");
    free(f);
    smtp_addr_clear(&a);
    ok(a.local == NULL && a.domain == NULL, "addr_clear zeroes");
    is_int(smtp_addr_parse("", 0, &a, &st), 0, "addr_parse null");
    ok(a.is_null, "addr_parse null flagged");
    smtp_addr_clear(&a);
    is_int(smtp_addr_parse("POSTMASTER", 0, &a, &st), 0, "addr_parse pm");
    ok(a.is_postmaster, "addr_parse postmaster flagged");
    smtp_addr_clear(&a);
    is_int(smtp_addr_parse("u@[IPv6:::1]", 0, &a, &st), 0, "addr literal");
    ok(a.is_literal, "addr literal flagged");
    smtp_addr_clear(&a);
    is_int(smtp_addr_parse("<u@d.e>", 0, &a, &st), -1, "brackets refused");
    is_int(st.code, 501, "brackets refused: 501");
    is_int(smtp_addr_parse("u@d.e ", 0, &a, &st), -1, "trailing junk");
    is_int(smtp_addr_parse("u@d..e", 0, &a, &st), -1, "empty label");
    is_int(smtp_addr_parse("\xc3\xa9@d.e", 0, &a, &st), -1, "utf8 refused");
    is_int(st.code, 553, "utf8 refused: 553");
    is_int(smtp_addr_parse("\xc3\xa9@d.e", 1, &a, &st), 0, "utf8 allowed");
    ok(a.is_utf8, "utf8 flagged");
    smtp_addr_clear(&a);
}

/* ---- BDAT and HELO ---- */

static void check_bdat(const char *arg, int rc, unsigned long long size,
                       int last)
{
    unsigned long long got = 7;
    int l = 7;
    smtp_status st;

    is_int(smtp_parse_bdat(arg, &got, &l, &st), rc, "BDAT '%s'", arg);
    if (rc == 0) {
        ok(got == size, "BDAT '%s': size %llu", arg, size);
        is_int(l, last, "BDAT '%s': last %d", arg, last);
    } else {
        is_int(st.code, 501, "BDAT '%s': 501", arg);
        is_str(st.enh, "5.5.4", "BDAT '%s': 5.5.4", arg);
    }
}

static void test_bdat(void)
{
    check_bdat("0", 0, 0, 0);
    check_bdat("100", 0, 100, 0);
    check_bdat("100 LAST", 0, 100, 1);
    check_bdat("100 last", 0, 100, 1);
    check_bdat("  42   Last  ", 0, 42, 1);
    check_bdat("0 LAST", 0, 0, 1);
    check_bdat("18446744073709551615", 0, 18446744073709551615ULL, 0);
    check_bdat("18446744073709551616", -1, 0, 0);
    check_bdat("99999999999999999999999", -1, 0, 0);
    check_bdat("", -1, 0, 0);
    check_bdat("LAST", -1, 0, 0);
    check_bdat("-1", -1, 0, 0);
    check_bdat("10x", -1, 0, 0);
    check_bdat("10 LASTX", -1, 0, 0);
    check_bdat("10 LAS", -1, 0, 0);
    check_bdat("10 LAST LAST", -1, 0, 0);
    check_bdat("10 FIRST", -1, 0, 0);
    check_bdat("10\tLAST", -1, 0, 0);
}

static void test_helo(void)
{
    smtp_status st;
    const char *good[] = { "mx.example.com", "[192.0.2.1]", "  host  ",
                           "localhost", "under_score.example", "x" };
    const char *bad[] = { "", "   ", "two words", "a\tb", "a\001b",
                          "a\x7f", "host\r" };

    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        is_int(smtp_parse_helo(good[i], &st), 0, "HELO '%s' ok", good[i]);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = smtp_parse_helo(bad[i], &st);
        ok(rc == -1 && st.code == 501 && strcmp(st.enh, "5.5.4") == 0 &&
           strcmp(st.text, "Syntax: EHLO hostname") == 0,
           "HELO bad #%zu refused 501 5.5.4", i);
    }
}

int main(void)
{
    test_split();
    test_addr_valid();
    test_addr_invalid();
    test_postmaster_null();
    test_lengths();
    test_utf8();
    test_mail_params();
    test_rcpt_params();
    test_addr_parse();
    test_bdat();
    test_helo();
    return done_testing();
}
