#!/usr/bin/env python3
"""Slowloris: a client that trickles a command line one byte at a time keeps
resetting a per-read timeout; kasi bounds the whole line by the command
timeout, so it is closed with 421 4.4.2 — and other sessions are served
meanwhile."""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kasitest import *  # noqa: E402,F401,F403

with Kasi({"timeouts": {"command": 1}}) as k:
    with Raw(k.port, ehlo="client.test") as slow:
        t0 = time.monotonic()
        closed_early = False
        # one byte every 0.3 s: each read is well inside the 1 s timeout
        # (up to 90 bytes: 27 s, a bounded wait far past the timeout)
        for ch in b"NOOP " + b"x" * 85:
            if time.monotonic() - t0 > scaled(20):
                break
            try:
                slow.send(bytes([ch]))
            except OSError:
                closed_early = True
                break
            # meanwhile another client is served normally
            time.sleep(0.3)
            if slow.closed(0.01):
                closed_early = True
                break
        took = time.monotonic() - t0
        ok(closed_early, "trickling client closed (%.2f s)" % took)
        like(slow.buf.decode("latin-1"), r"421 4\.4\.2", "it got 421 4.4.2")
    with Raw(k.port, ehlo="client.test") as c:
        code, _ = c.cmd("NOOP")
        is_(code, 250, "a normal client is served afterwards")
done()
