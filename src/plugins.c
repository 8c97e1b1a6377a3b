/* plugins.c — placeholder engine until the Lua engine lands: every hook
 * says NEXT, and the queue hook writes to the local spool. */
#include "hooks.h"
#include "plugins.h"

#include <stdio.h>
#include <string.h>

#include "config.h"
#include "server.h"
#include "session.h"
#include "spool.h"

int plugins_hook(struct session *s, enum hook_id h, void *arg,
                 struct hook_result *res)
{
    (void)arg;
    res->rc = RC_NEXT;
    if (h == HOOK_QUEUE) {
        char err[512];
        if (spool_write(s->srv->cfg->spool_dir, s, s->txn, err, sizeof err) < 0) {
            slog(s, LOG_LVL_ERROR, "%s", err);
            res->rc = RC_DENYSOFT;
            res->code = 451;
            snprintf(res->enh, sizeof res->enh, "4.3.0");
            res->msg = strdup("Error: local error writing the queue file");
        } else {
            res->rc = RC_OK;
        }
    }
    return 1;
}

void plugins_session_end(struct session *s)
{
    (void)s;
}

int plugins_init(struct kasi_config *cfg, struct event_base *base,
                 char *err, size_t errlen)
{
    (void)cfg; (void)base; (void)err; (void)errlen;
    return 0;
}

int plugins_reload(void)
{
    return 0;
}

void plugins_free(void)
{
}

int plugins_check(struct kasi_config *cfg, char *err, size_t errlen)
{
    (void)cfg; (void)err; (void)errlen;
    return 0;
}
