/* hooks.h — the contract between the SMTP session (smtp/) and the plugin
 * engine (lua/), which never include each other: main.c hands the session
 * layer a struct hook_engine.
 *
 * The session calls engine->hook() at each decision point. The engine runs
 * the hook's plugin chain and either answers at once (returns 1, *res
 * filled) or later (returns 0, then calls ctx->done() exactly once, unless
 * the session cancels it first with engine->cancel()). */
#ifndef KASI_HOOKS_H
#define KASI_HOOKS_H

#include <stddef.h>

enum hook_id {
    HOOK_CONNECT, HOOK_HELO, HOOK_EHLO, HOOK_AUTH, HOOK_MAIL, HOOK_RCPT,
    HOOK_RCPT_OK, HOOK_DATA, HOOK_DATA_POST, HOOK_QUEUE, HOOK_QUEUE_OK,
    HOOK_RSET, HOOK_QUIT, HOOK_DISCONNECT, HOOK_UNRECOGNIZED, HOOK_DENY,
    HOOK_COUNT
};

/* A plugin's answer. RC_NEXT: no opinion (the core default applies when
 * every plugin says it). */
enum hook_rc {
    RC_NEXT = 0, RC_OK, RC_DENY, RC_DENYSOFT, RC_DENYDISCONNECT, RC_DISCONNECT
};

struct hook_result {
    enum hook_rc rc;
    int code;          /* 0: the default code for this hook and answer */
    char enh[16];      /* "" : the default enhanced code */
    char *msg;         /* NULL: default text; else owned (malloc), lines
                          separated by '\n' for a multi-line reply */
    char plugin[64];   /* who answered, "" the core's default (for logs) */
};

struct conn;

/* The session as the engine sees it. Owned by the session; the engine
 * keeps its per-session state in `engine`. */
struct hook_ctx {
    struct conn *conn;          /* the connection and its open transaction */
    void *engine;               /* the engine's state, NULL before the first hook */
    int pending;                /* an answer is awaited (hook returned 0) */
    /* The pending hook finished; takes res->msg. */
    void (*done)(struct hook_ctx *c, struct hook_result *res);
    /* Bytes the client sent that no command has read yet. */
    size_t (*input_pending)(const struct hook_ctx *c);
};

struct hook_engine {
    /* arg: the hook's subject when there is one (HOOK_RCPT: the struct
     * smtp_rcpt being added; HOOK_DATA and HOOK_UNRECOGNIZED: the command
     * as a char *; HOOK_AUTH: struct auth_creds; others NULL). */
    int (*hook)(struct hook_ctx *c, enum hook_id h, void *arg,
                struct hook_result *res);
    /* Cancel the pending hook: ctx->done will not be called. */
    void (*cancel)(struct hook_ctx *c);
    /* The session is going away: drop the per-session state (cancels a
     * pending hook first). Called once, last. */
    void (*end)(struct hook_ctx *c);
    /* A burst of sessions is over and the worker gives memory back:
     * free what the engine can (its garbage). May be NULL. */
    void (*release)(void);
};

const char *hook_name(enum hook_id h);
const char *hook_rc_name(enum hook_rc rc);
void hook_result_clear(struct hook_result *r);

#endif
