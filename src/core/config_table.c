/* config_table.c — the strict, table-driven config mechanism (see
 * config_table.h): walking a YAML map against a table of keys, the setters
 * for numbers, sizes and seconds, and the "file:line: key: why" messages.
 * Used by config.c (smtp.yaml), net/dns.c (dns.yaml) and lua/lua_gen.c
 * (lua.yaml). */
#include "core/config_table.h"
#include "core/yaml_tree.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

/* ---- messages ---------------------------------------------------------- */

int cfg_fail(struct cfg_ctx *c, int line, const char *fmt, ...)
{
    if (!c->err || c->errlen == 0)
        return -1;
    int n = line > 0 ? snprintf(c->err, c->errlen, "%s:%d: ", c->file, line)
                     : snprintf(c->err, c->errlen, "%s: ", c->file);
    if (n < 0 || (size_t)n >= c->errlen)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err + n, c->errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

int cfg_oom(struct cfg_ctx *c)
{
    if (c->err && c->errlen)
        snprintf(c->err, c->errlen, "out of memory");
    return -1;
}

/* A plain empty, "~" or "null" scalar: YAML's null. */
int cfg_is_null(const struct ynode *v)
{
    if (v->type != YNODE_SCALAR || v->quoted)
        return 0;
    const char *s = v->scalar;
    return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") ||
           !strcmp(s, "NULL");
}

static const char *cfg_got(const struct ynode *v, char *buf, size_t len)
{
    if (v->type == YNODE_MAP)
        return "a map";
    if (v->type == YNODE_SEQ)
        return "a list";
    if (cfg_is_null(v))
        return "nothing";
    snprintf(buf, len, "'%s'", v->scalar);
    return buf;
}

int cfg_type_error(struct cfg_ctx *c, const struct ynode *v, const char *key,
                   const char *what)
{
    char buf[128];
    return cfg_fail(c, v->line, "%s: expected %s, got %s", key, what,
                    cfg_got(v, buf, sizeof buf));
}

/* The scalar text of v, or NULL after an "expected WHAT" error. */
const char *cfg_scalar(struct cfg_ctx *c, const struct ynode *v, const char *key,
                       const char *what)
{
    if (v->type != YNODE_SCALAR || cfg_is_null(v)) {
        cfg_type_error(c, v, key, what);
        return NULL;
    }
    return v->scalar;
}

static void cfg_known(const struct cfg_key *t, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (; t->name && used < len; t++) {
        int n = snprintf(buf + used, len - used, "%s%s", used ? ", " : "", t->name);
        if (n < 0)
            return;
        used += (size_t)n;
    }
}

/* "prefix.name" into buf (cut short when too long: keys are for messages). */
void cfg_dotted(char *buf, size_t len, const char *prefix, const char *name)
{
    int n = snprintf(buf, len, "%s%s%s", prefix ? prefix : "", prefix ? "." : "", name);
    if (n < 0 || (size_t)n >= len)
        buf[len - 1] = '\0';
}

/* Decimal digits only; returns a pointer past them, or NULL on none/overflow. */
static const char *cfg_digits(const char *s, unsigned long long *out)
{
    unsigned long long v = 0;
    const char *p = s;
    for (; isdigit((unsigned char)*p); p++) {
        unsigned d = (unsigned)(*p - '0');
        if (v > (ULLONG_MAX - d) / 10)
            return NULL;
        v = v * 10 + d;
    }
    *out = v;
    return p == s ? NULL : p;
}

int cfg_parse_uint(const char *s, unsigned long long *out)
{
    const char *end = cfg_digits(s, out);
    return end && !*end ? 0 : -1;
}

/* "1048576", "512K", "50M", "1G" (binary units). */
static int cfg_parse_size(const char *s, unsigned long long *out)
{
    const char *end = cfg_digits(s, out);
    if (!end)
        return -1;
    unsigned shift = 0;
    switch (*end) {
    case '\0': return 0;
    case 'K': case 'k': shift = 10; break;
    case 'M': case 'm': shift = 20; break;
    case 'G': case 'g': shift = 30; break;
    default: return -1;
    }
    if (end[1] || *out > (ULLONG_MAX >> shift))
        return -1;
    *out <<= shift;
    return 0;
}

/* "30" or "2.5": digits with an optional decimal part, nothing else. */
static int cfg_parse_seconds(const char *s, double *out)
{
    unsigned long long ip, fp;
    const char *end = cfg_digits(s, &ip);
    if (!end)
        return -1;
    if (*end == '.' && !((end = cfg_digits(end + 1, &fp))))
        return -1;
    if (*end)
        return -1;
    *out = strtod(s, NULL);
    return 0;
}

int cfg_bool(struct cfg_ctx *c, const struct ynode *v, const char *key, int *out)
{
    const char *s = cfg_scalar(c, v, key, "true or false");
    if (!s)
        return -1;
    if (!strcasecmp(s, "true") || !strcasecmp(s, "yes"))
        *out = 1;
    else if (!strcasecmp(s, "false") || !strcasecmp(s, "no"))
        *out = 0;
    else
        return cfg_type_error(c, v, key, "true or false");
    return 0;
}


/* ---- key setters ------------------------------------------------------- */

static int cfg_number(struct cfg_ctx *c, const struct ynode *v, const char *key,
                      const struct cfg_key *k, int sized, unsigned long long *out)
{
    const char *what = sized ? "a size (bytes, or a number with K, M or G)"
                     : k->min ? "a positive integer" : "a non-negative integer";
    const char *s = cfg_scalar(c, v, key, what);
    if (!s)
        return -1;
    if ((sized ? cfg_parse_size(s, out) : cfg_parse_uint(s, out)) < 0)
        return cfg_type_error(c, v, key, what);
    if (*out < k->min || *out > k->max)
        return cfg_fail(c, v->line, "%s: must be between %llu and %llu, got '%s'",
                        key, k->min, k->max, s);
    return 0;
}

static void *cfg_field(struct cfg_ctx *c, const struct cfg_key *k)
{
    return (char *)c->base + k->off;
}

int cfg_set_uint(struct cfg_ctx *c, const struct ynode *v, const char *key,
                 const struct cfg_key *k)
{
    unsigned long long n;
    if (cfg_number(c, v, key, k, 0, &n) < 0)
        return -1;
    *(unsigned *)cfg_field(c, k) = (unsigned)n;
    return 0;
}

int cfg_set_count(struct cfg_ctx *c, const struct ynode *v, const char *key,
                  const struct cfg_key *k)
{
    unsigned long long n;
    if (cfg_number(c, v, key, k, 0, &n) < 0)
        return -1;
    *(size_t *)cfg_field(c, k) = (size_t)n;
    return 0;
}

int cfg_set_size(struct cfg_ctx *c, const struct ynode *v, const char *key,
                 const struct cfg_key *k)
{
    unsigned long long n;
    if (cfg_number(c, v, key, k, 1, &n) < 0)
        return -1;
    *(size_t *)cfg_field(c, k) = (size_t)n;
    return 0;
}

int cfg_set_seconds(struct cfg_ctx *c, const struct ynode *v, const char *key,
                    const struct cfg_key *k)
{
    const char *what = "a number of seconds";
    const char *s = cfg_scalar(c, v, key, what);
    double d;
    if (!s)
        return -1;
    if (cfg_parse_seconds(s, &d) < 0)
        return cfg_type_error(c, v, key, what);
    if (!(d > 0) || d > (double)k->max)
        return cfg_fail(c, v->line, "%s: must be more than 0 and at most %llu, got '%s'",
                        key, k->max, s);
    *(double *)cfg_field(c, k) = d;
    return 0;
}

/* One of a fixed list of words; *idx is its position. */
int cfg_word(struct cfg_ctx *c, const struct ynode *v, const char *key,
             const char *const *words, int *idx)
{
    char what[128] = "one of ";
    for (int i = 0; words[i]; i++) {
        size_t used = strlen(what);
        snprintf(what + used, sizeof what - used, "%s%s", i ? ", " : "", words[i]);
    }
    const char *s = cfg_scalar(c, v, key, what);
    if (!s)
        return -1;
    for (int i = 0; words[i]; i++)
        if (!strcmp(s, words[i])) {
            *idx = i;
            return 0;
        }
    return cfg_type_error(c, v, key, what);
}

int cfg_set_section(struct cfg_ctx *c, const struct ynode *v, const char *key,
                    const struct cfg_key *k)
{
    if (cfg_is_null(v))
        return 0;  /* a section whose keys are all commented out */
    return cfg_walk(c, v, key, k->sub);
}

static const struct cfg_key *cfg_find(const struct cfg_key *t, const char *name)
{
    for (; t->name; t++)
        if (!strcmp(t->name, name))
            return t;
    return NULL;
}

/* Apply every key of map (prefix: dotted path of map, NULL at the top). */
int cfg_walk(struct cfg_ctx *c, const struct ynode *map, const char *prefix,
             const struct cfg_key *table)
{
    if (map->type != YNODE_MAP)
        return cfg_type_error(c, map, prefix, "a map");
    for (size_t i = 0; i < map->n; i++) {
        char dotted[CFG_KEYLEN];
        cfg_dotted(dotted, sizeof dotted, prefix, map->keys[i]);
        const struct cfg_key *k = cfg_find(table, map->keys[i]);
        if (!k) {
            char known[512];
            cfg_known(table, known, sizeof known);
            return cfg_fail(c, map->key_lines[i], "unknown key '%s' (known: %s)",
                            dotted, known);
        }
        if (k->set(c, map->items[i], dotted, k) < 0)
            return -1;
    }
    return 0;
}

int cfg_load_file(const char *path, const struct cfg_key *table, void *base,
                  char *err, size_t errlen)
{
    struct cfg_ctx c = { .base = base, .file = path, .err = err, .errlen = errlen };
    struct stat st;
    if (err && errlen)
        err[0] = '\0';
    if (stat(path, &st) < 0 && errno == ENOENT)
        return 0;
    struct ynode *root = ytree_load_file(path, err, errlen);
    if (!root)
        return -1;
    int rc = root->type == YNODE_MAP
                 ? cfg_walk(&c, root, NULL, table)
                 : cfg_fail(&c, root->line, "expected a map of settings at the top level");
    ytree_free(root);
    return rc;
}
