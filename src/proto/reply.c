/* reply.c — the reply codes of kasi and the answer contract (reply.h):
 * per-hook defaults for each answer, the fit checks for what a plugin
 * supplies, the core's own replies, and the wire format. */
#include "proto/reply.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------- hook defaults */

enum {
    HR_OK_TEXT   = 1 << 0,  /* OK may bring its own text */
    HR_OK_CODE   = 1 << 1,  /* OK may bring any 2xx code */
    HR_AFTER     = 1 << 2,  /* after the fact: only the disconnect answers act */
    HR_SILENT    = 1 << 3,  /* nothing is ever sent */
    HR_CLOSES    = 1 << 4,  /* a refusal closes the connection */
    HR_QUIT      = 1 << 5,  /* every answer closes with the OK reply */
};

struct hook_replies {
    struct reply_std ok;    /* OK (and NEXT, unless next is set); code 0: no reply */
    struct reply_std next;  /* NEXT when it is a refusal; code 0: as OK */
    struct reply_std deny;  /* DENY, DENYDISCONNECT */
    struct reply_std soft;  /* DENYSOFT, failures */
    unsigned flags;
};

#define NONE { 0, "", NULL }
#define LATE_DENY { 550, "5.7.1", "Rejected" }
#define LATE_SOFT { 451, "4.7.1", "Temporarily rejected" }

static const struct hook_replies hook_replies[HOOK_COUNT] = {
    [HOOK_CONNECT] = { { 220, "", NULL }, NONE,
                       { 554, "5.7.1", "Connection rejected" },
                       { 421, "4.7.0", "Connection temporarily rejected" },
                       HR_OK_TEXT | HR_CLOSES },
    [HOOK_HELO]    = { { 250, "", NULL }, NONE,
                       { 550, "5.7.1", "HELO rejected" },
                       { 450, "4.7.1", "HELO temporarily rejected" }, 0 },
    [HOOK_EHLO]    = { { 250, "", NULL }, NONE,
                       { 550, "5.7.1", "EHLO rejected" },
                       { 450, "4.7.1", "EHLO temporarily rejected" }, 0 },
    [HOOK_AUTH]    = { { 235, "2.7.0", "Authentication successful" },
                       { 535, "5.7.8", "Authentication credentials invalid" },
                       { 535, "5.7.8", "Authentication credentials invalid" },
                       { 454, "4.7.0", "Temporary authentication failure" },
                       HR_OK_TEXT },
    [HOOK_MAIL]    = { { 250, "2.1.0", "Ok" }, NONE,
                       { 550, "5.7.1", "Sender rejected" },
                       { 450, "4.7.1", "Sender temporarily rejected" }, HR_OK_TEXT },
    [HOOK_RCPT]    = { { 250, "2.1.5", "Ok" }, NONE,
                       { 550, "5.7.1", "Recipient rejected" },
                       { 450, "4.7.1", "Recipient temporarily rejected" }, HR_OK_TEXT },
    [HOOK_RCPT_OK] = { NONE, NONE, LATE_DENY, LATE_SOFT, HR_AFTER },
    [HOOK_DATA]    = { { 354, "", "End data with <CR><LF>.<CR><LF>" }, NONE,
                       { 554, "5.7.1", "Message rejected" },
                       { 451, "4.7.1", "Message temporarily rejected" }, 0 },
    [HOOK_DATA_POST] = { NONE, NONE,
                       { 550, "5.7.1", "Message rejected" },
                       { 451, "4.7.1", "Message temporarily rejected" }, 0 },
    [HOOK_QUEUE]   = { { 250, "2.0.0", NULL },
                       { 451, "4.3.0", "Queuing not available" },
                       { 554, "5.7.1", "Message rejected" },
                       { 451, "4.3.0", "Message temporarily rejected" }, HR_OK_TEXT },
    [HOOK_QUEUE_OK] = { NONE, NONE, LATE_DENY, LATE_SOFT, HR_AFTER },
    [HOOK_RSET]    = { { 250, "2.0.0", "Ok" }, NONE, LATE_DENY, LATE_SOFT, HR_AFTER },
    [HOOK_QUIT]    = { { 221, "2.0.0", NULL }, NONE, LATE_DENY, LATE_SOFT,
                       HR_OK_TEXT | HR_QUIT },
    [HOOK_DISCONNECT] = { NONE, NONE, NONE, NONE, HR_SILENT },
    [HOOK_UNRECOGNIZED] = { { 250, "2.0.0", "Ok" },
                       { 500, "5.5.2", "Error: command not recognized" },
                       { 500, "5.5.2", "Command unrecognized" },
                       { 450, "4.5.2", "Command temporarily refused" },
                       HR_OK_TEXT | HR_OK_CODE },
    [HOOK_DENY]    = { NONE, NONE, NONE, NONE, HR_SILENT },
};

