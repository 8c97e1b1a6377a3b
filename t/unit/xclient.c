/* xclient.c — unit tests for the XCLIENT argument parser: every attribute,
 * [UNAVAILABLE] / [TEMPUNAVAIL], xtext, case, blanks, and each bad form
 * with its 501 5.5.4. */
#include "proto/xclient.h"
#include "tap.h"

static int parse(const char *arg, struct xclient_args *x, smtp_status *st)
{
    return xclient_parse(arg, x, st);
}

static void test_good(void)
{
    struct xclient_args x;
    smtp_status st;
    is_int(parse("ADDR=192.0.2.7 PORT=4000 NAME=mx.example HELO=mx.example PROTO=ESMTP "
                 "LOGIN=bob DESTADDR=198.51.100.1 DESTPORT=25", &x, &st), 0, "all attributes");
    is_int(x.given, (1 << XC_COUNT) - 1, "all given");
    is_int(x.unavailable, 0, "none unavailable");
    is_str(x.addr, "192.0.2.7", "ADDR");
    is_int(x.port, 4000, "PORT");
    is_str(x.name, "mx.example", "NAME");
    is_str(x.helo, "mx.example", "HELO");
    is_int(x.esmtp, 1, "PROTO=ESMTP");
    is_str(x.login, "bob", "LOGIN");
    is_str(x.destaddr, "198.51.100.1", "DESTADDR");
    is_int(x.destport, 25, "DESTPORT");

    is_int(parse("addr=IPv6:2001:DB8::7  proto=smtp\t", &x, &st), 0, "lower case, blanks");
    is_str(x.addr, "2001:db8::7", "IPV6: address normalised");
    is_int(x.esmtp, 0, "PROTO=SMTP");
    is_int(parse("NAME=[TEMPUNAVAIL] LOGIN=[UNAVAILABLE] ADDR=[UNAVAILABLE]", &x, &st), 0,
           "unavailable values");
    is_int(x.unavailable, XC_BIT(XC_NAME) | XC_BIT(XC_LOGIN) | XC_BIT(XC_ADDR),
           "unavailable bits");
    is_int(parse("LOGIN=a+2Bb+3Dc HELO=[192.0.2.1]", &x, &st), 0, "xtext");
    is_str(x.login, "a+b=c", "xtext decoded");
    is_str(x.helo, "[192.0.2.1]", "HELO address literal");
    is_int(parse("ADDR=192.0.2.1 ADDR=192.0.2.2", &x, &st), 0, "repeated: the last wins");
    is_str(x.addr, "192.0.2.2", "last ADDR");
}

static void test_bad(void)
{
    static const char *const bad[] = {
        "", "   ", "ADDR", "=1", "FOO=1", "ADDR=192.0.2.300", "ADDR=2001:db8::1",
        "ADDR=IPV6:192.0.2.1", "PORT=65536", "PORT=", "PORT=1x", "PORT=123456",
        "PROTO=LMTP", "NAME=a+20b", "NAME=a/b", "NAME=", "HELO=a+00", "LOGIN=a+7F",
        "LOGIN=a+2", "LOGIN=a+zz", "HELO=a=b", "NAME=[TEMPUNAVAIL]x", "DESTPORT=-1",
        "ADDR=192.0.2.1 PORT=70000",
    };
    struct xclient_args x;
    smtp_status st;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = parse(bad[i], &x, &st);
        ok(rc == -1 && st.code == 501 && !strcmp(st.enh, "5.5.4") && st.text,
           "refused: '%s' (%s)", bad[i], st.text ? st.text : "-");
    }
    char longv[400] = "HELO=";
    memset(longv + 5, 'a', 256);
    is_int(parse(longv, &x, &st), -1, "value over 255 bytes");
    longv[5 + 255] = '\0';
    is_int(parse(longv, &x, &st), 0, "value of 255 bytes");
}

int main(void)
{
    test_good();
    test_bad();
    return done_testing();
}
