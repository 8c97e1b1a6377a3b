#!/usr/bin/env python3
"""PIPELINING (RFC 2920): commands sent in one packet are all answered, in
order; failures inside a group don't desynchronise; a whole second
transaction can follow the end of data in the same packet; commands split
into single bytes are reassembled."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kasitest import *  # noqa: E402,F401,F403


def codes(replies):
    return [c for c, _ in replies]


with Kasi() as k:
    with Raw(k.port, banner=True) as c:
        code, lines = c.cmd("EHLO client.test")
        ok("PIPELINING" in [x.upper() for x in lines], "PIPELINING advertised")

        # MAIL, 3 RCPT, DATA in one send
        c.send("MAIL FROM:<a@client.test>\r\nRCPT TO:<r1@example.test>\r\n"
               "RCPT TO:<r2@example.test>\r\nRCPT TO:<r3@example.test>\r\nDATA\r\n")
        rs = c.read_replies(5)
        is_(codes(rs), [250, 250, 250, 250, 354], "MAIL, RCPT x3, DATA -> 4 x 250 then 354")
        like(rs[0][1][0] if rs[0][1] else "", r"^2\.1\.0 ", "  MAIL reply 2.1.0")
        like(rs[3][1][0] if rs[3][1] else "", r"^2\.1\.5 ", "  RCPT reply 2.1.5")

        # end of data + a whole second transaction in one packet
        body1 = b"Subject: one\r\n\r\nfirst\r\n"
        body2 = b"Subject: two\r\n\r\nsecond\r\n"
        c.send(body1 + b".\r\nMAIL FROM:<b@client.test>\r\nRCPT TO:<r4@example.test>\r\n"
               b"DATA\r\n")
        rs = c.read_replies(4)
        is_(codes(rs), [250, 250, 250, 354], "end of data, MAIL, RCPT, DATA in one packet")
        id1 = queued_id(rs[0][1])
        c.send(body2 + b".\r\nQUIT\r\n")
        rs = c.read_replies(2)
        is_(codes(rs), [250, 221], "end of data and QUIT in one packet -> 250, 221")
        id2 = queued_id(rs[0][1])
        ok(c.closed(), "closed after pipelined QUIT")
        m1, m2 = k.spool_by_id(id1), k.spool_by_id(id2)
        if ok(m1 and m2, "both pipelined messages spooled", "spool: %r" % k.spool_names()):
            is_(m1.env.get("rcpt_to"), ["r1@example.test", "r2@example.test", "r3@example.test"],
                "first envelope")
            is_(m1.body(), body1, "first message bytes")
            is_(m2.env.get("mail_from"), "b@client.test", "second sender")
            is_(m2.env.get("rcpt_to"), ["r4@example.test"], "second envelope")
            is_(m2.body(), body2, "second message bytes")

    # failures in the middle of a group
    with Raw(k.port, ehlo="client.test") as c:
        c.send("MAIL FROM:<a@client.test>\r\nRCPT TO:<good1@example.test>\r\n"
               "RCPT TO:<bad address>\r\nFROB\r\nRCPT TO:<good2@example.test>\r\nDATA\r\n")
        rs = c.read_replies(6)
        is_(codes(rs), [250, 250, 501, 500, 250, 354],
            "group with a bad RCPT and an unknown command answered in order")
        c.send("Subject: mixed\r\n\r\nx\r\n.\r\n")
        code, lines = c.read_reply()
        is_(code, 250, "message of the mixed group accepted")
        m = k.spool_by_id(queued_id(lines))
        if ok(m, "mixed-group message spooled"):
            is_(m.env.get("rcpt_to"), ["good1@example.test", "good2@example.test"],
                "only the good recipients")

        # no valid recipient: DATA refused, the body lines that follow are commands
        c.send("MAIL FROM:<a@client.test>\r\nRCPT TO:<bad address>\r\nDATA\r\nNOOP\r\n")
        rs = c.read_replies(4)
        is_(codes(rs)[:2], [250, 501], "MAIL ok, RCPT refused")
        ok(rs[2][0] in (503, 554), "DATA without a valid recipient refused (%r)" % (rs[2][0],))
        is_(rs[3][0], 250, "NOOP after the refused DATA is a command")

        # RSET inside a group
        c.send("RSET\r\nMAIL FROM:<a@client.test>\r\nRCPT TO:<x@example.test>\r\nRSET\r\n"
               "RCPT TO:<y@example.test>\r\nNOOP\r\n")
        rs = c.read_replies(6)
        is_(codes(rs), [250, 250, 250, 250, 503, 250], "RSET in a group resets in order")

        # 1000 NOOPs in one send
        c.send("NOOP\r\n" * 1000)
        rs = c.read_replies(1000)
        is_(codes(rs).count(250), 1000, "1000 pipelined NOOPs -> 1000 replies")
        c.send("VRFY sync\r\n")
        c.expect(252, "2.5.0", "in sync after 1000 NOOPs")

    # the same group fed one byte at a time
    with Raw(k.port, ehlo="client.test") as c:
        data = (b"MAIL FROM:<slow@client.test>\r\nRCPT TO:<r@example.test>\r\nDATA\r\n")
        for i in range(len(data)):
            c.send(data[i:i + 1])
        rs = c.read_replies(3)
        is_(codes(rs), [250, 250, 354], "group sent byte by byte")
        body = b"Subject: slow\r\n\r\n.hidden dot\r\nline\r\n"
        wire = dot_stuff(body) + b".\r\n"
        for i in range(len(wire)):
            c.send(wire[i:i + 1])
        code, lines = c.read_reply()
        is_(code, 250, "message sent byte by byte accepted")
        m = k.spool_by_id(queued_id(lines))
        if ok(m, "byte-by-byte message spooled"):
            is_(m.body(), body, "byte-by-byte message bytes exact")

    is_(len(k.spool()), 4, "four messages in all")

done()
