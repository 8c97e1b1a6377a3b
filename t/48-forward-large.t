#!/usr/bin/env python3
"""Large messages through queue/smtp_forward (net/smtp_client.c data_fill,
msg/msg_store.c). A message past memory_buffer lives in the spill file;
its body goes to the downstream by reference (sendfile), cut at every
line-starting dot the store noted while the message arrived, where one
'.' more is sent. Against the fake downstream, checked on the wire:
  - dots at the start of the body, at the 64 KiB write boundaries of the
    store, on the last line, lines of one dot and of two dots: the raw
    bytes are the dot-stuffed message and the unstuffed bytes the message
    itself;
  - more line-starting dots than the store lists (it falls back to
    scanning): the same exactness;
  - a small message (never spilled) still goes the copying way, exact.
"""
import hashlib
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kasitest import *  # noqa: E402,F401,F403
from fakesmtp import FakeSmtp  # noqa: E402

HEAD = b"From: a@client.test\r\nTo: b@test.example\r\nSubject: large\r\n\r\n"


def stuffed(data):
    """SMTP dot-stuffing as the client sends it (lines end with CRLF)."""
    return dot_stuff(data)


def body_with_dots(size):
    """Lines of varied length; dots at the body start, around every 64 KiB
    boundary and at the end; a lone dot line."""
    parts, n, i = [b".first line starts with a dot\r\n"], 0, 0
    while n < size:
        line = (b"line %d " % i) + b"x" * (i % 97) + b"\r\n"
        if i % 501 == 0:
            line = b"." + line
        if i % 777 == 0:
            line = b".\r\n"            # a line that is one dot
        parts.append(line)
        n += len(line)
        i += 1
    # dots right at each 64 KiB boundary of the body
    body = bytearray(b"".join(parts))
    for k in range(65536, len(body) - 4, 65536):
        j = body.rfind(b"\n", 0, k)
        if j >= 0 and j + 1 < len(body):
            body[j + 1:j + 1] = b".b"
    return bytes(body) + b".last line\r\n"


def forward(k, fk, msg):
    with Raw(k.port, banner=True) as r:
        r.cmd("EHLO client.test")
        r.cmd("MAIL FROM:<a@client.test>")
        r.cmd("RCPT TO:<b@test.example>")
        r.cmd("DATA")
        r.send(stuffed(msg) + b".\r\n")
        code, lines = r.read_reply(timeout=60)
        r.cmd("QUIT")
    return code


def check(fk, n, msg, name):
    ok(fk.wait_txns(n, timeout=scaled(60)), name + ": the downstream got it")
    t = fk.txns[n - 1] if len(fk.txns) >= n else {"data": b"", "raw": b""}
    got = strip_received(t["data"])[1]
    is_(len(got), len(msg), name + ": size")
    ok(hashlib.sha256(got).digest() == hashlib.sha256(msg).digest(),
       name + ": the downstream's unstuffed bytes are the message")
    raw = strip_received(t["raw"])[1]
    ok(raw == stuffed(msg), name + ": dot-stuffed on the wire exactly")


fk = FakeSmtp()
files = {"config/plugins": "queue/smtp_forward\n",
         "config/queue/smtp_forward.yaml":
             "port: %d\ntimeout_connect: 5\ntimeout_cmd: 10\ntimeout_data: 30\n" % fk.port}
with Kasi({"limits": {"memory_buffer": "64K"}}, files=files) as k:
    big = HEAD + body_with_dots(3 * 1000 * 1000)
    is_(forward(k, fk, big), 250, "3 MB with dots: 250")
    check(fk, 1, big, "3 MB with dots")

    odd = HEAD + (b"q" * 900 + b"\r\n") * 200 + b"..two dots\r\n" + (b"w" * 900 + b"\r\n") * 80 + b".\r\n"
    is_(forward(k, fk, odd), 250, "two-dot line and a last line of one dot: 250")
    check(fk, 2, odd, "two-dot line, last line one dot")

    dense = HEAD + b".d\r\n" * 70000 + b"tail\r\n"
    is_(forward(k, fk, dense), 250, "70,000 dot lines: 250")
    check(fk, 3, dense, "more dots than the store lists")

    small = HEAD + b".small\r\nbody\r\n"
    is_(forward(k, fk, small), 250, "small message: 250")
    check(fk, 4, small, "small message")
fk.stop()
done()
