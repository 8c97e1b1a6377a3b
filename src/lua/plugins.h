/* plugins.h — starting, reloading and stopping the plugin engine, and the
 * engine itself as the SMTP session calls it (proto/hooks.h). */
#ifndef KASI_PLUGINS_H
#define KASI_PLUGINS_H

#include <stddef.h>

#include "proto/hooks.h"

struct kasi_config;
struct event_base;

/* What main.c installs in the server (struct hook_engine). */
extern const struct hook_engine plugins_engine;

/* Load config/plugins into the first generation. 0, or -1 with err. */
int plugins_init(struct kasi_config *cfg, struct event_base *base,
                 char *err, size_t errlen);
/* SIGHUP: build a new generation; on failure keep the old one (logged).
 * Returns 0 when the new generation is live. */
int plugins_reload(void);
/* The number the next generation loaded gets (the supervisor's
 * generation, so conn.generation is the same in every worker). */
void plugins_set_generation(unsigned id);
/* No new sessions will come: drop the current generation's reference, so
 * it is freed with its last session. */
void plugins_retire(void);
/* Free every generation (process exit). */
void plugins_free(void);
/* kasi -t: load every plugin without serving. 0, or -1 with err. */
int plugins_check(struct kasi_config *cfg, char *err, size_t errlen);

#endif
