#!/usr/bin/env python3
"""Memory after a burst: N STARTTLS sessions open at once (default 1000:
an idle STARTTLS session is small now, so a few hundred grow the worker
by less than the few MiB it keeps for itself after a burst;
KASI_BURST=5000 for a measurement), then all close. Once the session count
falls to a quarter of its peak the worker gives the freed memory back to
the system: the log says so, and its RSS drops back to within a tenth of
the growth (libevent's record of each descriptor, made at start for all
of them, no longer pins a page of every session's memory: that kept half).
Prints the worker's RSS before, at the peak and after.

Each session's plugin keeps 20 KB of Lua data on its connection. Once the
sessions are gone that is garbage, and a Lua state collects only when it
allocates: an idle worker kept it (and the heap pages it pins) for good.
The release after the burst collects it: the Lua heap (a plugin's
collectgarbage("count"), asked over SMTP) is back near where it started."""
import os
import resource
import socket
import ssl
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kasitest import *  # noqa: E402,F401,F403
from proctest import rss_kib, wait_for, worker_pid  # noqa: E402
from tlstest import client_ctx, make_pki, start, tls_yaml  # noqa: E402

N = int(os.environ.get("KASI_BURST", "1000"))
pki = make_pki(tempfile.mkdtemp(prefix="kasi-pki-"), {"mx": ["mx.kasi.test"]})
CTX = client_ctx(pki["ca"])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, N + 200)), hard))


# hook_ehlo inside TLS: 20 KB that lives as long as the connection;
# XMEM: the Lua heap in KiB, answered by the plugin
PLUGIN = r'''
function hook_ehlo(conn, txn, helo)
  if conn.tls then conn.notes.blob = string.rep("x", 20000) .. conn.id end
end
function hook_unrecognized_command(conn, txn, line)
  if line == "XMEM" then return OK, string.format("%d", collectgarbage("count")) end
end
'''


def lua_kib(port):
    """The Lua heap of the worker serving a new session, in KiB."""
    with Raw(port, ehlo="probe.test") as r:
        code, lines = r.cmd("XMEM")
    return int(lines[0].split()[-1]) if code == 250 else -1


def reply(s):
    buf = b""
    while not any(len(x) > 3 and x[3:4] == b" " for x in buf.split(b"\r\n")[:-1]):
        chunk = s.recv(4096)
        if not chunk:
            raise OSError("closed")
        buf += chunk
    return buf


def session(port):
    """A STARTTLS session, greeted inside TLS, left open."""
    s = socket.create_connection(("127.0.0.1", port), timeout=scaled(10))
    reply(s)
    s.sendall(b"EHLO burst.test\r\n")
    reply(s)
    s.sendall(b"STARTTLS\r\n")
    reply(s)
    t = CTX.wrap_socket(s)
    t.sendall(b"EHLO burst.test\r\n")
    reply(t)
    return t


extra = ("timeouts:\n  command: 120\nlimits:\n  max_connections: %d\n"
         "  max_connections_per_ip: 0\n" % (N + 100))
y = tls_yaml(tempfile.mkdtemp(prefix="kasi-t-spool-"), [{"tls": "starttls"}], [pki["mx"]],
             extra=extra).replace("level: debug", "level: info")
with start(y, 1, files={"config/plugins": "blob\n", "plugins/blob.lua": PLUGIN}) as k:
    wpid = worker_pid(k)
    session(k.port).close()                 # TLS and DNS set up once
    lua0 = lua_kib(k.port)
    rss0 = rss_kib(wpid)
    t0, conns = time.monotonic(), []
    while len(conns) < N and time.monotonic() - t0 < scaled(120):
        conns.append(session(k.port))
    is_(len(conns), N, "%d STARTTLS sessions open at once" % N)
    ok(k.wait_count(r"TLS established", N + 1, 10), "  all established")
    peak = rss_kib(wpid)
    lua_peak = lua_kib(k.port)
    for c in conns:
        c.close()
    ok(k.wait_count(r"disconnect ip=", N + 1, 20), "  all closed")
    released = k.wait_log(r"memory released after a burst of (\d+) sessions \((\d+) open\): "
                          r"RSS (\d+) -> (\d+) KiB(?: \(heap -?\d+ KiB in use of -?\d+\))?",
                          15)
    ok(released, "the worker releases memory after the burst")
    if released and int(released.group(2)) > 0:
        # sessions were still open at that release (a loaded machine closes
        # them slowly): what they held goes at the next one, once the
        # last session is gone
        k.wait_count(r"memory released after a burst", 2, 15)
    # the last release comes soon after the last session is gone; wait
    # for the RSS to fall, bounded
    wait_for(lambda: rss_kib(wpid) - rss0 < (peak - rss0) / 10, 40)
    after = rss_kib(wpid)
    diag("worker RSS: before %d KiB, %d sessions %d KiB, after %d KiB" % (rss0, N, peak, after))
    lua1 = lua_kib(k.port)
    diag("Lua heap: before %d KiB, %d sessions %d KiB, after %d KiB" % (lua0, N, lua_peak, lua1))
    ok(lua_peak - lua0 > N * 20 * 9 // 10, "  the sessions' Lua data is there at the peak")
    ok(lua0 > 0 and lua1 - lua0 < (lua_peak - lua0) / 10,
       "the Lua garbage of the burst is collected (%+d KiB, peak %+d KiB)" %
       (lua1 - lua0, lua_peak - lua0))
    if released:
        diag("trim: %s" % released.group(0))
    if released and N >= 5000:              # a measurement: the next release too
        rx = r"memory released after a burst"
        if k.wait_count(rx, 2, 15):
            diag("second trim: RSS %d KiB; %s" % (rss_kib(wpid), k.log().split(rx)[-1][:80]))
    if os.environ.get("KASI_ASAN"):         # its allocator keeps freed memory
        diag("sanitizer build: RSS not compared")
    else:
        ok(after - rss0 < (peak - rss0) / 10,
           "RSS after the burst is back within a tenth of the growth (%+d KiB, peak %+d KiB)" %
           (after - rss0, peak - rss0))

done()
