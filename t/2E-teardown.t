#!/usr/bin/env python3
"""Every way a session ends, in plain SMTP, after STARTTLS and on an
implicit-TLS port, with nothing, half a command line or half a DATA line
pending: idle timeout, the budget of commands without mail, too many
errors, QUIT, a peer reset and shutdown. Each row checks the client's last
reply and the close, the worker's log line for the end, and that the
worker's open descriptors come back to where they were (a session that is
never freed holds one, and a slot of max_connections). At the end all
max_connections slots still answer 220."""
import os
import signal
import socket
import struct
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kasitest import *  # noqa: E402,F401,F403
from proctest import fd_count, settle_fds, worker_pid  # noqa: E402
from tlstest import RawTLS, client_ctx, make_pki, start, tls_yaml  # noqa: E402

pki = make_pki(tempfile.mkdtemp(prefix="kasi-pki-"), {"mx": ["mx.kasi.test"]})
CTX = client_ctx(pki["ca"])
MODES = ["plain", "starttls", "implicit"]
MAX_CONN = 5

# what each ending sends, the reply it must end with, its result= in the log
ENDINGS = {
    "timeout":  (b"", (421, "4.4.2"), "timeout"),
    "limit":    (b"NOOP\r\n" * 10, (421, "4.7.0"), "junk"),
    "error":    (b"FROB\r\n" * 3, (421, "4.7.0"), "errors"),
    "quit":     (b"QUIT\r\n", (221, "2.0.0"), "quit"),
    "reset":    (b"", None, "(?:lost|error)"),
    "shutdown": (b"", (421, "4.3.2"), "shutdown"),
}
PENDING = {"none": b"", "command": b"NOOP", "data": b"Subject: half\r\n\r\nhalf a li"}
IN_DATA_ENDINGS = ("timeout", "reset", "shutdown")    # the others are commands


def server(command=1):
    extra = ("timeouts:\n  command: %s\n  data_block: %s\n  shutdown: 1\n  close: 3\n"
             "limits:\n  max_connections: %d\n  max_connections_per_ip: 0\n"
             "  max_junk_commands: 5\n  max_errors: 2\n") % (command, command, MAX_CONN)
    tmp = tempfile.mkdtemp(prefix="kasi-t-spool-")
    return start(tls_yaml(tmp, [{"tls": "none"}, {"tls": "starttls"}, {"tls": "implicit"}],
                          [pki["mx"]], extra=extra), 3)


def connect(k, mode):
    """A greeted session (EHLO done, inside TLS for the TLS modes)."""
    if mode == "implicit":
        c = RawTLS.connect_tls(k.ports[2], CTX)
        c.expect(220, name="implicit: banner")
    else:
        c = RawTLS(k.ports[0 if mode == "plain" else 1], banner=True)
    code, _ = c.cmd("EHLO client.test")
    if mode == "starttls":
        code, _ = c.cmd("STARTTLS")
        c.starttls(CTX)
        code, _ = c.cmd("EHLO client.test")
    if code != 250:
        raise RuntimeError("%s: EHLO refused (%r)" % (mode, code))
    return c


def last_reply(c, timeout=5):
    """Replies up to the one that ends the session (221, 421) or EOF."""
    while True:
        code, lines = c.read_reply(timeout)
        if code is None or code in (221, 421):
            return code, lines


def reset(c):
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()


def row(k, wpid, base_fds, mode, pending, ending):
    name = "%s, %s pending, %s" % (mode, pending, ending)
    send, want, result = ENDINGS[ending]
    rx = r"\] disconnect ip=.* result=%s$" % result
    ended = k.count_log(rx)
    c = connect(k, mode)
    if pending == "data":
        c.send("MAIL FROM:<a@client.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n")
        is_([x for x, _ in c.read_replies(3)], [250, 250, 354], name + ": inside DATA")
    c.send(send + PENDING[pending])
    if ending == "reset":
        reset(c)
    elif ending == "shutdown":
        k.signal(signal.SIGTERM)
    if want:
        code, lines = last_reply(c, 6)
        ok(code == want[0] and lines and lines[0].startswith(want[1] + " "),
           name + ": ends with %d %s" % want, "got %r %r (%s)" % (code, lines, c.error))
        ok(c.closed(5), name + ": closed by the server")
        c.close()
    ok(k.wait_count(rx, ended + 1, 5), name + ": logged as result=%s" % result)
    if ending == "shutdown":
        is_(k.wait_exit(5), 0, name + ": the worker exits 0 within the grace")
        k.stop()
        return
    got = settle_fds(wpid, base_fds, 5)
    ok(got <= base_fds, name + ": session freed (worker fds %d, before %d)" % (got, base_fds))


def warm(k, mode):
    """One full session, so lazily opened descriptors (DNS) are counted."""
    c = connect(k, mode)
    is_(c.cmd("QUIT")[0], 221, "%s: warm-up session" % mode)
    c.closed(3)
    c.close()


for mode in MODES:
    with server() as k:
        wpid = worker_pid(k)
        warm(k, mode)
        k.wait_log(r"result=quit", 3)
        base = settle_fds(wpid, 0, 0.5)
        for pending in PENDING:
            for ending in ENDINGS:
                if ending == "shutdown" or (pending == "data" and ending not in IN_DATA_ENDINGS):
                    continue
                row(k, wpid, base, mode, pending, ending)
        # every slot is free: max_connections sessions are served at once
        conns = [RawTLS(k.ports[0]) for _ in range(MAX_CONN)]
        is_([c.read_reply()[0] for c in conns], [220] * MAX_CONN,
            "%s: all %d connection slots answer 220 afterwards" % (mode, MAX_CONN))
        for c in conns:
            c.close()

    for pending in PENDING:
        with server(command=30) as k:
            row(k, worker_pid(k), 0, mode, pending, "shutdown")

done()