static const struct reply_std disconnect_reply = { 421, "4.7.0", "Closing connection" };

static const struct hook_replies *replies_of(enum hook_id h)
{
    static const struct hook_replies silent = { NONE, NONE, NONE, NONE, HR_SILENT };
    return (unsigned)h < HOOK_COUNT ? &hook_replies[h] : &silent;
}

/* The reply an answer starts from, and the class (2, 4, 5) a plugin's code
 * and enhanced code must have to replace its parts; class 0: the plugin's
 * parts are not used. */
static const struct reply_std *base_of(const struct hook_replies *d, enum hook_rc rc,
                                       int *cls, enum reply_action *act)
{
    *cls = 0;
    *act = REPLY_ACCEPT;
    if (d->flags & HR_SILENT)
        return &d->ok;
    if (d->flags & HR_QUIT) {
        *act = REPLY_CLOSE;
        *cls = rc == RC_OK ? 2 : 0;
        return &d->ok;
    }
    int after = (d->flags & HR_AFTER) != 0;
    switch (rc) {
    case RC_OK:
        *cls = 2;
        return &d->ok;
    case RC_NEXT:
        if (!d->next.code)
            return &d->ok;
        *act = REPLY_REFUSE;
        return &d->next;
    case RC_DENY:
        if (after)
            return &d->ok;
        *act = REPLY_REFUSE;
        *cls = 5;
        return &d->deny;
    case RC_DENYDISCONNECT:
        *act = REPLY_CLOSE;
        *cls = 5;
        return &d->deny;
    case RC_DISCONNECT:
        *act = REPLY_CLOSE;
        *cls = 4;
        return &disconnect_reply;
    case RC_DENYSOFT:
        if (after)
            return &d->ok;
        *act = REPLY_REFUSE;
        *cls = 4;
        return &d->soft;
    }
    *act = after ? REPLY_ACCEPT : REPLY_REFUSE;   /* not an answer: temporary */
    return after ? &d->ok : &d->soft;
}

/* ------------------------------------------------------- the checks */

int reply_code_valid(int code)
{
    return code >= 200 && code <= 559 && code % 100 <= 59;
}

/* 1-3 digits then c (the character after them). */
static const char *enh_part(const char *s, char c)
{
    size_t n = strspn(s, "0123456789");
    return n >= 1 && n <= 3 && s[n] == c ? s + n + 1 : NULL;
}

int reply_enh_valid(const char *enh, int code)
{
    int cls = code / 100;
    if (!enh || (cls != 2 && cls != 4 && cls != 5) || enh[0] != '0' + cls || enh[1] != '.')
        return 0;
    const char *p = enh_part(enh + 2, '.');
    return p && enh_part(p, '\0') != NULL;
}

/* Does a plugin's code fit an answer whose replies have class cls? */
static int code_fits(const struct hook_replies *d, int cls, int code)
{
    if (!reply_code_valid(code) || code / 100 != cls)
        return 0;
    if (cls != 2 || (d->flags & HR_OK_CODE))
        return 1;
    return code == d->ok.code;        /* OK keeps the protocol's code */
}

