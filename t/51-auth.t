#!/usr/bin/env python3
"""AUTH (RFC 4954): offered only over TLS (unless auth_plaintext), 538
before TLS, PLAIN and LOGIN exchanges with and without initial response,
cancel, bad base64, unknown mechanism, 535 after a growing delay, 421
after three failures, no credentials in the log, submission listener
needs AUTH (530), and a successful AUTH through a Lua auth plugin."""
import os
import smtplib
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kasitest import *  # noqa: E402,F401,F403
from tlstest import RawTLS, b64, client_ctx, make_pki, start, tls_yaml  # noqa: E402

SECRET = "Sup3r-s3cret-pw"
pki_dir = tempfile.mkdtemp(prefix="kasi-pki-")
pki = make_pki(pki_dir, {"a": ["mail.a.test"]})
CA = pki["ca"]
ctx = client_ctx(CA)

LISTEN = [
    "127.0.0.1:0",                                    # MX: STARTTLS, no AUTH
    {"submission": True},                             # STARTTLS + AUTH, MAIL needs AUTH
    {"auth": True, "auth_plaintext": True, "tls": "none"},  # loopback AUTH
]

PLUGIN = """-- test-only: one user, alice / %s
local P = {}
function P.hook_auth(conn, txn, creds)
  if creds and creds.user == "alice" and creds.password == "%s" then
    return OK
  end
  return DENY
end
return P
""" % (SECRET, SECRET)


def tls_session(port):
    c = RawTLS(port, ehlo="client.test")
    c.send("STARTTLS\r\n")
    c.expect(220, name="STARTTLS")
    c.starttls(ctx)
    c.cmd("EHLO client.test")
    return c


def timed(c, line):
    t = time.monotonic()
    r = c.cmd(line, timeout=15)
    return r, time.monotonic() - t


