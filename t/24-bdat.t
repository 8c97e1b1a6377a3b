#!/usr/bin/env python3
"""CHUNKING (RFC 3030): BDAT chunks and LAST, BDAT 0 LAST, raw content (no
dot handling), DATA mixed with BDAT, BDAT out of sequence (chunk still
consumed), bad BDAT syntax, size limit, pipelined and large chunks, RSET."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kasitest import *  # noqa: E402,F401,F403


def begin(c, sender="a@client.test"):
    c.send("MAIL FROM:<%s>\r\nRCPT TO:<b@example.test>\r\n" % sender)
    return [x for x, _ in c.read_replies(2)] == [250, 250]


def bdat(c, data, last=False):
    c.send(b"BDAT %d%s\r\n" % (len(data), b" LAST" if last else b"") + data)


with Kasi({"limits": {"max_message_size": 100000}}) as k:
    with Raw(k.port, banner=True) as c:
        code, lines = c.cmd("EHLO client.test")
        ok("CHUNKING" in [x.upper() for x in lines], "CHUNKING advertised")

        # two chunks
        ok(begin(c), "MAIL/RCPT")
        bdat(c, b"Subject: chunks\r\n\r\nhel")
        c.expect(250, "2.0.0", "first chunk -> 250 2.0.0")
        bdat(c, b"lo world\r\n", last=True)
        code, lines = c.read_reply()
        is_(code, 250, "LAST chunk -> 250")
        like(lines[0] if lines else "", r"^2\.0\.0 Ok: queued as \S+", "LAST reply has queued as")
        m = k.spool_by_id(queued_id(lines))
        if ok(m, "chunked message spooled"):
            is_(m.body(), b"Subject: chunks\r\n\r\nhello world\r\n", "chunked message bytes")
            is_(m.env.get("rcpt_to"), ["b@example.test"], "chunked message envelope")
            is_(m.env.get("size"), len(m.eml), "env size")

        # chunks followed by BDAT 0 LAST
        ok(begin(c), "MAIL/RCPT for 0 LAST")
        bdat(c, b"Subject: zero\r\n\r\n")
        c.expect(250, "2.0.0", "chunk before 0 LAST")
        bdat(c, b"tail\r\n")
        c.expect(250, "2.0.0", "second chunk before 0 LAST")
        c.send("BDAT 0 LAST\r\n")
        code, lines = c.read_reply()
        is_(code, 250, "BDAT 0 LAST -> 250")
        m = k.spool_by_id(queued_id(lines))
        if ok(m, "0 LAST message spooled"):
            is_(m.body(), b"Subject: zero\r\n\r\ntail\r\n", "0 LAST message bytes")

        # raw content: dots and CRLF.CRLF are data
        ok(begin(c), "MAIL/RCPT for raw content")
        raw = b"Subject: raw\r\n\r\n.leading dot\r\n..two\r\n.\r\nafter the dot line\r\n"
        bdat(c, raw, last=True)
        code, lines = c.read_reply()
        is_(code, 250, "chunk with '.' lines accepted")
        m = k.spool_by_id(queued_id(lines))
        if ok(m, "raw message spooled"):
            is_(m.body(), raw, "BDAT content is raw: no dot-unstuffing, CRLF.CRLF kept")
        c.send("VRFY sync\r\n")
        c.expect(252, "2.5.0", "in sync after raw chunk")

        # a chunk split across many sends; CRLF split across chunks
        ok(begin(c), "MAIL/RCPT for split chunk")
        data = b"Subject: split\r\n\r\n" + b"0123456789" * 50 + b"\r"
        c.send(b"BDAT %d\r\n" % len(data))
        for i in range(0, len(data), 7):
            c.send(data[i:i + 7])
        c.expect(250, "2.0.0", "chunk sent in pieces")
        bdat(c, b"\nend\r\n", last=True)
        code, lines = c.read_reply()
        is_(code, 250, "split chunk message accepted")
        m = k.spool_by_id(queued_id(lines))
        if ok(m, "split chunk message spooled"):
            is_(m.body(), data + b"\nend\r\n", "CR and LF split over chunks joined")

        # empty message: BDAT 0 LAST alone
        ok(begin(c), "MAIL/RCPT for empty message")
        c.send("BDAT 0 LAST\r\n")
        code, lines = c.read_reply()
        is_(code, 250, "BDAT 0 LAST alone is a valid (empty) message")
        m = k.spool_by_id(queued_id(lines))
        if ok(m, "empty BDAT message spooled"):
            is_(m.body(), b"", "empty BDAT message has no bytes")

        # pipelined: MAIL, RCPT, BDAT, BDAT LAST, NOOP in one send
        payload = b"Subject: piped\r\n\r\nbody\r\n"
        c.send(b"MAIL FROM:<p@client.test>\r\nRCPT TO:<q@example.test>\r\n" +
               b"BDAT 10\r\n" + payload[:10] +
               b"BDAT %d LAST\r\n" % (len(payload) - 10) + payload[10:] + b"NOOP\r\n")
        rs = c.read_replies(5)
        is_([x for x, _ in rs], [250, 250, 250, 250, 250], "pipelined BDAT group answered in order")
        m = k.spool_by_id(queued_id(rs[3][1]))
        if ok(m, "pipelined BDAT message spooled"):
            is_(m.body(), payload, "pipelined BDAT bytes")
            is_(m.env.get("mail_from"), "p@client.test", "pipelined BDAT sender")

        # DATA after BDAT in one transaction
        ok(begin(c), "MAIL/RCPT for mixing")
        bdat(c, b"Subject: mix\r\n\r\n")
        c.expect(250, "2.0.0", "BDAT chunk before DATA")
        c.send("DATA\r\n")
        c.expect(503, "5.5.1", "DATA after BDAT -> 503 5.5.1")
        c.send("RSET\r\n")
        c.expect(250, "2.0.0", "RSET after BDAT chunk")
        c.send("RCPT TO:<b@example.test>\r\n")
        c.expect(503, "5.5.1", "RSET dropped the BDAT transaction")

    with Raw(k.port, ehlo="client.test") as c:
        n = len(k.spool())
        # BDAT out of sequence: the chunk is still consumed
        c.send(b"BDAT 12\r\nMAIL FROM:<>")
        c.expect(503, "5.5.1", "BDAT before MAIL -> 503 5.5.1")
        c.send("MAIL FROM:<a@client.test>\r\n")
        c.expect(250, "2.1.0", "chunk of refused BDAT was consumed (MAIL works)")
        chunk = b"RCPT TO:<x@y>\r\n"
        c.send(b"BDAT %d\r\n" % len(chunk) + chunk)
        c.expect(503, "5.5.1", "BDAT before RCPT -> 503 5.5.1")
        c.send("VRFY sync\r\n")
        c.expect(252, "2.5.0", "in sync after refused BDAT")
        c.send("RCPT TO:<b@example.test>\r\n")
        c.expect(250, "2.1.5", "transaction continues")
        # bad syntax
        for arg in ["BDAT", "BDAT abc", "BDAT -1", "BDAT 10 NOTLAST", "BDAT 1x"]:
            c.send(arg + "\r\n")
            c.expect(501, "5.5.4", "%r -> 501 5.5.4" % arg)
        c.send("VRFY sync\r\n")
        c.expect(252, "2.5.0", "in sync after BDAT syntax errors")
        # over the size limit: consumed, 552, in sync
        big = b"Subject: big\r\n\r\n" + b"z" * 120000
        bdat(c, big[:60000])
        r1 = c.read_reply()
        bdat(c, big[60000:], last=True)
        r2 = c.read_reply()
        ok(r1[0] == 552 or r2[0] == 552, "chunks over max_message_size -> 552",
           "replies %r %r" % (r1, r2))
        like(" ".join((r1[1] if r1[0] == 552 else r2[1]) or []), r"^5\.3\.4 ", "  with 5.3.4")
        c.send("VRFY sync\r\n")
        c.expect(252, "2.5.0", "in sync after the oversized chunks")
        is_(len(k.spool()), n, "nothing spooled by the refused BDATs")
        # a big chunk (90 KB, 8-bit, CRLF lines) in one go
        ok(begin(c), "MAIL/RCPT for big chunk")
        octets = bytes(b for b in range(1, 256) if b not in (10, 13))
        data = b"Subject: big\r\n\r\n" + (octets[:76] + b"\r\n" + octets[76:] + b"\r\n") * 350
        bdat(c, data, last=True)
        code, lines = c.read_reply(timeout=20)
        is_(code, 250, "90 KB 8-bit chunk accepted")
        m = k.spool_by_id(queued_id(lines))
        if ok(m, "big chunk spooled"):
            is_(sha256(m.body()), sha256(data), "big chunk bytes exact")

done()
