/* smtp_stuff.c — dot-stuffing and the end-of-data line (smtp_stuff.h). */
#include "proto/smtp_stuff.h"

#include <string.h>

void smtp_stuffer_init(struct smtp_stuffer *s)
{
    memset(s, 0, sizeof *s);
    s->bol = 1;
}

void smtp_stuffer_resume(struct smtp_stuffer *s, size_t seen, const char *last,
                         size_t nlast)
{
    smtp_stuffer_init(s);
    if (seen == 0 || nlast == 0)
        return;
    if (nlast >= 2)
        s->last2[0] = last[nlast - 2];
    s->last2[1] = last[nlast - 1];
    s->bol = s->last2[1] == '\n';
    s->seen = seen;
}

/* Copies runs between line feeds with memcpy; only a '.' at the start of a
 * line costs a byte of its own. */
size_t smtp_stuff(struct smtp_stuffer *s, const char *in, size_t n, char *out)
{
    size_t o = 0, i = 0;
    while (i < n) {
        if (s->bol && in[i] == '.')
            out[o++] = '.';
        const char *lf = memchr(in + i, '\n', n - i);
        size_t run = lf ? (size_t)(lf - (in + i)) + 1 : n - i;
        memcpy(out + o, in + i, run);
        o += run;
        i += run;
        s->bol = lf != NULL;
    }
    if (n >= 2) {
        s->last2[0] = in[n - 2];
        s->last2[1] = in[n - 1];
    } else if (n == 1) {
        s->last2[0] = s->last2[1];
        s->last2[1] = in[0];
    }
    s->seen += n;
    return o;
}

const char *smtp_stuff_end(const struct smtp_stuffer *s)
{
    if (s->seen == 0 || (s->seen >= 2 && s->last2[0] == '\r' &&
                         s->last2[1] == '\n'))
        return ".\r\n";
    return "\r\n.\r\n";
}
