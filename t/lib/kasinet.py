"""kasinet — loopback network peers for the tests of kasi.dns / kasi.tcp
and the network plugins: a dnsmasq DNS server with test zones, a UDP
"black hole" that never answers, a "gate" that answers when the test lets
it, a line echo server and a spamd.

Everything listens on 127.0.0.1 and is stopped by its context manager (or
at exit); every wait is bounded.
"""

import atexit
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time

from kasitest import scaled, diag, stop_process

_procs = []


def _cleanup():
    for p in list(_procs):
        if p.poll() is None:
            p.kill()
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass


atexit.register(_cleanup)


def free_port(kind=socket.SOCK_STREAM):
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def dns_ask(port, name, qtype=1, timeout=1.0):
    """One raw UDP query; returns (rcode, answer count) or None."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    pkt = struct.pack(">HHHHHH", 0x4b41, 0x0100, 1, 0, 0, 0) + qname + \
        struct.pack(">HH", qtype, 1)
    try:
        s.sendto(pkt, ("127.0.0.1", port))
        data = s.recv(4096)
        return data[3] & 15, struct.unpack(">H", data[6:8])[0]
    except OSError:
        return None
    finally:
        s.close()


class BlackHole:
    """A bound UDP socket that never reads nor answers."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()
        return False


