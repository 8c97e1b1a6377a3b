/* utf8.c — unit tests for core/utf8.c: well-formed sequences, every kind
 * of malformed one, and the printable copy used for Received: names. */
#include "core/utf8.h"
#include "tap.h"

static void seqs(void)
{
    static const struct { const char *b; size_t len, want; const char *name; } t[] = {
        { "a", 1, 1, "ASCII" },
        { "\xc3\xa9", 2, 2, "2 bytes (e acute)" },
        { "\xe2\x82\xac", 3, 3, "3 bytes (euro)" },
        { "\xf0\x9f\x98\x80", 4, 4, "4 bytes (emoji)" },
        { "\xc3", 1, 0, "truncated 2-byte" },
        { "\xe2\x82", 2, 0, "truncated 3-byte" },
        { "\x80", 1, 0, "lone continuation" },
        { "\xc0\xaf", 2, 0, "overlong 2-byte" },
        { "\xe0\x80\xaf", 3, 0, "overlong 3-byte" },
        { "\xf0\x80\x80\xaf", 4, 0, "overlong 4-byte" },
        { "\xed\xa0\x80", 3, 0, "surrogate" },
        { "\xf4\x90\x80\x80", 4, 0, "above U+10FFFF" },
        { "\xff", 1, 0, "0xff" },
        { "\xc3\x28", 2, 0, "bad continuation" },
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        is_int(utf8_seq((const unsigned char *)t[i].b, t[i].len), t[i].want, "%s", t[i].name);
    is_int(utf8_seq((const unsigned char *)"\xe2\x82\xac", 2), 0, "never reads past left");
    ok(utf8_valid("h\xc3\xa9llo", 6), "valid string");
    ok(!utf8_valid("h\xff" "llo", 5), "invalid string");
    ok(utf8_valid("", 0), "empty string");
}

static void printable(void)
{
    char out[16];
    is_int(utf8_printable("h\xc3\xa9llo", out, sizeof out, '?'), 6, "valid: length");
    is_str(out, "h\xc3\xa9llo", "valid: unchanged");
    utf8_printable("a\xff\xfe" "b\r\nc\x7f", out, sizeof out, '?');
    is_str(out, "a??b??c?", "malformed and control bytes replaced");
    utf8_printable("abcdefghijklmn\xc3\xa9", out, sizeof out, '?');
    is_str(out, "abcdefghijklmn", "a sequence that does not fit is cut whole");
    utf8_printable(NULL, out, sizeof out, '?');
    is_str(out, "", "NULL is empty");
}

int main(void)
{
    seqs();
    printable();
    return done_testing();
}
