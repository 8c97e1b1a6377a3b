/* auth.h — the SASL side of SMTP AUTH (RFC 4954): mechanisms PLAIN and
 * LOGIN, initial responses, base64 and cancellation. No I/O: the session
 * feeds it the AUTH argument and the client's response lines and gets back
 * the next challenge, an error reply, or the credentials to decide on (the
 * decision is the `auth` hook). */
#ifndef KASI_AUTH_H
#define KASI_AUTH_H

#include <stddef.h>

/* What the auth hook gets (hooks.h: the arg of HOOK_AUTH). Valid until the
 * hook answers; the password is wiped afterwards. */
struct auth_creds {
    const char *mechanism;   /* "PLAIN" | "LOGIN" */
    const char *user;        /* authentication identity, never NULL */
    const char *password;    /* never NULL, never logged */
};

enum auth_mech { AUTH_MECH_NONE = 0, AUTH_MECH_PLAIN, AUTH_MECH_LOGIN };

/* One exchange in progress. */
struct auth_sasl {
    enum auth_mech mech;
    int step;                /* LOGIN: 0 wants user, 1 wants password */
    char *user, *password;
    struct auth_creds creds; /* points into this struct when complete */
};

/* What to do next. */
enum auth_next {
    AUTH_CHALLENGE,   /* send "334 <challenge>" and read a response line */
    AUTH_COMPLETE,    /* credentials in sasl->creds: run the hook */
    AUTH_FAIL         /* send code/enh/text; the exchange is over */
};

struct auth_step {
    enum auth_next next;
    const char *challenge;   /* base64 text ("" for an empty challenge) */
    int code;
    const char *enh, *text;  /* static strings */
};

/* The mechanisms offered, for the EHLO line "AUTH PLAIN LOGIN". */
#define AUTH_MECHANISMS "PLAIN LOGIN"

/* Begin with the AUTH command's argument ("PLAIN [initial-response]"). */
void auth_start(struct auth_sasl *a, const char *arg, struct auth_step *out);
/* A response line from the client ("*" cancels). */
void auth_continue(struct auth_sasl *a, const char *line, struct auth_step *out);
/* Wipe and free what the exchange holds; a is reusable afterwards. */
void auth_clear(struct auth_sasl *a);

/* Strict base64 (RFC 4648, padding required, no blanks). Returns the decoded
 * length written to out (which needs len * 3 / 4 + 1 bytes; it is
 * NUL-terminated), or -1 on malformed input. */
long auth_base64_decode(const char *in, size_t len, char *out);

#endif
