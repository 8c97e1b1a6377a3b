"""tls_bench.py — the TLS rows of the benchmark: full handshakes per second
(openssl s_time against kasi's implicit-TLS listener and against
`openssl s_server` with the same certificate), and messages per second
with STARTTLS next to the same load without it.

Handshakes: `openssl s_time -new` makes one full handshake per connection,
for a fixed time; the rate is connections per wall second, and per CPU
second of the server (what one core of the server sustains, as client and
server share the machine's cores).

Messages: smtp-source cannot speak TLS, so a small load generator here
runs SESSIONS sessions in a few processes, one connection per message
(EHLO, STARTTLS, EHLO, MAIL, RCPT, DATA of SIZE bytes, QUIT), bounded in
count and time; the same generator without STARTTLS gives the plain rate
to compare with. Loopback only.
"""
import multiprocessing
import os
import re
import socket
import ssl
import subprocess
import threading
import time

import benchlib as bl


def wait_tcp(port, proc, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


def start_s_server(workdir, name, cert, key):
    """`openssl s_server` on a free loopback port (the reference)."""
    port = bl.free_port()
    log = os.path.join(workdir, name + ".log")
    proc = bl.start(["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-cert", cert,
                     "-key", key, "-quiet", "-no_ticket"], log)
    if not wait_tcp(port, proc, 15):
        bl.stop(proc)
        return None, None
    return proc, port


def s_time(port, pid, seconds):
    """(handshakes per second, per server CPU second) or (None, why)."""
    cpu0 = bl.cpu_seconds(pid)
    try:
        r = subprocess.run(["openssl", "s_time", "-connect", f"127.0.0.1:{port}", "-new",
                            "-time", str(seconds)], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=seconds + 30)
    except subprocess.TimeoutExpired:
        return None, "s_time timed out"
    cpu = bl.cpu_seconds(pid) - cpu0
    text = r.stdout.decode("utf-8", "replace")
    m = re.search(r"(\d+) connections in ([\d.]+) real seconds", text)
    if not m:
        return None, "s_time: " + text.strip()[-120:]
    n, wall = int(m.group(1)), float(m.group(2))
    return (n / wall, n / cpu if cpu > 0 else None), None


# ---------------------------------------------------------------- load ----

def _reply(f):
    while True:
        line = f.readline()
        if not line:
            raise OSError("connection closed")
        if line[3:4] != b"-":
            return line


def _one_message(port, ctx, body):
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        f = s.makefile("rb")
        _reply(f)
        s.sendall(b"EHLO load.bench.test\r\n")
        _reply(f)
        if ctx:
            s.sendall(b"STARTTLS\r\n")
            if not _reply(f).startswith(b"220"):
                raise OSError("STARTTLS refused")
            s = ctx.wrap_socket(s, server_hostname="mx.bench.test")
            f = s.makefile("rb")
            s.sendall(b"EHLO load.bench.test\r\n")
            _reply(f)
        s.sendall(b"MAIL FROM:<sender@client.bench.test>\r\nRCPT TO:<rcpt@example.test>\r\n"
                  b"DATA\r\n")
        for _ in range(3):
            _reply(f)
        s.sendall(body + b".\r\n")
        ok = _reply(f).startswith(b"250")
        s.sendall(b"QUIT\r\n")
        return ok
    finally:
        s.close()


def _worker(port, tls, threads, count, deadline, size, out):
    ctx = None
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    line = b"x" * 74 + b"\r\n"
    body = (b"Subject: load\r\n\r\n" + line * (size // len(line) + 1))[:size] + b"\r\n"
    lock, done = threading.Lock(), [0, 0]

    def run():
        while time.monotonic() < deadline:
            with lock:
                if done[0] + done[1] >= count:
                    return
                done[0] += 1
            try:
                good = _one_message(port, ctx, body)
            except OSError:
                good = False
            if not good:
                with lock:
                    done[0] -= 1
                    done[1] += 1
    ts = [threading.Thread(target=run) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    out.put(tuple(done))


def load(port, pid, tls, sessions, size, count, timeout):
    """One bounded run: (msg/s, CPU-s of pid per 10k) or (None, why)."""
    procs = min(4, max(1, sessions // 5))
    q = multiprocessing.Queue()
    deadline = time.monotonic() + timeout
    cpu0 = bl.cpu_seconds(pid)
    t0 = time.monotonic()
    ps = [multiprocessing.Process(target=_worker, args=(
        port, tls, sessions // procs, count // procs, deadline, size, q)) for _ in range(procs)]
    for p in ps:
        p.start()
    res = [q.get(timeout=timeout + 30) for _ in ps]
    for p in ps:
        p.join(10)
    wall = time.monotonic() - t0
    sent, failed = sum(r[0] for r in res), sum(r[1] for r in res)
    if failed or sent < (count // procs) * procs:
        return None, f"{failed} failed, {sent} sent"
    return (sent / wall, (bl.cpu_seconds(pid) - cpu0) / sent * 10000), None