with start(tls_yaml("../spool", LISTEN, [pki["a"]]), 3,
           files={"config/plugins": "test_auth\nqueue/spool\n",
                  "plugins/test_auth.lua": PLUGIN}) as k:
    mx, sub, loop = k.ports

    # before TLS
    with RawTLS(sub, ehlo="client.test") as c:
        ok(not any(l.startswith("AUTH") for l in c.last[1]), "submission: no AUTH before TLS",
           c.last)
        code, lines = c.cmd("AUTH PLAIN " + b64("\0alice\0" + SECRET))
        is_((code, lines[:1]), (538, ["5.7.11 Encryption required for requested "
                                      "authentication mechanism"]), "AUTH before TLS: 538 5.7.11")
        is_(c.cmd("MAIL FROM:<a@client.test>"), (530, ["5.7.0 Authentication required"]),
            "submission: MAIL without AUTH: 530 5.7.0")

    with RawTLS(mx, ehlo="client.test") as c:
        is_(c.cmd("AUTH PLAIN")[0], 503, "MX listener: AUTH not enabled: 503")
    c = tls_session(mx)
    ok(not any(l.startswith("AUTH") for l in c.last[1]), "MX listener: no AUTH inside TLS either")
    is_(c.cmd("MAIL FROM:<a@client.test>")[0], 250, "MX listener: MAIL without AUTH is fine")
    c.close()

    # inside TLS on the submission listener
    c = tls_session(sub)
    ok("AUTH PLAIN LOGIN" in c.last[1], "submission: AUTH PLAIN LOGIN offered inside TLS", c.last)
    is_(c.cmd("MAIL FROM:<a@client.test>")[0], 530, "submission: MAIL without AUTH inside TLS: 530")
    is_(c.cmd("AUTH CRAM-MD5")[0], 504, "unknown mechanism: 504")
    is_(c.cmd("AUTH")[0], 501, "AUTH without mechanism: 501")
    is_(c.cmd("AUTH LOGIN"), (334, ["VXNlcm5hbWU6"]), "LOGIN: asks for the user name")
    is_(c.cmd("*"), (501, ["5.0.0 Authentication cancelled"]), "'*' cancels: 501 5.0.0")
    is_(c.cmd("AUTH PLAIN"), (334, [""]), "PLAIN without initial response: empty challenge")
    is_(c.cmd("not*base64!"), (501, ["5.5.2 Invalid base64 data"]), "bad base64: 501 5.5.2")
    is_(c.cmd("AUTH PLAIN " + b64("alice-no-nuls"))[0], 501, "malformed PLAIN: 501")
    is_(c.cmd("NOOP")[0], 250, "back to commands after a failed exchange")

    (code, lines), dt = timed(c, "AUTH PLAIN " + b64("\0alice\0wrong-" + SECRET))
    is_((code, lines[:1]), (535, ["5.7.8 Authentication credentials invalid"]),
        "wrong password: 535 5.7.8")
    ok(dt >= 0.9, "wrong password: answered after a delay (%.2f s)" % dt)
    c.send("AUTH LOGIN\r\n")
    is_(c.read_reply(), (334, ["VXNlcm5hbWU6"]), "LOGIN: user name prompt")
    is_(c.cmd(b64("alice")), (334, ["UGFzc3dvcmQ6"]), "LOGIN: password prompt")
    (code, _), dt = timed(c, b64("wrong-again"))
    is_(code, 535, "second failure: 535")
    ok(dt >= 1.9, "second failure: longer delay (%.2f s)" % dt)
    (code, lines), dt = timed(c, "AUTH PLAIN " + b64("\0bob\0nope"))
    ok(code == 421, "third failure: 421", lines)
    ok(c.closed(5), "third failure: connection closed")
    c.close()

    # pipelined commands wait for the delayed answer
    c = tls_session(sub)
    c.send("AUTH PLAIN %s\r\nNOOP\r\n" % b64("\0x\0y"))
    is_([r[0] for r in c.read_replies(2, timeout=10)], [535, 250],
        "a command pipelined behind a failing AUTH is answered after it")
    c.close()

    # AUTH on a loopback listener without TLS
    with RawTLS(loop, ehlo="client.test") as c:
        ok("AUTH PLAIN LOGIN" in c.last[1], "auth_plaintext: AUTH offered without TLS", c.last)
        (code, _), dt = timed(c, "AUTH LOGIN " + b64("alice"))
        is_(code, 334, "LOGIN with initial response: password prompt")

    # the right password, answered by the plugin
    c = tls_session(sub)
    is_(c.cmd("AUTH PLAIN " + b64("\0alice\0" + SECRET)),
        (235, ["2.7.0 Authentication successful"]), "right password: 235 2.7.0")
    is_(c.cmd("AUTH PLAIN " + b64("\0alice\0" + SECRET))[0], 503, "AUTH twice: 503")
    is_(c.cmd("MAIL FROM:<alice@client.test>")[0], 250, "authenticated: MAIL accepted")
    is_(c.cmd("RCPT TO:<anyone@elsewhere.test>")[0], 250, "authenticated: may relay")
    is_(c.cmd("DATA")[0], 354, "DATA")
    c.send(b"Subject: authed\r\n\r\nhi\r\n.\r\n")
    is_(c.read_reply()[0], 250, "message accepted")
    c.cmd("QUIT")
    msgs = k.wait_spool(1)
    like(msgs[0].received() if msgs else b"", rb"with ESMTPSA id", "Received: ESMTPSA")
    s = smtplib.SMTP("127.0.0.1", sub, timeout=scaled(10))
    s.starttls(context=ctx)
    s.login("alice", SECRET)   # smtplib picks PLAIN or LOGIN
    ok(True, "smtplib login()")
    s.quit()

    log = k.log()
    ok(SECRET not in log and b64("\0alice\0" + SECRET) not in log and "wrong-again" not in log
       and b64("wrong-again") not in log, "no password, plain or base64, in the log")
    like(log, r"auth: user=alice mechanism=PLAIN", "the user name and mechanism are logged")

done()
