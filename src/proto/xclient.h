/* xclient.h — the argument of XCLIENT, Postfix's SMTP extension that lets a
 * trusted proxy or filter name the client it speaks for:
 *
 *     XCLIENT ADDR=192.0.2.7 PORT=52342 NAME=mx.example HELO=mx.example
 *             PROTO=ESMTP LOGIN=bob DESTADDR=198.51.100.1 DESTPORT=25
 *
 * Values are xtext (RFC 3461: "+HH" for a byte); "[UNAVAILABLE]" means the
 * proxy does not know, and NAME may also be "[TEMPUNAVAIL]" (its lookup
 * failed for now). ADDR and DESTADDR are IPv4 text or "IPV6:" and IPv6
 * text. Pure: no I/O; the session (smtp/xclient.c) decides who may send it
 * and what it changes. */
#ifndef KASI_XCLIENT_H
#define KASI_XCLIENT_H

#include "proto/smtp_parse.h"

enum xclient_attr {
    XC_ADDR, XC_PORT, XC_NAME, XC_HELO, XC_PROTO, XC_LOGIN, XC_DESTADDR, XC_DESTPORT,
    XC_COUNT
};

#define XC_BIT(a) (1u << (a))
#define XCLIENT_ATTRS "ADDR PORT NAME HELO PROTO LOGIN DESTADDR DESTPORT"

struct xclient_args {
    unsigned given;         /* XC_BIT of every attribute present */
    unsigned unavailable;   /* XC_BIT of those given as [UNAVAILABLE] / [TEMPUNAVAIL] */
    char addr[64];          /* ADDR as plain address text ("2001:db8::7") */
    char destaddr[64];
    int port, destport;
    char name[256];         /* NAME: a host name */
    char helo[256];         /* HELO: printable, no spaces */
    char login[256];        /* LOGIN: printable, no spaces */
    int esmtp;              /* PROTO: ESMTP 1, SMTP 0 */
};

/* Parse the argument of XCLIENT (what follows the verb). Returns 0, or -1
 * with *st: 501 5.5.4 for a missing or unknown attribute, a bad xtext or a
 * value that is not what its attribute takes. */
int xclient_parse(const char *arg, struct xclient_args *out, smtp_status *st);

#endif
