#!/usr/bin/env python3
"""soak.py — kasi under hostile load: many concurrent clients of several
kinds for a fixed time, then the evidence that nothing leaked.

    contrib/bench/soak.py [--connections 10000] [--duration 60] ...
    make soak                      # the same, writes the Soak section of
                                   # bench/RESULTS.md

Starts its own kasi (KASI_BIN or build/kasi) in a temporary directory,
listening on 127.0.0.1 with STARTTLS (a throw-away self-signed
certificate), queue/spool, short timeouts, and connection limits above the
load. Then it keeps --connections client connections open at once for
--duration seconds, from the source addresses 127.0.0.2 .. 127.0.0.(1+N)
(--sources), each slot reconnecting when its session ends, in this mix
(--mix, percent):

    normal       full transactions (EHLO, MAIL, RCPT, DATA, QUIT), pausing
                 a little between them
    slow         the same, every byte trickled (within the timeouts)
    stuck        silent: after connect, mid-line, mid-DATA, after
                 STARTTLS's 220, or after a partial TLS ClientHello; only
                 the server's timeouts end these
    flood        pipelines NOOP/HELP without ever reading the replies
    abort        resets the connection (RST) in the middle of DATA

At the end: the server's RSS (worker and supervisor) at start, peak and
end; the worker's open descriptors (/proc/PID/fd) before and after; how
many stuck sessions the server closed within its timeout and how many it
still held; whether a new client gets a banner during the load and after
it (connection slots free); whether every message that got 250 is in the
spool exactly once. Each check prints PASS or FAIL; the exit status is 1
when any failed (the figures are the point: see bench/RESULTS.md).

Bounded: loopback only, every wait has a timeout, the whole run ends
after duration + 4 timeouts + 60 s, and the server is killed if its RSS
passes --rss-cap-mb. Only the processes started here are stopped.
"""
import argparse
import asyncio
import os
import random
import re
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import benchlib as bl   # noqa: E402  (same directory: /proc helpers, start/stop)

IP_BIND_ADDRESS_NO_PORT = 24    # linux/in.h: pick the port at connect()
KINDS = ("normal", "slow", "stuck", "flood", "abort")
STUCK_WAYS = ("connect", "midline", "data", "starttls", "tls_hello")
DEFAULT_MIX = "normal=25,slow=15,stuck=40,flood=0.5,abort=19.5"


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--connections", type=int, default=10000)
    ap.add_argument("--duration", type=float, default=60)
    ap.add_argument("--sources", type=int, default=8,
                    help="client source addresses 127.0.0.2 and up")
    ap.add_argument("--mix", default=DEFAULT_MIX)
    ap.add_argument("--timeout", type=float, default=10,
                    help="kasi's command and data_block timeouts (s)")
    ap.add_argument("--think", type=float, default=0.5,
                    help="longest pause of a normal client between sessions (s)")
    ap.add_argument("--flood-bytes", type=int, default=1 << 20,
                    help="commands one flooding client sends per connection")
    ap.add_argument("--flood-hold", type=float, default=None,
                    help="seconds a flooding client holds on without reading "
                    "(default: --timeout + 15: past kasi's command timeout "
                    "and the 10 s it then allows for flushing its reply)")
    ap.add_argument("--ramp", type=float, default=1000,
                    help="new connections per second while ramping up")
    ap.add_argument("--rss-cap-mb", type=int, default=2048,
                    help="kill the server past this RSS (protects the machine)")
    ap.add_argument("--kasi", default=os.environ.get("KASI_BIN")
                    or os.path.join(REPO, "build", "kasi"))
    ap.add_argument("--results", default="",
                    help="write the Soak section of this Markdown file")
    ap.add_argument("--log-level", default="warn", help="kasi's log level")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    a = ap.parse_args()
    a.mix = parse_mix(a.mix)
    if a.flood_hold is None:
        a.flood_hold = a.timeout + 15
    return a


def parse_mix(text):
    mix = {}
    for part in text.split(","):
        k, _, v = part.partition("=")
        if k.strip() not in KINDS:
            raise SystemExit("--mix: unknown kind %r (known: %s)" % (k, ", ".join(KINDS)))
        mix[k.strip()] = float(v)
    total = sum(mix.values())
    if total <= 0:
        raise SystemExit("--mix: nothing to run")
    return {k: v / total for k, v in mix.items()}


