#!/usr/bin/env python3
"""queue/smtp_forward against a throwaway real Postfix: the Maildir holds
exactly what the client sent plus kasi's Received and Postfix's headers
(dot-stuffed lines, 8-bit, a 20 MB message, 50 recipients, a BDAT-received
message), XFORWARD shows kasi's client in Postfix's log, one recipient
refused downstream of three, routes per recipient domain split into one
transaction per route, and the pool reuses connections."""
import os
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "lib"))
from kasitest import *  # noqa: E402,F401,F403
import postfix  # noqa: E402

why = postfix.available()
if why:
    print("1..0 # SKIP %s" % why)
    sys.exit(0)

MSG = (b"From: Alice <alice@client.test>\r\n"
       b"To: Bob <bob@test.example>\r\n"
       b"Subject: forward through kasi\r\n"
       b"Message-ID: <q41-1@client.test>\r\n"
       b"\r\n"
       b"First line.\r\n"
       b".starts with a dot\r\n"
       b"..two dots\r\n"
       b".\r\n"
       b". \r\n"
       b"\r\n"
       b"Last line.\r\n")

MSG8 = ("From: alice@client.test\r\nSubject: 8bit\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n"
        "Grüße aus Köln — ½ € ✓\r\n.ß leading dot\r\n").encode("utf-8")


def lf(b):
    return b.replace(b"\r\n", b"\n")


def split_maildir(path):
    """(Postfix's headers, kasi's Received, the client's message) of a
    delivered file; Postfix stores LF line ends."""
    data = open(path, "rb").read()
    m = re.match(rb"(Return-Path: [^\n]*\n(?:X-Original-To: [^\n]*\n)?"
                 rb"Delivered-To: [^\n]*\nReceived: [^\n]*\n(?:[ \t][^\n]*\n)*)", data)
    if not m:
        return None, None, data
    rest = data[m.end():]
    rcvd, body = strip_received(rest)
    return m.group(1), rcvd, body


