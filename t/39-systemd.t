#!/usr/bin/env python3
"""systemd integration without systemd: the notify protocol (READY=1 once
the first generation serves, RELOADING=1 then READY=1 around a reload,
STOPPING=1 on SIGTERM, STATUS= with the generation) to a datagram socket
named by $NOTIFY_SOCKET, and socket activation: a listening socket passed
as fd 3 with LISTEN_FDS/LISTEN_PID is used for the listener with its
address (the connection waiting in its queue before kasi started is
served), a dual-stack wildcard socket serves a listen: on every address
with its port, and LISTEN_PID of another process is ignored. As
contrib/systemd/kasi.socket's ListenStream= lines make them (port 25 moved
to a free one), with a listen: of 0.0.0.0 and [::] like the packaged
smtp.yaml: each entry gets its own socket, kasi binds nothing and no
socket is left over, IPv4 and IPv6 clients are served (also with the
entries the other way round); a dual-stack [::]:P socket with that
listen: is refused, naming the fix; an IPv6-only [::]:P socket does not
stand in for 0.0.0.0:P."""
import os
import re
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

# a socket unit's "ListenStream=25" (BindIPv6Only=both): one dual-stack [::]
# socket, used for a lone listen: on every IPv4 address with that port
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

# ---- as kasi.socket passes them: 0.0.0.0:P and [::]:P (BindIPv6Only=ipv6-only)

LAUNCH = """import os, sys
fds = [int(x) for x in sys.argv[1].split(",")]
high = [os.dup(fd) for fd in fds]
for fd in fds:
    os.close(fd)
for i, fd in enumerate(high):
    os.dup2(fd, 3 + i)
    os.close(fd)
os.environ["LISTEN_PID"] = str(os.getpid())
os.environ["LISTEN_FDS"] = str(len(fds))
os.execv(sys.argv[2], sys.argv[2:])
"""


def activated_many(k, socks, ready=r"generation 1 live"):
    """Start kasi with socks as fds 3, 4, ... in their order, as systemd
    passes the ListenStream= sockets; LISTEN_PID is kasi's (exec keeps
    the launcher's pid)."""
    fds = [s.fileno() for s in socks]
    k._log = open(k.logfile, "wb")
    k.proc = subprocess.Popen([sys.executable, "-c", LAUNCH, ",".join(map(str, fds)),
                               KASI_BIN, "-c", k.confdir], stdin=subprocess.DEVNULL,
                              stdout=k._log, stderr=subprocess.STDOUT, cwd=k.tmp,
                              pass_fds=fds)
    import kasitest
    kasitest._running.append(k)
    return k.wait_log(ready, 10)


def socket_unit_pair(dual=False):
    """An IPv4 0.0.0.0:P and an IPv6 [::]:P listening socket on one free
    port P (IPV6_V6ONLY unless dual: then only the [::] one)."""
    for _ in range(50):
        v6 = socket.socket(socket.AF_INET6)
        v6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if dual else 1)
        v6.bind(("::", 0))
        port = v6.getsockname()[1]
        if dual:
            v6.listen(16)
            return [v6], port
        v4 = socket.socket()
        try:
            v4.bind(("0.0.0.0", port))
        except OSError:
            v4.close()
            v6.close()
            continue
        v4.listen(16)
        v6.listen(16)
        return [v4, v6], port
    raise RuntimeError("no port free for both families")


def unit_specs(path):
    """The ListenStream= sockets of a socket unit file, in order:
    (family, host, port, IPV6_V6ONLY) as systemd makes them, with its
    BindIPv6Only= ("ListenStream=25" is [::]:25, both families unless
    ipv6-only)."""
    with open(path) as f:
        text = f.read()
    m = re.search(r"(?m)^BindIPv6Only=(\S+)$", text)
    v6only = 1 if m and m.group(1) == "ipv6-only" else 0
    specs = []
    for v in re.findall(r"(?m)^ListenStream=(\S+)$", text):
        if re.fullmatch(r"\d+", v):
            specs.append((socket.AF_INET6, "::", int(v), v6only))
        elif v.startswith("["):
            host, port = re.fullmatch(r"\[(.*)\]:(\d+)", v).groups()
            specs.append((socket.AF_INET6, host, int(port), v6only))
        else:
            host, port = v.rsplit(":", 1)
            specs.append((socket.AF_INET, host, int(port), None))
    return specs


