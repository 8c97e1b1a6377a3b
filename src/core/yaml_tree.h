/* yaml_tree.h — a YAML document loaded with libyaml into a small tree of
 * maps, sequences and scalars, each node remembering its line, so config
 * errors can name file, line and key. Used by the core config and to hand
 * each plugin its config as a Lua table. */
#ifndef KASI_YAML_TREE_H
#define KASI_YAML_TREE_H

#include <stddef.h>

enum ynode_type { YNODE_SCALAR, YNODE_MAP, YNODE_SEQ };

struct ynode {
    enum ynode_type type;
    int line;                 /* 1-based line in the file */
    char *scalar;             /* YNODE_SCALAR: the text */
    int quoted;               /* scalar was not plain: quoted or a block (| >) */
    size_t n;                 /* MAP: pairs, SEQ: items */
    char **keys;              /* MAP: keys (n) */
    int *key_lines;           /* MAP: line of each key */
    struct ynode **items;     /* MAP: values (n); SEQ: items (n) */
};

/* Load `path`. Returns the root (an empty map for an empty file) or NULL
 * with a message "path:line: ..." in err. Anchors/aliases are refused. */
struct ynode *ytree_load_file(const char *path, char *err, size_t errlen);
void ytree_free(struct ynode *n);
/* Map lookup; NULL when absent or n is not a map. */
struct ynode *ytree_get(const struct ynode *map, const char *key);

#endif
