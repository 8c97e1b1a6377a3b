/* yaml_tree.c — load one YAML file into a tree of struct ynode with libyaml's
 * event API. The loader is strict: a single document, no anchors or aliases,
 * scalar map keys only, no duplicate keys, no NUL in scalars, bounded
 * nesting. Every error path frees what was built so far and leaves a
 * "path:line: why" message (lines are 1-based). */
#include "core/yaml_tree.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#define YTREE_MAX_DEPTH 64

struct ytree_ctx {
    yaml_parser_t parser;
    const char *path;
    char *err;
    size_t errlen;
};

static struct ynode *ytree_node(struct ytree_ctx *c, yaml_event_t *ev, int depth);

static void ytree_error(struct ytree_ctx *c, int line, const char *fmt, ...)
{
    if (!c->err || c->errlen == 0)
        return;
    int n = snprintf(c->err, c->errlen, "%s:%d: ", c->path, line);
    if (n < 0 || (size_t)n >= c->errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err + n, c->errlen - (size_t)n, fmt, ap);
    va_end(ap);
}

static int ytree_line(const yaml_event_t *ev)
{
    return (int)ev->start_mark.line + 1;
}

/* Next event, or -1 with libyaml's complaint as the error message. */
static int ytree_next(struct ytree_ctx *c, yaml_event_t *ev)
{
    if (yaml_parser_parse(&c->parser, ev))
        return 0;
    const yaml_parser_t *p = &c->parser;
    const char *problem = p->problem ? p->problem : "cannot parse YAML";
    if (p->error == YAML_READER_ERROR)
        ytree_error(c, (int)p->mark.line + 1, "%s (byte offset %zu)", problem,
                    p->problem_offset);
    else if (p->context)
        ytree_error(c, (int)p->problem_mark.line + 1, "%s (%s at line %d)",
                    problem, p->context, (int)p->context_mark.line + 1);
    else
        ytree_error(c, (int)p->problem_mark.line + 1, "%s", problem);
    return -1;
}

static struct ynode *ytree_new(enum ynode_type type, int line)
{
    struct ynode *n = calloc(1, sizeof *n);
    if (n) {
        n->type = type;
        n->line = line;
    }
    return n;
}

void ytree_free(struct ynode *n)
{
    if (!n)
        return;
    for (size_t i = 0; i < n->n; i++) {
        if (n->keys)
            free(n->keys[i]);
        ytree_free(n->items[i]);
    }
    free(n->keys);
    free(n->key_lines);
    free(n->items);
    free(n->scalar);
    free(n);
}

struct ynode *ytree_get(const struct ynode *map, const char *key)
{
    if (!map || map->type != YNODE_MAP)
        return NULL;
    for (size_t i = 0; i < map->n; i++)
        if (strcmp(map->keys[i], key) == 0)
            return map->items[i];
    return NULL;
}

/* Append item (and, for maps, key) to n; takes ownership only on success. */
static int ytree_push(struct ynode *n, char *key, int key_line, struct ynode *item)
{
    struct ynode **items = realloc(n->items, (n->n + 1) * sizeof *items);
    if (!items)
        return -1;
    n->items = items;
    if (n->type == YNODE_MAP) {
        char **keys = realloc(n->keys, (n->n + 1) * sizeof *keys);
        if (!keys)
            return -1;
        n->keys = keys;
        int *lines = realloc(n->key_lines, (n->n + 1) * sizeof *lines);
        if (!lines)
            return -1;
        n->key_lines = lines;
        n->keys[n->n] = key;
        n->key_lines[n->n] = key_line;
    }
    n->items[n->n++] = item;
    return 0;
}

static const yaml_char_t *ytree_anchor(const yaml_event_t *ev)
{
    switch (ev->type) {
    case YAML_SCALAR_EVENT: return ev->data.scalar.anchor;
    case YAML_SEQUENCE_START_EVENT: return ev->data.sequence_start.anchor;
    case YAML_MAPPING_START_EVENT: return ev->data.mapping_start.anchor;
    default: return NULL;
    }
}

