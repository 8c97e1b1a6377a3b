#!/usr/bin/env python3
"""SMTP happy paths: banner, EHLO extensions, smtplib and swaks deliveries,
exact spool bytes and envelopes, HELO vs EHLO Received clause, null sender,
postmaster, quoted local parts, address literals, SMTPUTF8, simple verbs."""
import os
import re
import smtplib
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kasitest import *  # noqa: E402,F401,F403


def unfold(h):
    return re.sub(rb"\r?\n[ \t]+", b" ", h).decode("utf-8", "replace").rstrip("\r\n")


def check_spooled(k, mid, mail_from, rcpts, body, name, helo="client.test"):
    """The message `mid` is in the spool with this envelope and these bytes."""
    m = k.spool_by_id(mid) if mid else None
    if not ok(m is not None, "%s: spooled as %s" % (name, mid),
              "spool: %r" % k.spool_names()):
        return None
    is_(m.env.get("id"), mid, "%s: env id" % name)
    is_(m.env.get("mail_from"), mail_from, "%s: env mail_from" % name)
    is_(m.env.get("rcpt_to"), rcpts, "%s: env rcpt_to" % name)
    is_(m.env.get("remote_ip"), "127.0.0.1", "%s: env remote_ip" % name)
    is_(m.env.get("helo"), helo, "%s: env helo" % name)
    is_(m.env.get("size"), len(m.eml), "%s: env size is the .eml size" % name)
    like(m.received(), rb"^Received: ", "%s: starts with a Received header" % name)
    is_(m.body(), body, "%s: message bytes exact" % name)
    return m


MSG = (b"From: Alice <alice@client.test>\r\n"
       b"To: Bob <bob@example.test>\r\n"
       b"Subject: hello\r\n"
       b"Message-ID: <1@client.test>\r\n"
       b"\r\n"
       b"First line.\r\n"
       b".starts with a dot\r\n"
       b"..two dots\r\n"
       b".\r\n"
       b" . \r\n"
       b"\r\n"
       b"Last line.\r\n")

