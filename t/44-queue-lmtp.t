#!/usr/bin/env python3
"""queue/lmtp against a scripted LMTP server (RFC 2033): LHLO, one reply
per recipient after the final dot; every recipient 2xx -> 250; a mixed
outcome -> 250 with each refused recipient logged (a 4xx would make the
client resend to the delivered ones too); none delivered -> 451 when any
got 4xx, else the 5xx; the message bytes arrive dot-stuffed intact."""
import os
import re
import socket
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "lib"))
from kasitest import *  # noqa: E402,F401,F403
from fakesmtp import FakeSmtp  # noqa: E402

MSG = b"Subject: lmtp\r\n\r\nhello\r\n.dot\r\n"
FATE = {"bob": b"250 2.1.5 Saved", "carol": b"452 4.2.2 Mailbox full",
        "dave": b"550 5.1.1 No such user", "erin": b"250 2.1.5 Saved"}


def lmtp_fate(t):
    """One reply per accepted recipient, by the recipient's local part."""
    return [FATE[r.split("@")[0]].decode() for r in t["rcpt"]]


lm = FakeSmtp(lmtp=True, ehlo=["PIPELINING", "8BITMIME"], dot=lmtp_fate)
with Kasi(files={"config/plugins": "queue/lmtp\n",
                 "config/queue/lmtp.yaml": "port: %d\n" % lm.port}) as k:
    def send(rcpts):
        return send_message(k.port, "alice@client.test", ["%s@x.test" % r for r in rcpts], MSG)

    code, lines = send(["bob", "erin"])
    is_(code, 250, "all delivered: 250")
    ok(b"LHLO" in lm.verbs() and b"EHLO" not in lm.verbs(), "spoke LHLO")
    got = [t["raw"] for t in lm.txns if "bob@x.test" in t["rcpt"]]
    ok(got and got[0].endswith(b"hello\r\n..dot\r\n") and b"Subject: lmtp\r\n" in got[0],
       "bytes arrive dot-stuffed, intact", got)

    code, lines = send(["bob", "carol", "dave"])
    is_(code, 250, "mixed (250/452/550): 250, bob has it")
    ok(k.wait_log(r"refused <carol@x\.test>: 452 4\.2\.2 Mailbox full \(not delivered\)"),
       "mixed: the 4xx recipient logged loudly")
    ok(k.wait_log(r"refused <dave@x\.test>: 550 5\.1\.1 No such user"), "mixed: the 5xx recipient logged")

    code, lines = send(["carol", "dave"])
    is_(code, 451, "none delivered, one 4xx: 451")

    code, lines = send(["dave"])
    is_(code, 550, "none delivered, all 5xx: 550")
    like(" ".join(lines), r"^5\.1\.1 No such user", "the downstream's text")
lm.stop()
done()