/* Copy a scalar event's text; refuses embedded NUL bytes. */
static char *ytree_text(struct ytree_ctx *c, const yaml_event_t *ev)
{
    const char *v = (const char *)ev->data.scalar.value;
    size_t len = ev->data.scalar.length;
    if (memchr(v, '\0', len)) {
        ytree_error(c, ytree_line(ev), "NUL character in a scalar");
        return NULL;
    }
    char *s = malloc(len + 1);
    if (!s) {
        ytree_error(c, ytree_line(ev), "out of memory");
        return NULL;
    }
    memcpy(s, v, len);
    s[len] = '\0';
    return s;
}

static struct ynode *ytree_scalar(struct ytree_ctx *c, const yaml_event_t *ev)
{
    struct ynode *n = ytree_new(YNODE_SCALAR, ytree_line(ev));
    if (!n) {
        ytree_error(c, ytree_line(ev), "out of memory");
        return NULL;
    }
    n->scalar = ytree_text(c, ev);
    if (!n->scalar) {
        free(n);
        return NULL;
    }
    n->quoted = ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE;
    return n;
}

static struct ynode *ytree_seq(struct ytree_ctx *c, int line, int depth)
{
    struct ynode *seq = ytree_new(YNODE_SEQ, line);
    if (!seq) {
        ytree_error(c, line, "out of memory");
        return NULL;
    }
    for (;;) {
        yaml_event_t ev;
        if (ytree_next(c, &ev) < 0)
            goto fail;
        if (ev.type == YAML_SEQUENCE_END_EVENT) {
            yaml_event_delete(&ev);
            return seq;
        }
        struct ynode *item = ytree_node(c, &ev, depth + 1);
        int l = ytree_line(&ev);
        yaml_event_delete(&ev);
        if (!item)
            goto fail;
        if (ytree_push(seq, NULL, 0, item) < 0) {
            ytree_free(item);
            ytree_error(c, l, "out of memory");
            goto fail;
        }
    }
fail:
    ytree_free(seq);
    return NULL;
}

/* Read one map key: a scalar, not anchored, not yet present in map. */
static char *ytree_key(struct ytree_ctx *c, const struct ynode *map,
                       const yaml_event_t *ev)
{
    if (ev->type == YAML_ALIAS_EVENT) {
        ytree_error(c, ytree_line(ev), "aliases are not allowed");
        return NULL;
    }
    if (ev->type != YAML_SCALAR_EVENT) {
        ytree_error(c, ytree_line(ev), "map keys must be scalars");
        return NULL;
    }
    if (ev->data.scalar.anchor) {
        ytree_error(c, ytree_line(ev), "anchors are not allowed");
        return NULL;
    }
    char *key = ytree_text(c, ev);
    if (key && ytree_get(map, key)) {
        ytree_error(c, ytree_line(ev), "duplicate key '%s'", key);
        free(key);
        return NULL;
    }
    return key;
}

/* Read a key's value and append the pair; frees key on failure. */
static int ytree_pair(struct ytree_ctx *c, struct ynode *map, char *key, int key_line,
                      int depth)
{
    yaml_event_t ev;
    if (ytree_next(c, &ev) < 0) {
        free(key);
        return -1;
    }
    struct ynode *val = ytree_node(c, &ev, depth + 1);
    yaml_event_delete(&ev);
    if (!val) {
        free(key);
        return -1;
    }
    if (ytree_push(map, key, key_line, val) < 0) {
        ytree_error(c, key_line, "out of memory");
        free(key);
        ytree_free(val);
        return -1;
    }
    return 0;
}

static struct ynode *ytree_map(struct ytree_ctx *c, int line, int depth)
{
    struct ynode *map = ytree_new(YNODE_MAP, line);
    if (!map) {
        ytree_error(c, line, "out of memory");
        return NULL;
    }
    for (;;) {
        yaml_event_t ev;
        if (ytree_next(c, &ev) < 0)
            goto fail;
        if (ev.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&ev);
            return map;
        }
        char *key = ytree_key(c, map, &ev);
        int key_line = ytree_line(&ev);
        yaml_event_delete(&ev);
        if (!key || ytree_pair(c, map, key, key_line, depth) < 0)
            goto fail;
    }
