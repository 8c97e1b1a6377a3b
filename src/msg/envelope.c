/* envelope.c — transactions' lifetime and the connection log prefix (see
 * envelope.h). */
#include "msg/envelope.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "msg/message.h"

struct txn *txn_new(const struct conn *c, unsigned n)
{
    static unsigned serials;
    struct txn *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    snprintf(t->id, sizeof t->id, "%s.%u", c->id, n);
    t->serial = ++serials;
    return t;
}

int txn_add_rcpt(struct txn *t, struct smtp_rcpt *r)
{
    if (t->nrcpt == t->rcpt_cap) {
        size_t cap = t->rcpt_cap ? t->rcpt_cap * 2 : 4;
        struct smtp_rcpt *n = realloc(t->rcpt, cap * sizeof *n);
        if (!n)
            return -1;
        memset(n + t->rcpt_cap, 0, (cap - t->rcpt_cap) * sizeof *n);
        t->rcpt = n;
        t->rcpt_cap = cap;
    }
    t->rcpt[t->nrcpt++] = *r;
    memset(r, 0, sizeof *r);
    return 0;
}

void txn_free(struct txn *t)
{
    if (!t)
        return;
    smtp_mail_clear(&t->mail);
    /* <= nrcpt: a recipient whose rcpt hook was still running when the
     * session ended waits in rcpt[nrcpt] (unused slots are zeroed) */
    for (size_t i = 0; i <= t->nrcpt && i < t->rcpt_cap; i++)
        smtp_rcpt_clear(&t->rcpt[i]);
    free(t->rcpt);
    msg_free(t->msg);
    free(t);
}

void conn_log(const struct conn *c, int level, const char *fmt, ...)
{
    char buf[1800];
    va_list ap;
    if (!log_enabled(level))
        return;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    log_msg(level, "[%s] %s", c->id, buf);
}
