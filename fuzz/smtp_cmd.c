/* smtp_cmd.c — fuzz target for the command parsers (src/proto/smtp_parse.h).
 *
 * Input: one byte of options (EHLO or HELO, SMTPUTF8 on the MAIL, a SIZE
 * limit), then one command line as the session hands it over: CRLF removed,
 * NUL-terminated. The line goes through smtp_cmd_split and, by verb, the
 * MAIL / RCPT / BDAT / HELO parsers, as session.c calls them. Checked:
 * the argument lies inside the line, every failure is a complete reply of
 * class 4 or 5 whose enhanced code has the same class, a parsed address
 * formats to a string that smtp_addr_parse reads back to the same address,
 * and a BDAT size prints back to its digits. */
#include "fuzz.h"
#include "proto/smtp_parse.h"

#include <string.h>

static void check_status(const smtp_status *st, int rc)
{
    if (rc == 0) {
        FUZZ_CHECK(st->code == 0);
        return;
    }
    FUZZ_CHECK(st->code >= 400 && st->code < 600);
    FUZZ_CHECK(st->enh && st->text && st->text[0]);
    FUZZ_CHECK(st->enh[0] == '0' + st->code / 100 && st->enh[1] == '.');
}

/* A parsed address prints to a string that parses back to itself. */
static void check_addr(const struct smtp_addr *a, int utf8_ok)
{
    char *s = smtp_addr_format(a);
    FUZZ_CHECK(s != NULL);
    FUZZ_CHECK(a->is_utf8 == 0 || utf8_ok);
    if (a->is_null || a->is_postmaster) {
        FUZZ_CHECK(!a->domain);
    } else {
        FUZZ_CHECK(a->local && a->local[0] && a->domain && a->domain[0]);
        FUZZ_CHECK(!strchr(a->domain, '@') || a->is_literal);
    }
    struct smtp_addr back;
    smtp_status st;
    int rc = smtp_addr_parse(s, 1, &back, &st);
    check_status(&st, rc);
    FUZZ_CHECK(rc == 0);
    char *s2 = smtp_addr_format(&back);
    FUZZ_CHECK(s2 && strcmp(s, s2) == 0);
    FUZZ_CHECK(back.is_null == a->is_null);
    FUZZ_CHECK(back.is_literal == a->is_literal);
    FUZZ_CHECK(back.is_utf8 == a->is_utf8);
    /* <postmaster> without a domain is only a RCPT path; as a plain
     * string "postmaster" reads as the same special address */
    FUZZ_CHECK(back.is_postmaster == a->is_postmaster);
    free(s2);
    smtp_addr_clear(&back);
    free(s);
}

static void run_mail(const char *arg, const struct smtp_parse_opts *o)
{
    struct smtp_mail m;
    smtp_status st;
    int rc = smtp_parse_mail(arg, o, &m, &st);
    check_status(&st, rc);
    if (rc < 0) {
        FUZZ_CHECK(!m.addr.local && !m.auth && !m.envid && !m.ret);
        return;
    }
    FUZZ_CHECK(!m.addr.is_postmaster);
    FUZZ_CHECK(m.size >= -1 && (o->max_size == 0 || m.size <= o->max_size));
    FUZZ_CHECK(!m.addr.is_utf8 || m.smtputf8);
    FUZZ_CHECK(o->esmtp || (m.size == -1 && !m.smtputf8 && !m.auth &&
                            m.body == SMTP_BODY_NONE));
    check_addr(&m.addr, 1);
    smtp_mail_clear(&m);
}

static void run_rcpt(const char *arg, const struct smtp_parse_opts *o)
{
    struct smtp_rcpt r;
    smtp_status st;
    int rc = smtp_parse_rcpt(arg, o, &r, &st);
    check_status(&st, rc);
    if (rc < 0) {
        FUZZ_CHECK(!r.addr.local && !r.notify && !r.orcpt);
        return;
    }
    FUZZ_CHECK(!r.addr.is_null);
    check_addr(&r.addr, o->smtputf8);
    smtp_rcpt_clear(&r);
}

static void run_bdat(const char *arg)
{
    unsigned long long size;
    int last;
    smtp_status st;
    int rc = smtp_parse_bdat(arg, &size, &last, &st);
    check_status(&st, rc);
    if (rc < 0)
        return;
    char digits[32];
    snprintf(digits, sizeof digits, "%llu", size);
    const char *p = arg + strspn(arg, " \t");
    p += strspn(p, "0");        /* leading zeros are allowed */
    if (size == 0)
        FUZZ_CHECK(*p < '0' || *p > '9');
    else
        FUZZ_CHECK(strncmp(p, digits, strlen(digits)) == 0);
}

static void run_line(const char *line, size_t len, const struct smtp_parse_opts *o)
{
    struct smtp_cmd c;
    smtp_status st;
    int rc = smtp_cmd_split(line, len, &c, &st);
    check_status(&st, rc);
    FUZZ_CHECK(c.verb_str == line && c.verb_len <= len);
    FUZZ_CHECK(c.arg >= line && c.arg <= line + len);
    FUZZ_CHECK(c.arg_len <= (size_t)(line + len - c.arg));
    FUZZ_CHECK(strcmp(smtp_verb_name(c.verb), "") != 0);
    if (rc < 0) {
        FUZZ_CHECK(c.verb == SMTP_UNKNOWN || c.verb == SMTP_MAIL ||
                   c.verb == SMTP_RCPT);
        return;
    }
    FUZZ_CHECK(c.verb != SMTP_UNKNOWN && !memchr(line, '\0', len));
    switch (c.verb) {
    case SMTP_MAIL: run_mail(c.arg, o); break;
    case SMTP_RCPT: run_rcpt(c.arg, o); break;
    case SMTP_BDAT: run_bdat(c.arg); break;
    case SMTP_HELO:
    case SMTP_EHLO: {
        int r2 = smtp_parse_helo(c.arg, &st);
        check_status(&st, r2);
        break;
    }
    default: break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static const long long sizes[4] = { 0, 1, 10240000, 52428800 };
    struct smtp_parse_opts o = { .esmtp = !(data[0] & 1),
                                 .smtputf8 = !!(data[0] & 2),
                                 .max_size = sizes[(data[0] >> 2) & 3] };
    size_t len = size - 1;
    char *line = malloc(len + 1);       /* exact size: ASan sees overreads */
    FUZZ_CHECK(line != NULL);
    memcpy(line, data + 1, len);
    line[len] = '\0';
    run_line(line, len, &o);
    /* plugins hand addresses to smtp_addr_parse directly */
    if (!memchr(line, '\0', len)) {
        struct smtp_addr a;
        smtp_status st;
        int rc = smtp_addr_parse(line, o.smtputf8, &a, &st);
        check_status(&st, rc);
        if (rc == 0) {
            check_addr(&a, o.smtputf8);
            smtp_addr_clear(&a);
        }
    }
    free(line);
    return 0;
}