fail:
    ytree_free(map);
    return NULL;
}

/* Build the node that starts with ev (the caller deletes ev). */
static struct ynode *ytree_node(struct ytree_ctx *c, yaml_event_t *ev, int depth)
{
    int line = ytree_line(ev);
    if (depth > YTREE_MAX_DEPTH) {
        ytree_error(c, line, "nesting deeper than %d levels", YTREE_MAX_DEPTH);
        return NULL;
    }
    if (ev->type == YAML_ALIAS_EVENT) {
        ytree_error(c, line, "aliases are not allowed");
        return NULL;
    }
    if (ytree_anchor(ev)) {
        ytree_error(c, line, "anchors are not allowed");
        return NULL;
    }
    switch (ev->type) {
    case YAML_SCALAR_EVENT: return ytree_scalar(c, ev);
    case YAML_SEQUENCE_START_EVENT: return ytree_seq(c, line, depth);
    case YAML_MAPPING_START_EVENT: return ytree_map(c, line, depth);
    default:
        ytree_error(c, line, "unexpected YAML event");
        return NULL;
    }
}

/* Expect an event of the given type and drop it. */
static int ytree_expect(struct ytree_ctx *c, yaml_event_type_t type, const char *what)
{
    yaml_event_t ev;
    if (ytree_next(c, &ev) < 0)
        return -1;
    int good = ev.type == type;
    if (!good)
        ytree_error(c, ytree_line(&ev), "%s", what);
    yaml_event_delete(&ev);
    return good ? 0 : -1;
}

/* An empty document ("---" alone) loads as an empty map, like an empty file. */
static struct ynode *ytree_root(struct ytree_ctx *c, yaml_event_t *ev)
{
    if (ev->type == YAML_SCALAR_EVENT && ev->data.scalar.length == 0 &&
        ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && !ev->data.scalar.anchor) {
        struct ynode *n = ytree_new(YNODE_MAP, ytree_line(ev));
        if (!n)
            ytree_error(c, ytree_line(ev), "out of memory");
        return n;
    }
    return ytree_node(c, ev, 0);
}

/* stream-start, then nothing or exactly one document, then stream-end. */
static struct ynode *ytree_document(struct ytree_ctx *c)
{
    yaml_event_t ev;
    if (ytree_expect(c, YAML_STREAM_START_EVENT, "expected the start of the stream") < 0 ||
        ytree_next(c, &ev) < 0)
        return NULL;
    int is_end = ev.type == YAML_STREAM_END_EVENT;
    yaml_event_delete(&ev);
    if (is_end) {
        struct ynode *n = ytree_new(YNODE_MAP, 1);
        if (!n)
            ytree_error(c, 1, "out of memory");
        return n;
    }
    if (ytree_next(c, &ev) < 0)
        return NULL;
    struct ynode *root = ytree_root(c, &ev);
    yaml_event_delete(&ev);
    if (root && (ytree_expect(c, YAML_DOCUMENT_END_EVENT, "expected the end of the document") < 0 ||
                 ytree_expect(c, YAML_STREAM_END_EVENT, "only one YAML document is allowed") < 0)) {
        ytree_free(root);
        return NULL;
    }
    return root;
}

struct ynode *ytree_load_file(const char *path, char *err, size_t errlen)
{
    struct ytree_ctx c = { .path = path, .err = err, .errlen = errlen };
    if (err && errlen)
        err[0] = '\0';
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (err && errlen)
            snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    if (!yaml_parser_initialize(&c.parser)) {
        fclose(f);
        if (err && errlen)
            snprintf(err, errlen, "%s: out of memory", path);
        return NULL;
    }
    yaml_parser_set_input_file(&c.parser, f);
    struct ynode *root = ytree_document(&c);
    yaml_parser_delete(&c.parser);
    fclose(f);
    return root;
}
