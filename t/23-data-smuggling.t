#!/usr/bin/env python3
"""DATA framing: only CRLF.CRLF ends the data (SMTP smuggling variants with
bare CR/LF), bare CR/LF policy reject|accept, dot-unstuffing, long lines
reject|wrap, the size limit, NUL bytes; the session stays in sync after
every rejection."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kasitest import *  # noqa: E402,F401,F403

SMUGGLED = (b"MAIL FROM:<evil@attacker.test>\r\nRCPT TO:<victim@example.test>\r\n"
            b"DATA\r\nFrom: evil@attacker.test\r\n\r\nsmuggled\r\n")

# fake ends of data: none of them may end the DATA
FAKE_ENDS = [
    ("LF.LF", b"\n.\n"),
    ("LF.CRLF", b"\n.\r\n"),
    ("CRLF.LF", b"\r\n.\n"),
    ("CR.CRLF", b"\r.\r\n"),
    ("CR.CR", b"\r.\r"),
    ("LF.CR", b"\n.\r"),
    ("CRLF.CR", b"\r\n.\r"),
    ("CR.LF", b"\r.\n"),
    ("LF LF.LF", b"\n\n.\n"),
    ("CRLF.CR CRLF.CR", b"\r\n.\r\r\n.\r"),
]


def start_data(c, sender="a@client.test"):
    c.send("MAIL FROM:<%s>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n" % sender)
    rs = c.read_replies(3)
    return [x for x, _ in rs] == [250, 250, 354]


def in_sync(c, name):
    """The next command is answered as a command, with nothing queued
    before its reply (a smuggled MAIL would have produced extra replies)."""
    c.send("VRFY sync\r\n")
    c.expect(252, "2.5.0", "%s: session in sync" % name)
    c.send("MAIL FROM:<next@client.test>\r\n")
    c.expect(250, "2.1.0", "%s: the next MAIL works" % name)
    c.send("RSET\r\n")
    c.expect(250, "2.0.0")


def smuggle(fake):
    head = b"Subject: test\r\n\r\nhello"
    return head + fake + SMUGGLED + b".\r\n"


# ------------------------------------------------------ policy: reject ----
with Kasi() as k:
    with Raw(k.port, ehlo="client.test") as c:
        for name, fake in FAKE_ENDS:
            ok(start_data(c), "%s: DATA started" % name)
            c.send(smuggle(fake))
            c.expect(550, "5.5.2", "%s: one reply, 550 5.5.2 (bare CR/LF)" % name)
            in_sync(c, name)
        is_(k.spool(), [], "reject policy: nothing spooled by any variant")

        # bare LF / bare CR inside an otherwise normal message
        for name, body in [("bare LF in body", b"Subject: x\r\n\r\nline one\nline two\r\n"),
                           ("bare CR in body", b"Subject: x\r\n\r\nline one\rline two\r\n"),
                           ("bare LF in header", b"Subject: x\nX-Y: z\r\n\r\nbody\r\n"),
                           ("CR CR LF", b"Subject: x\r\n\r\nbody\r\r\n")]:
            ok(start_data(c), "%s: DATA started" % name)
            c.send(body + b".\r\n")
            c.expect(550, "5.5.2", "%s: 550 5.5.2" % name)
            in_sync(c, name)

        # NUL byte
        ok(start_data(c), "NUL: DATA started")
        c.send(b"Subject: nul\r\n\r\nbefore\x00after\r\n.\r\n")
        c.expect(550, "5.6.0", "NUL byte in message -> 550 5.6.0")
        in_sync(c, "NUL")

        # dot-stuffing: unstuffed in the spool
        ok(start_data(c), "dots: DATA started")
        body = b"..starts the message\r\nSubject: dots\r\n\r\n.\r\n..\r\n...x\r\n.. \r\nend.\r\n"
        wire = b"...starts the message\r\nSubject: dots\r\n\r\n..\r\n...\r\n....x\r\n... \r\nend.\r\n.\r\n"
        c.send(wire)
        code, lines = c.read_reply()
        is_(code, 250, "dot-stuffed message accepted")
        m = k.spool_by_id(queued_id(lines))
        if ok(m, "dot-stuffed message spooled"):
            is_(m.body(), body, "dot-stuffed lines are unstuffed")

        # end of data split over many packets
        ok(start_data(c), "split end: DATA started")
        for piece in [b"Subject: split\r\n\r\nbody\r", b"\n", b".", b"\r", b"\n"]:
            c.send(piece)
        code, lines = c.read_reply()
        is_(code, 250, "CRLF.CRLF split over packets ends the data")
        m = k.spool_by_id(queued_id(lines))
        if ok(m, "split-end message spooled"):
            is_(m.body(), b"Subject: split\r\n\r\nbody\r\n", "split-end message bytes")

        # ".\r\n" as part of a longer line doesn't end the data
        ok(start_data(c), "mid-line dot: DATA started")
        body = b"Subject: mid\r\n\r\nend with dot.\r\n x.\r\n"
        c.send(body + b".\r\n")
        code, lines = c.read_reply()
        is_(code, 250, "lines ending in '.' don't end the data early")
        m = k.spool_by_id(queued_id(lines))
        if ok(m, "mid-line dot message spooled"):
            is_(m.body(), body, "mid-line dot message bytes")

    # long lines, default policy reject, limit 998
    with Raw(k.port, ehlo="client.test") as c:
        ok(start_data(c), "998-octet line: DATA started")
        body = b"Subject: long\r\n\r\n" + b"a" * 998 + b"\r\n"
        c.send(body + b".\r\n")
        code, lines = c.read_reply()
        is_(code, 250, "a 998-octet line is accepted")
        m = k.spool_by_id(queued_id(lines))
        if ok(m, "998-octet line spooled"):
            is_(m.body(), body, "998-octet line bytes exact")
        ok(start_data(c), "999-octet line: DATA started")
        c.send(b"Subject: long\r\n\r\n" + b"b" * 999 + b"\r\n.\r\n")
        c.expect(550, "5.6.0", "a 999-octet line -> 550 5.6.0")
        in_sync(c, "999-octet line")
        ok(start_data(c), "100k line: DATA started")
        c.send(b"Subject: long\r\n\r\n" + b"c" * 100000 + b"\r\n.\r\n")
        c.expect(550, "5.6.0", "a 100000-octet line -> 550 5.6.0")
        in_sync(c, "100000-octet line")

# ------------------------------------------------------ policy: accept ----
with Kasi({"data": {"bare_lf": "accept"}}) as k:
    with Raw(k.port, ehlo="client.test") as c:
        for name, fake in FAKE_ENDS:
            if fake.startswith(b"\r\n.") or b"\r\n.\r" in fake:
                continue  # a line starting with "." may be unstuffed: not exact
            ok(start_data(c), "accept %s: DATA started" % name)
            c.send(smuggle(fake))
            code, lines = c.read_reply()
            is_(code, 250, "accept %s: one 250 for the whole thing" % name)
            m = k.spool_by_id(queued_id(lines))
            if ok(m, "accept %s: spooled" % name):
                is_(m.body(), smuggle(fake)[:-3], "accept %s: bytes kept" % name)
                is_(m.env.get("mail_from"), "a@client.test", "accept %s: real sender" % name)
            in_sync(c, "accept " + name)
        n = len(FAKE_ENDS) - sum(1 for _, f in FAKE_ENDS if f.startswith(b"\r\n.") or b"\r\n.\r" in f)
        is_(len(k.spool()), n, "accept: exactly one message per variant, none smuggled")
        evil = [m for m in k.spool() if m.env.get("mail_from") == "evil@attacker.test"]
        is_(evil, [], "accept: no message from the smuggled sender")
        ok(start_data(c), "accept bare CR: DATA started")
        body = b"Subject: cr\r\n\r\none\rtwo\nthree\r\n"
        c.send(body + b".\r\n")
        code, lines = c.read_reply()
        is_(code, 250, "accept: bare CR and LF in body accepted")
        m = k.spool_by_id(queued_id(lines))
        if ok(m, "accept: bare CR/LF message spooled"):
            is_(m.body(), body, "accept: bare CR and LF kept")
        ok(start_data(c), "accept NUL: DATA started")
        c.send(b"Subject: nul\r\n\r\nbefore\x00after\r\n.\r\n")
        c.expect(550, "5.6.0", "accept policy: NUL byte still -> 550 5.6.0")
        in_sync(c, "accept NUL")

# ------------------------------------------------ long lines: wrap / 100 ----
with Kasi({"data": {"long_lines": "wrap"}}) as k:
    with Raw(k.port, ehlo="client.test") as c:
        ok(start_data(c), "wrap: DATA started")
        long = bytes((0x41 + i % 26) for i in range(2500))
        body = b"Subject: wrap\r\n\r\n" + long + b"\r\nafter\r\n"
        c.send(body + b".\r\n")
        code, lines = c.read_reply()
        is_(code, 250, "wrap: 2500-octet line accepted")
        m = k.spool_by_id(queued_id(lines))
        if ok(m, "wrap: spooled"):
            got = m.body()
            is_(got.replace(b"\r\n", b""), body.replace(b"\r\n", b""),
                "wrap: same bytes apart from inserted CRLFs")
            longest = max(len(x) for x in got.split(b"\r\n"))
            ok(longest <= 998, "wrap: no line over 998 octets (longest %d)" % longest)
            ok(got.endswith(b"\r\nafter\r\n"), "wrap: following line intact")

with Kasi({"limits": {"max_line_length": 100}}) as k:
    with Raw(k.port, ehlo="client.test") as c:
        ok(start_data(c), "limit 100: DATA started")
        c.send(b"Subject: x\r\n\r\n" + b"e" * 100 + b"\r\n.\r\n")
        c.expect(250, "2.0.0", "max_line_length 100: 100 octets ok")
        ok(start_data(c), "limit 100: DATA started again")
        c.send(b"Subject: x\r\n\r\n" + b"e" * 101 + b"\r\n.\r\n")
        c.expect(550, "5.6.0", "max_line_length 100: 101 octets -> 550 5.6.0")
        in_sync(c, "limit 100")

# ------------------------------------------------------------ size limit ----
with Kasi({"limits": {"max_message_size": 20000}}) as k:
    with Raw(k.port, ehlo="client.test") as c:
        ok(start_data(c), "size: DATA started")
        body = b"Subject: small\r\n\r\n" + (b"x" * 70 + b"\r\n") * 100
        c.send(body + b".\r\n")
        code, lines = c.read_reply()
        is_(code, 250, "7 KB message under a 20000-byte limit accepted")
        m = k.spool_by_id(queued_id(lines))
        if ok(m, "size: small message spooled"):
            is_(m.body(), body, "size: small message bytes")
        ok(start_data(c), "size: DATA started for the big one")
        c.send(b"Subject: big\r\n\r\n" + (b"y" * 70 + b"\r\n") * 2000 + b".\r\n")
        c.expect(552, "5.3.4", "140 KB message -> 552 5.3.4 after the end of data")
        in_sync(c, "over size")
        is_(len(k.spool()), 1, "the big message was not spooled")
        c.send("MAIL FROM:<a@client.test> SIZE=20001\r\n")
        c.expect(552, "5.3.4", "SIZE=20001 -> 552 5.3.4")

done()
