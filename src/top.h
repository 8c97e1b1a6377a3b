/* top.h — `kasi top`: the plugin table of a running kasi (top.c). */
#ifndef KASI_TOP_H
#define KASI_TOP_H

struct kasi_config;

/* Print the table from cfg's http listener. Exit status: 0 or 1. */
int top_main(const struct kasi_config *cfg);

#endif