static int enh_fits(int code, int cls, const char *enh)
{
    return code / 100 == cls && reply_enh_valid(enh, code);
}

void reply_answer(enum hook_id h, const struct hook_result *r, struct reply *out)
{
    const struct hook_replies *d = replies_of(h);
    int cls;
    const struct reply_std *b = base_of(d, r->rc, &cls, &out->action);
    if (out->action == REPLY_REFUSE && (d->flags & HR_CLOSES))
        out->action = REPLY_CLOSE;
    out->code = b->code;
    out->enh = b->enh;
    out->text = b->text;
    if (!cls || !b->code)
        return;
    if (r->code && code_fits(d, cls, r->code))
        out->code = r->code;
    if (b->enh[0] && r->enh[0] && enh_fits(out->code, cls, r->enh))
        out->enh = r->enh;
    if (r->msg && (cls != 2 || (d->flags & HR_OK_TEXT)))
        out->text = r->msg;
}

static void why_add(char *why, size_t len, const char *part)
{
    size_t off = strlen(why);
    if (off + 1 < len)
        snprintf(why + off, len - off, "%s%s", off ? "; " : "", part);
}

/* Cut s to at most max bytes, not inside a UTF-8 sequence. */
static void cut_utf8(char *s, size_t max)
{
    size_t n = max;
    while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
        n--;
    s[n] = '\0';
}

int reply_check(enum hook_id h, struct hook_result *r, char *why, size_t whylen)
{
    const struct hook_replies *d = replies_of(h);
    int cls;
    enum reply_action act;
    const struct reply_std *b = base_of(d, r->rc, &cls, &act);
    const char *rc = hook_rc_name(r->rc);
    char part[128];
    if (!whylen)
        return 0;
    why[0] = '\0';
    if (!cls || !b->code)
        return 0;
    if (r->code && !code_fits(d, cls, r->code)) {
        snprintf(part, sizeof part, "code %d does not fit %s", r->code, rc);
        why_add(why, whylen, part);
        r->code = 0;
    }
    int code = r->code ? r->code : b->code;
    if (r->enh[0] && !(b->enh[0] && enh_fits(code, cls, r->enh))) {
        snprintf(part, sizeof part, "enhanced code %s does not fit %s %d", r->enh, rc, code);
        why_add(why, whylen, part);
        r->enh[0] = '\0';
    }
    if (r->msg && strlen(r->msg) > REPLY_TEXT_MAX) {
        cut_utf8(r->msg, REPLY_TEXT_MAX);
        snprintf(part, sizeof part, "text cut to %d bytes", REPLY_TEXT_MAX);
        why_add(why, whylen, part);
    }
    return why[0] != '\0';
}

void reply_failure(enum hook_id h, int timeout, struct hook_result *r)
{
    memset(r, 0, sizeof *r);
    r->rc = RC_DENYSOFT;
    r->code = h == HOOK_CONNECT ? 421 : 451;
    snprintf(r->enh, sizeof r->enh, "%s", timeout ? "4.4.5" : "4.3.0");
    r->msg = strdup(timeout ? "Error: plugin timed out, try again later"
                            : "Error: temporary plugin failure, try again later");
}

/* ------------------------------------------------------- core replies */

