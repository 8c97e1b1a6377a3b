#!/usr/bin/env python3
"""The downstream client (smtp_client.c) through its test driver
forward_once: against a throwaway real Postfix (exact bytes in the Maildir,
dot-stuffing, 8-bit, 20 MB, 50 recipients, one refused recipient of three,
XFORWARD in Postfix's log, pooled connections, Postfix stopped -> 451
4.4.1), and against small scripted fake servers for what Postfix will not
do on demand (LMTP, AUTH, missing extensions, a drop mid-DATA, a pooled
connection closed by the server, silence -> timeouts, cancel)."""
import atexit
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "lib"))
from kasitest import *  # noqa: E402,F401,F403
import postfix  # noqa: E402
from fakesmtp import ScriptedSmtp, greet, smtp_txn  # noqa: E402,F401

REPO = os.path.dirname(HERE)
HELPER = os.path.join(os.environ.get("KASI_UNIT") or os.path.join(REPO, "build", "t"),
                      "forward_once")

why = postfix.available() or (None if os.access(HELPER, os.X_OK)
                              else "%s not built (make helpers)" % HELPER)
if why:
    print("1..0 # SKIP %s" % why)
    sys.exit(0)

TMP = tempfile.mkdtemp(prefix="kasi-fwd-")
atexit.register(shutil.rmtree, TMP, True)


