/* smtp_data.h — the DATA decoder: turns the dot-stuffed byte stream after a
 * DATA command into message bytes and finds the one true end of data.
 *
 * End of data is only CR LF . CR LF (the message starting with ". CR LF"
 * directly after DATA counts too: the 354 reply's CRLF precedes it). A bare
 * CR or bare LF is never a line end (SMTP smuggling): depending on policy the
 * message is marked for rejection or the byte is kept as data. Lines longer
 * than the limit are marked for rejection or wrapped with CRLF.
 *
 * The decoder is a small state machine fed with arbitrary chunks (a dot or a
 * CRLF may be split across chunks) and emits runs of message bytes through a
 * callback. It never allocates. */
#ifndef KASI_SMTP_DATA_H
#define KASI_SMTP_DATA_H

#include <stddef.h>

enum data_bare_policy { DATA_BARE_REJECT = 0, DATA_BARE_ACCEPT };
enum data_long_policy { DATA_LONG_REJECT = 0, DATA_LONG_WRAP };

/* Flags collected while decoding (the message is read to its end anyway). */
enum {
    DATA_F_BARE_LF   = 1 << 0,
    DATA_F_BARE_CR   = 1 << 1,
    DATA_F_LONG_LINE = 1 << 2,
    DATA_F_NUL       = 1 << 3,
};

typedef void (*data_emit_fn)(void *ctx, const char *p, size_t n);

struct data_decoder {
    int state;                   /* private */
    size_t line_len;             /* octets in the current line so far */
    size_t max_line;             /* line limit without CRLF, default 998 */
    enum data_bare_policy bare;
    enum data_long_policy longl;
    unsigned flags;              /* DATA_F_* seen so far */
    data_emit_fn emit;
    void *ctx;
};

/* max_line: octets per line excluding CRLF (RFC 5321: 998). */
void data_decoder_init(struct data_decoder *d, size_t max_line,
                       enum data_bare_policy bare, enum data_long_policy longl,
                       data_emit_fn emit, void *ctx);

/* Feed n bytes. Returns the number consumed: n, or fewer when the end of
 * data was reached (then *done = 1 and the rest belongs to the next
 * command, e.g. pipelined QUIT). Emitted bytes have stuffing dots removed and
 * never include the final ".CRLF"; the last emitted line ends with CRLF. */
size_t data_decoder_feed(struct data_decoder *d, const char *in, size_t n,
                         int *done);

/* BDAT content is counted, not dot-stuffed: scan a chunk only for bare
 * CR/LF and NUL (flags), with the same policy and verdict as DATA; call
 * data_decoder_scan_end after the last chunk. Nothing is emitted. */
void data_decoder_scan(struct data_decoder *d, const char *p, size_t n);
void data_decoder_scan_end(struct data_decoder *d);

/* Should the message be rejected under the policy? Returns NULL, or a static
 * reason with *code and *enh set:
 *   bare CR/LF with DATA_BARE_REJECT  -> 550 5.5.2 "Bare CR or LF in message"
 *   long line with DATA_LONG_REJECT   -> 550 5.6.0 "Line longer than N octets"
 *   NUL byte (always)                 -> 550 5.6.0 "NUL byte in message" */
const char *data_decoder_verdict(const struct data_decoder *d, int *code,
                                 const char **enh);

#endif
