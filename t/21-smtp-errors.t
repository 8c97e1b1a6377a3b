#!/usr/bin/env python3
"""SMTP error paths, each with its reply code and enhanced status code:
sequence errors, unknown commands, syntax errors, unknown parameters, SIZE,
recipient limit, UTF-8 without SMTPUTF8, over-long command lines."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kasitest import *  # noqa: E402,F401,F403


def t(c, line, code, enh, name=None):
    c.send(line + "\r\n")
    return c.expect(code, enh, name or "%s -> %d %s" % (line[:60], code, enh or ""))


def t_any(c, line, code, enhs, name):
    """Like t() when more than one enhanced code is right (a missing path
    is both a syntax error and a bad address)."""
    c.send(line + "\r\n")
    got, lines = c.read_reply()
    enh = lines[0].split(" ")[0] if lines else None
    ok(got == code and enh in enhs, name, "reply: %r %r" % (got, lines))


CONF = {"limits": {"max_recipients": 3, "max_message_size": "1M",
                   "max_command_length": 512, "max_errors": 50}}

with Kasi(CONF) as k:
    # before HELO/EHLO
    with Raw(k.port, banner=True) as c:
        t(c, "MAIL FROM:<a@client.test>", 503, "5.5.1", "MAIL before EHLO -> 503 5.5.1")
        t(c, "RCPT TO:<b@example.test>", 503, "5.5.1", "RCPT before EHLO -> 503 5.5.1")
        t(c, "DATA", 503, "5.5.1", "DATA before EHLO -> 503 5.5.1")
        t(c, "EHLO", 501, "5.5.4", "EHLO without argument -> 501 5.5.4")
        t(c, "HELO", 501, "5.5.4", "HELO without argument -> 501 5.5.4")
        t(c, "NOOP", 250, "2.0.0", "NOOP works before EHLO")
        c.send("EHLO client.test\r\n")
        c.expect(250, None, "EHLO after errors")

        # sequence errors
        t(c, "RCPT TO:<b@example.test>", 503, "5.5.1", "RCPT before MAIL -> 503 5.5.1")
        t(c, "DATA", 503, "5.5.1", "DATA before MAIL -> 503 5.5.1")
        t(c, "MAIL FROM:<a@client.test>", 250, "2.1.0")
        t(c, "DATA", 503, "5.5.1", "DATA before RCPT -> 503 5.5.1")
        t(c, "MAIL FROM:<a@client.test>", 503, "5.5.1", "nested MAIL -> 503 5.5.1")
        t(c, "RCPT TO:<b@example.test>", 250, "2.1.5", "transaction intact after nested MAIL")
        c.send("EHLO client.test\r\n")
        c.expect(250, None, "second EHLO")
        t(c, "RCPT TO:<b@example.test>", 503, "5.5.1", "EHLO resets the transaction")

        # unknown commands
        t(c, "FROB", 500, "5.5.2", "unknown command -> 500 5.5.2")
        t(c, "FROB with args", 500, "5.5.2", "unknown command with args -> 500 5.5.2")
        t(c, "MAILFROM:<a@b.test>", 500, "5.5.2", "MAILFROM: (no space) -> 500 5.5.2")
        t(c, "", 500, "5.5.2", "empty line -> 500 5.5.2")
        c.send(b"NO\x00OP\r\n")
        c.expect(500, "5.5.2", "NUL in command -> 500 5.5.2")
        c.send("N\u00d6OP\r\n")
        c.expect(500, "5.5.2", "8-bit verb -> 500 5.5.2")

        # bad addresses and syntax
        t_any(c, "MAIL FROM:", 501, ("5.1.7", "5.5.4"), "MAIL FROM: empty -> 501 5.1.7 or 5.5.4")
        t(c, "MAIL FROM:<a@client.test", 501, "5.1.7", "MAIL missing '>' -> 501 5.1.7")
        t(c, "MAIL FROM:<a b@client.test>", 501, "5.1.7", "MAIL with space -> 501 5.1.7")
        t(c, "MAIL FROM:<a@@client.test>", 501, "5.1.7", "MAIL a@@x -> 501 5.1.7")
        t(c, "MAIL FROM:<@client.test>", 501, "5.1.7", "MAIL empty local -> 501 5.1.7")
        t(c, "MAIL FROM:<a@client.test> SIZE=abc", 501, "5.5.4", "SIZE=abc -> 501 5.5.4")
        t(c, "MAIL FROM:<a@client.test> FROB=1", 555, "5.5.4", "unknown MAIL param -> 555 5.5.4")
        t(c, "MAIL FROM:<a@client.test> SIZE=2000000", 552, "5.3.4", "SIZE over limit -> 552 5.3.4")
        t(c, "MAIL FROM:<j\u00f6rg@client.test>", 553, "5.6.7",
          "UTF-8 sender without SMTPUTF8 -> 553 5.6.7")
        t(c, "MAIL FROM:<a@client.test> SIZE=1000", 250, "2.1.0", "MAIL ok after the errors")
        t_any(c, "RCPT TO:", 501, ("5.1.3", "5.5.4"), "RCPT TO: empty -> 501 5.1.3 or 5.5.4")
        t(c, "RCPT TO:<>", 501, "5.1.3", "RCPT TO:<> -> 501 5.1.3")
        t(c, "RCPT TO:<b@example.test", 501, "5.1.3", "RCPT missing '>' -> 501 5.1.3")
        t(c, "RCPT TO:<b@>", 501, "5.1.3", "RCPT empty domain -> 501 5.1.3")
        t(c, "RCPT TO:<b@example.test> FROB=1", 555, "5.5.4", "unknown RCPT param -> 555 5.5.4")
        t(c, "RCPT TO:<\u00fcser@example.test>", 553, "5.6.7",
          "UTF-8 recipient without SMTPUTF8 -> 553 5.6.7")

        # recipient limit
        for i in range(3):
            t(c, "RCPT TO:<r%d@example.test>" % i, 250, "2.1.5")
        t(c, "RCPT TO:<r3@example.test>", 452, "4.5.3", "4th recipient (max 3) -> 452 4.5.3")
        t(c, "DATA", 354, None, "DATA after the refused RCPT")
        c.send("Subject: three\r\n\r\nx\r\n.\r\n")
        lines = c.expect(250, "2.0.0", "message to 3 recipients accepted")
        m = k.spool_by_id(queued_id(lines))
        if ok(m, "recipient-limit message spooled"):
            is_(m.env.get("rcpt_to"), ["r0@example.test", "r1@example.test", "r2@example.test"],
                "only the 3 accepted recipients in the envelope")

        # over-long command lines (limit 512 octets incl. CRLF)
        t(c, "NOOP " + "x" * 505, 250, "2.0.0", "command of exactly 512 octets is fine")
        t(c, "NOOP " + "x" * 506, 500, "5.5.6", "513-octet command -> 500 5.5.6")
        like(" ".join(c.last[1]), r"(?i)line too long", "  text says 'Line too long'")
        t(c, "NOOP " + "y" * 5000, 500, "5.5.6", "5000-octet command -> 500 5.5.6")
        t(c, "NOOP", 250, "2.0.0", "connection usable after a long command")
        t(c, "MAIL FROM:<" + "a" * 600 + "@client.test>", 500, "5.5.6",
          "long MAIL line -> 500 5.5.6, not executed")
        t(c, "RCPT TO:<b@example.test>", 503, "5.5.1", "the long MAIL did not start a transaction")

        # a bare LF is not a line end in commands
        c.send("NOOP\nMAIL FROM:<a@client.test>\r\n")
        code, _ = c.read_reply()
        c.send("VRFY marker\r\n")
        c.expect(252, "2.5.0", "'NOOP<LF>MAIL...' answered with one reply only")
        ok(code is not None, "bare-LF command line got a reply (%r)" % code)
        t(c, "RCPT TO:<b@example.test>", 503, "5.5.1", "no MAIL was smuggled with a bare LF")

        t(c, "QUIT", 221, "2.0.0", "QUIT -> 221 2.0.0")
        ok(c.closed(), "closed after QUIT")

    # parameters need EHLO
    with Raw(k.port, helo="old.client.test") as c:
        t(c, "MAIL FROM:<a@client.test> SIZE=10", 555, "5.5.4", "MAIL params after HELO -> 555 5.5.4")
        t(c, "MAIL FROM:<a@client.test> SMTPUTF8", 555, "5.5.4", "SMTPUTF8 after HELO -> 555 5.5.4")
        t(c, "MAIL FROM:<a@client.test>", 250, "2.1.0", "plain MAIL after HELO")
        t(c, "RCPT TO:<b@example.test> NOTIFY=NEVER", 555, "5.5.4", "RCPT params after HELO -> 555 5.5.4")
        t(c, "RSET", 250, "2.0.0")
        t(c, "QUIT", 221, "2.0.0")

    # nothing was spooled by any error above except the one good message
    is_(len(k.spool()), 1, "exactly one message spooled")

done()
