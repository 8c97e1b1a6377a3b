/* json.h — a small JSON reader (RFC 8259) into a tree, for `kasi top`
 * reading /stats.json. Pure: bytes in, tree out, no I/O. Nesting is
 * limited to 64 levels; numbers are doubles. */
#ifndef KASI_JSON_H
#define KASI_JSON_H

#include <stddef.h>

enum json_type { JSON_NULL, JSON_BOOL, JSON_NUM, JSON_STR, JSON_ARR, JSON_OBJ };

struct json {
    enum json_type type;
    double num;                 /* JSON_NUM; JSON_BOOL: 0 or 1 */
    char *str;                  /* JSON_STR, UTF-8, NUL-terminated */
    size_t n;                   /* JSON_ARR, JSON_OBJ: members */
    struct json **items;
    char **keys;                /* JSON_OBJ */
};

/* Parse s[0..len). NULL with a reason (and the offset) in err. */
struct json *json_parse(const char *s, size_t len, char *err, size_t errlen);
void json_free(struct json *j);

/* Member of an object, or NULL (also when j is not an object). */
const struct json *json_get(const struct json *j, const char *key);
double json_num(const struct json *j, double dflt);
const char *json_str(const struct json *j, const char *dflt);

#endif
