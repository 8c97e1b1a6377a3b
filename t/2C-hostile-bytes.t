#!/usr/bin/env python3
"""Hostile bytes never reach Received:, the log or the JSON envelope raw:
a HELO/EHLO name of malformed UTF-8 is refused with 501 5.5.4; a valid
UTF-8 name is kept as it is; an AUTH user name of any bytes is written to
the envelope as U+FFFD (the envelope always parses as UTF-8 JSON); plugin
texts with malformed UTF-8 or line ends are escaped in the log (no forged
log line)."""
import base64
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kasitest import *  # noqa: E402,F401,F403
from tlstest import start, tls_yaml  # noqa: E402

PLUGIN = r"""-- test-only: accept every AUTH; refuse one sender with a hostile text
local P = {}
function P.hook_auth(conn, txn, creds) return OK end
function P.hook_mail(conn, txn, from)
  if from.user == "hostile" then
    return DENY, "bad \255\254 text\nforged line"
  end
end
return P
"""
MSG = b"Subject: bytes\r\n\r\nbody\r\n"


def envelope_of(k, mid):
    """The .env of message mid, parsed strictly (bytes -> UTF-8 -> JSON)."""
    with open(os.path.join(k.spool_dir, mid + ".env"), "rb") as f:
        raw = f.read()
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        ok(False, "envelope %s parses as UTF-8 JSON" % mid, repr(e), repr(raw))
        return None


def deliver(c, name):
    c.send("MAIL FROM:<a@client.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n")
    is_([x for x, _ in c.read_replies(3)], [250, 250, 354], name + ": MAIL, RCPT, DATA")
    c.send(dot_stuff(MSG) + b".\r\n")
    code, lines = c.read_reply()
    is_(code, 250, name + ": message accepted")
    return queued_id(lines)


yaml = tls_yaml("../spool", [{"auth": True, "auth_plaintext": True, "tls": "none"}], [])
with start(yaml, 1, files={"config/plugins": "test_bytes\nqueue/spool\n",
                           "plugins/test_bytes.lua": PLUGIN}) as k:
    k.spool_dir = os.path.join(k.tmp, "spool")
    for bad, what in [(b"\xff\xfe.client.test", "0xff 0xfe"), (b"bad\xc3(.test", "bad continuation"),
                      (b"\xc0\xaf.test", "overlong '/'"), (b"\xed\xa0\x80.test", "surrogate"),
                      (b"cut\xe2\x82", "cut sequence")]:
        with Raw(k.port, banner=True) as c:
            for verb in (b"EHLO", b"HELO"):
                c.send(verb + b" " + bad + b"\r\n")
                code, lines = c.read_reply()
                ok(code == 501 and lines and lines[0].startswith("5.5.4 Malformed UTF-8"),
                   "%s with %s: 501 5.5.4" % (verb.decode(), what), "got %r %r" % (code, lines))
            c.send("MAIL FROM:<a@client.test>\r\n")
            is_(c.read_reply()[0], 503, "  the session stays ungreeted")

    name = "h\u00e9llo.\u4f8b\u3048.test"       # valid UTF-8 is kept
    with Raw(k.port, banner=True) as c:
        c.send(b"EHLO " + name.encode() + b"\r\n")
        is_(c.read_reply()[0], 250, "EHLO with a valid UTF-8 name: 250")
        mid = deliver(c, "UTF-8 EHLO")
    env = envelope_of(k, mid) if mid else None
    if env:
        is_(env.get("helo"), name, "  the envelope holds the name")
    m = k.spool_by_id(mid) if mid else None
    if ok(m, "  spooled"):
        rec = m.received()
        ok(name.encode() in rec, "  Received: holds the name", repr(rec))

    user = b"\xff\xfeus\xe9r"                    # AUTH user: any bytes
    with Raw(k.port, ehlo="client.test") as c:
        c.send(b"AUTH PLAIN " + base64.b64encode(b"\0" + user + b"\0pw") + b"\r\n")
        is_(c.read_reply()[0], 235, "AUTH with a user of malformed UTF-8: 235 (plugin)")
        mid = deliver(c, "hostile user")
    env = envelope_of(k, mid) if mid else None
    if env:
        is_(env.get("auth_user"), "\ufffd\ufffdus\ufffdr",
            "  the envelope is valid JSON, bad bytes as U+FFFD")

    with Raw(k.port, ehlo="client.test") as c:
        code, lines = c.cmd("MAIL FROM:<hostile@client.test>")
        is_(code, 550, "a plugin's refusal with hostile bytes: 550")
    k.wait_log(r"reject plugin=test_bytes hook=mail")

    with open(k.logfile, "rb") as f:
        log = f.read()
    try:
        log.decode("utf-8")
        ok(True, "the whole log is valid UTF-8")
    except UnicodeDecodeError as e:
        ok(False, "the whole log is valid UTF-8", repr(e), repr(log[e.start - 80:e.end + 80]))
    like(log, r'reject plugin=test_bytes hook=mail code=550 \S+ .* msg="bad \\xFF\\xFE '
         r'text\\x0Aforged line"', "the plugin text is escaped in the log line")
    unlike(log, r"(?m)^forged line", "  no forged log line")
    like(log, r"user=\\xFF\\xFEus\\xE9r mechanism=PLAIN ok|user=\?\?us\?r",
         "the AUTH user is escaped in the log")

done()
