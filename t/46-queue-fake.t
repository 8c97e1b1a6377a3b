#!/usr/bin/env python3
"""The three queue plugins (smtp_forward, smtp_proxy, lmtp) against the
scriptable fake downstream (t/lib/fakesmtp.py), so every queue path runs
without root and without Postfix. Per plugin: the envelope and the exact
bytes arrive (dot-stuffed on the wire), XFORWARD carries the client, a
downstream refusal of one recipient, a downstream that is down (451, never
250), one that drops mid-DATA and one that never answers the dot (451;
nothing counted as delivered that was not). The real-Postfix tests (40-45)
stay as the integration layer."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kasitest import *  # noqa: E402,F401,F403
from fakesmtp import FakeSmtp  # noqa: E402
from kasinet import free_port  # noqa: E402

MSG = b"From: alice@client.test\r\nSubject: fake\r\n\r\nbody\r\n.dot line\r\n"
PLUGINS = ["queue/smtp_forward", "queue/smtp_proxy", "queue/lmtp"]


def refuse_dave(addr):
    return "550 5.1.1 No such user" if addr.startswith("dave@") else None


def kasi_for(plugin, port):
    return Kasi(files={
        "config/plugins": plugin + "\n",
        "config/%s.yaml" % plugin:
            "port: %d\ntimeout_connect: 3\ntimeout_cmd: 3\ntimeout_data: 3\n" % port})


def transaction(k, rcpts, data=MSG):
    """MAIL, RCPTs, DATA; returns ([MAIL code, RCPT codes...], (data code,
    lines)); the data code is None when no recipient was taken."""
    with Raw(k.port, banner=True) as r:
        r.cmd("EHLO client.test")
        codes = [r.cmd("MAIL FROM:<alice@client.test>")[0]]
        codes += [r.cmd("RCPT TO:<%s>" % a)[0] for a in rcpts]
        if not any(c == 250 for c in codes[1:]):
            return codes, (None, [])
        code, _ = r.cmd("DATA")
        if code != 354:
            return codes, (code, [])
        r.send(dot_stuff(data) + b".\r\n")
        res = r.read_reply(timeout=30)
        r.cmd("QUIT")
        return codes, res


for plugin in PLUGINS:
    name = plugin.split("/")[1]
    lmtp = name == "lmtp"

    # the happy path, one recipient refused downstream
    fk = FakeSmtp(lmtp=lmtp, rcpt=refuse_dave)
    with kasi_for(plugin, fk.port) as k:
        codes, (code, lines) = transaction(k, ["bob@test.example", "dave@test.example"])
        if name == "smtp_proxy":          # the downstream decides at RCPT time
            is_(codes, [250, 250, 550], "%s: the downstream's refusal is heard at RCPT" % name)
        else:
            is_(codes, [250, 250, 250], "%s: RCPTs accepted locally" % name)
        ok(code == 250, "%s: 250 after the downstream took it" % name, code, lines)
        ok(fk.wait_txns(1, 10), "%s: the downstream recorded the transaction" % name)
        t = fk.txns[0] if fk.txns else {"rcpt": [], "data": b"", "raw": b"", "xforward": {}}
        is_(t["rcpt"], ["bob@test.example"], "%s: only the accepted recipient" % name)
        ok(t["data"].endswith(MSG), "%s: the bytes arrive intact after kasi's Received" % name,
           t["data"][-200:])
        ok(t["raw"].endswith(b"\r\n..dot line\r\n"), "%s: dot-stuffed on the wire" % name)
        like(t.get("mail") or "", r"FROM:<alice@client\.test>", "%s: the sender" % name)
        if not lmtp:
            is_(t["xforward"].get("ADDR"), "127.0.0.1", "%s: XFORWARD ADDR is the client" % name)
            is_(t["xforward"].get("HELO"), "client.test", "%s: XFORWARD HELO" % name)
    fk.stop()

    # the downstream is down
    with kasi_for(plugin, free_port()) as k:
        codes, (code, lines) = transaction(k, ["bob@test.example"])
        first_4xx = [c for c in codes + [code] if c is not None and c >= 400][:1]
        ok(first_4xx and first_4xx[0] < 500 and code != 250,
           "%s: downstream down: a 4xx (%s), never 250" % (name, "at MAIL" if code is None else "to DATA"),
           codes, code, lines)
        is_(k.spool_names(), [], "%s: downstream down: nothing kept locally" % name)

    # drops mid-DATA, never answers the dot
    for how, fk in (("drop", FakeSmtp(lmtp=lmtp, data="DROP")),
                    ("mute", FakeSmtp(lmtp=lmtp, dot="MUTE"))):
        with kasi_for(plugin, fk.port) as k:
            codes, (code, lines) = transaction(k, ["bob@test.example"], MSG + (b"y" * 70 + b"\r\n") * 100)
            ok(code is not None and 400 <= code < 500,
               "%s: downstream %s: 4xx to DATA" % (name, how), code, lines)
            is_(len(fk.txns), 0, "%s: downstream %s: nothing delivered" % (name, how))
        fk.stop()

done()