def msgfile(name, data):
    path = os.path.join(TMP, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def forward(port, path, rcpts, mail_from="alice@client.test", extra=(),
            timeout=120):
    """Run the driver; returns (dict of key=value lines, stdout, stderr)."""
    argv = [HELPER, "-H", "127.0.0.1", "-P", str(port), "-f", mail_from,
            "-m", path] + list(extra)
    for r in rcpts:
        argv += ["-r", r]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    res = {}
    for line in p.stdout.splitlines():
        k, _, v = line.partition("=")
        res.setdefault(k, v)
    for mark in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
        if mark in p.stderr:
            ok(False, "no sanitizer report", p.stderr[-3000:])
    if p.returncode != 0:
        diag("driver exit %d: %s" % (p.returncode, p.stderr[-2000:]))
    return res, p.stdout, p.stderr


def lf(b):
    return b.replace(b"\r\n", b"\n")


def split_maildir(path):
    """(Postfix's header block, the rest) of a delivered file: Postfix adds
    Return-Path, X-Original-To, Delivered-To and one Received (folded)."""
    data = open(path, "rb").read()
    m = re.match(rb"(Return-Path: [^\n]*\n(?:X-Original-To: [^\n]*\n)?"
                 rb"Delivered-To: [^\n]*\nReceived: [^\n]*\n(?:[ \t][^\n]*\n)*)",
                 data)
    if not m:
        return None, data
    return m.group(1), data[m.end():]


MSG = (b"From: Alice <alice@client.test>\r\n"
       b"To: Bob <bob@test.example>\r\n"
       b"Subject: forward test\r\n"
       b"Message-ID: <fwd-1@client.test>\r\n"
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


def big_message(size):
    head = (b"From: alice@client.test\r\nSubject: big\r\n"
            b"Message-ID: <big@client.test>\r\n\r\n")
    line = b"." + b"x" * 70 + b"\r\n" + b"y" * 74 + b"\r\n"
    n = (size - len(head)) // len(line) + 1
    return head + line * n


with postfix.Postfix(reject=["refuse@test.example"], extra_users=50) as pf:
    port = pf.port
    diag("postfix on 127.0.0.1:%d in %s" % (port, pf.dir))

    # 1. exact bytes, dot-stuffing, XFORWARD
    p1 = msgfile("m1.eml", MSG)
    r, out, err = forward(port, p1, ["bob@test.example"],
                          extra=["-x", "192.0.2.7,client.example.net,helo.example.net,KQ1.1"])
    is_(r.get("code"), "250", "plain: 250")
    is_(r.get("enh"), "2.0.0", "plain: enhanced 2.0.0")
    like(r.get("queue_id", ""), r"^[0-9A-F]{6,}$", "plain: Postfix queue id parsed")
    files = pf.wait_messages("bob", 1)
    if ok(len(files) == 1, "plain: one message in bob's Maildir"):
        head, body = split_maildir(files[0])
        ok(head is not None, "plain: Postfix added its headers", open(files[0], "rb").read()[:600])
        is_(body, lf(MSG), "plain: message bytes exact (dot-stuffed lines intact)")
        like((head or b"").decode(), r"Received: from .*by postfix\.kasi\.test \(Postfix\) with ESMTP id "
             + re.escape(r.get("queue_id", "?")), "plain: Received names Postfix's queue id")
    m = pf.wait_log(r"%s: client=\S+, orig_queue_id=KQ1\.1, orig_client=client\.example\.net\[192\.0\.2\.7\]"
                    % re.escape(r.get("queue_id", "?")))
    ok(m, "XFORWARD: Postfix logs the original client and queue id", pf.log()[-1500:])

    # 2. 8-bit body with BODY=8BITMIME
    p2 = msgfile("m8.eml", MSG8)
    r, out, err = forward(port, p2, ["carol@test.example"], extra=["-8"])
    is_(r.get("code"), "250", "8bit: 250")
    files = pf.wait_messages("carol", 1)
    if ok(files, "8bit: delivered"):
        is_(split_maildir(files[0])[1], lf(MSG8), "8bit: bytes exact")

    # 3. one of three recipients refused downstream
    r, out, err = forward(port, p1, ["dave@test.example", "refuse@test.example",
                                     "carol@test.example"])
    is_(r.get("code"), "250", "one refused: overall 250 for the others")
    is_(r.get("naccepted"), "2", "one refused: two accepted")
    like(r.get("rcpt1", ""), r"^554 5\.7\.1 .*refused by test policy", "one refused: its RCPT refusal")
    like(r.get("rcpt0", ""), r"^250 ", "one refused: first recipient 250")
    like(r.get("rcpt2", ""), r"^250 ", "one refused: third recipient 250")
    ok(len(pf.wait_messages("dave", 1)) == 1 and len(pf.wait_messages("carol", 2)) == 2,
       "one refused: the other two delivered")

    # 4. every recipient refused
    r, out, err = forward(port, p1, ["refuse@test.example", "nobody@test.example"])
    like(r.get("code", ""), r"^5\d\d$", "all refused: a 5xx")
    is_(r.get("naccepted"), "0", "all refused: none accepted")

    # 5. 50 recipients
    rc = ["u%02d@test.example" % i for i in range(50)]
    r, out, err = forward(port, p1, rc)
    is_(r.get("code"), "250", "50 rcpts: 250")
    is_(r.get("naccepted"), "50", "50 rcpts: all accepted")
    missing = [u for u in ("u%02d" % i for i in range(50)) if len(pf.wait_messages(u, 1, 20)) != 1]
    is_(missing, [], "50 rcpts: each Maildir has the message")

    # 6. 20 MB message
    big = big_message(20 * 1024 * 1024)
    pb = msgfile("big.eml", big)
    t0 = time.time()
    r, out, err = forward(port, pb, ["bob@test.example"], extra=["-t", "60"])
    is_(r.get("code"), "250", "20 MB: 250 (%.1f s)" % (time.time() - t0))
    files = pf.wait_messages("bob", 2, 60)
    if ok(len(files) == 2, "20 MB: delivered"):
        body = split_maildir(files[-1])[1]
        is_(len(body), len(lf(big)), "20 MB: size exact")
        ok(body == lf(big), "20 MB: bytes exact")

    # 7. pool: five sequential jobs on one connection
    r, out, err = forward(port, p1, ["dave@test.example"],
                          extra=["-n", "5", "-s", "0.05", "-p", "2", "-i", "5"])
    reused = re.findall(r"^job\d+ code=250 reused=1$", out, re.M)
    ok(len(reused) == 4, "pool: jobs 2..5 reused the connection", out)
    like(out, r"pool_open=1 pool_idle=1", "pool: one idle connection left")
    ok(len(pf.wait_messages("dave", 6)) == 6, "pool: all five delivered")
    ok(pf.wait_log(r"disconnect from \S+ ehlo=1 xforward=5 mail=5 rcpt=5 data=5 "),
       "pool: Postfix saw one session with five transactions")

    # 8. concurrency beyond the cap waits for a connection
    r, out, err = forward(port, p1, ["dave@test.example"],
                          extra=["-n", "12", "-c", "6", "-p", "3", "-i", "5"])
    like(out, r"sent=12 ok=12 ", "pool cap 3, 6 in flight: all 12 accepted")
    like(out, r"pool_open=3 pool_idle=3", "pool cap 3: three connections")

    ok(len(pf.wait_messages("dave", 18)) == 18, "pool cap 3: all 12 delivered")
    end = time.time() + 20
    while pf.queue_count() and time.time() < end:
        time.sleep(0.1)
    is_(pf.queue_count(), 0, "postfix queue drained")
    pf.stop()
    r, out, err = forward(port, p1, ["bob@test.example"], extra=["-t", "5"])
    is_(r.get("code"), "451", "postfix stopped: 451")
    is_(r.get("enh"), "4.4.1", "postfix stopped: 4.4.1")
    is_(r.get("fail"), "1", "postfix stopped: connect failure")
    is_(pf.queue_count(), 0, "postfix stopped: nothing queued")


# STARTTLS to a Postfix that offers it (opportunistic and required)
with postfix.Postfix(tls=True) as pf:
    p1 = msgfile("m1.eml", MSG)
    for mode in ("1", "2"):
        r, out, err = forward(pf.port, p1, ["bob@test.example"], extra=["-T", mode])
        is_((r.get("code"), r.get("tls")), ("250", "1"), "STARTTLS mode %s: 250 over TLS" % mode)
    files = pf.wait_messages("bob", 2)
    if ok(len(files) == 2, "STARTTLS: delivered"):
        head, body = split_maildir(files[0])
        like((head or b"").decode(), r"\(using TLSv1\.[23] ", "STARTTLS: Postfix's Received says TLS")
        is_(body, lf(MSG), "STARTTLS: bytes exact")

# TLS required, downstream without STARTTLS
with postfix.smtp_sink() as sink:
    r, out, err = forward(sink.port, msgfile("m1.eml", MSG), ["bob@test.example"],
                          extra=["-T", "2"])
    is_((r.get("code"), r.get("enh")), ("451", "4.7.0"), "TLS required but not offered: 451 4.7.0")
    r, out, err = forward(sink.port, msgfile("m1.eml", MSG), ["bob@test.example"],
                          extra=["-T", "1"])
    is_((r.get("code"), r.get("tls")), ("250", "0"), "opportunistic TLS, not offered: plain 250")


# ------------------------------------------------------------ fake servers

def run_fake(name, script, extra, rcpts=("x@test.example",), conns=1, path=None):
    f = ScriptedSmtp(script, conns)
    r, out, err = forward(f.port, path or msgfile("m1.eml", MSG), list(rcpts),
                          extra=["-t", "3"] + list(extra), timeout=60)
    f.close()
    ok(not f.errors, "%s: fake server script ran clean" % name, *f.errors)
    return r, out, f


# LMTP: one reply per accepted recipient after the dot
def lmtp_script(c):
    greet(c, ["PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES"], lmtp=True)
    assert c.line().startswith("MAIL FROM:")
    for rc in ("250 2.1.5 ok", "550 5.1.1 no such user", "250 2.1.5 ok"):
        assert c.line().startswith("RCPT TO:")
    assert c.line() == "DATA"
    c.send("250 2.1.0 ok\r\n250 2.1.5 ok\r\n550 5.1.1 no such user\r\n250 2.1.5 ok\r\n"
           "354 go\r\n")
    c.data()
    c.send("250 2.0.0 <a> Saved\r\n452 4.2.2 Mailbox full\r\n")
    assert c.line() == "QUIT"
    c.send("221 bye\r\n")


r, out, f = run_fake("lmtp", lmtp_script, ["-l"],
                     rcpts=["a@test.example", "b@test.example", "c@test.example"])
like(r.get("rcpt0", ""), r"^250 2\.0\.0 <a> Saved", "lmtp: first recipient's own reply")
like(r.get("rcpt1", ""), r"^550 5\.1\.1", "lmtp: second refused at RCPT")
like(r.get("rcpt2", ""), r"^452 4\.2\.2 Mailbox full", "lmtp: third recipient's own reply")
is_(r.get("code"), "451", "lmtp: a temporary failure makes the overall result 451")
ok(any(l.startswith("LHLO ") for l in f.log), "lmtp: LHLO sent")


# AUTH PLAIN, no PIPELINING: one command at a time
def auth_script(c):
    greet(c, ["AUTH LOGIN PLAIN", "8BITMIME", "SIZE 1000000"])
    l = c.line()
    assert l == "AUTH PLAIN AHVzZXIAc2VjcmV0", l       # \0user\0secret
    c.send("235 2.7.0 ok\r\n")
    l = c.line()
    assert l.startswith("MAIL FROM:<alice@client.test> SIZE="), l
    c.send("250 ok\r\n")
    assert c.line().startswith("RCPT TO:<x@test.example>")
    c.send("250 ok\r\n")
    assert c.line() == "DATA"
    c.send("354 go\r\n")
    got = c.data()
    assert got == MSG, got
    c.send("250 2.0.0 Ok: queued as AUTH1\r\n")
    assert c.line() == "QUIT"
    c.send("221 bye\r\n")


r, out, f = run_fake("auth", auth_script, ["-a", "user:secret"])
is_(r.get("code"), "250", "auth, no pipelining: 250")
is_(r.get("queue_id"), "AUTH1", "auth: queue id")


# SMTPUTF8 message, downstream without SMTPUTF8 -> 550 5.6.7, nothing sent
def noutf8_script(c):
    greet(c, ["PIPELINING", "8BITMIME"])
    assert c.line() == "QUIT"
    c.send("221 bye\r\n")


r, out, f = run_fake("no smtputf8", noutf8_script, ["-u"])
is_((r.get("code"), r.get("enh")), ("550", "5.6.7"), "no SMTPUTF8 downstream: 550 5.6.7")


def no8bit_script(c):
    greet(c, ["PIPELINING"])
    assert c.line() == "QUIT"
    c.send("221 bye\r\n")


r, out, f = run_fake("no 8bitmime", no8bit_script, ["-8"], path=msgfile("m8.eml", MSG8))
is_((r.get("code"), r.get("enh")), ("451", "4.6.3"), "no 8BITMIME downstream: 451 4.6.3")


# the server drops the connection in the middle of DATA -> 451 4.4.2
def drop_script(c):
    greet(c, ["PIPELINING", "8BITMIME"])
    for _ in range(3):
        c.line()
    c.send("250 ok\r\n250 ok\r\n354 go\r\n")
    c.s.recv(100000)
    c.s.shutdown(socket.SHUT_RDWR)


r, out, f = run_fake("drop mid-DATA", drop_script, [], path=pb)
is_((r.get("code"), r.get("enh")), ("451", "4.4.2"), "dropped mid-DATA: 451 4.4.2")
is_(r.get("fail"), "3", "dropped mid-DATA: reason 'dropped'")


# silence after connect -> 451 4.4.1 when the client's timeout fires: the
# fake stays silent until the client hangs up (its own read gives up after
# 15 s, which lands in f.errors), so the client's timeout is what ended it
def silent_script(c):
    assert c.s.recv(100) == b"", "the client hangs up"


r, out, f = run_fake("silent", silent_script, [])
is_((r.get("code"), r.get("enh"), r.get("fail")), ("451", "4.4.1", "2"),
    "no greeting: 451 4.4.1, reason 'timeout'")


# silence after the final dot -> 451 4.4.2 (never 250)
def nodot_script(c):
    greet(c, ["PIPELINING"])
    for _ in range(3):
        c.line()
    c.send("250 ok\r\n250 ok\r\n354 go\r\n")
    c.data()
    time.sleep(4.5)


r, out, f = run_fake("no final reply", nodot_script, [])
is_((r.get("code"), r.get("enh"), r.get("fail")), ("451", "4.4.2", "2"),
    "no reply to the final dot: 451 4.4.2 timeout")


# a 2xx to DATA itself (no 354): the message never went out, so never 250
# (found by fuzzing the reply parser)
def data250_script(c):
    greet(c, ["PIPELINING"])
    for _ in range(3):
        c.line()
    c.send("250 ok\r\n250 ok\r\n250 2.0.0 queued as NOPE\r\n")
    assert c.s.recv(100) == b"", "the client closes the connection"


r, out, f = run_fake("2xx to DATA", data250_script, [])
is_((r.get("code"), r.get("enh"), r.get("fail")), ("451", "4.5.0", "4"),
    "2xx to DATA instead of 354: 451 4.5.0 protocol error, never 250")


# a multi-line reply whose lines disagree on the code is garbled (RFC 5321
# §4.2.1: the same code on every line); found by fuzzing
def mixed_script(c):
    greet(c, ["PIPELINING"])
    for _ in range(3):
        c.line()
    c.send("250 ok\r\n250-2.1.5 ok\r\n354 go\r\n")
    assert c.s.recv(100) == b"", "the client closes the connection"


r, out, f = run_fake("mixed codes", mixed_script, [])
is_((r.get("code"), r.get("enh"), r.get("fail")), ("451", "4.5.0", "4"),
    "multi-line reply with mixed codes: 451 4.5.0 protocol error")


# LMTP: a 3xx as a recipient's reply to the final dot is no delivery: a
# temporary failure, never a result without a code (found by fuzzing)
def lmtp3xx_script(c):
    greet(c, ["8BITMIME"], lmtp=True)
    for want, reply in (("MAIL FROM:", "250 ok"), ("RCPT TO:", "250 ok"),
                        ("DATA", "354 go")):
        assert c.line().startswith(want)
        c.send(reply + "\r\n")
    c.data()
    c.send("354 go again\r\n")
    assert c.line() == "QUIT"
    c.send("221 bye\r\n")


r, out, f = run_fake("lmtp 3xx to the dot", lmtp3xx_script, ["-l"])
is_((r.get("code"), r.get("enh")), ("451", "4.4.2"),
    "lmtp: 3xx reply to the final dot: 451 4.4.2")


# pooled connection closed by the server while idle -> retried on a new one
def stale_script(c):
    if not hasattr(stale_script, "n"):
        stale_script.n = 0
    stale_script.n += 1
    greet(c, ["PIPELINING"])
    smtp_txn(c, 1)
    if stale_script.n == 1:     # job 2 arrives on the pooled connection:
        c.line()                # read its MAIL, close without a reply
        return


r, out, f = run_fake("stale pooled", stale_script, ["-n", "2", "-s", "0.5", "-p", "1", "-i", "5"],
                     conns=2)
like(out, r"sent=2 ok=2 ", "stale pooled connection: both accepted")
like(out, r"job2 code=250 reused=0", "stale pooled connection: job 2 went out on a new one")


# cancel while the server is silent: no callback, clean exit
def slow_script(c):
    greet(c, ["PIPELINING"])
    time.sleep(2)


f = ScriptedSmtp(slow_script)
r, out, err = forward(f.port, msgfile("m1.eml", MSG), ["x@test.example"],
                      extra=["-k", "0.5", "-t", "5"])
f.close()
ok("cancelled=1" in out and "code=" not in out, "cancel: no result after fwd_cancel", out)

done()
