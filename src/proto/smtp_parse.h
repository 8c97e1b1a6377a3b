/* smtp_parse.h — pure parsers for the SMTP wire: command lines, paths
 * (RFC 5321 §4.1.2 addresses) and ESMTP parameters of MAIL and RCPT.
 *
 * Nothing here touches the network or allocates beyond the result objects.
 * Every failure comes back as an smtp_status: the reply code, the RFC 3463
 * enhanced code and a short text the session sends as is. */
#ifndef KASI_SMTP_PARSE_H
#define KASI_SMTP_PARSE_H

#include <stddef.h>

/* A reply: code 0 means "no error". */
typedef struct smtp_status {
    int code;           /* 250, 501, 555, ... */
    const char *enh;    /* "5.5.4" */
    const char *text;   /* "Syntax error in parameters" (static string) */
} smtp_status;

enum smtp_verb {
    SMTP_UNKNOWN = 0,
    SMTP_HELO, SMTP_EHLO, SMTP_MAIL, SMTP_RCPT, SMTP_DATA, SMTP_BDAT,
    SMTP_RSET, SMTP_NOOP, SMTP_QUIT, SMTP_VRFY, SMTP_EXPN, SMTP_HELP,
    SMTP_STARTTLS, SMTP_AUTH, SMTP_XCLIENT,
    SMTP_VERB_COUNT
};

/* One command line, CRLF already removed. `arg` points into the line
 * (after the verb and its separating space, "" when there is none). For
 * MAIL and RCPT the verb is "MAIL FROM:" / "RCPT TO:" and arg starts after
 * the colon (optional spaces after the colon are skipped). Leading blanks
 * of arg are skipped; the line is const, so trailing blanks are left in
 * place and arg_len is the length without them (the parsers below trim
 * them themselves). */
struct smtp_cmd {
    enum smtp_verb verb;
    const char *verb_str;  /* the verb as the client sent it */
    size_t verb_len;
    const char *arg;
    size_t arg_len;        /* octets of arg without trailing blanks */
};

/* Split `line` (len bytes, NUL-terminated at line[len]). Returns 0, or -1
 * with *st set (500 5.5.2 for unknown/garbled verbs, NUL bytes, 8-bit bytes
 * in the verb; verb is still set to SMTP_UNKNOWN so the caller can run the
 * unrecognized-command path). Verbs are case-insensitive. One exception:
 * "MAIL" not followed by " FROM:" (or "RCPT" not followed by " TO:") is
 * -1 with verb SMTP_MAIL / SMTP_RCPT and 501 5.5.4 "Syntax: ...". */
int smtp_cmd_split(const char *line, size_t len, struct smtp_cmd *cmd,
                   smtp_status *st);

const char *smtp_verb_name(enum smtp_verb v);

/* A parsed mailbox. All strings are heap-allocated, NUL-terminated and
 * owned by the struct (smtp_addr_clear frees them). */
struct smtp_addr {
    char *local;        /* local part as on the wire (quotes kept), "" for <> */
    char *domain;       /* domain or address literal "[1.2.3.4]", NULL for <> / <postmaster> */
    unsigned is_null : 1;       /* <> (MAIL only) */
    unsigned is_postmaster : 1; /* <postmaster> without a domain (RCPT only) */
    unsigned is_literal : 1;    /* domain is an address literal */
    unsigned is_utf8 : 1;       /* contains octets >= 0x80 */
};

void smtp_addr_clear(struct smtp_addr *a);
/* "local@domain", "" for <>, "postmaster" for <postmaster>; caller frees. */
char *smtp_addr_format(const struct smtp_addr *a);

/* Parse a full address string (no angle brackets), e.g. for rewriting from
 * plugins: "user@example.com". Returns 0 or -1 with *st. */
int smtp_addr_parse(const char *s, int allow_utf8, struct smtp_addr *out,
                    smtp_status *st);

enum smtp_body { SMTP_BODY_NONE = 0, SMTP_BODY_7BIT, SMTP_BODY_8BITMIME,
                 SMTP_BODY_BINARYMIME };

#define SMTP_MAX_PARAMS 16

struct smtp_param {
    char *key;    /* upper-cased */
    char *value;  /* NULL when the parameter has no "=value" */
};

/* MAIL FROM:<path> [params]. */
struct smtp_mail {
    struct smtp_addr addr;
    long long size;          /* SIZE=, -1 when absent */
    enum smtp_body body;     /* BODY= */
    int smtputf8;            /* SMTPUTF8 given */
    char *auth;              /* AUTH=<> or AUTH=xtext, NULL when absent */
    char *envid, *ret;       /* DSN, kept for forwarding, NULL when absent */
};

/* RCPT TO:<path> [params]. */
struct smtp_rcpt {
    struct smtp_addr addr;
    char *notify, *orcpt;    /* DSN, NULL when absent */
};

/* What the session has offered / the client asked for, to decide which
 * parameters and address forms are legal. */
struct smtp_parse_opts {
    int esmtp;          /* client said EHLO: parameters allowed at all */
    int smtputf8;       /* RCPT: the MAIL had SMTPUTF8 (UTF-8 addresses ok) */
    long long max_size; /* SIZE= above this is 552 5.3.4; 0 = no limit */
};

/* Parse the argument of MAIL FROM: (what follows the colon). Errors:
 * 501 5.1.7 bad sender address syntax, 501 5.5.4 bad parameter syntax,
 * 555 5.5.4 unknown parameter or parameter without EHLO,
 * 552 5.3.4 SIZE over max_size, 553 5.6.7 UTF-8 address without SMTPUTF8.
 * On error *out is left cleared. */
int smtp_parse_mail(const char *arg, const struct smtp_parse_opts *o,
                    struct smtp_mail *out, smtp_status *st);
void smtp_mail_clear(struct smtp_mail *m);

/* Parse the argument of RCPT TO:. Errors: 501 5.1.3 bad recipient address
 * syntax, 501 5.5.4 / 555 5.5.4 as above, 553 5.6.7 UTF-8 without SMTPUTF8.
 * <postmaster> (any case) is accepted without a domain. The null path <>
 * is a 501 5.1.3 here. */
int smtp_parse_rcpt(const char *arg, const struct smtp_parse_opts *o,
                    struct smtp_rcpt *out, smtp_status *st);
void smtp_rcpt_clear(struct smtp_rcpt *r);

/* BDAT <size> [LAST]. Returns 0 and fills *size, *last; -1 with 501 5.5.4. */
int smtp_parse_bdat(const char *arg, unsigned long long *size, int *last,
                    smtp_status *st);

/* HELO/EHLO argument: a domain or address literal. Returns 0 or -1 with
 * 501 5.5.4. Lenient about what a domain is (policy is for plugins), strict
 * about emptiness, control characters and embedded spaces after trimming. */
int smtp_parse_helo(const char *arg, smtp_status *st);

#endif
