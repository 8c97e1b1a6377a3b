/* message.c — header list over a message store, and message output. */
#include "msg/message.h"

#include "core/fdio.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define MSG_HDR_MAX_BYTES (1024 * 1024)   /* header section parsed at most */
#define MSG_HDR_MAX_COUNT 10000

struct msg *msg_new(struct msg_store *store)
{
    struct msg *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->store = store;
    return m;
}

void msg_free(struct msg *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->nhdr; i++)
        free(m->hdr[i].raw);
    free(m->hdr);
    msg_store_free(m->store);
    free(m);
}

static int hdr_insert(struct msg *m, size_t at, char *raw, size_t len)
{
    if (m->nhdr == m->hdr_cap) {
        size_t cap = m->hdr_cap ? m->hdr_cap * 2 : 16;
        struct msg_header *h = realloc(m->hdr, cap * sizeof *h);
        if (!h)
            return -1;
        m->hdr = h;
        m->hdr_cap = cap;
    }
    memmove(m->hdr + at + 1, m->hdr + at, (m->nhdr - at) * sizeof *m->hdr);
    const char *colon = memchr(raw, ':', len);
    m->hdr[at].raw = raw;
    m->hdr[at].raw_len = len;
    m->hdr[at].name_len = colon ? (size_t)(colon - raw) : 0;
    m->nhdr++;
    m->hdr_bytes += len;
    return 0;
}

static int hdr_insert_copy(struct msg *m, size_t at, const char *p, size_t n)
{
    char *raw = malloc(n + 1);
    if (!raw)
        return -1;
    memcpy(raw, p, n);
    raw[n] = '\0';
    if (hdr_insert(m, at, raw, n) < 0) {
        free(raw);
        return -1;
    }
    return 0;
}

/* Length of the header field starting at p (through its final CRLF, with
 * continuation lines), 0 when p does not start a header field, or -1 when
 * the field is not complete within n bytes. */
static long hdr_field_len(const char *p, size_t n)
{
    size_t i = 0;
    while (i < n && p[i] != ':' && p[i] > ' ' && (unsigned char)p[i] < 127)
        i++;
    if (i == 0 || i == n || p[i] != ':')
        return i == n ? -1 : 0;
    for (;;) {
        const char *lf = memchr(p + i, '\n', n - i);
        if (!lf)
            return -1;
        i = (size_t)(lf - p) + 1;
        if (i == n)
            return -1;
        if (p[i] != ' ' && p[i] != '\t')
            return (long)i;
    }
}

int msg_parse_headers(struct msg *m)
{
    size_t total = msg_store_size(m->store);
    size_t n = total < MSG_HDR_MAX_BYTES ? total : MSG_HDR_MAX_BYTES;
    char *buf = malloc(n + 1);
    if (!buf)
        return -1;
    /* the store answers in pieces when the bytes straddle RAM and file */
    for (size_t got = 0; got < n;) {
        ssize_t r = msg_store_read(m->store, got, buf + got, n - got);
        if (r <= 0) {
            free(buf);
            return -1;
        }
        got += (size_t)r;
    }
    size_t off = 0;
    while (off < n && m->nhdr < MSG_HDR_MAX_COUNT) {
        if (n - off >= 2 && buf[off] == '\r' && buf[off + 1] == '\n')
            break;      /* the blank line: it goes out with the body */
        long len = hdr_field_len(buf + off, n - off);
        if (len == -1 && n == total) {
            /* last field without a following line: the message ends there */
            const char *end = buf + n;
            if (n - off >= 2 && end[-2] == '\r' && end[-1] == '\n')
                len = (long)(n - off);
        }
        if (len <= 0)
            break;   /* not a header: the body starts here */
        if (hdr_insert_copy(m, m->nhdr, buf + off, (size_t)len) < 0) {
            free(buf);
            return -1;
        }
        off += (size_t)len;
    }
    m->body_off = off;
    free(buf);
    return 0;
}

/* Build "Name: value\r\n", folding at embedded newlines. */
static char *hdr_format(const char *name, const char *value, size_t *len)
{
    size_t nl = 0;
    for (const char *v = value; *v; v++)
        nl += *v == '\n';
    size_t cap = strlen(name) + strlen(value) + 3 * nl + 5;
    char *raw = malloc(cap), *o = raw;
    if (!raw)
        return NULL;
    o += sprintf(o, "%s:", name);
    if (*value != ' ' && *value != '\t')
        *o++ = ' ';
    for (const char *v = value; *v; v++) {
        if (*v == '\r')
            continue;
        if (*v == '\n') {
            *o++ = '\r';
            *o++ = '\n';
            if (v[1] != ' ' && v[1] != '\t')
                *o++ = '\t';
            continue;
        }
        *o++ = *v;
    }
    *o++ = '\r';
    *o++ = '\n';
    *len = (size_t)(o - raw);
    return raw;
}