# ------------------------------------------------------------- server ----

def make_cert(work):
    key, cert = os.path.join(work, "config", "soak.key"), os.path.join(work, "config", "soak.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                    "-subj", "/CN=soak.kasi.test", "-keyout", key, "-out", cert],
                   check=True, capture_output=True, timeout=60)


def write_config(work, port, a):
    conf = os.path.join(work, "config")
    os.makedirs(conf)
    os.makedirs(os.path.join(work, "spool"))
    make_cert(work)
    limit = a.connections + 2000
    per_ip = a.connections // a.sources + 1000
    with open(os.path.join(conf, "smtp.yaml"), "w") as f:
        f.write(f"""hostname: soak.kasi.test
workers: 1
{"user: root" if os.getuid() == 0 else ""}
listen:
  - address: 127.0.0.1:{port}
    tls: starttls
limits:
  max_connections: {limit}
  max_connections_per_ip: {per_ip}
  max_errors: 1000
timeouts:
  command: {a.timeout:g}
  data_block: {a.timeout:g}
  shutdown: 5
spool_dir: {os.path.join(work, "spool")}
log:
  level: {a.log_level}
tls:
  certificates:
    - cert: soak.pem
      key: soak.key
""")
    with open(os.path.join(conf, "plugins"), "w") as f:
        f.write("rcpt_to_host_list\nqueue/spool\n")
    with open(os.path.join(conf, "rcpt_to_host_list.yaml"), "w") as f:
        f.write("domains:\n  - soak.kasi.test\n")
    return conf


def start_kasi(a, work):
    port = bl.free_port()
    conf = write_config(work, port, a)
    log = os.path.join(work, "kasi.log")
    proc = bl.start([a.kasi, "-c", conf], log, cwd=work)
    if not bl.wait_port(port, proc, 30):
        raise SystemExit("kasi did not start; log:\n" + tail(log))
    return proc, port, log


def tail(path, n=30):
    try:
        with open(path, "rb") as f:
            return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-n:])
    except OSError:
        return ""


def worker_of(sup):
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        w = bl.worker_pid(sup)
        if w != sup:
            return w
        time.sleep(0.1)
    return sup


