/* xclient.c — fuzz target for the XCLIENT argument parser
 * (src/proto/xclient.h).
 *
 * Input: the argument line (NUL-terminated, as the session hands it
 * over). Checked: a refusal is a complete 501 5.5.4; an accepted argument
 * has only printable, space-free values, addresses that read back as
 * addresses, ports in range, and no attribute marked unavailable that was
 * not given. */
#include "fuzz.h"
#include "proto/xclient.h"

#include <arpa/inet.h>
#include <string.h>

static void check_word(const char *s)
{
    for (; *s; s++)
        FUZZ_CHECK(*s > 32 && *s < 127);
}

static void check_addr(const char *s)
{
    unsigned char bin[16];
    FUZZ_CHECK(inet_pton(strchr(s, ':') ? AF_INET6 : AF_INET, s, bin) == 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *arg = malloc(size + 1);
    FUZZ_CHECK(arg != NULL);
    memcpy(arg, data, size);
    arg[size] = '\0';
    struct xclient_args x;
    smtp_status st;
    int rc = xclient_parse(arg, &x, &st);
    if (rc < 0) {
        FUZZ_CHECK(st.code == 501 && !strcmp(st.enh, "5.5.4") && st.text && st.text[0]);
    } else {
        FUZZ_CHECK(rc == 0 && x.given != 0 && (x.unavailable & ~x.given) == 0);
        check_word(x.name);
        check_word(x.helo);
        check_word(x.login);
        if ((x.given & XC_BIT(XC_ADDR)) && !(x.unavailable & XC_BIT(XC_ADDR)))
            check_addr(x.addr);
        if ((x.given & XC_BIT(XC_DESTADDR)) && !(x.unavailable & XC_BIT(XC_DESTADDR)))
            check_addr(x.destaddr);
        FUZZ_CHECK(x.port >= 0 && x.port <= 65535 && x.destport >= 0 && x.destport <= 65535);
    }
    free(arg);
    return 0;
}
