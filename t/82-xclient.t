#!/usr/bin/env python3
"""XCLIENT (smtp.yaml xclient_from): offered in EHLO only to those
networks; from them the named client (ADDR, PORT, NAME, HELO, PROTO,
LOGIN, DESTADDR, DESTPORT) replaces the connection's and the session
starts again (a new 220, state before HELO, the plugins see the old
connection end and a new one begin); the per-network connection count
moves to the named client (over its limit: 421); pipelined after the
command the EHLO is the new client's. Every bad form is a 501 5.5.4, in a
transaction a 503, and from anywhere else a 550 5.7.0 that leaves the
session usable."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kasitest import *  # noqa: E402,F401,F403

SEEN = """
local P = {}
local function show(conn, what)
  conn:loginfo("%s remote=%s:%d local=%s:%d rdns=%s helo=%s auth=%s relaying=%s proxy=%s",
               what, conn.remote_ip, conn.remote_port, conn.local_ip, conn.local_port,
               conn.rdns or "-", conn.helo or "-", conn.auth_user or "-",
               tostring(conn.relaying), conn.proxy_ip or "-")
end
function P.hook_connect(conn) show(conn, "seen-connect") end
function P.hook_disconnect(conn) show(conn, "seen-disconnect") end
function P.hook_mail(conn) show(conn, "seen-mail") end
return P
"""
FILES = {"config/plugins": "seen\nqueue/spool\n", "plugins/seen.lua": SEEN}
ATTRS = "XCLIENT ADDR PORT NAME HELO PROTO LOGIN DESTADDR DESTPORT"


def expect(c, line, code, enh=None, name=None):
    c.send(line + "\r\n")
    return c.expect(code, enh, name=name)


def session(k, source=None):
    c = Raw(k.port, source=source)
    c.expect(220, name="banner")
    return c


with Kasi({"xclient_from": ["127.0.0.1/32"]}, files=FILES) as k:
    with session(k) as c:
        code, lines = c.cmd("EHLO proxy.test")
        ok(ATTRS in lines, "EHLO offers XCLIENT to xclient_from", lines)
        c.send("XCLIENT ADDR=192.0.2.7 PORT=4000 NAME=mail.example HELO=mail.example "
               "PROTO=ESMTP DESTADDR=198.51.100.1 DESTPORT=25\r\n")
        code, lines = c.read_reply()
        is_(code, 220, "XCLIENT: a new 220 greeting")
        like(lines[0] if lines else "", r"^mx\.kasi\.test ESMTP", "XCLIENT: the server's banner")
        expect(c, "MAIL FROM:<a@example.org>", 503, "5.5.1",
               "after XCLIENT the client must greet again")
        code, lines = c.cmd("EHLO mail.example")
        like(lines[0] if lines else "", r"Hello mail\.example \[192\.0\.2\.7\]",
             "EHLO after XCLIENT greets the named client")
        c.cmd("MAIL FROM:<a@example.org>")
        c.cmd("RCPT TO:<b@example.com>")
        c.cmd("DATA")
        c.send(b"Subject: x\r\n\r\nbody\r\n.\r\n")
        code, lines = c.read_reply()
        is_(code, 250, "a message as the named client")
        mid = queued_id(lines)
        c.cmd("QUIT")
    ok(k.wait_log(r"seen-connect remote=127\.0\.0\.1:\d+ .*proxy=-"), "connect hook: the proxy first")
    ok(k.wait_log(r"seen-disconnect remote=127\.0\.0\.1:\d+ "), "the proxy's part ends for the plugins")
    ok(k.wait_log(r"seen-connect remote=192\.0\.2\.7:4000 local=198\.51\.100\.1:25 "
                  r"rdns=mail\.example helo=mail\.example auth=- relaying=false proxy=127\.0\.0\.1"),
       "connect hook again: the named client with NAME, HELO, DESTADDR/DESTPORT")
    ok(k.wait_log(r"xclient: client ip=192\.0\.2\.7 port=4000 name=mail\.example helo=mail\.example "
                  r"login=- via=127\.0\.0\.1"), "XCLIENT logged")
    m = k.spool_by_id(mid)
    ok(m is not None, "spooled")
    if m:
        like(m.received(), r"from mail\.example \(mail\.example \[192\.0\.2\.7\]\)",
             "Received: the named client and its NAME")
    ok(k.wait_log(r"disconnect ip=192\.0\.2\.7 port=4000 helo=mail\.example"), "summary: the named client")

    # LOGIN authenticates; IPv6; pipelined with the EHLO that follows
    with session(k) as c:
        c.send("XCLIENT ADDR=IPV6:2001:db8::7 LOGIN=bob NAME=[TEMPUNAVAIL]\r\nEHLO six.example\r\n")
        c.expect(220, name="pipelined XCLIENT: 220")
        code, lines = c.read_reply()
        like(lines[0] if lines else "", r"\[2001:db8::7\]", "pipelined EHLO is the named IPv6 client's")
        c.cmd("MAIL FROM:<a@example.org>")
        c.cmd("RCPT TO:<b@example.com>")
        c.cmd("DATA")
        c.send(b"Subject: y\r\n\r\nbody\r\n.\r\n")
        code, lines = c.read_reply()
        mid = queued_id(lines)
        c.cmd("QUIT")
    ok(k.wait_log(r"seen-mail remote=2001:db8::7:0 .*rdns=- helo=six\.example auth=bob relaying=true"),
       "LOGIN: authenticated and relaying; NAME=[TEMPUNAVAIL]: no name")
    m = k.spool_by_id(mid)
    if ok(m is not None, "LOGIN: spooled"):
        like(m.received(), r"with ESMTPA ", "LOGIN: Received: says ESMTPA")

    # the XCLIENT sender's address only, in a transaction, bad forms
    with session(k) as c:
        c.cmd("EHLO proxy.test")
        c.cmd("MAIL FROM:<a@example.org>")
        expect(c, "XCLIENT ADDR=192.0.2.8", 503, "5.5.1", "XCLIENT in a transaction: 503")
        c.cmd("RSET")
        bad = [
            ("no attributes", "XCLIENT"),
            ("no =", "XCLIENT ADDR"),
            ("unknown attribute", "XCLIENT FOO=1"),
            ("bad IPv4", "XCLIENT ADDR=192.0.2.300"),
            ("IPv6 without IPV6:", "XCLIENT ADDR=2001:db8::7"),
            ("port over 65535", "XCLIENT PORT=65536"),
            ("port not a number", "XCLIENT PORT=25x"),
            ("PROTO not SMTP/ESMTP", "XCLIENT PROTO=UUCP"),
            ("NAME with a space (xtext)", "XCLIENT NAME=a+20b"),
            ("HELO with a control byte", "XCLIENT HELO=a+01"),
            ("broken xtext", "XCLIENT LOGIN=a+Z1"),
            ("empty value", "XCLIENT NAME="),
            ("one good, one bad", "XCLIENT ADDR=192.0.2.8 PORT=-1"),
        ]
        for name, line in bad:
            expect(c, line, 501, "5.5.4", "%s: 501" % name)
        code, lines = c.cmd("EHLO proxy.test")
        like(lines[0] if lines else "", r"\[127\.0\.0\.1\]", "after bad XCLIENTs the client is unchanged")
        c.cmd("QUIT")

with Kasi({"xclient_from": ["127.0.0.2/32"]}, files=FILES) as k:
    with session(k) as c:
        code, lines = c.cmd("EHLO other.test")
        ok(not [x for x in lines if x.startswith("XCLIENT")], "EHLO hides XCLIENT from others", lines)
        expect(c, "XCLIENT ADDR=192.0.2.7", 550, "5.7.0", "XCLIENT from outside xclient_from: 550")
        expect(c, "NOOP", 250, None, "the refused session goes on")
        code, lines = c.cmd("EHLO other.test")
        like(lines[0] if lines else "", r"\[127\.0\.0\.1\]", "refused XCLIENT changed nothing")
    ok(k.wait_log(r"xclient: refused, 127\.0\.0\.1 is not in xclient_from"), "refusal logged")
    try:
        with session(k, source="127.0.0.2") as c:
            code, lines = c.cmd("EHLO p2.test")
            ok(ATTRS in lines, "EHLO offers XCLIENT to 127.0.0.2")
            expect(c, "XCLIENT ADDR=192.0.2.20", 220, None, "XCLIENT from 127.0.0.2 accepted")
    except OSError as e:
        skip("XCLIENT from 127.0.0.2", "no loopback alias: %s" % e)

# the per-network count moves with the client XCLIENT names
with Kasi({"xclient_from": ["127.0.0.1/32"],
           "limits": {"max_connections_per_ip": 1, "exempt": []}}, files=FILES) as k:
    a = session(k)
    expect(a, "XCLIENT ADDR=192.0.2.9", 220, None, "limit: A becomes 192.0.2.9")
    b = session(k)              # 127.0.0.1 counts 0 again: admitted
    ok(True, "limit: the proxy's address was given back")
    expect(b, "XCLIENT ADDR=192.0.2.9", 421, "4.7.0", "limit: B as 192.0.2.9 too: 421")
    ok(b.closed(), "limit: B closed")
    ok(k.wait_log(r"per-network connection limit \(1\) reached for 192\.0\.2\.9"), "limit: logged")
    a.cmd("QUIT")
    a.close()
    b.close()

done()