static const struct reply_std core_replies[RPL_COUNT] = {
    [RPL_OK]              = { 250, "2.0.0", "Ok" },
    [RPL_HELO]            = { 250, "", "" },
    [RPL_BANNER]          = { 220, "", "" },
    [RPL_QUIT]            = { 221, "2.0.0", "Closing connection" },
    [RPL_HELP]            = { 214, "2.0.0", "Commands: HELO EHLO MAIL RCPT DATA BDAT RSET "
                                          "NOOP QUIT VRFY HELP\nSee RFC 5321" },
    [RPL_VRFY]            = { 252, "2.5.0", "Cannot VRFY user, but will accept message "
                                          "and attempt delivery" },
    [RPL_DATA_GO]         = { 354, "", "End data with <CR><LF>.<CR><LF>" },
    [RPL_BDAT_CHUNK]      = { 250, "2.0.0", "Octets received" },
    [RPL_TLS_GO]          = { 220, "2.0.0", "Ready to start TLS" },
    [RPL_AUTH_CHALLENGE]  = { 334, "", "" },
    [RPL_NO_MEMORY]       = { 451, "4.3.0", "Out of memory" },
    [RPL_AUTH_NO_MEMORY]  = { 454, "4.3.0", "Out of memory" },
    [RPL_STORE_FAILED]    = { 451, "4.3.0", "Error: local error storing the message" },
    [RPL_TOO_MANY_RCPTS]  = { 452, "4.5.3", "Error: too many recipients" },
    [RPL_TIMEOUT]         = { 421, "4.4.2", "Error: timeout exceeded" },
    [RPL_DATA_TOO_SLOW]   = { 421, "4.4.2", "Error: timeout exceeded (data too slow)" },
    [RPL_TOO_MANY_ERRORS] = { 421, "4.7.0", "Too many errors, closing connection" },
    [RPL_TOO_MANY_JUNK]   = { 421, "4.7.0", "Too many commands without mail, "
                                          "closing connection" },
    [RPL_SHUTDOWN]        = { 421, "4.3.2", "Server shutting down, try again later" },
    [RPL_AUTH_TOO_MANY]   = { 421, "4.7.0", "Too many authentication failures, "
                                          "closing connection" },
    [RPL_NEED_HELO]       = { 503, "5.5.1", "Error: send HELO/EHLO first" },
    [RPL_NEED_EHLO]       = { 503, "5.5.1", "Error: send EHLO first" },
    [RPL_NESTED_MAIL]     = { 503, "5.5.1", "Error: nested MAIL command" },
    [RPL_NEED_MAIL]       = { 503, "5.5.1", "Error: need MAIL command" },
    [RPL_NEED_RCPT]       = { 503, "5.5.1", "Error: need RCPT command" },
    [RPL_DATA_AFTER_BDAT] = { 503, "5.5.1", "Error: DATA not allowed after BDAT" },
    [RPL_IN_TXN]          = { 503, "5.5.1", "Error: MAIL transaction in progress" },
    [RPL_TLS_ACTIVE]      = { 503, "5.5.1", "Error: TLS already active" },
    [RPL_AUTH_DISABLED]   = { 503, "5.5.1", "Error: authentication not enabled" },
    [RPL_AUTH_DONE]       = { 503, "5.5.1", "Error: already authenticated" },
    [RPL_NOT_IMPLEMENTED] = { 502, "5.5.1", "Error: command not implemented" },
    [RPL_EXPN]            = { 502, "5.5.1", "EXPN not available" },
    [RPL_SYNTAX_RSET]     = { 501, "5.5.4", "Syntax: RSET" },
    [RPL_SYNTAX_QUIT]     = { 501, "5.5.4", "Syntax: QUIT" },
    [RPL_SYNTAX_VRFY]     = { 501, "5.5.4", "Syntax: VRFY address" },
    [RPL_SYNTAX_DATA]     = { 501, "5.5.4", "Syntax: DATA" },
    [RPL_SYNTAX_STARTTLS] = { 501, "5.5.4", "Syntax: STARTTLS" },
    [RPL_UNRECOGNIZED]    = { 500, "5.5.2", "Error: command not recognized" },
    [RPL_BARE_CRLF]       = { 500, "5.5.2", "Error: bare CR or LF in command" },
    [RPL_LINE_TOO_LONG]   = { 500, "5.5.6", "Error: line too long" },
    [RPL_BAD_BASE64]      = { 501, "5.5.2", "Invalid base64 data" },
    [RPL_AUTH_REQUIRED]   = { 530, "5.7.0", "Authentication required" },
    [RPL_AUTH_ENCRYPT]    = { 538, "5.7.11", "Encryption required for requested "
                                           "authentication mechanism" },
    [RPL_AUTH_FAILED]     = { 535, "5.7.8", "Authentication credentials invalid" },
    [RPL_TOO_BIG]         = { 552, "5.3.4", "Message size exceeds fixed maximum "
                                          "message size" },
    [RPL_CONN_LIMIT]      = { 421, "4.7.0", "Too many connections, try again later" },
    [RPL_CONN_LIMIT_NET]  = { 421, "4.7.0", "Too many connections from your network, "
                                          "try again later" },
    [RPL_CONN_BUSY]       = { 421, "4.3.2", "System busy, try again later" },
    [RPL_CONN_FAMILY]     = { 421, "4.3.0", "Unsupported address family" },
    [RPL_CONN_NO_MEMORY]  = { 421, "4.3.0", "Out of memory" },
    [RPL_PROXY_UNTRUSTED] = { 421, "4.7.0", "This port takes connections through a "
                                          "proxy only" },
    [RPL_PROXY_BAD]       = { 421, "4.7.0", "Malformed PROXY protocol header" },
    [RPL_PROXY_TIMEOUT]   = { 421, "4.4.2", "Timeout waiting for the PROXY protocol header" },
    [RPL_XCLIENT_DENIED]  = { 550, "5.7.0", "Error: insufficient authorization" },
};

