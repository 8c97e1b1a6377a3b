#!/usr/bin/env python3
"""Connection limits (global and per IP), the command timeout (idle and
silent clients), the DATA block timeout, a 64 KB line without a newline,
and too many bad commands. After each abuse the server still serves."""
import os
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kasitest import *  # noqa: E402,F401,F403


def healthy(k, name):
    """A fresh session works end to end."""
    with Raw(k.port) as c:
        code, _ = c.read_reply()
        code2, _ = c.cmd("EHLO client.test")
        code3, _ = c.cmd("NOOP")
        code4, _ = c.cmd("QUIT")
        is_([code, code2, code3, code4], [220, 250, 250, 221], "%s: a new session works" % name)


def wait_banner(port, timeout, source=None):
    """Connect until a 220 banner comes (the server may need a moment to
    notice a closed connection). Returns the connected Raw or None."""
    deadline = time.monotonic() + scaled(timeout)
    while time.monotonic() < deadline:
        c = Raw(port, source=source)
        code, _ = c.read_reply()
        if code == 220:
            return c
        c.close()
        time.sleep(0.05)
    return None


def loopback_alias_ok():
    try:
        s = socket.create_connection(("127.0.0.1", 9), timeout=1, source_address=("127.0.0.2", 0))
        s.close()
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    return True


# ------------------------------------------------------ connection limits ----
with Kasi({"limits": {"max_connections": 3, "max_connections_per_ip": 0}}) as k:
    conns = [Raw(k.port, banner=True) for _ in range(3)]
    with Raw(k.port) as c:
        c.expect(421, "4.7.0", "4th connection over max_connections 3 -> 421 4.7.0")
        ok(c.closed(), "  and is closed")
    conns[0].cmd("QUIT")
    conns[0].close()
    c = wait_banner(k.port, 5)
    ok(c is not None, "a slot is free again after one client quit")
    if c:
        conns.append(c)
    for c in conns[1:]:
        code, _ = c.cmd("NOOP")
        is_(code, 250, "established sessions unaffected by the refused one")
        c.close()

# loopback is exempt from per-client limits by default: not here
with Kasi({"limits": {"max_connections": 100, "max_connections_per_ip": 2,
                      "exempt": []}}) as k:
    conns = [Raw(k.port, banner=True) for _ in range(2)]
    with Raw(k.port) as c:
        c.expect(421, "4.7.0", "3rd connection from one IP (limit 2) -> 421 4.7.0")
        ok(c.closed(), "  and is closed")
    if loopback_alias_ok():
        with Raw(k.port, source="127.0.0.2") as c:
            c.expect(220, None, "another client IP (127.0.0.2) is still served")
            c.send("EHLO other.test\r\n")
            c.expect(250, None, "  EHLO from 127.0.0.2")
    else:
        diag("cannot bind 127.0.0.2: skipped the second-IP check")
    conns[1].close()
    c = wait_banner(k.port, 5)
    ok(c is not None, "per-IP slot is free again after a close")
    if c:
        c.close()
    conns[0].close()

# --------------------------------------------------------------- timeouts ----
with Kasi({"timeouts": {"command": 1, "data_block": 1}}) as k:
    # idle after EHLO
    with Raw(k.port, ehlo="client.test") as c:
        t0 = time.monotonic()
        lines = c.expect(421, "4.4.2", "idle 1 s after EHLO -> 421 4.4.2", timeout=6)
        took = time.monotonic() - t0
        ok(took >= 0.8, "  not before the timeout (%.2f s)" % took)
        ok(c.closed(3), "  and closed")
    # idle before anything
    with Raw(k.port, banner=True) as c:
        c.expect(421, "4.4.2", "idle 1 s after the banner -> 421 4.4.2", timeout=6)
        ok(c.closed(3), "  and closed")
    # a client that sends nothing and reads nothing
    s = socket.create_connection(("127.0.0.1", k.port), timeout=scaled(30))
    data, closed = b"", False
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                closed = True
                break
            data += chunk
    except OSError as e:
        diag("silent client: %r" % (e,))
    s.close()
    ok(closed, "a silent client is closed by the server (not by our 30 s wait)")
    like(data, r"^220 .*\r\n421 4\.4\.2 ", "  it got the banner, then 421 4.4.2")
    # stalled inside DATA
    with Raw(k.port, ehlo="client.test") as c:
        c.send("MAIL FROM:<a@client.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n")
        c.read_replies(3)
        c.send("Subject: stalled\r\n\r\nhalf a mess")
        code, lines = c.read_reply(timeout=6)
        ok(code == 421 or code is None, "stalled DATA: 421 or close (%r %r)" % (code, lines))
        ok(c.closed(3), "stalled DATA: closed after data_block timeout")
    # the timeout is per command, not per session: activity keeps it alive
    with Raw(k.port, ehlo="client.test") as c:
        good = True
        for _ in range(4):
            time.sleep(0.4)  # less than the 1 s timeout each time
            code, _ = c.cmd("NOOP")
            good = good and code == 250
        ok(good, "a session active every 0.4 s outlives a 1 s command timeout (1.6 s)")
    is_(k.spool(), [], "nothing spooled by timed-out sessions")
    healthy(k, "after timeouts")

# --------------------------------------------------- 64 KB line, errors ----
with Kasi({"limits": {"max_errors": 3}}) as k:
    with Raw(k.port, banner=True) as c:
        c.send("EHLO client.test\r\n")
        c.expect(250)
        c.send(b"X" * 65536)
        code, lines = c.read_reply(timeout=5)
        is_(code, 500, "64 KB without a newline -> 500")
        like(lines[0] if lines else "", r"^5\.5\.6 .*(?i:line too long)", "  5.5.6 Line too long")
        # either closed or resynchronised: finish the line and check
        c.send("\r\nNOOP\r\n")
        code, lines = c.read_reply(timeout=3)
        ok(code in (250, None) or c.eof, "then closed or back in sync (%r %r)" % (code, lines))
    healthy(k, "after a 64 KB line")

    # too many errors: 3 bad commands -> 421 4.7.0 and close
    with Raw(k.port, ehlo="client.test") as c:
        got = []
        for i in range(5):
            c.send("FROB %d\r\n" % i)
            code, lines = c.read_reply()
            got.append(code)
            if code != 500:
                break
        like(" ".join(c.last[1] or []), r"^4\.7\.0 ", "too many errors: 4.7.0")
        ok(got[-1] == 421 and len(got) in (3, 4) and all(x == 500 for x in got[:-1]),
           "max_errors 3: 421 after the 3rd error (replies %r)" % got)
        ok(c.closed(3), "  and closed")
    # errors of other kinds count too
    with Raw(k.port, ehlo="client.test") as c:
        replies = [c.cmd(x)[0] for x in ["RCPT TO:<a@b.test>", "MAIL FROM:<bad", "DATA"]]
        code, _ = c.read_reply(timeout=1) if replies[-1] != 421 else (421, [])
        ok(421 in replies + [code], "sequence and syntax errors count (replies %r)" % replies)
        ok(c.closed(3), "  and closed")
    healthy(k, "after too many errors")

done()
