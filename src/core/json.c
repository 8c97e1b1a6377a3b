/* json.c — a recursive-descent JSON reader (see json.h). Strict: no
 * trailing commas, no comments, no leading zeros, strings are UTF-8 with
 * the escapes of RFC 8259 (\u surrogate pairs joined), control
 * characters refused. */
#include "core/json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JSON_DEPTH 64

struct jp {
    const char *s, *end, *p;
    const char *why;
    int depth;
};

static struct json *value(struct jp *j);

static void ws(struct jp *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' ||
                             *j->p == '\r'))
        j->p++;
}

static struct json *fail(struct jp *j, const char *why)
{
    if (!j->why)
        j->why = why;
    return NULL;
}

static struct json *node(struct jp *j, enum json_type t)
{
    struct json *n = calloc(1, sizeof *n);
    if (!n)
        return fail(j, "out of memory");
    n->type = t;
    return n;
}

static int word(struct jp *j, const char *w)
{
    size_t n = strlen(w);
    if ((size_t)(j->end - j->p) < n || memcmp(j->p, w, n))
        return 0;
    j->p += n;
    return 1;
}

static int hex4(struct jp *j, unsigned *out)
{
    unsigned v = 0;
    if (j->end - j->p < 4)
        return -1;
    for (int i = 0; i < 4; i++) {
        char c = *j->p++;
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return -1;
    }
    *out = v;
    return 0;
}

static size_t utf8(unsigned cp, char *o)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xc0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* \uXXXX (and its low surrogate) after the backslash-u. */
static int unicode(struct jp *j, char *o, size_t *n)
{
    unsigned cp, lo;
    if (hex4(j, &cp) < 0)
        return -1;
    if (cp >= 0xdc00 && cp <= 0xdfff)
        return -1;
    if (cp >= 0xd800 && cp <= 0xdbff) {
        if (!word(j, "\\u") || hex4(j, &lo) < 0 || lo < 0xdc00 || lo > 0xdfff)
            return -1;
        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
    }
    *n += utf8(cp, o + *n);
    return 0;
}

static int escape(struct jp *j, char *o, size_t *n)
{
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    if (j->p >= j->end)
        return -1;
    char c = *j->p++;
    if (c == 'u')
        return unicode(j, o, n);
    const char *at = memchr(from, c, sizeof from - 1);
    if (!at)
        return -1;
    o[(*n)++] = to[at - from];
    return 0;
}

/* A string after its opening quote; malloc'd. The output is never longer
 * than the input (an escape of 6 bytes makes at most 3, 12 make 4). */
static char *string(struct jp *j)
{
    const char *start = j->p;
    char *o = malloc((size_t)(j->end - start) + 1);
    size_t n = 0;
    if (!o)
        return (char *)fail(j, "out of memory");
    while (j->p < j->end && *j->p != '"') {
        unsigned char c = (unsigned char)*j->p++;
        if (c < 0x20 || (c == '\\' && escape(j, o, &n) < 0)) {
            free(o);
            return (char *)fail(j, c < 0x20 ? "control character in a string"
                                            : "bad escape in a string");
        }
        if (c != '\\')
            o[n++] = (char)c;
    }
    if (j->p >= j->end) {
        free(o);
        return (char *)fail(j, "unterminated string");
    }
    j->p++;
    o[n] = '\0';
    return o;
}

static const char *digits(const char *p, const char *end)
{
    while (p < end && *p >= '0' && *p <= '9')
        p++;
    return p;
}

static struct json *number(struct jp *j)
{
    const char *p = j->p, *e = j->end;
    if (p < e && *p == '-')
        p++;
    if (p < e && *p == '0')
        p++;
    else if (p < e && *p >= '1' && *p <= '9')
        p = digits(p, e);
    else
        return fail(j, "bad number");
    if (p < e && *p == '.' && (p + 1 >= e || (p = digits(p + 1, e)) == NULL ||
                               p[-1] == '.'))
        return fail(j, "bad number");
    if (p < e && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < e && (*p == '+' || *p == '-'))
            p++;
        const char *d = digits(p, e);
        if (d == p)
            return fail(j, "bad number");
        p = d;
    }
    char buf[64];
    size_t len = (size_t)(p - j->p);
    if (len >= sizeof buf)
        return fail(j, "number too long");
    memcpy(buf, j->p, len);
    buf[len] = '\0';
    struct json *n = node(j, JSON_NUM);
    if (n)
        n->num = strtod(buf, NULL);
    j->p = p;
    return n;
}

