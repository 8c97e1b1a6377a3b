"""scaletest — several kasi nodes behind a real HAProxy, on loopback.

    with Redis() as red, Cluster(3, red, plugins, files) as cl:
        with cl.client("127.0.0.11") as c:      # through HAProxy, from .11
            ...
        cl.node_of(session_id)                   # which node served it
        cl.spooled()                             # messages of every node

HAProxy (mode tcp, round robin, `send-proxy-v2`; with checks=True the
SMTP health checks of contrib/haproxy/haproxy.cfg, PROXY header included) listens
on a free port and sends each connection to the next node; every node has
one PROXY listener that trusts 127.0.0.1 only, and smtp.yaml limits.exempt
empty, so loopback clients are limited like any other. Clients connect from
127.0.0.x source addresses (the whole /8 is loopback on Linux).
have_haproxy() tells whether the package is there (tests skip otherwise).
"""

import os
import shutil
import socket
import subprocess
import tempfile
import time

from kasitest import Kasi, Raw, scaled, stop_process

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"


def have_haproxy():
    return os.access(HAPROXY, os.X_OK)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class HAProxy:
    """haproxy -db with a tcp frontend on self.port and the given backends."""

    def __init__(self, backends, proxy="send-proxy-v2", port=None, checks=False):
        self.dir = tempfile.mkdtemp(prefix="kasi-haproxy-")
        self.port = port or free_port()
        self.cfg = os.path.join(self.dir, "haproxy.cfg")
        servers = "\n".join("    server n%d 127.0.0.1:%d %s" % (i + 1, p, proxy)
                            for i, p in enumerate(backends))
        if checks:              # as contrib/haproxy/haproxy.cfg does
            servers = ("    option smtpchk EHLO balancer.kasi.test\n"
                       "    default-server check check-send-proxy inter 1s\n" + servers)
        with open(self.cfg, "w") as f:
            f.write(HAPROXY_CFG % {"port": self.port, "servers": servers})
        self.log = open(os.path.join(self.dir, "haproxy.log"), "wb")
        self.proc = subprocess.Popen([HAPROXY, "-db", "-f", self.cfg], stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + scaled(10)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("haproxy exited: %s" % self.log_text())
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("haproxy did not listen: %s" % self.log_text())

    def log_text(self):
        with open(os.path.join(self.dir, "haproxy.log"), "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self):
        stop_process(self.proc)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


# The sample of contrib/haproxy/haproxy.cfg, cut to what the tests need.
HAPROXY_CFG = """global
    maxconn 1000
    nbthread 1

defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s

frontend smtp
    bind 127.0.0.1:%(port)d
    default_backend kasi

backend kasi
    balance roundrobin
%(servers)s
"""


def node_yaml(spool, extra=""):
    return ("hostname: %%(name)s\nspool_dir: %s\nlog: {target: stderr, level: debug}\n"
            "listen:\n  - address: 127.0.0.1:0\n    proxy_protocol: v2\n"
            "    proxy_from: [\"127.0.0.1/32\"]\n"
            "limits:\n  exempt: []\n%s" % (spool, extra))


class Cluster:
    """n kasi nodes (same plugins and files) behind one HAProxy."""

    def __init__(self, n, files, extra_yaml="", checks=False):
        self.nodes = []
        try:
            for i in range(n):
                k = Kasi(yaml="", files=files, start=False)
                with open(os.path.join(k.confdir, "smtp.yaml"), "w") as f:
                    f.write(node_yaml(k.spool_dir, extra_yaml) % {"name": "node%d.kasi.test" % (i + 1)})
                k.start()
                self.nodes.append(k)
            self.haproxy = HAProxy([k.port for k in self.nodes], checks=checks)
        except Exception:
            for k in self.nodes:
                k.kill()
            raise

    @property
    def port(self):
        return self.haproxy.port

    def client(self, source, banner=True):
        c = Raw(self.port, source=source)
        if banner:
            c.expect(220, name="banner through HAProxy (from %s)" % source)
        return c

    def node_named(self, text):
        """The node whose host name appears in text (a banner or reply)."""
        for i, k in enumerate(self.nodes):
            if "node%d.kasi.test" % (i + 1) in text:
                return i
        return None

    def spooled(self):
        return [m for k in self.nodes for m in k.spool()]

    def signal_all(self, sig):
        for k in self.nodes:
            k.signal(sig)

    def stop(self):
        self.haproxy.stop()
        for k in self.nodes:
            k.stop(name="kasi node %s" % k.port)
            k.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, etype, *a):
        if etype is not None:
            self.haproxy.stop()
            for k in self.nodes:
                k.kill()
                k.failed_before = -1
                k.cleanup()
            return False
        self.stop()
        return False
