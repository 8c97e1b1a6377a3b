/* hooks.c — names of hooks and answers, shared by the session and engine. */
#include "proto/hooks.h"

#include <stdlib.h>

static const char *const hook_names[HOOK_COUNT] = {
    "connect", "helo", "ehlo", "auth", "mail", "rcpt", "rcpt_ok", "data",
    "data_post", "queue", "queue_ok", "rset", "quit", "disconnect",
    "unrecognized_command", "deny",
};

static const char *const rc_names[] = {
    "NEXT", "OK", "DENY", "DENYSOFT", "DENYDISCONNECT", "DISCONNECT",
};

const char *hook_name(enum hook_id h)
{
    return (unsigned)h < HOOK_COUNT ? hook_names[h] : "?";
}

const char *hook_rc_name(enum hook_rc rc)
{
    return (unsigned)rc <= RC_DISCONNECT ? rc_names[rc] : "?";
}

void hook_result_clear(struct hook_result *r)
{
    free(r->msg);
    r->msg = NULL;
}
