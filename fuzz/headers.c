/* headers.c — fuzz target for the header parser and editor
 * (src/msg/message.h over src/msg/msg_store.h).
 *
 * Input: one byte of options, then a message as the DATA decoder leaves it.
 * Bit 0 of the options puts the store's RAM limit at a few bytes, so the
 * parser reads across the spilled file and the memory tail. Checked after
 * parsing: the header list is the input's first body_off bytes, unchanged
 * and in order, each field is "name:" with a name of printable ASCII, and
 * reading the output back (whole, and in small pieces) gives the input.
 * Then edits driven by the rest of the input (add, prepend, remove, get,
 * count, as plugins make them through lua_api.c): counts follow the edits
 * and the output is still the header list followed by the same body. */
#include "fuzz.h"
#include "msg/message.h"

#include <string.h>
#include <unistd.h>

static char spill_dir[64];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(spill_dir, sizeof spill_dir, "%s", base);
    return 0;
}

/* The whole output through msg_read, in pieces of at most step bytes. */
static char *read_all(struct msg *m, size_t step, size_t *len)
{
    size_t total = msg_size(m);
    char *buf = malloc(total + 1);
    FUZZ_CHECK(buf != NULL);
    size_t off = 0;
    while (off < total) {
        size_t want = total - off < step ? total - off : step;
        ssize_t r = msg_read(m, off, buf + off, want);
        FUZZ_CHECK(r > 0 && (size_t)r <= want);
        off += (size_t)r;
    }
    FUZZ_CHECK(msg_read(m, total, buf, 1) == 0);
    *len = total;
    return buf;
}

static void check_parsed(struct msg *m, const uint8_t *in, size_t n)
{
    size_t off = 0;
    FUZZ_CHECK(m->body_off <= n);
    for (size_t i = 0; i < m->nhdr; i++) {
        const struct msg_header *h = &m->hdr[i];
        FUZZ_CHECK(h->name_len > 0 && h->name_len < h->raw_len);
        FUZZ_CHECK(h->raw[h->name_len] == ':');
        for (size_t k = 0; k < h->name_len; k++)
            FUZZ_CHECK(h->raw[k] > ' ' && h->raw[k] < 127);
        FUZZ_CHECK(off + h->raw_len <= n && memcmp(in + off, h->raw, h->raw_len) == 0);
        off += h->raw_len;
    }
    FUZZ_CHECK(off == m->body_off && off == m->hdr_bytes);
    FUZZ_CHECK(msg_size(m) == n);
    size_t len;
    char *out = read_all(m, n + 1, &len);
    FUZZ_CHECK(len == n && (n == 0 || memcmp(out, in, n) == 0));
    free(out);
    out = read_all(m, 7, &len);
    FUZZ_CHECK(len == n && (n == 0 || memcmp(out, in, n) == 0));
    free(out);
}

/* A header name as plugins may give it: no ':', blanks, CR or LF. */
static void make_name(const uint8_t *p, size_t n, char *name)
{
    size_t k = 0;
    for (size_t i = 0; i < n && k < 15; i++)
        if (p[i] > ' ' && p[i] != ':' && p[i] != 0x7f)
            name[k++] = (char)p[i];
    if (k == 0)
        name[k++] = 'X';
    name[k] = '\0';
}

/* One edit; ops come in 8-byte records: op, name (4), value length... */
static void edit(struct msg *m, const uint8_t *r, const uint8_t *val, size_t vlen)
{
    char name[16], *value = strndup((const char *)val, vlen);
    FUZZ_CHECK(value != NULL);
    for (char *c = value; (c = strchr(c, '\r')) != NULL;)
        *c = ' ';       /* plugins may not put CR in a value */
    make_name(r + 1, 4, name);
    size_t before = msg_header_count(m, name);
    switch (r[0] % 5) {
    case 0:
        FUZZ_CHECK(msg_header_add(m, name, value) == 0);
        FUZZ_CHECK(msg_header_count(m, name) == before + 1);
        break;
    case 1:
        FUZZ_CHECK(msg_header_prepend(m, name, value) == 0);
        FUZZ_CHECK(msg_header_count(m, name) == before + 1);
        break;
    case 2:
        FUZZ_CHECK(msg_header_remove(m, name) == before);
        FUZZ_CHECK(msg_header_count(m, name) == 0);
        break;
    default: {
        char *v = msg_header_get(m, name, r[5] % (before + 1));
        FUZZ_CHECK((v != NULL) == (r[5] % (before + 1) < before));
        FUZZ_CHECK(!v || (!strchr(v, '\r') && !strchr(v, '\n')));
        free(v);
        break;
    }
    }
    free(value);
}

/* After edits: output = the header list, then the body bytes. */
static void check_output(struct msg *m, const uint8_t *in, size_t n)
{
    size_t hl = 0, len;
    for (size_t i = 0; i < m->nhdr; i++)
        hl += m->hdr[i].raw_len;
    FUZZ_CHECK(hl == m->hdr_bytes);
    char *out = read_all(m, 13, &len);
    FUZZ_CHECK(len == hl + n - m->body_off);
    size_t off = 0;
    for (size_t i = 0; i < m->nhdr; i++) {
        FUZZ_CHECK(memcmp(out + off, m->hdr[i].raw, m->hdr[i].raw_len) == 0);
        off += m->hdr[i].raw_len;
    }
    FUZZ_CHECK(memcmp(out + off, in + m->body_off, n - m->body_off) == 0);
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const uint8_t *in = data + 1;
    size_t n = size - 1;
    struct msg_store *st = msg_store_new((data[0] & 1) ? 5 : 1 << 20, spill_dir);
    FUZZ_CHECK(st != NULL);
    /* appended in pieces, as the session does per read */
    for (size_t off = 0; off < n;) {
        size_t k = n - off < 3 + (size_t)(data[0] >> 4) ? n - off : 3 + (size_t)(data[0] >> 4);
        FUZZ_CHECK(msg_store_append(st, in + off, k) == 0);
        off += k;
    }
    struct msg *m = msg_new(st);
    FUZZ_CHECK(m != NULL);
    FUZZ_CHECK(msg_parse_headers(m) == 0);
    check_parsed(m, in, n);
    /* edits: records of 6 bytes taken from the input's own tail, so the
     * same input drives both the message and what plugins do to it */
    size_t nrec = (data[0] >> 1) & 7;
    for (size_t i = 0; i < nrec && n >= 6 * (i + 1); i++) {
        const uint8_t *r = in + n - 6 * (i + 1);
        size_t vlen = r[5] % 24 < n ? r[5] % 24 : n;
        edit(m, r, in, vlen);
    }
    check_output(m, in, n);
    msg_free(m);
    return 0;
}
