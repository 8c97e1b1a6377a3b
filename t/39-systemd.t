#!/usr/bin/env python3
"""systemd integration without systemd: the notify protocol (READY=1 once
the first generation serves, RELOADING=1 then READY=1 around a reload,
STOPPING=1 on SIGTERM, STATUS= with the generation) to a datagram socket
named by $NOTIFY_SOCKET, and socket activation: a listening socket passed
as fd 3 with LISTEN_FDS/LISTEN_PID is used for the listener with its
address (the connection waiting in its queue before kasi started is
served), a dual-stack wildcard socket serves a listen: on every address
with its port, and LISTEN_PID of another process is ignored."""
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kasitest import *  # noqa: E402,F401,F403


def messages(sock, until, timeout=10):
    """Datagrams received until one contains `until`."""
    got = []
    deadline = time.monotonic() + scaled(timeout)
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            got.append(sock.recv(4096).decode())
        except socket.timeout:
            break
        if until in got[-1]:
            break
    return got


sockdir = tempfile.mkdtemp(prefix="kasi-notify-")
path = os.path.join(sockdir, "notify")
nsock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
nsock.bind(path)
os.environ["NOTIFY_SOCKET"] = path
with Kasi() as k:
    got = messages(nsock, "READY=1")
    ok(got and got[-1].startswith("READY=1"), "READY=1 once serving", repr(got))
    like(got[-1] if got else "", r"STATUS=generation 1, 1 workers", "with a STATUS line")
    k.signal(signal.SIGHUP)
    got = messages(nsock, "READY=1")
    ok(len(got) >= 2 and got[0].startswith("RELOADING=1\nMONOTONIC_USEC=")
       and got[-1].startswith("READY=1"), "reload: RELOADING=1, then READY=1", repr(got))
    like(got[-1] if got else "", r"STATUS=generation 2", "  generation 2")
    k.signal(signal.SIGTERM)
    got = messages(nsock, "STOPPING=1")
    ok(got and got[-1] == "STOPPING=1", "SIGTERM: STOPPING=1", repr(got))
    k.stop()
del os.environ["NOTIFY_SOCKET"]
nsock.close()
os.unlink(path)
os.rmdir(sockdir)

# socket activation
lsock = socket.socket()
lsock.bind(("127.0.0.1", 0))
lsock.listen(16)
port = lsock.getsockname()[1]
early = socket.create_connection(("127.0.0.1", port), timeout=scaled(10))


def activated(k, pid_expr):
    """Start kasi with lsock as fd 3 (the shell moves it there); LISTEN_PID
    from the shell, whose pid kasi keeps through exec."""
    n = lsock.fileno()
    k._log = open(k.logfile, "wb")
    move = "" if n == 3 else "exec 3<&%d %d<&-; " % (n, n)     # fds 0-9 only in sh
    cmd = move + 'LISTEN_PID=%s LISTEN_FDS=1 exec "$0" -c "$1"' % pid_expr
    k.proc = subprocess.Popen(["sh", "-c", cmd, KASI_BIN, k.confdir], stdin=subprocess.DEVNULL,
                              stdout=k._log, stderr=subprocess.STDOUT, cwd=k.tmp,
                              pass_fds=(n,))
    import kasitest
    kasitest._running.append(k)
    return k.wait_log(r"generation 1 live", 10)


with Kasi({"listen": ["127.0.0.1:%d" % port]}, start=False) as k:
    ok(activated(k, "$$"), "kasi starts with a passed socket", k.log_tail())
    like(k.log(), r"listener 127\.0\.0\.1:%d passed by the service manager" % port,
         "the passed socket is used for its listener")
    unlike(k.log(), r"listen 127\.0\.0\.1:%d: Address already in use" % port,
           "nothing is bound twice")
    r = Raw(port, banner=True)
    r.close()
    early.settimeout(scaled(10))
    ok(early.recv(100).startswith(b"220 "),
       "the connection queued before kasi started gets its banner")
    early.close()
    k.stop()

with Kasi({"listen": ["127.0.0.1:0"]}, start=False) as k:
    ok(activated(k, "1"), "LISTEN_PID of another process: ignored, kasi binds its own")
    unlike(k.log(), r"passed by the service manager|socket activation", "no socket taken")
    k.stop()
lsock.close()

# kasi.socket's "ListenStream=25": one dual-stack [::] socket, used for a
# listen: on every address with that port
lsock = socket.socket(socket.AF_INET6)
lsock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
lsock.bind(("::", 0))
lsock.listen(16)
port = lsock.getsockname()[1]
with Kasi({"listen": ["0.0.0.0:%d" % port]}, start=False) as k:
    ok(activated(k, "$$"), "a dual-stack socket for listen: 0.0.0.0:%d" % port, k.log_tail())
    like(k.log(), r"listener 0\.0\.0\.0:%d passed by the service manager" % port,
         "  is used for it")
    with Raw(port, ehlo="client.test") as r:
        is_(r.cmd("NOOP")[0], 250, "  and serves IPv4 clients")
    k.stop()
lsock.close()
done()
