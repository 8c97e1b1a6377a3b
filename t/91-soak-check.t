#!/usr/bin/env python3
"""The soak's check that kasi freed a client that stopped reading
(contrib/bench/soak.py server_holds), against a real kasi.

A flooding client that kasi resets keeps its socket open (in CLOSE), and
its address and port are free again: a later client from the same
address may get the same port, and a live session of kasi then has the
same peer. The check must say the first connection is gone (it matched
the port alone before, and counted such new sessions as flood sessions
kasi still held), and still see a session kasi does hold."""
import os
import socket
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "lib"))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "contrib", "bench"))
from kasitest import *  # noqa: E402,F401,F403
from proctest import wait_for, worker_pid  # noqa: E402
import soak  # noqa: E402

SOURCE = "127.0.0.2"


def client(port, local_port=0):
    """A Raw from SOURCE, on local_port (0: any), that may share its
    address and port with a reset socket still open."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((SOURCE, local_port))
    s.settimeout(scaled(5))
    s.connect(("127.0.0.1", port))
    r = Raw.__new__(Raw)
    r.sock, r.buf, r.eof, r.error, r.last = s, b"", False, None, None
    r.expect(220, name="banner (port %d)" % s.getsockname()[1])
    return r


def tcp_state(sock):
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]


with Kasi({"limits": {"max_junk_commands": 5}, "log": {"level": "info"}}) as k:
    wpid = worker_pid(k)
    a = client(k.port)
    port = a.sock.getsockname()[1]
    ok(soak.server_holds(wpid, a.sock), "a session kasi serves is held")

    # a flood past max_junk_commands: 421 and close; bytes sent after the
    # close get a reset, as a flood's unsent commands do in the soak
    a.send("NOOP\r\n" * 20)
    ok(k.wait_log(r"disconnect ip=%s port=%d .*result=junk" % (SOURCE, port)),
       "kasi closes the flooding session")
    wait_for(lambda: (a.send("NOOP\r\n"), tcp_state(a.sock) == soak.TCP_CLOSE)[1], 5)
    is_(tcp_state(a.sock), soak.TCP_CLOSE, "the client's socket was reset (CLOSE), still open")
    ok(not soak.server_holds(wpid, a.sock), "the reset session is not held")

    # the same address and port again, while the reset socket is open
    b = client(k.port, port)
    is_(b.sock.getsockname(), a.sock.getsockname(), "a new session on the same address and port")
    ok(k.wait_count(r"\] connect ip=%s port=%d " % (SOURCE, port), 2), "  kasi sees it")
    ok(soak.server_holds(wpid, b.sock), "  the new session is held")
    ok(not soak.server_holds(wpid, a.sock), "the reset one still is not (same peer, other socket)")

    is_(b.cmd("QUIT")[0], 221, "QUIT")
    ok(b.closed(), "  closed")
    ok(wait_for(lambda: not soak.server_holds(wpid, b.sock), 5), "a session kasi closed is not held")
    a.close()
    b.close()

done()
