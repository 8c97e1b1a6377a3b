/* utf8.c — see utf8.h. */
#include "core/utf8.h"

#include <string.h>

static int cont(unsigned char c)
{
    return (c & 0xc0) == 0x80;
}

size_t utf8_seq(const unsigned char *p, size_t left)
{
    if (left == 0)
        return 0;
    unsigned char c = p[0];
    if (c < 0x80)
        return 1;
    size_t n = c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3
             : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
    if (n == 0 || left < n)
        return 0;
    for (size_t i = 1; i < n; i++)
        if (!cont(p[i]))
            return 0;
    if ((c == 0xe0 && p[1] < 0xa0) || (c == 0xed && p[1] > 0x9f) ||   /* overlong, surrogate */
        (c == 0xf0 && p[1] < 0x90) || (c == 0xf4 && p[1] > 0x8f))     /* overlong, > U+10FFFF */
        return 0;
    return n;
}

int utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        size_t n = utf8_seq(p + i, len - i);
        if (!n)
            return 0;
        i += n;
    }
    return 1;
}

size_t utf8_printable(const char *s, char *out, size_t outlen, char repl)
{
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    size_t left = strlen((const char *)p), o = 0;
    while (left && o + 1 < outlen) {
        size_t n = utf8_seq(p, left);
        if (n == 1 && (*p < 0x20 || *p == 0x7f))
            n = 0;
        if (n && o + n >= outlen)
            break;
        if (n)
            memcpy(out + o, p, n);
        else
            out[o] = repl;
        o += n ? n : 1;
        p += n ? n : 1;
        left -= n ? n : 1;
    }
    out[o] = '\0';
    return o;
}