static int push(struct json *c, struct json *item, char *key)
{
    struct json **items = realloc(c->items, (c->n + 1) * sizeof *items);
    if (!items)
        return -1;
    c->items = items;
    if (c->type == JSON_OBJ) {
        char **keys = realloc(c->keys, (c->n + 1) * sizeof *keys);
        if (!keys)
            return -1;
        c->keys = keys;
        keys[c->n] = key;
    }
    items[c->n++] = item;
    return 0;
}

/* One member of an array or object (after its separator). */
static int member(struct jp *j, struct json *c)
{
    char *key = NULL;
    ws(j);
    if (c->type == JSON_OBJ) {
        if (j->p >= j->end || *j->p != '"')
            return fail(j, "expected a key"), -1;
        j->p++;
        if (!(key = string(j)))
            return -1;
        ws(j);
        if (j->p >= j->end || *j->p++ != ':') {
            free(key);
            return fail(j, "expected ':'"), -1;
        }
    }
    struct json *v = value(j);
    if (!v || push(c, v, key) < 0) {
        free(key);
        json_free(v);
        return fail(j, "out of memory"), -1;
    }
    return 0;
}

static struct json *container(struct jp *j, enum json_type t, char close)
{
    if (++j->depth > JSON_DEPTH)
        return fail(j, "nested too deeply");
    struct json *c = node(j, t);
    if (!c)
        return NULL;
    ws(j);
    if (j->p < j->end && *j->p == close) {
        j->p++;
        j->depth--;
        return c;
    }
    for (;;) {
        if (member(j, c) < 0)
            break;
        ws(j);
        if (j->p < j->end && *j->p == ',') {
            j->p++;
            continue;
        }
        if (j->p < j->end && *j->p == close) {
            j->p++;
            j->depth--;
            return c;
        }
        fail(j, t == JSON_ARR ? "expected ',' or ']'" : "expected ',' or '}'");
        break;
    }
    json_free(c);
    return NULL;
}

static struct json *value(struct jp *j)
{
    ws(j);
    if (j->p >= j->end)
        return fail(j, "unexpected end");
    struct json *n;
    switch (*j->p) {
    case '{': j->p++; return container(j, JSON_OBJ, '}');
    case '[': j->p++; return container(j, JSON_ARR, ']');
    case '"':
        j->p++;
        if (!(n = node(j, JSON_STR)) || !(n->str = string(j))) {
            free(n);
            return NULL;
        }
        return n;
    case 't': case 'f': case 'n':
        if (word(j, "true") || word(j, "false")) {
            if ((n = node(j, JSON_BOOL)))
                n->num = j->p[-1] == 'e' && j->p[-2] == 'u';
            return n;
        }
        return word(j, "null") ? node(j, JSON_NULL) : fail(j, "bad literal");
    default:
        return number(j);
    }
}

struct json *json_parse(const char *s, size_t len, char *err, size_t errlen)
{
    struct jp j = { s, s + len, s, NULL, 0 };
    struct json *v = value(&j);
    ws(&j);
    if (v && j.p != j.end) {
        json_free(v);
        v = fail(&j, "text after the value");
    }
    if (!v && err && errlen)
        snprintf(err, errlen, "%s at offset %zu", j.why ? j.why : "error",
                 (size_t)(j.p - s));
    return v;
}

void json_free(struct json *j)
{
    if (!j)
        return;
    for (size_t i = 0; i < j->n; i++) {
        json_free(j->items[i]);
        if (j->keys)
            free(j->keys[i]);
    }
    free(j->items);
    free(j->keys);
    free(j->str);
    free(j);
}

const struct json *json_get(const struct json *j, const char *key)
{
    if (!j || j->type != JSON_OBJ)
        return NULL;
    for (size_t i = 0; i < j->n; i++)
        if (!strcmp(j->keys[i], key))
            return j->items[i];
    return NULL;
}

double json_num(const struct json *j, double dflt)
{
    return j && (j->type == JSON_NUM || j->type == JSON_BOOL) ? j->num : dflt;
}

const char *json_str(const struct json *j, const char *dflt)
{
    return j && j->type == JSON_STR ? j->str : dflt;
}