def fd_count(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


TCP_STATES = {1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1",
              5: "FIN_WAIT2", 6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT",
              9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING"}


def socket_inodes(pid):
    """The inodes of the sockets pid holds open, or None when it is gone."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    except OSError:
        return None
    return inodes


def tcp_states(pid):
    """TCP state -> count for the sockets pid holds open."""
    inodes = socket_inodes(pid)
    if inodes is None:
        return {}
    out = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fl = line.split()
                    if len(fl) > 9 and fl[9] in inodes:
                        name = TCP_STATES.get(int(fl[3], 16), fl[3])
                        out[name] = out.get(name, 0) + 1
        except OSError:
            pass
    return out


def fd_kinds(pid):
    """What pid's descriptors are: socket, pipe, anon_inode:..., or file
    (a deleted file shows as "deleted file")."""
    out = {}
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return out
    for fd in fds:
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith(("socket:", "pipe:")):
            kind = link.split(":")[0]
        elif link.startswith("anon_inode:"):
            kind = link
        elif link.endswith(" (deleted)"):
            kind = "deleted file"
        else:
            kind = "file"
        out[kind] = out.get(kind, 0) + 1
    return out


TCP_CLOSE = 7                   # linux/tcp_states.h


def proc_addr(addr):
    """(ip, port) as /proc/net/tcp writes it: 0100007F:0019."""
    ip = struct.unpack("=I", socket.inet_aton(addr[0]))[0]
    return "%08X:%04X" % (ip, addr[1])


def server_holds(pid, sock):
    """Does pid still hold the server's end of the client connection sock?
    (Asks the kernel, reads nothing from the socket.) A client socket in
    CLOSE was reset by the server: its end is gone, and the same address
    and port may already belong to a new connection from that client, so
    only a socket that is still connected is looked up, by both addresses."""
    state = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]
    if state == TCP_CLOSE:
        return False
    inodes = socket_inodes(pid)
    if inodes is None:
        return False
    local, remote = proc_addr(sock.getpeername()), proc_addr(sock.getsockname())
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fl = line.split()
            if len(fl) > 9 and fl[1] == local and fl[2] == remote and fl[9] in inodes:
                return True
    return False


def listen_drops():
    """The kernel's TcpExt ListenOverflows + ListenDrops counters."""
    try:
        with open("/proc/net/netstat") as f:
            rows = [ln.split() for ln in f if ln.startswith("TcpExt:")]
        d = dict(zip(rows[0][1:], rows[1][1:]))
        return int(d.get("ListenOverflows", 0)), int(d.get("ListenDrops", 0))
    except (OSError, IndexError, ValueError):
        return 0, 0


def raise_nofile(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# ------------------------------------------------------------ clients ----

class Stats:
    """Counters per client kind, and what the spool check needs."""

    def __init__(self):
        self.c = {}
        self.accepted = []          # X-Soak-Id of every message that got 250
        self.stuck_closed = {w: [] for w in STUCK_WAYS}   # seconds to close
        self.open_now = 0
        self.open_peak = 0

    def inc(self, kind, what, n=1):
        key = (kind, what)
        self.c[key] = self.c.get(key, 0) + n

    def get(self, kind, what):
        return self.c.get((kind, what), 0)


class Closed(Exception):
    """The server ended the session (EOF or reset)."""


async def connect(port, src, timeout):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        s.bind((src, 0))
        s.setblocking(False)
        loop = asyncio.get_running_loop()
        await asyncio.wait_for(loop.sock_connect(s, ("127.0.0.1", port)), timeout)
        return await asyncio.open_connection(sock=s, limit=1 << 16)
    except BaseException:
        s.close()
        raise


async def reply(r, timeout):
    """One whole SMTP reply: (code, text)."""
    lines = []
    while True:
        ln = await asyncio.wait_for(r.readline(), timeout)
        if not ln:
            raise Closed()
        lines.append(ln)
        if len(ln) < 4 or ln[3:4] != b"-":
            break
    first = lines[-1]
    code = int(first[:3]) if first[:3].isdigit() else 0
    return code, b"".join(lines)


async def cmd(r, w, line, timeout, want=None):
    w.write(line)
    await w.drain()
    code, text = await reply(r, timeout)
    if want and code // 100 != want:
        raise Closed() if code == 421 else ValueError("%d to %r" % (code, line[:20]))
    return code, text


def message(sid, size):
    body = b"".join(b"line %d of soak message %s\r\n" % (i, sid.encode())
                    for i in range(max(1, size // 40)))
    return (b"From: <soak@client.soak.test>\r\nTo: <r@soak.kasi.test>\r\n"
            b"Subject: soak\r\nX-Soak-Id: " + sid.encode() + b"\r\n\r\n" + body)


class Run:
    """One soak: the slots, the counters, the deadline."""

    def __init__(self, a, port, stats, worker):
        self.a, self.port, self.st, self.worker = a, port, stats, worker
        self.deadline = 0.0
        self.stop_new = False       # past the deadline: no new sessions
        self.seq = 0
        self.T = a.timeout

    def sid(self, slot):
        self.seq += 1
        return "%d.%d" % (slot, self.seq)

    async def envelope(self, r, w):
        await cmd(r, w, b"EHLO client.soak.test\r\n", self.T * 3, 2)
        await cmd(r, w, b"MAIL FROM:<soak@client.soak.test>\r\n", self.T * 3, 2)
        await cmd(r, w, b"RCPT TO:<r@soak.kasi.test>\r\n", self.T * 3, 2)
        await cmd(r, w, b"DATA\r\n", self.T * 3, 3)

    async def normal(self, slot, r, w):
        await reply(r, self.T * 3)
        await self.envelope(r, w)
        sid = self.sid(slot)
        w.write(message(sid, random.randint(200, 8000)) + b".\r\n")
        await w.drain()
        code, _ = await reply(r, self.T * 6)
        if code == 250:
            self.st.accepted.append(sid)
        self.st.inc("normal", "250" if code == 250 else "data %d" % code)
        await cmd(r, w, b"QUIT\r\n", self.T * 3)
        await asyncio.sleep(random.uniform(0, self.a.think))

    async def trickle(self, w, data, per_line):
        """Write data a few bytes at a time, each line over per_line s."""
        for line in data.split(b"\n"):
            if not line:
                continue
            line += b"\n"
            pieces = [line[i:i + 4] for i in range(0, len(line), 4)]
            for p in pieces:
                w.write(p)
                await w.drain()
                await asyncio.sleep(per_line / len(pieces))

    async def slow(self, slot, r, w):
        await reply(r, self.T * 3)
        budget = self.T / 3        # a line well inside the command timeout
        for c in (b"EHLO slow.soak.test\r\n", b"MAIL FROM:<slow@client.soak.test>\r\n",
                  b"RCPT TO:<r@soak.kasi.test>\r\n", b"DATA\r\n"):
            await self.trickle(w, c, budget)
            code, _ = await reply(r, self.T * 3)
            if code // 100 not in (2, 3):
                raise ValueError("slow: %d" % code)
        sid = self.sid(slot)
        await self.trickle(w, message(sid, 120) + b".\r\n", budget)
        code, _ = await reply(r, self.T * 6)
        if code == 250:
            self.st.accepted.append(sid)
        self.st.inc("slow", "250" if code == 250 else "data %d" % code)
        await cmd(r, w, b"QUIT\r\n", self.T * 3)

    async def stuck(self, slot, r, w):
        way = STUCK_WAYS[slot % len(STUCK_WAYS)]
        if way != "connect":
            await reply(r, self.T * 3)
        if way == "midline":
            w.write(b"EHLO stuck.soak.te")
        elif way == "data":
            await self.envelope(r, w)
            w.write(b"Subject: stuck\r\n\r\nhalf a li")
        elif way in ("starttls", "tls_hello"):
            await cmd(r, w, b"EHLO stuck.soak.test\r\n", self.T * 3, 2)
            await cmd(r, w, b"STARTTLS\r\n", self.T * 3, 2)
            if way == "tls_hello":
                w.write(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        await w.drain()
        t0 = time.monotonic()
        seen = way != "connect"     # did the server ever answer?
        # silent from here; only the server may end it (or the end of the run)
        while True:
            left = self.deadline + 4 * self.T + 5 - time.monotonic()
            if left <= 0:
                # "connect" without a banner: the kernel's accept queue
                # dropped it; kasi never saw this connection
                self.st.inc("stuck", "held " + way + ("" if seen else " (no banner)"))
                return "held"
            try:
                data = await asyncio.wait_for(r.read(4096), min(left, 1.0))
            except asyncio.TimeoutError:
                continue
            if not data:
                break
            seen = True
        self.st.stuck_closed[way].append(time.monotonic() - t0)
        self.st.inc("stuck", "closed " + way)

    async def flood(self, slot, r, w):
        await reply(r, self.T * 3)
        await cmd(r, w, b"EHLO flood.soak.test\r\n", self.T * 3, 2)
        chunk = b"NOOP\r\nHELP\r\n" * 100
        sent = 0
        while sent < self.a.flood_bytes:
            w.write(chunk)
            sent += len(chunk)
            try:
                await asyncio.wait_for(w.drain(), self.T)
            except asyncio.TimeoutError:
                self.st.inc("flood", "blocked")   # the server stopped reading
                break
        self.st.inc("flood", "bytes", sent)
        # still not reading, past the server's timeouts; then see whether
        # the server still holds its end (its FIN would wait behind the
        # replies we never read, so ask /proc, not the socket)
        await asyncio.sleep(self.a.flood_hold)
        self.st.inc("flood", "held on")
        held = await asyncio.get_running_loop().run_in_executor(
            None, server_holds, self.worker, w.get_extra_info("socket"))
        self.st.inc("flood", "still open" if held else "closed by server")

    async def abort(self, slot, r, w):
        await reply(r, self.T * 3)
        await self.envelope(r, w)
        w.write(message(self.sid(slot), 20000)[:10000])
        await w.drain()
        sock = w.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        self.st.inc("abort", "reset")

    async def session(self, kind, slot, src):
        try:
            r, w = await connect(self.port, src, self.T * 3)
        except (OSError, asyncio.TimeoutError) as e:
            self.st.inc(kind, "connect failed: %s" % type(e).__name__)
            await asyncio.sleep(1)
            return
        self.st.open_now += 1
        self.st.open_peak = max(self.st.open_peak, self.st.open_now)
        self.st.inc(kind, "sessions")
        try:
            await getattr(self, kind)(slot, r, w)
        except Closed:
            self.st.inc(kind, "closed by server")
        except (OSError, asyncio.TimeoutError, ValueError, asyncio.IncompleteReadError) as e:
            self.st.inc(kind, "error %s" % type(e).__name__)
        finally:
            self.st.open_now -= 1
            if kind in ("abort", "flood"):
                w.transport.abort()     # RST; a flood's unsent bytes go too
            else:
                w.close()

    async def slot(self, kind, slot, src):
        while not self.stop_new and time.monotonic() < self.deadline:
            await self.session(kind, slot, src)


def plan(a):
    """(kind, source address) for every slot."""
    kinds = []
    items = list(a.mix.items())
    for i, (k, share) in enumerate(items):
        n = a.connections - len(kinds) if i == len(items) - 1 else round(share * a.connections)
        kinds += [k] * max(0, n)
    random.Random(1).shuffle(kinds)
    srcs = ["127.0.0.%d" % (2 + i % a.sources) for i in range(len(kinds))]
    return list(zip(kinds, srcs))


# ---------------------------------------------------------- measuring ----

async def probe(port, timeout=10):
    """A new client from 127.0.0.1: seconds to its 220 banner, or None."""
    t0 = time.monotonic()
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    except (OSError, asyncio.TimeoutError):
        return None, "cannot connect"
    try:
        code, text = await reply(r, timeout)
        w.write(b"QUIT\r\n")
        return (time.monotonic() - t0 if code == 220 else None), text[:60].decode("ascii", "replace").strip()
    except (OSError, asyncio.TimeoutError, Closed, ValueError):
        return None, "no banner"
    finally:
        w.close()


class Monitor:
    """Samples RSS and descriptors of the server while the load runs."""

    def __init__(self, sup, worker, cap_mb):
        self.sup, self.worker, self.cap = sup, worker, cap_mb * 1024
        self.peak_worker = self.peak_sup = self.peak_fd = 0
        self.probes = []
        self.killed = None

    def sample(self):
        wr = bl.status_kib(self.worker, "VmRSS")
        sr = bl.status_kib(self.sup, "VmRSS")
        self.peak_worker = max(self.peak_worker, wr)
        self.peak_sup = max(self.peak_sup, sr)
        self.peak_fd = max(self.peak_fd, fd_count(self.worker))
        if wr + sr > self.cap and not self.killed:
            self.killed = "RSS %d MiB over the cap" % ((wr + sr) // 1024)
            os.kill(self.worker, signal.SIGKILL)
        return wr

    async def run(self, port, until, st):
        last_probe = 0.0
        while time.monotonic() < until and not self.killed:
            self.sample()
            if time.monotonic() - last_probe > 5:
                last_probe = time.monotonic()
                secs, what = await probe(port)
                self.probes.append((st.open_now, secs, what))
            await asyncio.sleep(0.5)


async def settle(worker, base_fd, seconds):
    """Wait (bounded) for the worker's descriptors to come back down."""
    deadline = time.monotonic() + seconds
    n = fd_count(worker)
    while n > base_fd and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        n = fd_count(worker)
    return n


def spool_ids(spool):
    """X-Soak-Id of every message file in the spool -> count."""
    ids = {}
    for name in os.listdir(spool):
        if not name.endswith(".eml"):
            continue
        with open(os.path.join(spool, name), "rb") as f:
            m = re.search(rb"^X-Soak-Id: (\S+)\r?$", f.read(8192), re.M)
        if m:
            k = m.group(1).decode()
            ids[k] = ids.get(k, 0) + 1
    return ids


# ------------------------------------------------------------ the run ----

async def soak(a, port, sup, worker):
    st = Stats()
    run = Run(a, port, st, worker)
    mon = Monitor(sup, worker, a.rss_cap_mb)
    base = {"worker_rss": bl.status_kib(worker, "VmRSS"),
            "sup_rss": bl.status_kib(sup, "VmRSS"), "fd": fd_count(worker),
            "drops": listen_drops(), "load": os.getloadavg()[0]}
    t0 = time.monotonic()
    run.deadline = t0 + a.duration
    hard_end = run.deadline + 4 * a.timeout + 60
    mtask = asyncio.ensure_future(mon.run(port, run.deadline, st))
    tasks = []
    for i, (kind, src) in enumerate(plan(a)):
        tasks.append(asyncio.ensure_future(run.slot(kind, i, src)))
        if i % 100 == 99:
            await asyncio.sleep(100 / a.ramp)
    await mtask
    peak_during = st.open_now
    run.stop_new = True
    # sessions still running end by themselves; stuck ones wait for the
    # server's timeout (up to 4 timeouts past the deadline)
    _, pending = await asyncio.wait(tasks, timeout=max(1, hard_end - time.monotonic()))
    for t in pending:
        t.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    mon.sample()
    after_fd = await settle(worker, base["fd"], 2 * a.timeout + 10)
    states = tcp_states(worker)
    kinds = fd_kinds(worker)
    secs, what = await probe(port)
    end = {"worker_rss": bl.status_kib(worker, "VmRSS"),
           "states": states, "kinds": kinds, "drops": listen_drops(),
           "load": os.getloadavg()[0],
           "worker_hwm": bl.status_kib(worker, "VmHWM"),
           "sup_rss": bl.status_kib(sup, "VmRSS"), "fd": after_fd,
           "probe": (secs, what), "elapsed": time.monotonic() - t0,
           "open_at_deadline": peak_during}
    return st, mon, base, end


def fmt_secs(xs):
    if not xs:
        return "-"
    xs = sorted(xs)
    return "%.1f / %.1f / %.1f" % (xs[0], xs[len(xs) // 2], xs[-1])


def checks(a, st, mon, base, end, spool, exit_code):
    got = spool_ids(spool)
    accepted = st.accepted
    missing = [i for i in accepted if got.get(i, 0) == 0]
    dup = [i for i in accepted if got.get(i, 0) > 1]
    extra = [i for i in got if i not in set(accepted)]
    held = sum(st.get("stuck", "held " + w) for w in STUCK_WAYS)
    unseen = st.get("stuck", "held connect (no banner)")
    flood_open = st.get("flood", "still open")
    bad_probes = {}
    for _, secs, what in mon.probes:
        if secs is None:
            bad_probes[what] = bad_probes.get(what, 0) + 1
    probes_ok = [p for p in mon.probes if p[1] is not None]
    rows = [
        ("server alive for the whole run", not mon.killed, mon.killed or "yes"),
        ("every stuck session closed by the server", held == 0,
         "%d still held %.0f s after the deadline (and %d never accepted: no banner)"
         % (held, 4 * a.timeout + 5, unseen)),
        ("every client that stops reading closed by the server", flood_open == 0,
         "%d of %d flooding sessions still held by kasi %.0f s after they stopped reading "
         "(%d held on to the end of their flood; kasi closed the others while they sent)"
         % (flood_open, st.get("flood", "sessions"), a.flood_hold,
            st.get("flood", "held on"))),
        ("worker descriptors back to the start", end["fd"] <= base["fd"] + 2,
         "%d before, %d after (peak %d)" % (base["fd"], end["fd"], mon.peak_fd)),
        ("worker RSS back near the start after the load",
         end["worker_rss"] <= base["worker_rss"] + 32 * 1024,
         "%.1f MiB at the start, %.1f at the peak, %.1f after"
         % (base["worker_rss"] / 1024, mon.peak_worker / 1024, end["worker_rss"] / 1024)),
        ("a new client gets a banner during the load",
         bool(mon.probes) and len(probes_ok) == len(mon.probes),
         "%d of %d probes answered within 10 s%s" % (
             len(probes_ok), len(mon.probes),
             "".join("; %s %d" % kv for kv in sorted(bad_probes.items())))),
        ("a new client gets a banner after the load", end["probe"][0] is not None,
         end["probe"][1]),
        ("every 250'd message in the spool exactly once", not missing and not dup,
         "%d accepted, %d missing, %d twice" % (len(accepted), len(missing), len(dup))),
        ("kasi exits 0 on SIGTERM", exit_code == 0, "exit %r" % (exit_code,)),
    ]
    return rows, {"missing": len(missing), "dup": len(dup), "extra": len(extra),
                  "held": held, "spool": sum(got.values())}


def report(a, st, mon, base, end, rows, sp):
    mib = lambda k: "%.1f" % (k / 1024)   # noqa: E731
    out = []
    out.append("soak: %d connections for %g s from %d source addresses, timeouts %g s"
               % (a.connections, a.duration, a.sources, a.timeout))
    out.append("machine load average (1 min) at the start %.1f, at the end %.1f"
               % (base["load"], end["load"]))
    out.append("mix: " + ", ".join("%s %g%%" % (k, round(v * 100, 1)) for k, v in a.mix.items()))
    out.append("client connections open: peak %d, at the deadline %d"
               % (st.open_peak, end["open_at_deadline"]))
    out.append("")
    out.append("  %-26s %10s %10s %10s" % ("server", "start MiB", "peak MiB", "end MiB"))
    out.append("  %-26s %10s %10s %10s" % ("worker RSS", mib(base["worker_rss"]),
                                          mib(mon.peak_worker), mib(end["worker_rss"])))
    out.append("  %-26s %10s %10s %10s" % ("supervisor RSS", mib(base["sup_rss"]),
                                          mib(mon.peak_sup), mib(end["sup_rss"])))
    out.append("  worker VmHWM %s MiB; worker fds %d before, peak %d, %d after"
               % (mib(end["worker_hwm"]), base["fd"], mon.peak_fd, end["fd"]))
    out.append("  worker's descriptors after the load: %s" % (
        ", ".join("%s %d" % kv for kv in sorted(end["kinds"].items())) or "-"))
    out.append("  worker's TCP sockets after the load: %s" % (
        ", ".join("%s %d" % kv for kv in sorted(end["states"].items())) or "-"))
    out.append("  kernel listen queue overflows during the run: %d (drops %d)"
               % (end["drops"][0] - base["drops"][0], end["drops"][1] - base["drops"][1]))
    out.append("  kasi stop after SIGTERM: %s" % end["stop"])
    out.append("")
    out.append("  %-10s %s" % ("client", "what happened (sessions; outcomes)"))
    for k in KINDS:
        if k not in a.mix:
            continue
        items = sorted((w, n) for (kk, w), n in st.c.items() if kk == k and w != "sessions")
        out.append("  %-10s %d sessions; %s" % (k, st.get(k, "sessions"),
                                                ", ".join("%s %d" % x for x in items) or "-"))
    out.append("")
    out.append("  stuck sessions: closed by the server (seconds min / median / max), still held")
    for w in STUCK_WAYS:
        out.append("  %-12s closed %5d  (%s)  held %d" % (
            w, len(st.stuck_closed[w]), fmt_secs(st.stuck_closed[w]),
            st.get("stuck", "held " + w)) + (
            "  never accepted %d" % st.get("stuck", "held connect (no banner)")
            if w == "connect" else ""))
    lat = [p[1] for p in mon.probes if p[1] is not None]
    out.append("")
    out.append("  new-client banner during the load: %d probes, %d answered, seconds %s"
               % (len(mon.probes), len(lat), fmt_secs(lat)))
    out.append("  spool: %d messages with a soak id, %d accepted (250), %d missing, "
               "%d twice, %d without a 250 seen" % (sp["spool"], len(st.accepted),
                                                    sp["missing"], sp["dup"], sp["extra"]))
    out.append("")
    for name, good, detail in rows:
        out.append("  %s  %s: %s" % ("PASS" if good else "FAIL", name, detail))
    return "\n".join(out)


def log_summary(path, top=12):
    """The most frequent kinds of kasi log line (numbers and ids masked)."""
    kinds = {}
    try:
        with open(path, "rb") as f:
            for raw in f:
                ln = raw.decode("utf-8", "replace").rstrip("\n")
                ln = re.sub(r"^\S+ kasi\[\d+\] ", "", ln)
                ln = re.sub(r"\[[0-9A-F]{8,}\]", "[id]", ln)
                ln = re.sub(r"\d+", "N", ln)[:110]
                kinds[ln] = kinds.get(ln, 0) + 1
    except OSError:
        return ""
    rows = sorted(kinds.items(), key=lambda kv: -kv[1])[:top]
    return "\n".join("  %7d  %s" % (n, k) for k, n in rows)


def open_sessions(path, top=8):
    """Sessions kasi's log shows connected but never disconnected, counted
    by their last log line (numbers masked): where they got stuck."""
    last, ended = {}, set()
    try:
        with open(path, "rb") as f:
            for raw in f:
                m = re.search(rb"\] \w+: \[([0-9A-F]{8,})\] (.*)", raw)
                if not m:
                    continue
                sid, msg = m.group(1), m.group(2).decode("utf-8", "replace")
                if msg.startswith("disconnect "):
                    ended.add(sid)
                last[sid] = msg
    except OSError:
        return 0, ""
    kinds = {}
    for sid, msg in last.items():
        if sid not in ended:
            k = re.sub(r"\d+", "N", msg)[:100]
            kinds[k] = kinds.get(k, 0) + 1
    rows = sorted(kinds.items(), key=lambda kv: -kv[1])[:top]
    return sum(kinds.values()), "\n".join("  %7d  %s" % (n, k) for k, n in rows)


def write_results(path, text, a):
    """Replace (or add) the "## Soak" section of path."""
    try:
        with open(path) as f:
            old = f.read()
    except FileNotFoundError:
        old = "# kasi benchmark results\n"
    m = re.search(r"^## Soak\n.*?(?=^## |\Z)", old, re.M | re.S)
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    sec = ("## Soak\n\n"
           "`make soak` (contrib/bench/soak.py), %s, %d cores, Linux %s. All on loopback;\n"
           "the load generator (Python asyncio, one process) shares the machine with\n"
           "kasi. What the run found is in the PASS/FAIL lines.\n\n```\n%s\n```\n\n"
           % (when, os.cpu_count(), os.uname().release, text))
    new = old[:m.start()] + sec + old[m.end():] if m else old.rstrip("\n") + "\n\n" + sec
    with open(path, "w") as f:
        f.write(new)


def main():
    a = parse_args()
    need = a.connections + 500
    have = raise_nofile(need)
    if have < need:
        raise SystemExit("open file limit %d is below %d (raise the hard limit)" % (have, need))
    work = tempfile.mkdtemp(prefix="kasi-soak-")
    try:
        sup_proc, port, log = start_kasi(a, work)
        worker = worker_of(sup_proc.pid)
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        st, mon, base, end = loop.run_until_complete(soak(a, port, sup_proc.pid, worker))
        t_term = time.monotonic()
        sup_proc.terminate()
        try:
            code = sup_proc.wait(timeout=30)
            end["stop"] = "exit %d after %.1f s" % (code, time.monotonic() - t_term)
        except subprocess.TimeoutExpired:
            end["stop"] = ("still running 30 s after SIGTERM (shutdown grace 5 s), "
                           "%d worker fds open; killed" % fd_count(worker))
            os.kill(worker, signal.SIGKILL)
            sup_proc.kill()
            code = None
        rows, sp = checks(a, st, mon, base, end, os.path.join(work, "spool"), code)
        text = report(a, st, mon, base, end, rows, sp)
        logs = log_summary(log)
        if logs:
            text += "\n\n  kasi's log (level %s), most frequent lines:\n%s" % (a.log_level, logs)
        nopen, where = open_sessions(log)
        if nopen:
            text += ("\n\n  sessions the log shows connected but never disconnected "
                     "at the end: %d; their last line:\n%s" % (nopen, where))
        print(text)
        bad = re.findall(r"^.*(?:AddressSanitizer|LeakSanitizer|runtime error).*$",
                         tail(log, 2000), re.M)
        if bad:
            print("sanitizer report in the log:\n" + "\n".join(bad[:5]))
        if a.results:
            write_results(a.results, text, a)
            print("# wrote the Soak section of %s" % a.results)
        return 0 if all(good for _, good, _ in rows) and not bad else 1
    finally:
        bl.stop_all()
        if a.keep:
            print("# kept %s" % work)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
