#!/usr/bin/env python3
"""The spamassassin plugin against the scripted fake spamd (t/lib/
fakespamd.py): the request it sends (verb, Content-length equal to the
message's size, the User header, the exact message), a high score
rejected and a low one accepted with its X-Spam-Status header, and every
failure of spamd — garbled status, an error status, no verdict, silence
past the timeout, a closed connection, nobody listening — deferred (451)
with on_failure: defer and accepted with "X-Spam-Status: Unknown" with
on_failure: accept; never a 250 that drops the message, never a hang."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kasitest import *  # noqa: E402,F401,F403
from fakespamd import FakeSpamd  # noqa: E402
from kasinet import free_port  # noqa: E402

MSG = (b"From: a@example.test\r\nTo: b@mx.kasi.test\r\nSubject: fake\r\n"
       b"Message-ID: <fake@example.test>\r\n\r\nhello\r\n")


def kasi_for(port, **kw):
    c = {"host": "127.0.0.1", "port": port, "reject_threshold": 10,
         "on_failure": "defer", "timeout": 2, "connect_timeout": 2}
    c.update(kw)
    return Kasi(files={"config/plugins": "spamassassin\nqueue/spool\n",
                       "config/spamassassin.yaml": to_yaml(c) + "\n"})


def send(k):
    return send_message(k.port, "a@example.test", ["b@mx.kasi.test"], MSG)


# the request, a clean verdict, a spam verdict
sd = FakeSpamd(score=1.5)
with kasi_for(sd.port, user="kasi-test") as k:
    code, lines = send(k)
    is_(code, 250, "low score: accepted")
    req = sd.requests[0] if sd.requests else {"verb": None, "headers": {}, "body": b""}
    is_(req["verb"], "SYMBOLS", "asks for SYMBOLS")
    is_(req["headers"].get("user"), "kasi-test", "User header from the config")
    is_(int(req["headers"].get("content-length", -1)), len(req["body"]),
        "Content-length is the size sent")
    ok(req["body"].endswith(MSG), "spamd gets the message as received, after Received")
    msgs = k.spool()
    ok(msgs and b"X-Spam-Status: No, score=1.5 required=5.0" in msgs[0].eml,
       "X-Spam-Status added", msgs and msgs[0].eml[:400])
sd.stop()

sd = FakeSpamd(score=12.5)
with kasi_for(sd.port) as k:
    code, lines = send(k)
    is_(code, 550, "score over reject_threshold: 550")
    is_(k.spool_names(), [], "nothing spooled")
sd.stop()

# failures, under both policies
FAILURES = ["garbled", "error", "noverdict", "mute", "close", "nobody"]
for policy in ("defer", "accept"):
    for mode in FAILURES:
        sd = None if mode == "nobody" else FakeSpamd(mode=mode)
        port = sd.port if sd else free_port()
        with kasi_for(port, on_failure=policy) as k:
            code, lines = send(k)
            if policy == "defer":
                ok(code is not None and 400 <= code < 500,
                   "%s, on_failure defer: 4xx" % mode, code, lines)
                is_(k.spool_names(), [], "%s, defer: nothing spooled" % mode)
            else:
                is_(code, 250, "%s, on_failure accept: 250" % mode)
                msgs = k.spool()
                ok(msgs and b"X-Spam-Status: Unknown" in msgs[0].eml,
                   "%s, accept: X-Spam-Status: Unknown" % mode)
        if sd:
            sd.stop()

done()
