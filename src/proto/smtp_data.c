/* smtp_data.c — the DATA decoder: dot-unstuffing, the strict CRLF.CRLF end
 * of data, and bookkeeping of bare CR/LF, NUL bytes and long lines.
 *
 * States describe what is held back from the previous chunk: at most a CR
 * (not yet known to be part of CRLF) and the knowledge that the current line
 * began with a (removed) dot. Message bytes are emitted in runs straight out
 * of the input; only a held CR and an inserted wrap CRLF are emitted from
 * static storage. */
#include "proto/smtp_data.h"

#include <string.h>

enum {
    DS_BOL = 0,  /* at the start of a line (after CRLF) */
    DS_TEXT,     /* inside a line */
    DS_CR,       /* inside a line, a CR is held back */
    DS_DOT,      /* the line began with '.', which was removed */
    DS_DOTCR,    /* the line is "." and a CR is held back */
    DS_DONE,     /* end of data seen */
};

#define DATA_DEFAULT_MAX_LINE 998

/* Cursor over one feed call: the input, and the run not yet emitted. */
struct dfeed {
    const char *p, *end, *run;
};

void data_decoder_init(struct data_decoder *d, size_t max_line,
                       enum data_bare_policy bare, enum data_long_policy longl,
                       data_emit_fn emit, void *ctx)
{
    memset(d, 0, sizeof *d);
    d->state = DS_BOL;
    d->max_line = max_line ? max_line : DATA_DEFAULT_MAX_LINE;
    d->bare = bare;
    d->longl = longl;
    d->emit = emit;
    d->ctx = ctx;
}

static void emit(struct data_decoder *d, const char *p, size_t n)
{
    if (n)
        d->emit(d->ctx, p, n);
}

/* Emit the pending run up to f->p and start a new one at `next`. */
static void flush_run(struct data_decoder *d, struct dfeed *f,
                      const char *next)
{
    emit(d, f->run, (size_t)(f->p - f->run));
    f->run = next;
}

/* One more data octet is about to join the line: wrap or flag if full. */
static void line_grow(struct data_decoder *d, struct dfeed *f)
{
    if (d->line_len >= d->max_line) {
        if (d->longl == DATA_LONG_WRAP) {
            flush_run(d, f, f->p);
            emit(d, "\r\n", 2);
            d->line_len = 0;
        } else {
            d->flags |= DATA_F_LONG_LINE;
        }
    }
    d->line_len++;
}

/* First CR or LF in [p, end), or end. */
static const char *find_eol(const char *p, const char *end)
{
    const char *cr = memchr(p, '\r', (size_t)(end - p));
    const char *lf = memchr(p, '\n', (size_t)((cr ? cr : end) - p));

    return lf ? lf : cr ? cr : end;
}

/* Account for n plain octets at f->p (no CR/LF among them) and step over
 * them, wrapping when the policy says so. */
static void take_plain(struct data_decoder *d, struct dfeed *f, size_t n)
{
    if (!(d->flags & DATA_F_NUL) && memchr(f->p, '\0', n))
        d->flags |= DATA_F_NUL;
    while (n > 0) {
        size_t room = d->line_len < d->max_line ? d->max_line - d->line_len
                                                : 0;
        size_t take;
        if (room == 0) {
            line_grow(d, f);        /* wraps or flags, counts one octet */
            take = 1;
        } else {
            take = n < room ? n : room;
            d->line_len += take;
        }
        f->p += take;
        n -= take;
    }
}

/* A CR that is not followed by LF: data, and flagged. */
static void bare_cr(struct data_decoder *d, struct dfeed *f)
{
    d->flags |= DATA_F_BARE_CR;
    line_grow(d, f);
}

/* DS_TEXT: copy plain runs; stop at CRLF (to DS_BOL) or a CR at the end
 * of the chunk (to DS_CR). A bare LF is data; it restarts the line count
 * (downstream software will see a line there) but never the line start. */