static int hdr_add_at(struct msg *m, size_t at, const char *name, const char *value)
{
    size_t len;
    char *raw = hdr_format(name, value, &len);
    if (!raw)
        return -1;
    if (hdr_insert(m, at, raw, len) < 0) {
        free(raw);
        return -1;
    }
    return 0;
}

int msg_header_add(struct msg *m, const char *name, const char *value)
{
    return hdr_add_at(m, m->nhdr, name, value);
}

int msg_header_prepend(struct msg *m, const char *name, const char *value)
{
    return hdr_add_at(m, 0, name, value);
}

int msg_header_prepend_raw(struct msg *m, const char *raw, size_t len)
{
    return hdr_insert_copy(m, 0, raw, len);
}

static int hdr_is(const struct msg_header *h, const char *name)
{
    size_t n = strlen(name);
    return h->name_len == n && strncasecmp(h->raw, name, n) == 0;
}

size_t msg_header_remove(struct msg *m, const char *name)
{
    size_t removed = 0, j = 0;
    for (size_t i = 0; i < m->nhdr; i++) {
        if (hdr_is(&m->hdr[i], name)) {
            m->hdr_bytes -= m->hdr[i].raw_len;
            free(m->hdr[i].raw);
            removed++;
        } else {
            m->hdr[j++] = m->hdr[i];
        }
    }
    m->nhdr = j;
    return removed;
}

size_t msg_header_count(const struct msg *m, const char *name)
{
    size_t c = 0;
    for (size_t i = 0; i < m->nhdr; i++)
        c += hdr_is(&m->hdr[i], name);
    return c;
}

/* Unfold: drop CRLF before whitespace, trim both ends. */
static char *hdr_unfold(const struct msg_header *h)
{
    const char *v = h->raw + h->name_len + 1;
    size_t n = h->raw_len - h->name_len - 1;
    char *out = malloc(n + 1), *o = out;
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++)
        if (v[i] != '\r' && v[i] != '\n')
            *o++ = v[i];
    *o = '\0';
    char *s = out;
    while (*s == ' ' || *s == '\t')
        s++;
    while (o > s && (o[-1] == ' ' || o[-1] == '\t'))
        *--o = '\0';
    memmove(out, s, (size_t)(o - s) + 1);
    return out;
}

char *msg_header_get(const struct msg *m, const char *name, size_t idx)
{
    for (size_t i = 0; i < m->nhdr; i++)
        if (hdr_is(&m->hdr[i], name) && idx-- == 0)
            return hdr_unfold(&m->hdr[i]);
    return NULL;
}

size_t msg_size(const struct msg *m)
{
    return m->hdr_bytes + msg_store_size(m->store) - m->body_off;
}

int msg_write_fd(struct msg *m, int fd)
{
    /* headers in one write */
    char *h = malloc(m->hdr_bytes + 1), *o = h;
    if (!h)
        return -1;
    for (size_t i = 0; i < m->nhdr; i++) {
        memcpy(o, m->hdr[i].raw, m->hdr[i].raw_len);
        o += m->hdr[i].raw_len;
    }
    int rc = fdio_write_all(fd, h, m->hdr_bytes);
    free(h);
    if (rc < 0)
        return -1;
    return msg_store_copy_to_fd(m->store, m->body_off, fd);
}

ssize_t msg_read(struct msg *m, size_t off, void *buf, size_t n)
{
    if (off < m->hdr_bytes) {
        size_t pos = 0, done = 0;
        for (size_t i = 0; i < m->nhdr && done < n; i++) {
            const struct msg_header *hd = &m->hdr[i];
            if (off < pos + hd->raw_len) {
                size_t from = off - pos;
                size_t take = hd->raw_len - from;
                if (take > n - done)
                    take = n - done;
                memcpy((char *)buf + done, hd->raw + from, take);
                done += take;
                off += take;
            }
            pos += hd->raw_len;
        }
        return (ssize_t)done;
    }
    return msg_store_read(m->store, m->body_off + (off - m->hdr_bytes), buf, n);
}