def unit_sockets(specs):
    """Listening sockets for specs, each port of the unit moved to a free
    one (the same for all its sockets): (sockets in order, {unit port:
    test port})."""
    for _ in range(50):
        ports, socks = {}, []
        try:
            for family, host, uport, v6only in specs:
                socks.append(socket.socket(family))
                if v6only is not None:
                    socks[-1].setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, v6only)
                socks[-1].bind((host, ports.get(uport, 0)))
                socks[-1].listen(16)
                ports.setdefault(uport, socks[-1].getsockname()[1])
            return socks, ports
        except OSError:         # the port is taken in the other family: anew
            for s_ in socks:
                s_.close()
    raise RuntimeError("no free ports for %r" % specs)


def banner(host, port):
    try:
        with socket.create_connection((host, port), timeout=scaled(10)) as c:
            c.settimeout(scaled(10))
            return c.recv(100).startswith(b"220 ")
    except OSError as e:
        diag("%s port %d: %s" % (host, port, e))
        return False


SOCKET_UNIT = os.path.join(REPO, "contrib/systemd/kasi.socket")
specs = unit_specs(SOCKET_UNIT)
diag("kasi.socket passes: %s" % ", ".join("%s:%d%s" % (h, p, " v6only" if o else "")
                                          for _, h, p, o in specs))
for order in (["0.0.0.0:%d", "[::]:%d"], ["[::]:%d", "0.0.0.0:%d"]):
    socks, ports = unit_sockets(specs)
    port = ports.get(25, 0)
    listen = [a % port for a in order]
    name = "listen: [%s]" % ", ".join(listen)
    with Kasi({"listen": listen}, start=False) as k:
        ok(port and activated_many(k, socks),
           "%s with kasi.socket's sockets: starts" % name, k.log_tail())
        log = k.log()
        like(log, r"listener 0\.0\.0\.0:%d passed by the service manager" % port,
             "  0.0.0.0:%d: a socket passed" % port)
        like(log, r"listener :::%d passed by the service manager" % port,
             "  [::]:%d: a socket passed" % port)
        unlike(log, r"Address already in use|matches no listen",
               "  nothing bound, no socket left over")
        ok(banner("127.0.0.1", port), "  an IPv4 client gets the banner")
        ok(banner("::1", port), "  an IPv6 client gets the banner")
        k.stop()
    for s_ in socks:
        s_.close()

# the old kasi.socket ("ListenStream=25", BindIPv6Only=both): one dual-stack
# socket cannot be both entries
socks, port = socket_unit_pair(dual=True)
with Kasi({"listen": ["0.0.0.0:%d" % port, "[::]:%d" % port]}, start=False) as k:
    activated_many(k, socks, ready=r"cannot start")
    is_(k.wait_exit(10), 1, "a dual-stack [::] socket for 0.0.0.0 and [::]: exit 1")
    like(k.log(), r"listen 0\.0\.0\.0:%d: Address already in use \(.*dual-stack.*"
         r"BindIPv6Only=ipv6-only" % port, "  the error says how to pass the two families")
    k.check_sanitizers()
    k._finish()
socks[0].close()

# an IPv6-only [::]:P socket does not serve a listen: 0.0.0.0:P
socks, port = socket_unit_pair()
socks[0].close()
with Kasi({"listen": ["0.0.0.0:%d" % port]}, start=False) as k:
    ok(activated_many(k, socks[1:]), "an IPv6-only socket and listen: 0.0.0.0:%d" % port,
       k.log_tail())
    unlike(k.log(), r"listener \S+ passed by the service manager",
           "  the socket is not used for it")
    like(k.log(), r"matches no listen: address, closing it", "  and is closed")
    ok(banner("127.0.0.1", port), "  kasi bound 0.0.0.0 itself: IPv4 served")
    k.stop()
socks[1].close()
done()