class Gate:
    """A UDP DNS server that holds every query until it is opened, then
    answers each with one A record, 192.0.2.99. It opens by itself once it
    holds queries for `need` distinct names (so a client that sends its
    queries one after another never gets the first answered), or when
    open() is called. An open gate answers at once."""

    def __init__(self, need=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.need, self.is_open, self.stopping = need, False, False
        self.held, self.names = [], set()
        self.lock = threading.Lock()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    @staticmethod
    def _answer(q):
        end = 12
        while q[end]:
            end += q[end] + 1
        question = q[12:end + 5]
        return (q[:2] + struct.pack(">HHHHH", 0x8180, 1, 1, 0, 0) + question +
                struct.pack(">HHHIH", 0xC00C, 1, 1, 60, 4) + bytes([192, 0, 2, 99]))

    def _name(self, q):
        return q[12:q.index(b"\0", 12)].lower()

    def _run(self):
        while not self.stopping:
            try:
                q, peer = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.held.append((q, peer))
                self.names.add(self._name(q))
                if self.need and len(self.names) >= self.need:
                    self.is_open = True
                if self.is_open:
                    self._flush()

    def _flush(self):
        for q, peer in self.held:
            self.sock.sendto(self._answer(q), peer)
        self.held = []

    def open(self):
        with self.lock:
            self.is_open = True
            self._flush()

    def reset(self, need=None):
        """Shut again: hold from now on (forgetting what was held)."""
        with self.lock:
            self.need, self.is_open = need, False
            self.held, self.names = [], set()

    def wait_held(self, n, timeout):
        """Wait until at least n queries are held; True if they are."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.held) >= n:
                    return True
            time.sleep(0.02)
        return False

    def close(self):
        self.stopping = True
        self.t.join(2)
        self.sock.close()


# The test zones. {bh} is the black hole's port, {gate} the gate's.
DEFAULT_ZONES = """
local=/test/
# clients: 127.0.0.1 has forward-confirmed rDNS, 127.0.0.2 a PTR that lies
host-record=client1.test,127.0.0.1
ptr-record=2.0.0.127.in-addr.arpa,liar.test
ptr-record=3.0.0.127.in-addr.arpa,client3.test
host-record=client3.test,127.0.0.3
# DNSBL bl.test lists 127.0.0.2 (code 127.0.0.2) and 127.0.0.4 (127.0.0.99,
# a code the tests do not count)
host-record=2.0.0.127.bl.test,127.0.0.2
txt-record=2.0.0.127.bl.test,"Listed in bl.test, see http://bl.test/q?127.0.0.2"
host-record=4.0.0.127.bl.test,127.0.0.99
# a second list, and an allow list (DNSWL) with 127.0.0.3
host-record=2.0.0.127.bl2.test,127.0.0.10
host-record=3.0.0.127.bl.test,127.0.0.2
host-record=3.0.0.127.wl.test,127.0.10.0
# IPv6 ::1 listed in bl.test (nibble form)
host-record=1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.bl.test,127.0.0.2
# records of every type
mx-host=example.test,mail.example.test,10
mx-host=example.test,mx0.example.test,5
host-record=mail.example.test,192.0.2.1,2001:db8::1
host-record=mx0.example.test,192.0.2.2
txt-record=txt.test,"v=spf1 -all"
txt-record=txt.test,"second record"
host-record=aonly.test,192.0.2.7
# the black hole, and the gate (held until it opens: see Gate)
server=/slow.test/127.0.0.1#{bh}
server=/gate.test/127.0.0.1#{gate}
"""


class Dns:
    """dnsmasq on a loopback port serving zones (dnsmasq config lines)."""

    def __init__(self, zones=DEFAULT_ZONES, extra=""):
        self.dnsmasq = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
        self.bh = BlackHole()
        self.gate = Gate()
        self.tmp = tempfile.mkdtemp(prefix="kasi-dns-")
        self.conf = os.path.join(self.tmp, "dnsmasq.conf")
        with open(self.conf, "w") as f:
            f.write(zones.replace("{bh}", str(self.bh.port))
                    .replace("{gate}", str(self.gate.port)) + extra)
        self.proc = None
        self.port = None
        for _ in range(5):       # the port may be taken between probe and bind
            self.port = free_port(socket.SOCK_DGRAM)
            if self._start():
                return
        raise RuntimeError("dnsmasq did not start")

    def _start(self):
        self.proc = subprocess.Popen(
            [self.dnsmasq, "--no-daemon", "--no-resolv", "--no-hosts",
             "--port=%d" % self.port, "--listen-address=127.0.0.1",
             "--bind-interfaces", "--conf-file=" + self.conf,
             "--pid-file=" + os.path.join(self.tmp, "pid"), "--user=root"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(self.tmp, "log"), "w"))
        _procs.append(self.proc)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            if dns_ask(self.port, "client1.test", 1, 0.2):
                return True
        return False

    def dns_yaml(self, timeout=1, tries=1, cache_size=1000, rdns_timeout=2):
        return ("servers:\n  - \"127.0.0.1:%d\"\ntimeout: %s\ntries: %d\n"
                "cache_size: %d\nrdns_timeout: %s\n"
                % (self.port, timeout, tries, cache_size, rdns_timeout))

    def stop(self):
        stop_process(self.proc, 5)
        self.bh.close()
        self.gate.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.stop()
        return False


class Echo:
    """A TCP line server on loopback, one thread per connection. It echoes
    what it gets; "BYE" makes it answer "bye" and close; "HUSH" makes it
    read silently; "BLOB n" sends n bytes of 'x' then "\\r\\nend\\r\\n"."""

    def __init__(self, unix_path=None):
        if unix_path:
            self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.srv.bind(unix_path)
            self.port = None
        else:
            self.srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.srv.bind(("127.0.0.1", 0))
            self.port = self.srv.getsockname()[1]
        self.srv.listen(64)
        self.received = []
        self.conns = 0
        self.closed = 0
        self.lock = threading.Lock()
        self.stopping = False
        self.t = threading.Thread(target=self._accept, daemon=True)
        self.t.start()

    def _accept(self):
        while not self.stopping:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            with self.lock:
                self.conns += 1
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        buf = b""
        hush = False
        c.settimeout(30)
        try:
            while True:
                data = c.recv(65536)
                if not data:
                    break
                with self.lock:
                    self.received.append(data)
                buf += data
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    word = line.strip()
                    if word == b"BYE":
                        c.sendall(b"bye\r\n")
                        return
                    if word == b"HUSH":
                        hush = True
                    elif word.startswith(b"BLOB "):
                        c.sendall(b"x" * int(word[5:]) + b"\r\nend\r\n")
                    elif not hush:
                        c.sendall(line + b"\n")
        except OSError:
            pass
        finally:
            c.close()
            with self.lock:
                self.closed += 1

    def stop(self):
        self.stopping = True
        self.srv.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.stop()
        return False


class Spamd:
    """spamd on a loopback port (as nobody, local tests only)."""

    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="kasi-spamd-")
        os.chmod(self.tmp, 0o755)
        self.proc = None
        self.port = free_port()
        self.log = os.path.join(self.tmp, "spamd.log")
        self.start()

    def start(self):
        argv = [shutil.which("spamd") or "/usr/sbin/spamd",
                "--listen=127.0.0.1:%d" % self.port, "--local",
                "--max-children=2", "--min-children=1",
                "--pidfile=" + os.path.join(self.tmp, "pid"),
                "--syslog=stderr", "--allowed-ips=127.0.0.1"]
        if os.getuid() == 0:
            argv += ["-u", "nobody", "--helper-home-dir=" + self.tmp]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL,
                                     stderr=open(self.log, "a"))
        _procs.append(self.proc)

    def wait_ready(self, timeout=60):
        """Poll with a PING until spamd answers; True when it does."""
        deadline = time.monotonic() + scaled(timeout)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), 1) as s:
                    s.settimeout(2)
                    s.sendall(b"PING SPAMC/1.5\r\n\r\n")
                    if b"PONG" in s.recv(100):
                        return True
            except OSError:
                pass
            time.sleep(0.2)
        return False

    def stop(self):
        stop_process(self.proc, 15)

    def log_text(self):
        try:
            with open(self.log) as f:
                return f.read()
        except OSError:
            return ""

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.cleanup()
        return False
