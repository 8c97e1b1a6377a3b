#!/usr/bin/env python3
"""idle_rss.py — RSS of an SMTP server holding N idle connections.

Opens connections to 127.0.0.1:PORT (loopback only), reads the banner,
sends EHLO, reads the reply and holds them open. At each checkpoint N (in
increasing order) it prints the RSS (KiB) of PID and its descendants
before the first connection and with N connections held:

  connections=N rss_before_kib=B rss_after_kib=A kib_per_conn=X

and, once every connection is closed again (and the server had a few
seconds to notice):

  closed rss_kib=C

Before the first checkpoint one session is opened and closed, and the
RSS then is printed as `warm rss_kib=W`: what serving one session costs
for good (library code read in, TLS state set up once), the base that
the RSS after close is best compared with.

With --starttls each connection also runs STARTTLS (no certificate
check: loopback, the server's own test certificate) and EHLO again, so it
is held idle inside TLS.

Connections come from several source addresses (127.0.0.2, .3, ...; one
per SOURCE_SPAN connections) so that large counts do not run out of
ephemeral ports. Bounded: every socket operation has a timeout and the
whole run stops after DEADLINE seconds.

usage: idle_rss.py [--starttls] PORT PID N [N2 ...]
"""
import resource
import socket
import ssl
import sys
import time

from benchlib import rss_kib   # same directory: the bench's /proc helpers

SOURCE_SPAN = 10000     # connections per source address
DEADLINE = 240          # seconds for the whole run
BATCH = 200             # connections opened before their replies are read


def raise_nofile(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def read_reply(s):
    """Read one complete (possibly multi-line) SMTP reply."""
    buf = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            raise OSError("connection closed")
        buf += chunk
        for ln in buf.split(b"\r\n")[:-1]:
            if len(ln) >= 4 and ln[3:4] == b" ":
                return buf


def connect(port, i):
    src = "127.0.0.%d" % (2 + i // SOURCE_SPAN)
    s = socket.socket()
    s.settimeout(10)
    s.bind((src, 0))
    s.connect(("127.0.0.1", port))
    return s


TLS = None             # an ssl.SSLContext with --starttls


def starttls(s):
    s.sendall(b"STARTTLS\r\n")
    if not read_reply(s).startswith(b"220"):
        raise OSError("STARTTLS refused")
    t = TLS.wrap_socket(s, server_hostname="idle.bench.test")
    t.sendall(b"EHLO idle.bench.test\r\n")
    read_reply(t)
    return t


def open_batch(port, first, n, socks):
    """Connect n sockets, then read banners, send EHLO, read replies (and
    with --starttls: STARTTLS, handshake, EHLO again)."""
    batch = [connect(port, first + k) for k in range(n)]
    for s in batch:
        read_reply(s)
        s.sendall(b"EHLO idle.bench.test\r\n")
    for s in batch:
        read_reply(s)
    if TLS:
        batch = [starttls(s) for s in batch]
    socks += batch


def wait_closed_rss(pid, seconds=5):
    """RSS once the server has had a moment to free the closed sessions."""
    time.sleep(seconds)
    return rss_kib(pid)


def main():
    global TLS
    args = sys.argv[1:]
    if args and args[0] == "--starttls":
        args = args[1:]
        TLS = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        TLS.check_hostname = False
        TLS.verify_mode = ssl.CERT_NONE
    port, pid = int(args[0]), int(args[1])
    marks = sorted(int(n) for n in args[2:]) or [0]
    limit = raise_nofile(marks[-1] + 100)
    if marks[-1] + 50 > limit:
        print(f"warning: open file limit {limit} is below {marks[-1]}", file=sys.stderr)
    before = rss_kib(pid)
    one = []
    open_batch(port, 0, 1, one)
    one[0].close()
    print(f"warm rss_kib={wait_closed_rss(pid, 1)}", flush=True)
    socks = []
    deadline = time.monotonic() + DEADLINE
    try:
        for n in marks:
            while len(socks) < n and time.monotonic() < deadline:
                open_batch(port, len(socks), min(BATCH, n - len(socks)), socks)
            time.sleep(0.5)
            after = rss_kib(pid)
            held = len(socks)
            print(f"connections={held} rss_before_kib={before} rss_after_kib={after} "
                  f"kib_per_conn={(after - before) / max(held, 1):.2f}", flush=True)
            if held < n:
                break
    except OSError as e:
        held = len(socks)
        print(f"error after {held} connections: {e}", flush=True)
        print(f"connections={held} rss_before_kib={before} "
              f"rss_after_kib={rss_kib(pid)} kib_per_conn=0", flush=True)
    finally:
        for s in socks:
            s.close()
    print(f"closed rss_kib={wait_closed_rss(pid)}", flush=True)


if __name__ == "__main__":
    main()