static void step_text(struct data_decoder *d, struct dfeed *f)
{
    const char *eol = find_eol(f->p, f->end);

    take_plain(d, f, (size_t)(eol - f->p));
    if (f->p == f->end)
        return;
    if (*f->p == '\n') {
        d->flags |= DATA_F_BARE_LF;
        f->p++;
        d->line_len = 0;
    } else if (f->p + 1 == f->end) {
        flush_run(d, f, f->end);
        f->p = f->end;
        d->state = DS_CR;
    } else if (f->p[1] == '\n') {
        f->p += 2;
        d->line_len = 0;
        d->state = DS_BOL;
    } else {
        bare_cr(d, f);
        f->p++;
    }
}

/* DS_CR: the held CR from the previous chunk meets its next byte. */
static void step_cr(struct data_decoder *d, struct dfeed *f)
{
    if (*f->p == '\n') {
        emit(d, "\r", 1);
        f->p++;
        d->line_len = 0;
        d->state = DS_BOL;
        return;
    }
    bare_cr(d, f);
    emit(d, "\r", 1);
    d->state = DS_TEXT;
}

static void step_bol(struct data_decoder *d, struct dfeed *f)
{
    if (*f->p == '.') {
        flush_run(d, f, f->p + 1);
        f->p++;
        d->state = DS_DOT;
    } else {
        d->state = DS_TEXT;
    }
}

static void step_dot(struct data_decoder *d, struct dfeed *f)
{
    if (*f->p == '\r') {
        f->p++;
        f->run = f->p;
        d->state = DS_DOTCR;
    } else {
        d->state = DS_TEXT;
    }
}

/* DS_DOTCR: "." CR LF ends the data; "." CR other is a stuffed line that
 * begins with a bare CR. */
static int step_dotcr(struct data_decoder *d, struct dfeed *f)
{
    if (*f->p == '\n') {
        f->p++;
        f->run = f->p;
        d->state = DS_DONE;
        return 1;
    }
    d->state = DS_CR;
    return 0;
}

size_t data_decoder_feed(struct data_decoder *d, const char *in, size_t n,
                         int *done)
{
    struct dfeed f = { in, in + n, in };

    *done = d->state == DS_DONE;
    while (!*done && f.p < f.end) {
        switch (d->state) {
        case DS_BOL:   step_bol(d, &f); break;
        case DS_TEXT:  step_text(d, &f); break;
        case DS_CR:    step_cr(d, &f); break;
        case DS_DOT:   step_dot(d, &f); break;
        case DS_DOTCR: *done = step_dotcr(d, &f); break;
        default:       *done = 1; break;
        }
    }
    if (!*done)
        flush_run(d, &f, f.p);
    return (size_t)(f.p - in);
}

void data_decoder_scan(struct data_decoder *d, const char *p, size_t n)
{
    const char *end = p + n;
    if (n && d->state == DS_CR && p[0] != '\n')
        d->flags |= DATA_F_BARE_CR;
    if (memchr(p, '\0', n))
        d->flags |= DATA_F_NUL;
    for (const char *q = p; (q = memchr(q, '\n', (size_t)(end - q))) != NULL; q++) {
        int after_cr = q > p ? q[-1] == '\r' : d->state == DS_CR;
        if (!after_cr)
            d->flags |= DATA_F_BARE_LF;
    }
    for (const char *q = p; (q = memchr(q, '\r', (size_t)(end - q))) != NULL; q++)
        if (q + 1 < end && q[1] != '\n')
            d->flags |= DATA_F_BARE_CR;
    if (n)
        d->state = end[-1] == '\r' ? DS_CR : DS_TEXT;
}

void data_decoder_scan_end(struct data_decoder *d)
{
    if (d->state == DS_CR)      /* the content ends in a lone CR */
        d->flags |= DATA_F_BARE_CR;
}

const char *data_decoder_verdict(const struct data_decoder *d, int *code,
                                 const char **enh)
{
    *code = 550;
    if ((d->flags & (DATA_F_BARE_CR | DATA_F_BARE_LF)) &&
        d->bare == DATA_BARE_REJECT) {
        *enh = "5.5.2";
        return "Bare CR or LF in message";
    }
    *enh = "5.6.0";
    if ((d->flags & DATA_F_LONG_LINE) && d->longl == DATA_LONG_REJECT)
        return d->max_line == DATA_DEFAULT_MAX_LINE
               ? "Line longer than 998 octets" : "Line too long";
    if (d->flags & DATA_F_NUL)
        return "NUL byte in message";
    *code = 0;
    *enh = NULL;
    return NULL;
}