def big_message(size):
    head = b"From: alice@client.test\r\nSubject: big\r\n\r\n"
    line = b"." + b"x" * 70 + b"\r\n" + b"y" * 74 + b"\r\n"
    return head + line * ((size - len(head)) // len(line) + 1)


def kasi_for(port, extra=""):
    return Kasi(files={
        "config/plugins": "queue/smtp_forward\n",
        "config/queue/smtp_forward.yaml":
            "port: %d\nplugin:\n  timeout: 120\n%s" % (port, extra)})


def send_bdat(port, rcpts, data, chunk=7000):
    with Raw(port, banner=True) as r:
        r.cmd("EHLO client.test")
        r.cmd("MAIL FROM:<alice@client.test>")
        for rc in rcpts:
            r.cmd("RCPT TO:<%s>" % rc)
        for i in range(0, len(data), chunk):
            part = data[i:i + chunk]
            last = i + chunk >= len(data)
            r.send(b"BDAT %d%s\r\n" % (len(part), b" LAST" if last else b"") + part)
            if not last:
                r.read_reply()
        res = r.read_reply(timeout=30)
        r.cmd("QUIT")
        return res


with postfix.Postfix(reject=["refuse@test.example"], extra_users=50) as pf:
    diag("postfix on 127.0.0.1:%d" % pf.port)
    with kasi_for(pf.port) as k:
        # 1. exact bytes, dot-stuffing, both queue ids, XFORWARD
        code, lines = send_message(k.port, "alice@client.test", ["bob@test.example"], MSG)
        is_(code, 250, "plain: 250")
        m = re.search(r"queued as (\S+) \(downstream ([0-9A-F]+)\)", " ".join(lines))
        ok(m, "plain: reply names both queue ids", lines)
        ours, theirs = (m.group(1), m.group(2)) if m else ("?", "?")
        files = pf.wait_messages("bob", 1)
        if ok(len(files) == 1, "plain: in bob's Maildir"):
            head, rcvd, body = split_maildir(files[0])
            ok(head, "plain: Postfix's headers present")
            like(rcvd or b"", r"^Received: from client\.test .*by mx\.kasi\.test \(kasi\) with ESMTP id "
                 + re.escape(ours), "plain: kasi's Received header next")
            is_(body, lf(MSG), "plain: the client's bytes, exact (dot lines intact)")
        ok(pf.wait_log(r"%s: client=\S+, orig_queue_id=%s, orig_client=unknown\[127\.0\.0\.1\]"
                       % (theirs, re.escape(ours))),
           "XFORWARD: Postfix logs orig_client and our queue id", pf.log()[-1200:])
        ok(k.wait_log(r"forwarded to smtp:127\.0\.0\.1:%d: 1 rcpts, downstream id %s"
                      % (pf.port, theirs)), "kasi logs both ids")

        # 2. 8-bit text
        with Raw(k.port, banner=True) as r:
            r.cmd("EHLO client.test")
            r.cmd("MAIL FROM:<alice@client.test> BODY=8BITMIME")
            r.cmd("RCPT TO:<carol@test.example>")
            r.cmd("DATA")
            r.send(dot_stuff(MSG8) + b".\r\n")
            code, lines = r.read_reply(timeout=30)
        is_(code, 250, "8bit: 250")
        files = pf.wait_messages("carol", 1)
        if ok(files, "8bit: delivered"):
            is_(split_maildir(files[0])[2], lf(MSG8), "8bit: bytes exact")

        # 3. one of three refused downstream: the others get it, it is logged
        code, lines = send_message(k.port, "alice@client.test",
                                   ["dave@test.example", "refuse@test.example", "carol@test.example"], MSG)
        is_(code, 250, "one of three refused: 250 for the delivered ones")
        ok(len(pf.wait_messages("dave", 1)) == 1 and len(pf.wait_messages("carol", 2)) == 2,
           "one of three refused: the other two delivered")
        ok(k.wait_log(r"refused <refuse@test\.example>: 554 5\.7\.1 .*not delivered"),
           "one of three refused: logged with the downstream's reply")

        # 4. all refused -> the downstream's 5xx
        code, lines = send_message(k.port, "alice@client.test",
                                   ["refuse@test.example", "nobody@test.example"], MSG)
        ok(code and 500 <= code < 600, "all refused: 5xx (%r %r)" % (code, lines))

        # 5. 50 recipients
        rc = ["u%02d@test.example" % i for i in range(50)]
        code, lines = send_message(k.port, "alice@client.test", rc, MSG)
        is_(code, 250, "50 rcpts: 250")
        missing = [u for u in ("u%02d" % i for i in range(50)) if len(pf.wait_messages(u, 1, 20)) != 1]
        is_(missing, [], "50 rcpts: every Maildir has it")

        # 6. a BDAT-received message (raw bytes with dot lines)
        code, lines = send_bdat(k.port, ["dave@test.example"], MSG)
        is_(code, 250, "BDAT: 250")
        files = pf.wait_messages("dave", 2)
        if ok(len(files) == 2, "BDAT: delivered"):
            is_(split_maildir(files[-1])[2], lf(MSG), "BDAT: bytes exact, dots stuffed downstream")

        # 7. 20 MB
        big = big_message(20 * 1024 * 1024)
        t0 = time.time()
        code, lines = send_message(k.port, "alice@client.test", ["bob@test.example"], big)
        is_(code, 250, "20 MB: 250 (%.1f s)" % (time.time() - t0))
        files = pf.wait_messages("bob", 2, 60)
        if ok(len(files) == 2, "20 MB: delivered"):
            body = split_maildir(files[-1])[2]
            is_(len(body), len(lf(big)), "20 MB: size exact")
            ok(body == lf(big), "20 MB: bytes exact")

        # 8. the pool: later messages reuse a connection
        for i in range(3):
            send_message(k.port, "alice@client.test", ["dave@test.example"], MSG)
        ok(re.search(r"downstream id \S+ \(pooled\)", k.log()), "pool: a pooled connection was reused")

    # 9. routes: two domains, two downstream transactions, one answer
    with postfix.Postfix(users=("erin",), port=None) as pf2:
        extra = "routes:\n  other.example:\n    port: %d\n" % pf2.port
        with kasi_for(pf.port, extra) as k:
            # pf2 relays other.example (permit_mynetworks): it takes the
            # message, then bounces it; what counts is who got which rcpt.
            code, lines = send_message(k.port, "alice@client.test",
                                       ["bob@test.example", "erin@other.example"], MSG)
            is_(code, 250, "routes: both routes accepted -> 250")
            like(" ".join(lines), r"downstream [0-9A-F]+,[0-9A-F]+\)", "routes: both downstream ids in the reply")
            ok(pf2.wait_log(r"to=<erin@other\.example>"), "routes: other.example went to the second downstream")
            unlike(pf2.log(), r"bob@test\.example", "routes: bob did not go to the second downstream")
            ok(len(pf.wait_messages("bob", 3)) == 3 and not re.search(r"erin@other", pf.log()),
               "routes: bob delivered by the first, erin not sent there")
            code, lines = send_message(k.port, "alice@client.test", ["carol@test.example"], MSG)
            is_(code, 250, "routes: the default route still delivers")
done()
