/* config_table.h — the one strict, table-driven config mechanism. A module
 * that owns a YAML file (config.c: smtp.yaml, net/dns.c: dns.yaml,
 * lua/lua_gen.c: lua.yaml) describes its keys in a table of struct cfg_key
 * (name, setter, offset of the field in the module's settings struct,
 * range, or a sub-table for a section) and loads the file with
 * cfg_load_file(). An unknown key, a wrong type or an out-of-range value
 * stops loading with "file:line: key: why". The helpers below are for
 * modules that need a setter of their own. */
#ifndef KASI_CONFIG_TABLE_H
#define KASI_CONFIG_TABLE_H

#include <stddef.h>

struct ynode;
struct kasi_config;

#define CFG_KEYLEN 160

struct cfg_ctx {
    void *base;               /* the settings struct offsets point into */
    struct kasi_config *cfg;  /* smtp.yaml only (its special keys), else NULL */
    const char *file;         /* file named in messages */
    char *err;
    size_t errlen;
};

struct cfg_key;
typedef int (*cfg_set_fn)(struct cfg_ctx *c, const struct ynode *v, const char *key,
                          const struct cfg_key *k);

struct cfg_key {
    const char *name;
    cfg_set_fn set;
    size_t off;                   /* the field in the settings struct */
    unsigned long long min, max;  /* its range */
    const struct cfg_key *sub;    /* section: its keys, ending with { 0 } */
};

/* One row: a field of struct TYPE set by fn within [lo, hi]; a row whose
 * setter does all the work; a section with its own table. */
#define CFG_FIELD(type, name, fn, field, lo, hi) \
    { name, fn, offsetof(type, field), lo, hi, NULL }
#define CFG_FN(name, fn) { name, fn, 0, 0, 0, NULL }
#define CFG_SECTION(name, table) { name, cfg_set_section, 0, 0, 0, table }

/* Load path and apply table to base. A missing file changes nothing.
 * Returns 0, or -1 with "path:line: key: why" in err. */
int cfg_load_file(const char *path, const struct cfg_key *table, void *base,
                  char *err, size_t errlen);
/* Apply every key of map (prefix: dotted path of map, NULL at the top). */
int cfg_walk(struct cfg_ctx *c, const struct ynode *map, const char *prefix,
             const struct cfg_key *table);

/* Setters for table rows. uint: unsigned; count: size_t; size: size_t with
 * K/M/G suffixes; seconds: double, more than 0 and at most max. */
int cfg_set_uint(struct cfg_ctx *c, const struct ynode *v, const char *key,
                 const struct cfg_key *k);
int cfg_set_count(struct cfg_ctx *c, const struct ynode *v, const char *key,
                  const struct cfg_key *k);
int cfg_set_size(struct cfg_ctx *c, const struct ynode *v, const char *key,
                 const struct cfg_key *k);
int cfg_set_seconds(struct cfg_ctx *c, const struct ynode *v, const char *key,
                    const struct cfg_key *k);
int cfg_set_section(struct cfg_ctx *c, const struct ynode *v, const char *key,
                    const struct cfg_key *k);

/* For setters of their own: an error at line (0: none) — always -1. */
int cfg_fail(struct cfg_ctx *c, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int cfg_oom(struct cfg_ctx *c);
/* "key: expected WHAT, got ..." at v's line — always -1. */
int cfg_type_error(struct cfg_ctx *c, const struct ynode *v, const char *key,
                   const char *what);
/* A plain empty, "~" or "null" scalar. */
int cfg_is_null(const struct ynode *v);
/* v's text, or NULL after an "expected WHAT" error. */
const char *cfg_scalar(struct cfg_ctx *c, const struct ynode *v, const char *key,
                       const char *what);
int cfg_bool(struct cfg_ctx *c, const struct ynode *v, const char *key, int *out);
/* One of a NULL-terminated list of words; *idx is its position. */
int cfg_word(struct cfg_ctx *c, const struct ynode *v, const char *key,
             const char *const *words, int *idx);
/* "prefix.name" into buf (cut short when too long: keys are for messages). */
void cfg_dotted(char *buf, size_t len, const char *prefix, const char *name);
/* Decimal digits and nothing else. 0, or -1. */
int cfg_parse_uint(const char *s, unsigned long long *out);

#endif
