#!/usr/bin/env python3
"""early_talker: talking before the banner, before the 354 of DATA and (for
HELO clients) before the reply to the end of data is refused with 554 5.7.1
and a disconnect; pipelining after EHLO and after the message is legal;
pause 0 still checks; exempt_ips; reject: false only records."""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kasitest import *  # noqa: E402,F401,F403

MSG = b"Subject: early\r\n\r\nhello\r\n"


def conf(yaml, extra=""):
    return {"config/plugins": "early_talker\n%squeue/spool\n" % extra,
            "config/early_talker.yaml": yaml}


with Kasi(files=conf("pause: 0.5\ndata_pause: 0.5\nexempt_ips: [127.0.0.3/32]\n")) as k:
    # a patient client: the banner comes after the pause
    t0 = time.monotonic()
    with Raw(k.port) as r:
        r.expect(220, name="patient client gets the banner")
        ok(time.monotonic() - t0 >= 0.45, "banner waited for the pause")
        # RFC 2920: MAIL/RCPT/DATA pipelined after EHLO are legal
        is_(r.cmd("EHLO client.test")[0], 250, "EHLO")
        r.send("MAIL FROM:<a@client.test>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n")
        r.expect(250, "2.1.0", "pipelined MAIL")
        r.expect(250, "2.1.5", "pipelined RCPT")
        r.expect(354, name="pipelined DATA: 354")
        # the next commands may follow the message at once
        r.send(MSG + b".\r\nMAIL FROM:<c@client.test>\r\n")
        r.expect(250, "2.0.0", "message accepted with a pipelined MAIL after it")
        r.expect(250, "2.1.0", "the pipelined MAIL is answered")
        r.cmd("QUIT")
    is_(len(k.wait_spool(1)), 1, "the message is spooled")

    # talking before the banner
    with Raw(k.port) as r:
        r.send("EHLO early.test\r\n")
        r.expect(554, "5.7.1", "talker before the banner: 554 5.7.1")
        ok(r.closed(), "and is disconnected")
    like(k.log(), r"early_talker: \d+ bytes sent early \(before the banner\)",
         "logged")

    # an exempt client may talk early
    with Raw(k.port, source="127.0.0.3") as r:
        r.send("EHLO early.test\r\n")
        r.expect(220, name="exempt early talker gets the banner")
        r.expect(250, name="and its EHLO is answered")

    # HELO client: the message before the 354
    with Raw(k.port, helo="client.test") as r:
        r.cmd("MAIL FROM:<a@client.test>")
        r.cmd("RCPT TO:<b@example.com>")
        r.send(b"DATA\r\n" + MSG)
        r.expect(554, "5.7.1", "data sent before the 354: 554 5.7.1")
        ok(r.closed(), "and is disconnected")

    # HELO client (no PIPELINING): a command right after the final dot
    with Raw(k.port, helo="client.test") as r:
        r.cmd("MAIL FROM:<a@client.test>")
        r.cmd("RCPT TO:<b@example.com>")
        is_(r.cmd("DATA")[0], 354, "DATA")
        r.send(MSG + b".\r\nQUIT\r\n")
        r.expect(554, "5.7.1", "HELO client talking after the dot: 554 5.7.1")
        ok(r.closed(), "and is disconnected")
    is_(len(k.spool()), 1, "the early message was not spooled")

# pause 0: no wait, the checks still run
with Kasi(files=conf("pause: 0\ndata_pause: 0\n")) as k:
    with Raw(k.port, helo="client.test") as r:
        r.cmd("MAIL FROM:<a@client.test>")
        r.cmd("RCPT TO:<b@example.com>")
        r.send(b"DATA\r\n" + MSG + b".\r\n")
        r.expect(554, "5.7.1", "pause 0 still catches data before the 354")
    with Raw(k.port, helo="client.test") as r:
        r.cmd("MAIL FROM:<a@client.test>")
        r.cmd("RCPT TO:<b@example.com>")
        is_(r.cmd("DATA")[0], 354, "DATA after the pause")
        r.send(MSG + b".\r\n")
        r.expect(250, "2.0.0", "pause 0: a patient HELO client is accepted")

# reject: false only records; a later plugin sees the note
NOTE = r'''
function hook_mail(conn, txn, from)
  local n = conn.notes.early_talker
  if n then return DENY, "noted " .. n.at .. " " .. n.bytes end
end
'''
with Kasi(files={"config/plugins": "early_talker\nnote\nqueue/spool\n",
                 "config/early_talker.yaml": "pause: 0.3\nreject: false\n",
                 "plugins/note.lua": NOTE}) as k:
    with Raw(k.port) as r:
        r.send("EHLO early.test\r\n")
        r.expect(220, name="reject false: the banner still comes")
        r.expect(250, name="EHLO answered")
        is_(r.cmd("MAIL FROM:<a@client.test>"),
            (550, ["5.7.1 noted before the banner 17"]),
            "conn.notes.early_talker records where and how much")

# a relaying client is not checked (relay before early_talker)
with Kasi(files={"config/plugins": "relay\nearly_talker\nqueue/spool\n",
                 "config/relay.yaml": "allow: [127.0.0.4]\n",
                 "config/early_talker.yaml": "pause: 0.3\n"}) as k:
    with Raw(k.port, source="127.0.0.4") as r:
        r.send("EHLO early.test\r\n")
        r.expect(220, name="relaying client is not checked")
    with Raw(k.port, source="127.0.0.5") as r:
        r.send("EHLO early.test\r\n")
        r.expect(554, "5.7.1", "another client is")

with Kasi(files=conf("pause: 99\n"), start=False) as k:
    res = run([KASI_BIN, "-t", "-c", k.confdir])
    ok(res.returncode != 0, "kasi -t refuses pause: 99", res.stdout + res.stderr)

done()
