"""benchlib.py — process and measurement helpers for the benchmark driver.

Starting servers that die with the driver, waiting for a port, stopping
exactly the processes we started, CPU time and RSS of a process tree read
from /proc, and running one bounded smtp-source load.
"""
import ctypes
import os
import signal
import socket
import ssl
import subprocess
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
SMTP_SOURCE = os.environ.get("SMTP_SOURCE", "/usr/sbin/smtp-source")

_started = []          # every Popen we made, stopped at exit


def _die_with_parent():
    """Child side of Popen: get SIGTERM when the driver goes away."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG
    except OSError:
        pass


def start(argv, log_path, cwd=None, env=None):
    """Start a server in the background, output to log_path."""
    log = open(log_path, "ab")
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                            stderr=subprocess.STDOUT, cwd=cwd, env=env,
                            preexec_fn=_die_with_parent)
    log.close()
    _started.append(proc)
    return proc


def register(proc):
    """A process started some other way (a daemon's handle with poll,
    terminate, kill, wait), stopped at exit like the others."""
    _started.append(proc)


def stop(proc, grace=10):
    """SIGTERM one process we started, SIGKILL it after `grace` seconds."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=grace)


def stop_all():
    for proc in reversed(_started):
        stop(proc, grace=5)
    _started.clear()


def wait_port(port, proc, timeout, host="127.0.0.1", tls=False):
    """Wait until host:port sends an SMTP banner (inside TLS with tls);
    False on timeout/exit."""
    deadline = time.monotonic() + timeout
    ctx = None
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection((host, port), timeout=2) as s0:
                s = ctx.wrap_socket(s0) if ctx else s0
                if s.recv(512).startswith(b"220"):
                    s.sendall(b"QUIT\r\n")
                    return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


def free_port():
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------ /proc ----

def tree(pid):
    """pid and all its live descendants."""
    out, todo = [], [pid]
    while todo and len(out) < 10000:
        p = todo.pop()
        out.append(p)
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo += [int(k) for k in f.read().split()]
        except OSError:
            pass
    return out


def _stat_fields(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def cpu_seconds(pid):
    """utime+stime of pid and its descendants, plus reaped children."""
    ticks = 0
    for p in tree(pid):
        try:
            fl = _stat_fields(p)
        except OSError:
            continue
        ticks += int(fl[11]) + int(fl[12]) + int(fl[13]) + int(fl[14])
    return ticks / CLK_TCK


def status_kib(pid, key):
    """A 'kB' field of /proc/PID/status (VmRSS, VmHWM); 0 if gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_kib(pid):
    return sum(status_kib(p, "VmRSS") for p in tree(pid))


def worker_pid(pid):
    """The first child of a supervisor (kasi's worker), else pid itself."""
    kids = tree(pid)[1:]
    return kids[0] if kids else pid


# ------------------------------------------------------------- load ----

def smtp_source(port, sessions, size, count, timeout, extra=()):
    """One bounded smtp-source run; returns (wall seconds, ok, stderr)."""
    argv = [SMTP_SOURCE, "-s", str(sessions), "-l", str(size),
            "-m", str(count), "-M", "client.bench.test",
            "-f", "sender@client.bench.test", "-t", "rcpt@example.test",
            *extra, f"127.0.0.1:{port}"]
    t0 = time.monotonic()
    try:
        r = subprocess.run(argv, stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        return time.monotonic() - t0, False, f"timed out after {timeout} s"
    wall = time.monotonic() - t0
    err = r.stderr.decode("utf-8", "replace").strip()
    return wall, r.returncode == 0, err[-300:]


def median(xs):
    xs = sorted(xs)
    if not xs:
        return None
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2
