#!/usr/bin/env python3
# The spamassassin plugin against a real spamd on loopback: GTUBE is
# rejected, a clean message gets "X-Spam-Status: No" in the spooled bytes,
# max_size skips with a header, the relaying threshold, and spamd stopped:
# on_failure defer (451 4.7.1) or accept (X-Spam-Status: Unknown).
import os
import shutil
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kasitest import *
from kasinet import Spamd, free_port

GTUBE = (b"From: a@example.test\r\nTo: b@mx.kasi.test\r\nSubject: test\r\n"
         b"Message-ID: <gtube@example.test>\r\n\r\n"
         b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X\r\n")
CLEAN = (b"From: Alice <alice@example.test>\r\nTo: bob@mx.kasi.test\r\n"
         b"Subject: lunch tomorrow\r\nMessage-ID: <clean1@example.test>\r\n"
         b"Date: Mon, 2 Jan 2023 10:00:00 +0000\r\n"
         b"X-Spam-Status: Yes, forged by the sender\r\n\r\n"
         b"Hi Bob,\r\n\r\nshall we meet at noon at the usual place?\r\n\r\nAlice\r\n")


def conf(port, **kw):
    c = {"host": "127.0.0.1", "port": port, "reject_threshold": 10,
         "max_size": 100000, "on_failure": "defer", "timeout": 30}
    c.update(kw)
    return to_yaml({k: v for k, v in c.items() if v is not None}) + "\n"


def kasi_with(conf_text):
    return Kasi(files={"config/plugins": "spamassassin\nqueue/spool\n",
                       "config/spamassassin.yaml": conf_text})


if not shutil.which("spamd") and not os.path.exists("/usr/sbin/spamd"):
    ok(True, "# SKIP spamd is not installed")
    done()

with Spamd() as spamd:
    if not ok(spamd.wait_ready(90), "spamd answers PING"):
        diag(spamd.log_text()[-3000:])
        done()
    with kasi_with(conf(spamd.port)) as k:
        code, lines = send_message(k.port, "a@example.test", ["b@mx.kasi.test"], GTUBE)
        is_(code, 550, "GTUBE rejected")
        like(" ".join(lines), r"^5\.7\.1 Message rejected as spam \(score \d+", "... 5.7.1 with the score")
        code, lines = send_message(k.port, "alice@example.test", ["bob@mx.kasi.test"], CLEAN)
        is_(code, 250, "clean message accepted")
        msgs = k.wait_spool(1)
        is_(len(msgs), 1, "only the clean message is spooled")
        eml = msgs[0].eml if msgs else b""
        like(eml, r"\r\nX-Spam-Status: No, score=-?\d+\.\d required=5\.0", "X-Spam-Status: No")
        like(eml, r"\r\nX-Spam-Flag: NO\r\n", "X-Spam-Flag: NO")
        like(eml, r"\r\nX-Spam-Score: -?\d+\.\d\r\n", "X-Spam-Score")
        unlike(eml, r"forged by the sender", "the sender's X-Spam-Status is removed")
        ok(eml.endswith(b"\r\nshall we meet at noon at the usual place?\r\n\r\nAlice\r\n"),
           "body intact")

    # no reject threshold: GTUBE gets the headers, with the symbol list
    with kasi_with(conf(spamd.port, reject_threshold=None)) as k:
        code, _ = send_message(k.port, "a@example.test", ["b@mx.kasi.test"], GTUBE)
        is_(code, 250, "no reject_threshold: GTUBE accepted")
        msgs = k.wait_spool(1)
        eml = msgs[0].eml if msgs else b""
        like(eml, r"X-Spam-Flag: YES\r\n", "X-Spam-Flag: YES")
        like(eml, r"X-Spam-Status: Yes, score=\d+\.\d required=5\.0 tests=[^\r]*GTUBE",
             "X-Spam-Status: Yes with tests")

    # relaying clients use relay_reject_threshold; max_size skips
    big = CLEAN + b"padding line of text\r\n" * 10000
    with kasi_with(conf(spamd.port, max_size=50000)) as k:
        code, _ = send_message(k.port, "a@example.test", ["b@mx.kasi.test"], big)
        is_(code, 250, "message over max_size accepted unscanned")
        msgs = k.wait_spool(1)
        eml = msgs[0].eml if msgs else b""
        like(eml, r"X-Spam-Status: Skipped, size=\d+ max_size=50000\r\n", "... with a Skipped header")

    # spamd stopped: defer, or accept with a header
    port = spamd.port
    spamd.stop()
    with kasi_with(conf(port, on_failure="defer")) as k:
        code, lines = send_message(k.port, "a@example.test", ["b@mx.kasi.test"], CLEAN)
        is_((code, (lines or [""])[0][:5]), (451, "4.7.1"), "spamd down, on_failure defer: 451 4.7.1")
        is_(len(k.spool()), 0, "... nothing spooled")
        like(k.log(), r"spamassassin: connect: .*[Rr]efused", "... reason logged")
    with kasi_with(conf(port, on_failure="accept")) as k:
        code, _ = send_message(k.port, "a@example.test", ["b@mx.kasi.test"], CLEAN)
        is_(code, 250, "spamd down, on_failure accept: 250")
        msgs = k.wait_spool(1)
        eml = msgs[0].eml if msgs else b""
        like(eml, r"\r\nX-Spam-Status: Unknown", "... with X-Spam-Status: Unknown")

# a spamd that accepts and never answers: bounded by timeout
import socket
hang = socket.socket()
hang.bind(("127.0.0.1", 0))
hang.listen(8)
with kasi_with(conf(hang.getsockname()[1], timeout=1, on_failure="defer")) as k:
    # spamd never answers: a reply at all is the plugin's timeout
    code, _ = send_message(k.port, "a@example.test", ["b@mx.kasi.test"], CLEAN)
    is_(code, 451, "silent spamd: 451 after the plugin's timeout")
hang.close()

done()
