#!/usr/bin/env python3
"""SIGTERM: listeners close at once; a session in the middle of a message
may finish it within timeouts.shutdown; sessions still open after the grace
period get 421 4.3.2 and are closed; the process exits 0. Without sessions
the process exits right away."""
import os
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kasitest import *  # noqa: E402,F401,F403


def refused(port, timeout):
    """True once connecting fails (listener closed), within timeout."""
    deadline = time.monotonic() + scaled(timeout)
    while time.monotonic() < deadline:
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=1)
        except OSError:
            return True
        # connected: the listener may still be open, or the connection was
        # accepted by the backlog; either way try again
        s.close()
        time.sleep(0.02)
    return False


# no sessions: exits promptly even with a long grace period
with Kasi({"timeouts": {"shutdown": 20}}) as k:
    t0 = time.monotonic()
    k.signal(signal.SIGTERM)
    rc = k.wait_exit(5)
    ok(rc is not None, "idle server exits within 5 s of SIGTERM (grace 20 s)",
       "took %.2f s" % (time.monotonic() - t0))
    is_(rc, 0, "exit status 0")
    k.stop()

# busy and idle sessions, grace period 2 s
with Kasi({"timeouts": {"shutdown": 2, "command": 30}}) as k:
    busy = Raw(k.port, ehlo="busy.client.test")
    busy.send("MAIL FROM:<a@client.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n")
    is_([x for x, _ in busy.read_replies(3)], [250, 250, 354], "busy session inside DATA")
    busy.send("Subject: in flight\r\n\r\nfirst half\r\n")
    idle = Raw(k.port, ehlo="idle.client.test")

    t0 = time.monotonic()
    k.signal(signal.SIGTERM)
    ok(k.wait_log(r"(?i)shut", 3), "shutdown is logged")
    ok(refused(k.port, 1.5), "listener closed right after SIGTERM")
    ok(k.running(), "process still running during the grace period")

    busy.send("second half\r\n.\r\n")
    code, lines = busy.read_reply()
    is_(code, 250, "busy session finishes its message during the grace period")
    mid = queued_id(lines)
    m = k.spool_by_id(mid) if mid else None
    if ok(m, "in-flight message spooled"):
        is_(m.body(), b"Subject: in flight\r\n\r\nfirst half\r\nsecond half\r\n",
            "in-flight message bytes")

    # whoever is still connected gets 421 4.3.2 by the end of the grace
    for name, c in [("idle session", idle), ("busy session", busy)]:
        code, lines = c.read_reply(timeout=6)
        if code == 221:  # the server may have said goodbye already
            code, lines = c.read_reply(timeout=6)
        ok(code == 421 and lines and lines[0].startswith("4.3.2 "),
           "%s: 421 4.3.2 at the end of the grace" % name,
           "reply %r %r" % (code, lines))
        if c is idle:
            took = time.monotonic() - t0
        ok(c.closed(3), "%s: closed" % name)
        c.close()
    ok(took >= 1.8, "idle session: not before the 2 s grace period ended (%.2f s)" % took)
    rc = k.wait_exit(5)
    is_(rc, 0, "process exits 0 after the grace period")
    k.stop()

# a session that keeps talking during the grace is cut at its end
with Kasi({"timeouts": {"shutdown": 1, "command": 30}}) as k:
    c = Raw(k.port, ehlo="chatty.client.test")
    t0 = time.monotonic()
    k.signal(signal.SIGTERM)
    code = 250
    kicked = None
    while time.monotonic() - t0 < scaled(6):
        code, lines = c.cmd("NOOP")
        if code != 250:
            kicked = (code, lines)
            break
        time.sleep(0.1)
    took = time.monotonic() - t0
    ok(kicked is not None, "a chatty session is ended after the grace (%.2f s)" % took)
    if kicked:
        ok(kicked[0] is None or kicked[0] == 421 and kicked[1][0].startswith("4.3.2 "),
           "  with 421 4.3.2 (or a close)", "reply %r" % (kicked,))
    ok(c.closed(3), "  and closed")
    c.close()
    is_(k.wait_exit(5), 0, "exit 0")
    k.stop()

done()
