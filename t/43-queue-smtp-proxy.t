#!/usr/bin/env python3
"""queue/smtp_proxy against a throwaway real Postfix: RCPTs are relayed
live, so the client learns at RCPT time which recipient Postfix refuses
(policy reject, unknown user); the message is streamed dot-stuffed over the
same connection and lands byte-exact; XFORWARD reaches Postfix's log;
8-bit, BDAT, several transactions and RSET in one session; Postfix stopped
-> 451 at MAIL; accepted == delivered."""
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "lib"))
from kasitest import *  # noqa: E402,F401,F403
import postfix  # noqa: E402

why = postfix.available()
if why:
    print("1..0 # SKIP %s" % why)
    sys.exit(0)

MSG = (b"From: Alice <alice@client.test>\r\nSubject: proxied\r\n\r\n"
       b"line\r\n.dot line\r\n..two\r\n.\r\n")
MSG8 = "Subject: 8bit\r\n\r\nGrüße ✓\r\n.ß\r\n".encode("utf-8")


def lf(b):
    return b.replace(b"\r\n", b"\n")


def body_of(path):
    data = open(path, "rb").read()
    m = re.match(rb"(Return-Path: [^\n]*\n(?:X-Original-To: [^\n]*\n)?"
                 rb"Delivered-To: [^\n]*\nReceived: [^\n]*\n(?:[ \t][^\n]*\n)*)", data)
    return strip_received(data[m.end():] if m else data)[1]


sent = accepted = 0
with postfix.Postfix(reject=["refuse@test.example"]) as pf:
    files = {"config/plugins": "queue/smtp_proxy\n",
             "config/queue/smtp_proxy.yaml": "port: %d\nplugin:\n  timeout: 60\n" % pf.port}
    with Kasi(files=files) as k:
        with Raw(k.port, banner=True) as r:
            r.cmd("EHLO client.test")
            code, _ = r.cmd("MAIL FROM:<alice@client.test>")
            is_(code, 250, "MAIL relayed: 250")
            code, _ = r.cmd("RCPT TO:<bob@test.example>")
            is_(code, 250, "RCPT bob: 250")
            code, lines = r.cmd("RCPT TO:<refuse@test.example>")
            is_(code, 554, "RCPT refuse: Postfix's 554 at RCPT time")
            like(" ".join(lines), r"^5\.7\.1 .*refused by test policy", "RCPT refuse: Postfix's text")
            code, lines = r.cmd("RCPT TO:<nobody@test.example>")
            ok(code and 500 <= code < 600, "RCPT unknown user: 5xx (%r %r)" % (code, lines))
            code, _ = r.cmd("RCPT TO:<carol@test.example>")
            is_(code, 250, "RCPT carol: 250")
            r.cmd("DATA")
            r.send(dot_stuff(MSG) + b".\r\n")
            code, lines = r.read_reply(timeout=30)
            sent += 1
            accepted += code == 250
            is_(code, 250, "DATA: 250")
            like(" ".join(lines), r"queued as \S+ \(downstream [0-9A-F]+\)", "DATA: both ids")
            # second transaction on the same session, with RSET in between
            r.cmd("MAIL FROM:<alice@client.test>")
            r.cmd("RCPT TO:<dave@test.example>")
            code, _ = r.cmd("RSET")
            is_(code, 250, "RSET: 250")
            r.cmd("MAIL FROM:<alice@client.test> BODY=8BITMIME")
            code, _ = r.cmd("RCPT TO:<dave@test.example>")
            is_(code, 250, "after RSET: RCPT 250")
            r.cmd("DATA")
            r.send(dot_stuff(MSG8) + b".\r\n")
            code, lines = r.read_reply(timeout=30)
            sent += 1
            accepted += code == 250
            is_(code, 250, "8bit, second transaction: 250")
            r.cmd("QUIT")
        for user, msg in (("bob", MSG), ("carol", MSG), ("dave", MSG8)):
            f = pf.wait_messages(user, 1)
            if ok(len(f) == 1, "%s: delivered once" % user):
                is_(body_of(f[0]), lf(msg), "%s: bytes exact" % user)
        ok(pf.wait_log(r"client=\S+, orig_queue_id=\S+, orig_client=unknown\[127\.0\.0\.1\]"),
           "XFORWARD: orig_client in Postfix's log")
        ok(pf.wait_log(r"disconnect from \S+ ehlo=1 xforward=3 mail=3 rcpt=4/6 data=2 rset=1 quit=1"),
           "one downstream session for the whole client session", pf.log()[-600:])

        # BDAT-received
        with Raw(k.port, banner=True) as r:
            r.cmd("EHLO client.test")
            r.cmd("MAIL FROM:<alice@client.test>")
            r.cmd("RCPT TO:<bob@test.example>")
            r.send(b"BDAT %d LAST\r\n" % len(MSG) + MSG)
            code, lines = r.read_reply(timeout=30)
            sent += 1
            accepted += code == 250
            is_(code, 250, "BDAT: 250")
        f = pf.wait_messages("bob", 2)
        if ok(len(f) == 2, "BDAT: delivered"):
            is_(body_of(f[-1]), lf(MSG), "BDAT: bytes exact")

        pf.stop()
        with Raw(k.port, banner=True) as r:
            r.cmd("EHLO client.test")
            code, lines = r.cmd("MAIL FROM:<alice@client.test>")
            is_(code, 451, "postfix stopped: MAIL 451")
            code, _ = r.cmd("RCPT TO:<bob@test.example>")
            ok(code != 250, "postfix stopped: no RCPT accepted")
            sent += 1
        is_(k.spool_names(), [], "nothing in kasi's spool")
    delivered = len(pf.messages("bob")) + len(pf.messages("dave"))
    diag("proxy: sent=%d accepted=%d delivered(transactions)=%d" % (sent, accepted, delivered))
    is_(accepted, delivered, "accepted == delivered")
done()
