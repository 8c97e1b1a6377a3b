/* utf8.h — UTF-8 checks for bytes that came from a client or a plugin and
 * go where only valid UTF-8 (or plain text) belongs: the log, the
 * Received: header, the JSON envelope. Pure functions, no allocation. */
#ifndef KASI_UTF8_H
#define KASI_UTF8_H

#include <stddef.h>

/* Length (1..4) of the well-formed UTF-8 sequence at p (RFC 3629: no
 * overlong forms, no surrogates, nothing past U+10FFFF), or 0 when the
 * bytes at p are not one; never reads past p + left. */
size_t utf8_seq(const unsigned char *p, size_t left);

/* 1 when the first len bytes of s are well-formed UTF-8. */
int utf8_valid(const char *s, size_t len);

/* Copy s into out (outlen > 0, always terminated) as printable text:
 * well-formed UTF-8 stays, every control byte or byte of a malformed
 * sequence becomes `repl`. A sequence that does not fit is cut whole.
 * Returns the length written. */
size_t utf8_printable(const char *s, char *out, size_t outlen, char repl);

#endif
