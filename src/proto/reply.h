/* reply.h — every reply code kasi sends, and the contract that ties a
 * plugin's answer to what the client hears. Pure: no I/O, no state.
 *
 * Callers: smtp/session.c asks reply_answer() what a hook's result means
 * (go on, refuse, close; with which code, enhanced code and text), takes
 * its own replies from reply_core() and writes every reply with
 * reply_format(); smtp/server.c takes its refusals of a connection from
 * reply_core() too. lua/plugins.c checks each plugin's answer with
 * reply_check() (and logs, naming the plugin, what did not fit) and builds
 * its failure answers with reply_failure().
 *
 * The contract: the answer decides the class of the reply. DENY and
 * DENYDISCONNECT are 5xx, DENYSOFT and DISCONNECT 4xx, OK 2xx where OK
 * means accept (354 at DATA). A plugin's code or enhanced code of another
 * class, or an invalid one (3xx, 999, not a number, no x.y.z), gives way
 * to the hook's default for the answer. An answer that is none of these
 * is a temporary failure. */
#ifndef KASI_REPLY_H
#define KASI_REPLY_H

#include <stddef.h>

#include "proto/hooks.h"

#define REPLY_LINE_MAX  512     /* one reply line with its CRLF (RFC 5321 4.5.3.1.5) */
#define REPLY_LINES_MAX 40      /* lines of one reply; more are dropped */
#define REPLY_TEXT_MAX  4096    /* bytes of a plugin's text that are kept */
#define REPLY_WIRE_MAX  (REPLY_LINE_MAX * REPLY_LINES_MAX)

enum reply_action {
    REPLY_ACCEPT,       /* go on; send the reply unless its code is 0 */
    REPLY_REFUSE,       /* the command failed; send the reply, stay open */
    REPLY_CLOSE,        /* send the reply, then close the connection */
};

struct reply {
    enum reply_action action;
    int code;           /* 0: nothing to send */
    const char *enh;    /* "" for none */
    const char *text;   /* NULL: the caller's own text (banner, EHLO, queue id) */
};

/* What answer r at hook h means. Points into r (or constants): valid as
 * long as r is. What of r's code, enh and msg does not fit is ignored. */
void reply_answer(enum hook_id h, const struct hook_result *r, struct reply *out);

/* Check the code, enhanced code and text a plugin gave with its answer at
 * hook h: what does not fit is cleared (the default applies), a text over
 * REPLY_TEXT_MAX is cut. Returns 0 when all was fine, else 1 with why
 * saying what was replaced. */
int reply_check(enum hook_id h, struct hook_result *r, char *why, size_t whylen);

/* The engine's own answer when a plugin failed: a Lua error, a bad answer
 * value or (timeout) its time budget. r->msg is allocated (may be NULL
 * when out of memory: the default text applies). */
void reply_failure(enum hook_id h, int timeout, struct hook_result *r);

/* The core's own replies, named by what they say. */
enum reply_id {
    RPL_OK, RPL_HELO, RPL_BANNER, RPL_QUIT, RPL_HELP, RPL_VRFY, RPL_DATA_GO, RPL_BDAT_CHUNK,
    RPL_TLS_GO, RPL_AUTH_CHALLENGE,
    RPL_NO_MEMORY, RPL_AUTH_NO_MEMORY, RPL_STORE_FAILED, RPL_TOO_MANY_RCPTS,
    RPL_TIMEOUT, RPL_DATA_TOO_SLOW, RPL_TOO_MANY_ERRORS, RPL_TOO_MANY_JUNK,
    RPL_SHUTDOWN, RPL_AUTH_TOO_MANY,
    RPL_NEED_HELO, RPL_NEED_EHLO, RPL_NESTED_MAIL, RPL_NEED_MAIL, RPL_NEED_RCPT,
    RPL_DATA_AFTER_BDAT, RPL_IN_TXN, RPL_TLS_ACTIVE, RPL_AUTH_DISABLED, RPL_AUTH_DONE,
    RPL_NOT_IMPLEMENTED, RPL_EXPN, RPL_SYNTAX_RSET, RPL_SYNTAX_QUIT, RPL_SYNTAX_VRFY,
    RPL_SYNTAX_DATA, RPL_SYNTAX_STARTTLS, RPL_UNRECOGNIZED, RPL_BARE_CRLF,
    RPL_LINE_TOO_LONG, RPL_BAD_BASE64, RPL_AUTH_REQUIRED, RPL_AUTH_ENCRYPT,
    RPL_AUTH_FAILED, RPL_TOO_BIG,
    RPL_CONN_LIMIT, RPL_CONN_LIMIT_NET, RPL_CONN_BUSY, RPL_CONN_FAMILY,
    RPL_CONN_NO_MEMORY, RPL_PROXY_UNTRUSTED, RPL_PROXY_BAD, RPL_PROXY_TIMEOUT,
    RPL_XCLIENT_DENIED,
    RPL_COUNT
};

struct reply_std {
    int code;
    const char *enh;    /* "" for none */
    const char *text;
};

const struct reply_std *reply_core(enum reply_id id);

/* Write a reply as wire lines into buf (len >= REPLY_WIRE_MAX holds any):
 * CR, LF and CRLF in text end lines, other control bytes become spaces,
 * a line is cut (on a UTF-8 boundary) to fit REPLY_LINE_MAX and lines past
 * REPLY_LINES_MAX are dropped. Returns the bytes written. */
size_t reply_format(char *buf, size_t len, int code, const char *enh, const char *text);

/* RFC 5321 reply code syntax: 2-5, 0-5, 0-9. */
int reply_code_valid(int code);
/* RFC 3463 enhanced code: class.subject.detail, class 2, 4 or 5 equal to
 * the first digit of code, subject and detail 1-3 digits. */
int reply_enh_valid(const char *enh, int code);

#endif
