#!/usr/bin/env python3
"""limit: concurrent connections per IP (given back at disconnect),
connection rate per IP, recipients per message (452 4.5.3), transactions
per connection, rejections per connection, exempt networks."""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kasitest import *  # noqa: E402,F401,F403

LIMIT = """
concurrency: {max: 2}
rate: {max: 4, period: 60}
recipients: {max: 2}
messages: {max: 2}
rejections: {max: 2}
exempt_ips: [127.0.0.9]
"""

NO_EXEMPT = {"limits": {"exempt": []}}    # loopback is exempt by default

with Kasi(NO_EXEMPT, files={"config/plugins": "limit\nrcpt_to_host_list\nqueue/spool\n",
                 "config/rcpt_to_host_list.yaml": "domains: [example.com]\n",
                 "config/limit.yaml": LIMIT}) as k:
    # concurrency
    a = Raw(k.port, banner=True, source="127.0.0.2")
    b = Raw(k.port, banner=True, source="127.0.0.2")
    with Raw(k.port, source="127.0.0.2") as r:
        r.expect(421, "4.7.0", "3rd simultaneous connection from one IP: 421 4.7.0")
        ok(r.closed(), "and closed")
    with Raw(k.port, source="127.0.0.3") as r:
        r.expect(220, name="another IP is not affected")
    a.cmd("QUIT")
    a.close()
    got = None
    deadline = time.monotonic() + scaled(3)
    while time.monotonic() < deadline:     # the disconnect hook gives the slot back
        with Raw(k.port, source="127.0.0.2") as r:
            got = r.read_reply()[0]
        if got == 220:
            break
        time.sleep(0.1)
    is_(got, 220, "a slot is free again after a disconnect")
    b.close()

    # rate: 4 per minute from 127.0.0.4
    codes = []
    for i in range(5):
        with Raw(k.port, source="127.0.0.4") as r:
            codes.append(r.read_reply()[0])
    is_(codes, [220, 220, 220, 220, 421], "5th connection in a minute: 421")

    # recipients, messages, rejections
    with Raw(k.port, ehlo="client.test", source="127.0.0.5") as r:
        r.cmd("MAIL FROM:<a@client.test>")
        is_(r.cmd("RCPT TO:<a@example.com>")[0], 250, "rcpt 1")
        is_(r.cmd("RCPT TO:<b@example.com>")[0], 250, "rcpt 2")
        r.cmd("RCPT TO:<c@example.com>")
        is_(r.last, (452, ["4.5.3 Too many recipients"]), "rcpt 3: 452 4.5.3")
        r.cmd("DATA")
        r.send(b"Subject: t\r\n\r\nx\r\n.\r\n")
        mid = queued_id(r.expect(250, "2.0.0", "message with 2 recipients accepted"))
        is_(r.cmd("MAIL FROM:<a@client.test>")[0], 250, "2nd transaction")
        r.cmd("RSET")
        r.send("MAIL FROM:<a@client.test>\r\n")
        r.expect(421, "4.7.0", "3rd transaction: 421 4.7.0")
        ok(r.closed(), "and closed")
    m = k.spool_by_id(mid) if mid else None
    ok(m is not None and m.env["rcpt_to"] == ["a@example.com", "b@example.com"],
       "spooled with the 2 accepted recipients", repr(m and m.env))

    with Raw(k.port, ehlo="client.test", source="127.0.0.6") as r:
        r.cmd("MAIL FROM:<a@client.test>")
        is_(r.cmd("RCPT TO:<a@other.test>")[0], 550, "rejection 1")
        is_(r.cmd("RCPT TO:<b@other.test>")[0], 550, "rejection 2")
        r.send("RCPT TO:<c@example.com>\r\n")
        r.expect(421, "4.7.0", "after 2 rejections: 421 4.7.0")
        ok(r.closed(), "and closed")

    # exempt
    with Raw(k.port, ehlo="client.test", source="127.0.0.9") as r:
        r.cmd("MAIL FROM:<a@client.test>")
        for i in range(4):
            is_(r.cmd("RCPT TO:<r%d@example.com>" % i)[0], 250,
                "exempt client: rcpt %d" % (i + 1))
    conns = [Raw(k.port, banner=True, source="127.0.0.9") for _ in range(3)]
    ok(all(c.last and c.last[0] == 220 for c in conns),
       "exempt client: 3 connections at once")
    for c in conns:
        c.close()

# limits off by default
with Kasi(NO_EXEMPT, files={"config/plugins": "limit\nqueue/spool\n"}) as k:
    conns = [Raw(k.port, banner=True, source="127.0.0.2") for _ in range(4)]
    ok(all(c.last and c.last[0] == 220 for c in conns), "no limits by default")
    for c in conns:
        c.close()

with Kasi(files={"config/plugins": "limit\n",
                 "config/limit.yaml": "concurrency: {max: -1}\n"}, start=False) as k:
    res = run([KASI_BIN, "-t", "-c", k.confdir])
    ok(res.returncode != 0, "kasi -t refuses a negative max", res.stdout + res.stderr)

done()