const struct reply_std *reply_core(enum reply_id id)
{
    return &core_replies[(unsigned)id < RPL_COUNT ? id : RPL_NO_MEMORY];
}

/* ------------------------------------------------------- wire format */

/* Length of the line at p (up to CR, LF or NUL), and where the next starts. */
static size_t line_at(const char *p, const char **next)
{
    size_t n = strcspn(p, "\r\n");
    const char *q = p + n;
    if (*q == '\r' && q[1] == '\n')
        q += 2;
    else if (*q)
        q++;
    *next = q;
    return n;
}

/* Is there another line after q (not just trailing line ends)? */
static int more_lines(const char *q)
{
    return q[strspn(q, "\r\n")] != '\0';
}

/* n bytes of p, cut to max on a UTF-8 boundary. */
static size_t fit_utf8(const char *p, size_t n, size_t max)
{
    if (n <= max)
        return n;
    while (max > 0 && ((unsigned char)p[max] & 0xc0) == 0x80)
        max--;
    return max;
}

static size_t put_line(char *buf, size_t len, int code, char sep, const char *enh,
                       const char *p, size_t n)
{
    int head = enh[0] ? snprintf(buf, len, "%03d%c%s ", code, sep, enh)
                      : snprintf(buf, len, "%03d%c", code, sep);
    size_t off = head > 0 ? (size_t)head : 0;
    if (off + 2 >= len)
        return 0;
    size_t room = len - off - 2;
    if (room > REPLY_LINE_MAX - off - 2)
        room = REPLY_LINE_MAX - off - 2;
    n = fit_utf8(p, n, room);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        buf[off++] = (c < 0x20 || c == 0x7f) ? ' ' : (char)c;
    }
    buf[off++] = '\r';
    buf[off++] = '\n';
    return off;
}

size_t reply_format(char *buf, size_t len, int code, const char *enh, const char *text)
{
    const char *p = text ? text : "";
    size_t off = 0;
    if (!enh || strlen(enh) > 11)
        enh = "";
    for (int i = 1;; i++) {
        const char *next;
        size_t n = line_at(p, &next);
        int last = i == REPLY_LINES_MAX || !more_lines(next);
        size_t w = put_line(buf + off, len - off, code, last ? ' ' : '-', enh, p, n);
        if (!w)
            break;
        off += w;
        if (last)
            break;
        p = next;
    }
    return off;
}