with Kasi({"limits": {"max_message_size": "10M"}}) as k:
    # banner and EHLO
    with Raw(k.port) as c:
        code, lines = c.read_reply()
        is_(code, 220, "banner code 220")
        is_(lines, ["mx.kasi.test ESMTP kasi"], "banner text")
        code, lines = c.cmd("EHLO client.test")
        is_(code, 250, "EHLO 250")
        like(lines[0] if lines else "", r"^mx\.kasi\.test\b", "EHLO greets with hostname")
        ext = set(x.upper() for x in lines[1:])
        for e in ["PIPELINING", "SIZE 10485760", "8BITMIME", "ENHANCEDSTATUSCODES",
                  "SMTPUTF8", "CHUNKING"]:
            ok(e in ext, "EHLO advertises %s" % e, "extensions: %r" % lines[1:])
        c.send("MAIL FROM:<alice@client.test>\r\n")
        c.expect(250, "2.1.0", "MAIL 250 2.1.0")
        c.send("RCPT TO:<bob@example.test>\r\n")
        c.expect(250, "2.1.5", "RCPT 250 2.1.5")
        c.send("RCPT TO:<carol@example.test>\r\n")
        c.expect(250, "2.1.5", "second RCPT 250 2.1.5")
        c.send("DATA\r\n")
        c.expect(354, None, "DATA 354")
        c.send(dot_stuff(MSG) + b".\r\n")
        code, lines = c.read_reply()
        is_(code, 250, "end of data 250")
        like(lines[0] if lines else "", r"^2\.0\.0 Ok: queued as \S+$",
             "reply is '2.0.0 Ok: queued as <ID>'")
        mid = queued_id(lines)
        m = check_spooled(k, mid, "alice@client.test",
                          ["bob@example.test", "carol@example.test"], MSG, "raw EHLO")
        if m:
            rec = unfold(m.received())
            like(rec, r"^Received: from client\.test \(.*\[127\.0\.0\.1\]\)",
                 "Received: from <helo> (... [127.0.0.1])")
            like(rec, r"by mx\.kasi\.test \(kasi\) with ESMTP id %s\b" % re.escape(mid),
                 "Received: by <hostname> (kasi) with ESMTP id <ID>")
            ok(os.path.exists(os.path.join(k.spool_dir, mid + ".eml")), "<ID>.eml file")
            ok(os.path.exists(os.path.join(k.spool_dir, mid + ".env")), "<ID>.env file")

        # second transaction in the same session
        c.send("MAIL FROM:<>\r\n")
        c.expect(250, "2.1.0", "null sender MAIL FROM:<>")
        c.send("RCPT TO:<postmaster>\r\n")
        c.expect(250, "2.1.5", "RCPT TO:<postmaster> without domain")
        c.send("RCPT TO:<\"john doe\"@example.test>\r\n")
        c.expect(250, "2.1.5", "quoted local part")
        c.send("RCPT TO:<user@[127.0.0.1]>\r\n")
        c.expect(250, "2.1.5", "address literal [127.0.0.1]")
        c.send("RCPT TO:<user@[IPv6:::1]>\r\n")
        c.expect(250, "2.1.5", "address literal [IPv6:::1]")
        c.send("DATA\r\n")
        c.expect(354)
        bounce = b"Subject: bounce\r\n\r\nundeliverable\r\n"
        c.send(bounce + b".\r\n")
        code, lines = c.read_reply()
        is_(code, 250, "second message accepted")
        mid2 = queued_id(lines)
        isnt(mid2, mid, "second message has its own id")
        check_spooled(k, mid2, "", ["postmaster", "\"john doe\"@example.test",
                                    "user@[127.0.0.1]", "user@[IPv6:::1]"],
                      bounce, "null sender")

        # simple verbs
        c.send("RCPT TO:<x@example.test>\r\n")
        c.expect(503, "5.5.1", "transaction is over after the message")
        c.send("NOOP\r\n")
        c.expect(250, "2.0.0", "NOOP 250 2.0.0")
        c.send("RSET\r\n")
        c.expect(250, "2.0.0", "RSET 250 2.0.0")
        c.send("VRFY bob\r\n")
        c.expect(252, "2.5.0", "VRFY 252 2.5.0")
        c.send("HELP\r\n")
        c.expect(214, None, "HELP 214")
        c.send("mail from:<lower@client.test>\r\n")
        c.expect(250, "2.1.0", "lower-case verbs work")
        c.send("rcpt to:<PostMaster>\r\n")
        c.expect(250, "2.1.5", "postmaster is case-insensitive")
        c.send("RSET\r\n")
        c.expect(250, "2.0.0", "RSET drops the transaction")
        c.send("RCPT TO:<bob@example.test>\r\n")
        c.expect(503, "5.5.1", "RCPT after RSET is out of sequence")
        c.send("QUIT\r\n")
        c.expect(221, "2.0.0", "QUIT 221 2.0.0")
        ok(c.closed(), "connection closed after QUIT")

    # empty message: "." right after DATA
    with Raw(k.port, ehlo="client.test") as c:
        c.cmd("MAIL FROM:<a@client.test>")
        c.cmd("RCPT TO:<b@example.test>")
        c.send("DATA\r\n")
        c.expect(354)
        c.send(".\r\n")
        code, lines = c.read_reply()
        is_(code, 250, "empty message accepted")
        check_spooled(k, queued_id(lines), "a@client.test", ["b@example.test"], b"",
                      "empty message")
        # a message without a header section, 8-bit body with BODY=8BITMIME
        c.send("MAIL FROM:<a@client.test> BODY=8BITMIME SIZE=100\r\n")
        c.expect(250, "2.1.0", "MAIL with BODY=8BITMIME SIZE=100")
        c.cmd("RCPT TO:<b@example.test>")
        c.send("DATA\r\n")
        c.expect(354)
        body = "no header here, caf\u00e9 \u00fcber\r\n\r\n\tindented\r\n".encode("utf-8")
        c.send(body + b".\r\n")
        code, lines = c.read_reply()
        is_(code, 250, "8-bit message without headers accepted")
        check_spooled(k, queued_id(lines), "a@client.test", ["b@example.test"], body,
                      "8bit no headers")

    # HELO: Received says "with SMTP"
    with Raw(k.port, helo="old.client.test") as c:
        c.send("MAIL FROM:<a@old.client.test>\r\n")
        c.expect(250, "2.1.0", "MAIL after HELO")
        c.cmd("RCPT TO:<b@example.test>")
        c.cmd("DATA")
        c.send(b"Subject: helo\r\n\r\nbody\r\n.\r\n")
        code, lines = c.read_reply()
        is_(code, 250, "HELO session: message accepted")
        m = check_spooled(k, queued_id(lines), "a@old.client.test", ["b@example.test"],
                          b"Subject: helo\r\n\r\nbody\r\n", "HELO", helo="old.client.test")
        if m:
            rec = unfold(m.received())
            like(rec, r"^Received: from old\.client\.test \(", "Received: from <helo>")
            like(rec, r"with SMTP id ", "HELO session: Received says 'with SMTP'")

    # SMTPUTF8
    with Raw(k.port, ehlo="client.test") as c:
        frm = "j\u00f6rg@ex\u00e4mple.test"
        to = "\u03b4\u03bf\u03ba\u03b9\u03bc\u03ae@\u03c0\u03b1\u03c1\u03ac\u03b4\u03b5\u03b9\u03b3\u03bc\u03b1.test"
        c.send("MAIL FROM:<%s> SMTPUTF8\r\n" % frm)
        c.expect(250, "2.1.0", "UTF-8 sender with SMTPUTF8")
        c.send("RCPT TO:<%s>\r\n" % to)
        c.expect(250, "2.1.5", "UTF-8 recipient with SMTPUTF8")
        c.cmd("DATA")
        body = ("Subject: \u00fcmlaut\r\nFrom: %s\r\n\r\n\u3053\u3093\u306b\u3061\u306f\r\n"
                % frm).encode("utf-8")
        c.send(body + b".\r\n")
        code, lines = c.read_reply()
        is_(code, 250, "UTF-8 message accepted")
        check_spooled(k, queued_id(lines), frm, [to], body, "SMTPUTF8")

    # smtplib
    n_before = len(k.spool())
    s = smtplib.SMTP("127.0.0.1", k.port, local_hostname="lib.client.test", timeout=scaled(10))
    code, _ = s.ehlo()
    is_(code, 250, "smtplib EHLO")
    ok(s.has_extn("pipelining") and s.has_extn("chunking"), "smtplib sees extensions")
    refused = s.sendmail("lib@client.test", ["one@example.test", "two@example.test"], MSG)
    is_(refused, {}, "smtplib sendmail: no refused recipients")
    s.quit()
    msgs = k.spool()
    is_(len(msgs), n_before + 1, "smtplib: one more message spooled")
    new = [m for m in msgs if m.env.get("helo") == "lib.client.test"]
    if ok(len(new) == 1, "smtplib message found by helo"):
        check_spooled(k, new[0].id, "lib@client.test",
                      ["one@example.test", "two@example.test"], MSG, "smtplib",
                      helo="lib.client.test")

    # swaks, plain and pipelined
    data = (b"From: swaks@client.test\r\nTo: rcpt@example.test\r\n"
            b"Subject: from swaks\r\n\r\nbody line\r\n.dotted")
    # swaks ends the data with CRLF.CRLF itself (so no CRLF of our own)
    fd, path = tempfile.mkstemp(prefix="kasi-swaks-", suffix=".eml")
    os.write(fd, data)
    os.close(fd)
    for extra, name in [([], "swaks"), (["--pipeline"], "swaks --pipeline")]:
        before = set(m.id for m in k.spool())
        r = run(["swaks", "--server", "127.0.0.1", "--port", str(k.port),
                 "--helo", "swaks.client.test", "--from", "swaks@client.test",
                 "--to", "rcpt@example.test,rcpt2@example.test", "--data", "@" + path] + extra,
                timeout=30)
        is_(r.returncode, 0, "%s exits 0" % name) or diag(r.stdout[-3000:])
        like(r.stdout, r"<- +250 2\.0\.0 Ok: queued as", "%s sees 'queued as'" % name)
        new = [m for m in k.spool() if m.id not in before]
        if ok(len(new) == 1, "%s: one message spooled" % name):
            check_spooled(k, new[0].id, "swaks@client.test",
                          ["rcpt@example.test", "rcpt2@example.test"], data + b"\r\n", name,
                          helo="swaks.client.test")
    os.unlink(path)

done()
