"""redistest — a real redis-server for the tests, on 127.0.0.1 only.

    with Redis() as r:            # started on a free port, no persistence
        r.cmd("SET", "k", "v")    # a tiny RESP client: the reply, decoded
        r.kill()                  # SIGKILL (an outage)
        r.start()                 # again, on the same port, empty
        r.pause(); r.resume()     # SIGSTOP / SIGCONT: a server that hangs

The server and its directory go away with the context manager (or at
exit). Every wait is bounded. have_redis() says whether redis-server is
installed (tests skip otherwise)."""

import atexit
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from kasitest import scaled, stop_process

_servers = []


def _cleanup():
    for r in list(_servers):
        r.stop()


atexit.register(_cleanup)

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def have_redis():
    return os.access(REDIS_SERVER, os.X_OK)


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class RespError(Exception):
    pass


def _encode(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


class _Reader:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def _line(self):
        while b"\r\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("redis closed the connection")
            self.buf += data
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _bytes(self, n):
        while len(self.buf) < n + 2:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("redis closed the connection")
            self.buf += data
        b, self.buf = self.buf[:n], self.buf[n + 2:]
        return b

    def reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return RespError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._bytes(n).decode("utf-8", "replace")
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.reply() for _ in range(n)]
        raise ValueError("bad RESP line %r" % line)


class Redis:
    def __init__(self, password=None, port=None, start=True):
        self.dir = tempfile.mkdtemp(prefix="kasi-redis-")
        self.port = port or _free_port()
        self.password = password
        self.proc = None
        if start:
            self.start()

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    def start(self, timeout=10):
        """Start (again) on self.port; waits until it answers PING."""
        args = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", self.dir,
                "--logfile", os.path.join(self.dir, "redis.log"), "--daemonize", "no"]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if self not in _servers:
            _servers.append(self)
        deadline = time.monotonic() + scaled(timeout)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("redis-server exited (%r) on port %d" %
                                   (self.proc.returncode, self.port))
            try:
                if self.cmd("PING", timeout=0.5) == "PONG":
                    return self
            except (OSError, ConnectionError, ValueError):
                pass
            time.sleep(0.05)
        raise RuntimeError("redis-server did not answer on port %d" % self.port)

    def cmd(self, *args, db=0, timeout=5):
        """One command on a fresh connection: the decoded reply (an error
        reply is a RespError instance, returned, not raised)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as s:
            pre = []
            if self.password:
                pre.append(("AUTH", self.password))
            if db:
                pre.append(("SELECT", db))
            s.sendall(b"".join(_encode(p) for p in pre) + _encode(args))
            rd = _Reader(s)
            for _ in pre:
                rd.reply()
            return rd.reply()

    def kill(self):
        """SIGKILL, as a crash; returns once it is gone."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def pause(self):
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.resume()
            stop_process(self.proc)
        if self in _servers:
            _servers.remove(self)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.stop()
        return False


def redis_yaml(*servers, **keys):
    """config/redis.yaml text: servers and any other keys."""
    lines = ["servers:"] + ['  - "%s"' % s for s in servers]
    lines += ["%s: %s" % (k, v) for k, v in keys.items()]
    return "\n".join(lines) + "\n"
