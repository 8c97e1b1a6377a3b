/* hooks.h — the contract between the SMTP session and the plugin engine.
 *
 * The session calls plugins_hook() at each decision point. The engine runs
 * the hook's plugin chain and either answers at once (returns 1, *res
 * filled) or later (returns 0, then calls session_hook_done() exactly once,
 * unless the session ends first: plugins_session_end() cancels it). */
#ifndef KASI_HOOKS_H
#define KASI_HOOKS_H

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
};

struct session;

const char *hook_name(enum hook_id h);
const char *hook_rc_name(enum hook_rc rc);
void hook_result_clear(struct hook_result *r);

/* Engine side (plugins.c). arg: the hook's subject when there is one
 * (HOOK_RCPT: the struct smtp_rcpt being added; HOOK_UNRECOGNIZED: the
 * command line as a char *; others NULL). */
int plugins_hook(struct session *s, enum hook_id h, void *arg,
                 struct hook_result *res);
/* The session is going away: cancel a pending hook, drop per-session state. */
void plugins_session_end(struct session *s);

/* Session side (session.c): a pending hook finished. Takes res->msg. */
void session_hook_done(struct session *s, struct hook_result *res);

#endif
