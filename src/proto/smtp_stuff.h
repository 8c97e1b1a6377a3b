/* smtp_stuff.h — the DATA encoder: dot-stuffing (RFC 5321 §4.5.2) of
 * message bytes on their way to an SMTP server, and the end-of-data line
 * that follows them. The counterpart of smtp_data.h (the decoder).
 *
 * Pure: no I/O, no allocation. The state carries across chunks, so a line
 * end or a dot may fall on any chunk boundary. Used by msg/msg_stream.c
 * (the one reader of message output for SMTP) and the unit tests. */
#ifndef KASI_SMTP_STUFF_H
#define KASI_SMTP_STUFF_H

#include <stddef.h>

struct smtp_stuffer {
    int bol;              /* at the start of a line (start: 1) */
    char last2[2];        /* the last two message octets seen */
    size_t seen;          /* message octets seen */
};

void smtp_stuffer_init(struct smtp_stuffer *s);
/* The state after seen octets whose last nlast (0..2, fewer only when seen
 * is smaller) are last: for a stream that resumes at an offset or passed
 * bytes by without looking at them. */
void smtp_stuffer_resume(struct smtp_stuffer *s, size_t seen, const char *last,
                         size_t nlast);
/* Stuff n bytes of in into out (room for 2*n; in and out do not overlap);
 * returns bytes written. */
size_t smtp_stuff(struct smtp_stuffer *s, const char *in, size_t n, char *out);
/* The end of data to send after the last octet: ".\r\n" when the message
 * is empty or ends with CRLF, else "\r\n.\r\n". */
const char *smtp_stuff_end(const struct smtp_stuffer *s);

#endif
