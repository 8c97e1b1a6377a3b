/* xclient.c — XCLIENT for trusted proxies and filters (see xclient.h).
 *
 * What a value of "[UNAVAILABLE]" does: NAME (or "[TEMPUNAVAIL]") leaves
 * the client without a reverse DNS name, HELO without a greeting name,
 * LOGIN unauthenticated; for ADDR, PORT, DESTADDR and DESTPORT it keeps
 * what the session knew. A HELO or PROTO given here holds until the client
 * greets again: the EHLO that follows the new 220 sets them as usual. */
#include "smtp/xclient.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/netmask.h"
#include "net/dns.h"
#include "proto/reply.h"
#include "smtp/server.h"
#include "smtp/session.h"

int xclient_allowed(const struct session *s)
{
    unsigned char ip[NETMASK_BYTES];
    const struct netmask_list *l = &s->srv->cfg->xclient_from;
    return l->n && netmask_addr(s->conn.remote_ip, ip) == 0 && netmask_list_match(l, ip);
}

static void reply_std_send(struct session *s, const struct reply_std *r)
{
    session_reply(s, r->code, r->enh, r->text);
}

static int given(const struct xclient_args *x, enum xclient_attr a)
{
    return (x->given & XC_BIT(a)) && !(x->unavailable & XC_BIT(a));
}

int xclient_check(struct session *s, const struct smtp_cmd *c, struct xclient_args *x)
{
    smtp_status st;
    if (!s->xclient_ok) {
        slog(s, LOG_LVL_INFO, "xclient: refused, %s is not in xclient_from", s->conn.remote_ip);
        reply_std_send(s, reply_core(RPL_XCLIENT_DENIED));
        return -1;
    }
    if (s->state == SS_MAIL || s->state == SS_RCPT) {
        reply_std_send(s, reply_core(RPL_IN_TXN));
        return -1;
    }
    if (xclient_parse(c->arg, x, &st) < 0) {
        session_reply(s, st.code, st.enh, st.text);
        return -1;
    }
    const struct reply_std *no = given(x, XC_ADDR)
                                     ? server_readdress(s->srv, s->conn.remote_ip, x->addr)
                                     : NULL;
    if (no) {
        reply_std_send(s, no);
        s->last_result = "limit";
        session_close(s);
        return -1;
    }
    return 0;
}

static void set_str(char **slot, const char *v)
{
    free(*slot);
    *slot = v ? strdup(v) : NULL;
}

/* The reverse DNS name: NAME when the proxy knows it, none when it says it
 * does not, a lookup of its own when only the address changed. */
static void apply_name(struct conn *c, const struct xclient_args *x, int moved)
{
    if (!(x->given & XC_BIT(XC_NAME)) && !moved)
        return;
    dns_rdns_cancel(c);
    set_str(&c->rdns, NULL);
    c->rdns_confirmed = 0;
    if (given(x, XC_NAME)) {
        set_str(&c->rdns, x->name);
        c->rdns_confirmed = c->rdns != NULL;
    } else if (!(x->given & XC_BIT(XC_NAME))) {
        dns_rdns_start(c);
    }
}

static void apply_login(struct session *s, const struct xclient_args *x)
{
    if (!(x->given & XC_BIT(XC_LOGIN)))
        return;
    set_str(&s->conn.auth_user, given(x, XC_LOGIN) ? x->login : NULL);
    s->conn.relaying = s->conn.auth_user != NULL;
}

void xclient_apply(struct session *s, const struct xclient_args *x)
{
    struct conn *c = &s->conn;
    int moved = given(x, XC_ADDR) && strcmp(x->addr, c->remote_ip) != 0;
    c->relaying = 0;                /* a new client: the plugins decide again */
    if (given(x, XC_ADDR)) {
        snprintf(c->proxy_ip, sizeof c->proxy_ip, "%s", c->remote_ip);
        snprintf(c->remote_ip, sizeof c->remote_ip, "%s", x->addr);
        c->remote_port = given(x, XC_PORT) ? x->port : 0;
    } else if (given(x, XC_PORT)) {
        c->remote_port = x->port;
    }
    if (given(x, XC_DESTADDR))
        snprintf(c->local_ip, sizeof c->local_ip, "%s", x->destaddr);
    if (given(x, XC_DESTPORT))
        c->local_port = x->destport;
    apply_name(c, x, moved);
    if (x->given & XC_BIT(XC_HELO))
        set_str(&c->helo, given(x, XC_HELO) ? x->helo : NULL);
    if (given(x, XC_PROTO))
        c->esmtp = x->esmtp;
    apply_login(s, x);
    slog(s, LOG_LVL_INFO, "xclient: client ip=%s port=%d name=%s helo=%s login=%s via=%s",
         c->remote_ip, c->remote_port, c->rdns ? c->rdns : "-", c->helo ? c->helo : "-",
         c->auth_user ? c->auth_user : "-", c->proxy_ip[0] ? c->proxy_ip : "-");
}
