"""servers.py — the processes a benchmark run talks to, all on loopback.

smtp-sink (the downstream), dnsmasq (the DNSBL zone), kasi in a generated
configuration directory, and Haraka installed from npm into a cache
directory. Each start_* returns a Server (or None with a reason when it
cannot run); the driver stops them all at the end.

The configuration of kasi's plugins is not final yet: every plugin key
lives in the KASI PLUGIN CONFIGURATION section below, nowhere else.
"""
import glob
import json
import os
import shutil
import subprocess

import benchlib as bl

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
SMTP_SINK = os.environ.get("SMTP_SINK", "/usr/sbin/smtp-sink")
DNSBL_ZONE = "bl.bench.test"
RCPT_DOMAIN = "example.test"          # what smtp-source sends to
START_TIMEOUT = int(os.environ.get("BENCH_START_TIMEOUT")
                    or (15 if os.environ.get("BENCH_QUICK") == "1" else 60))
CHAIN = ["early_talker", "helo_checks", "dnsbl", "access", "rcpt_to_host_list"]


class Server:
    """A started process: name, port, Popen, working directory."""

    def __init__(self, name, port, proc, workdir, log):
        self.name, self.port, self.proc = name, port, proc
        self.workdir, self.log = workdir, log

    @property
    def pid(self):
        return self.proc.pid

    def log_tail(self, n=15):
        try:
            with open(self.log, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
            return "\n".join(lines[-n:])
        except OSError:
            return ""


class Skip(Exception):
    """A scenario cannot run here; the message says why (one line)."""

    def __init__(self, msg):
        super().__init__(" | ".join(x.strip() for x in str(msg).splitlines()
                                    if x.strip())[-240:])


def _write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


# ------------------------------------------------------- downstream ----

def start_sink(workdir):
    """smtp-sink on a free port; its stdout holds running counters."""
    port = bl.free_port()
    log = os.path.join(workdir, "smtp-sink.out")
    argv = [SMTP_SINK, "-c", "-h", "sink.bench.test", "-t", "60"]
    if os.geteuid() == 0:
        argv += ["-u", "nobody"]
    proc = bl.start(argv + [f"127.0.0.1:{port}", "1024"], log)
    if not bl.wait_port(port, proc, 10):
        raise Skip("smtp-sink did not start")
    return Server("smtp-sink", port, proc, workdir, log)


def sink_messages(sink):
    """Messages smtp-sink has received so far (from its -c counters)."""
    try:
        with open(sink.log, "rb") as f:
            f.seek(max(0, os.path.getsize(sink.log) - 200))
            tail = f.read().decode("ascii", "replace")
    except OSError:
        return None
    idx = tail.rfind("mesg=")
    if idx < 0:
        return 0
    digits = "".join(c for c in tail[idx + 5:idx + 20] if c.isdigit() or c == "\r")
    return int(digits.split("\r")[0] or 0)


def start_dns(workdir):
    """dnsmasq answering the DNSBL zone on a loopback port: 127.0.0.2 is
    listed (the usual test point), every other name is NXDOMAIN."""
    exe = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
    if not os.access(exe, os.X_OK):
        raise Skip("dnsmasq not installed (Debian package dnsmasq-base)")
    port = bl.free_port()
    log = os.path.join(workdir, "dnsmasq.log")
    argv = [exe, "-k", f"--port={port}", "--listen-address=127.0.0.1",
            "--bind-interfaces", "--no-resolv", "--no-hosts", "--pid-file=",
            f"--local=/{DNSBL_ZONE}/", "--local=/bench.test/",
            f"--local=/{RCPT_DOMAIN}/", "--local=/in-addr.arpa/",
            f"--address=/2.0.0.127.{DNSBL_ZONE}/127.0.0.2",
            "--log-facility=" + log]
    proc = bl.start(argv, log)
    try:
        proc.wait(timeout=0.5)
        raise Skip("dnsmasq exited: see " + log)
    except subprocess.TimeoutExpired:
        pass
    return Server("dnsmasq", port, proc, workdir, log)


# ------------------------------------------- KASI PLUGIN CONFIGURATION ----
# The YAML keys of kasi's plugins are not settled yet: adjust them here.

def kasi_forward_files(sink_port):
    """config files for queue/smtp_forward to smtp-sink."""
    return {
        "config/plugins": "queue/smtp_forward\n",
        "config/queue/smtp_forward.yaml": (
            f"host: 127.0.0.1\n"
            f"port: {sink_port}\n"
            f"tls: none\n"
            f"pool_max: 40\n"),
    }


def kasi_chain_files(sink_port, dns_port):
    """The anti-spam chain in front of queue/smtp_forward. The DNSBL lists
    loopback clients as public ones so that every connection is looked up."""
    files = kasi_forward_files(sink_port)
    files["config/plugins"] = "".join(p + "\n" for p in CHAIN) + "queue/smtp_forward\n"
    files.update({
        "config/dns.yaml": f"servers:\n  - 127.0.0.1:{dns_port}\n",
        "config/early_talker.yaml": "pause: 0\ndata_pause: 0\n",
        "config/dnsbl.yaml": (
            f"zones:\n  - zone: {DNSBL_ZONE}\n"
            f"reject_at: connect\n"
            f"exempt_private: false\n"),
        "config/access.yaml": (
            "deny:\n  ip: [192.0.2.1]\n  mail: [spammer@bad.test]\n"),
        "config/rcpt_to_host_list.yaml": f"domains:\n  - {RCPT_DOMAIN}\n",
    })
    return files


def kasi_spool_files():
    """Local spool (fsync'd files) instead of forwarding."""
    return {"config/plugins": "queue/spool\n"}

# ------------------------------------------------------------------------


def kasi_missing(plugins):
    """The plugin files (plugins/<name>.lua) this tree lacks."""
    return [p for p in plugins
            if not os.path.exists(os.path.join(REPO, "plugins", p + ".lua"))]


def kasi_smtp_yaml(port, spool, level, max_size="0", workers=1, listen_tls=None,
                   certs=()):
    """smtp.yaml: one worker process unless told (like the others); with
    listen_tls "starttls" or "implicit", certs is a list of (cert, key)."""
    listen = (f"  - address: 127.0.0.1:{port}\n    tls: {listen_tls}\n" if listen_tls
              else f"  - 127.0.0.1:{port}\n")
    tls = "".join(f"    - cert: {c}\n      key: {k}\n" for c, k in certs)
    return (f"hostname: mx.bench.test\n"
            f"listen:\n{listen}"
            f"limits:\n  max_connections: 20000\n  max_connections_per_ip: 0\n"
            f"  max_message_size: {max_size}\n"
            f"spool_dir: {spool}\n"
            f"log:\n  target: stderr\n  level: {level}\n"
            f"workers: {workers}\n"
            + ("user: root\n" if os.geteuid() == 0 else "")
            + (f"tls:\n  certificates:\n{tls}" if tls else ""))


def start_kasi(kasi_bin, name, workdir, files, level="info", **smtp):
    """kasi with config/ generated under workdir/name and plugins/ linked
    to the tree's plugins; checked with -t before it starts. smtp: more
    kasi_smtp_yaml arguments (workers, listen_tls, certs)."""
    root = os.path.join(workdir, name)
    os.makedirs(os.path.join(root, "spool"), exist_ok=True)
    port = bl.free_port()
    _write(os.path.join(root, "config", "smtp.yaml"),
           kasi_smtp_yaml(port, os.path.join(root, "spool"), level, **smtp))
    for rel, text in files.items():
        _write(os.path.join(root, rel), text)
    for tree in ("plugins", "lua"):      # found next to the config dir
        link = os.path.join(root, tree)
        if not os.path.exists(link):
            os.symlink(os.path.join(REPO, tree), link)
    conf = os.path.join(root, "config")
    chk = subprocess.run([kasi_bin, "-c", conf, "-t"], cwd=root, timeout=30,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if chk.returncode != 0:
        raise Skip("kasi -t: " + chk.stdout.decode("utf-8", "replace").strip()[-200:])
    log = os.path.join(root, "kasi.log")
    proc = bl.start([kasi_bin, "-c", conf], log, cwd=root)
    if not bl.wait_port(port, proc, START_TIMEOUT, tls=smtp.get("listen_tls") == "implicit"):
        raise Skip("kasi did not start: " + Server("", 0, proc, root, log).log_tail(3))
    return Server(name, port, proc, root, log)


def spool_count(server):
    return len(glob.glob(os.path.join(server.workdir, "spool", "*.eml")))


# ---------------------------------------------------- certificates ----

def make_certs(workdir):
    """Self-signed certificates for mx.bench.test: {"rsa": (cert, key),
    "ecdsa": (cert, key)} (RSA 2048, ECDSA P-256)."""
    d = os.path.join(workdir, "certs")
    os.makedirs(d, exist_ok=True)
    out = {}
    for name, newkey in (("rsa", ["-newkey", "rsa:2048"]),
                         ("ecdsa", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"])):
        cert, key = os.path.join(d, name + ".pem"), os.path.join(d, name + ".key")
        r = subprocess.run(["openssl", "req", "-x509", *newkey, "-nodes", "-days", "2",
                            "-subj", "/CN=mx.bench.test",
                            "-addext", "subjectAltName=DNS:mx.bench.test",
                            "-keyout", key, "-out", cert],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)
        if r.returncode != 0:
            raise Skip("openssl req: " + r.stderr.decode("utf-8", "replace"))
        out[name] = (cert, key)
    return out


# ---------------------------------------------------- Postfix queue ----

POSTFIX = "/usr/sbin/postfix"

_PF_MASTER = """\
127.0.0.1:{port} inet n - n - - smtpd
cleanup   unix n - n - 0 cleanup
qmgr      unix n - n 300 1 qmgr
rewrite   unix - - n - - trivial-rewrite
bounce    unix - - n - 0 bounce
defer     unix - - n - 0 bounce
trace     unix - - n - 0 bounce
verify    unix - - n - 1 verify
flush     unix n - n 1000? 0 flush
proxymap  unix - - n - - proxymap
error     unix - - n - - error
retry     unix - - n - - error
discard   unix - - n - - discard
anvil     unix - - n - 1 anvil
scache    unix - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"""

# Every message is accepted into the queue (cleanup fsyncs the queue file
# before smtpd says 250) and put on hold: Postfix's own durable queue, with
# no delivery afterwards, like kasi's spool.
_PF_MAIN = """\
compatibility_level = 3.6
queue_directory = {d}/queue
data_directory = {d}/data
mail_owner = postfix
setgid_group = postdrop
syslog_name = postfix-bench
maillog_file_prefixes = {d}
maillog_file = {d}/maillog
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = postfix.bench.test
mydestination =
relay_domains = {rcpt_domain}
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_recipient_restrictions = check_client_access static:HOLD, permit_mynetworks, reject
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
default_process_limit = 200
message_size_limit = 0
biff = no
"""


class PostfixProc:
    """A Postfix instance as the driver's process handle: pid (the master,
    whose tree holds smtpd and cleanup), poll/terminate/kill/wait."""

    def __init__(self, confdir, queue):
        self.confdir, self.queue = confdir, queue
        self.returncode = None

    @property
    def pid(self):
        with open(os.path.join(self.queue, "pid", "master.pid")) as f:
            return int(f.read().strip())

    def poll(self):
        return self.returncode

    def terminate(self):
        subprocess.run([POSTFIX, "-c", self.confdir, "stop"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=30)
        self.returncode = 0

    kill = terminate

    def wait(self, timeout=None):
        return self.returncode


def start_postfix_queue(workdir):
    """Postfix's smtpd into its own queue (held), root only."""
    import pwd
    if os.geteuid() != 0 or not os.access(POSTFIX, os.X_OK):
        raise Skip("Postfix queue needs root and the postfix package")
    try:
        pw = pwd.getpwnam("postfix")
    except KeyError:
        raise Skip("no postfix user")
    d = os.path.join(workdir, "postfix")
    for sub in ("config", "queue", "data"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    for x in (workdir, d):                # the postfix user walks down to data/
        os.chmod(x, 0o755)
    os.chown(os.path.join(d, "data"), pw.pw_uid, pw.pw_gid)
    port = bl.free_port()
    _write(os.path.join(d, "config", "master.cf"), _PF_MASTER.format(port=port))
    _write(os.path.join(d, "config", "main.cf"), _PF_MAIN.format(d=d, rcpt_domain=RCPT_DOMAIN))
    r = subprocess.run([POSTFIX, "-c", os.path.join(d, "config"), "start"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    proc = PostfixProc(os.path.join(d, "config"), os.path.join(d, "queue"))
    if r.returncode != 0:
        raise Skip("postfix start: " + r.stdout.decode("utf-8", "replace")[-200:])
    bl.register(proc)
    if not bl.wait_port(port, None, START_TIMEOUT):
        raise Skip("postfix did not listen")
    return Server("postfix", port, proc, d, os.path.join(d, "maillog"))


def postfix_held(server):
    n = 0
    for _root, _dirs, files in os.walk(os.path.join(server.workdir, "queue", "hold")):
        n += len(files)
    return n


# ----------------------------------------------------------- Haraka ----

def cache_dir():
    return os.environ.get("BENCH_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
        "kasi-bench")


def haraka_bin(install):
    """Path of the haraka script, installing Haraka@3 first if asked."""
    base = os.path.join(cache_dir(), "haraka")
    exe = os.path.join(base, "node_modules", ".bin", "haraka")
    if os.access(exe, os.X_OK):
        return exe
    if not install:
        raise Skip("Haraka not installed in " + base + " (quick run does not install)")
    if not shutil.which("npm"):
        raise Skip("npm not found (Debian package npm)")
    os.makedirs(base, exist_ok=True)
    try:
        r = subprocess.run(["npm", "install", "--no-audit", "--no-fund",
                            "--loglevel=error", "Haraka@3"], cwd=base,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=600)
    except subprocess.TimeoutExpired:
        raise Skip("npm install Haraka@3 timed out")
    if r.returncode != 0 or not os.access(exe, os.X_OK):
        raise Skip("npm install Haraka@3 failed: "
                   + r.stdout.decode("utf-8", "replace").strip()[-200:])
    return exe


def haraka_version(exe):
    pkg = os.path.join(os.path.dirname(os.path.dirname(exe)), "Haraka", "package.json")
    try:
        with open(pkg) as f:
            return json.load(f)["version"]
    except (OSError, ValueError, KeyError):
        return "?"


def _haraka_files(port, sink_port, chain, level):
    plugins = ["bench_setup"]
    if chain:
        plugins += ["early_talker", "helo.checks", "dns-list", "access",
                    "rcpt_to.in_host_list"]
    plugins.append("queue/smtp_forward")
    files = {
        "config/smtp.ini": f"listen=127.0.0.1:{port}\nnodes=1\n",
        "config/me": "mx.bench.test\n",
        "config/log.ini": f"[main]\nlevel={level}\ntimestamps=false\n",
        "config/plugins": "".join(p + "\n" for p in plugins),
        "config/smtp_forward.ini": (
            f"host=127.0.0.1\nport={sink_port}\nenable_tls=false\n"
            f"check_recipient=true\n[{RCPT_DOMAIN}]\n"
            f"host=127.0.0.1\nport={sink_port}\n"),
        "config/early_talker.ini": "[main]\npause=0\n",
        "config/helo.checks.ini": "[check]\nforward_dns=false\nrdns_match=false\n",
        "config/dns-list.ini": (
            f"[main]\nperiodic_checks=0\nzones={DNSBL_ZONE}\nsearch=all\n"
            f"[{DNSBL_ZONE}]\nipv6=false\n127.0.0.2=listed\n"),
        "config/access.ini": "[check]\nconn=true\nmail=true\nrcpt=false\n",
        "config/connection.rdns.blacklist": "",
        "config/mail_from.access.blacklist": "spammer@bad.test\n",
        "config/host_list": f"{RCPT_DOMAIN}\n",
    }
    return files


def start_haraka(exe, name, workdir, sink_port, dns_port=None, level="info"):
    """Haraka nodes=1 forwarding to smtp-sink; with dns_port, the chain."""
    root = os.path.join(workdir, name)
    if not os.path.isdir(os.path.join(root, "config")):
        subprocess.run([exe, "-i", root], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=60, check=True)
    port = bl.free_port()
    for rel, text in _haraka_files(port, sink_port, dns_port is not None,
                                   level).items():
        _write(os.path.join(root, rel), text)
    shutil.copy(os.path.join(HERE, "haraka_bench_setup.js"),
                os.path.join(root, "plugins", "bench_setup.js"))
    env = dict(os.environ)
    env.pop("BENCH_DNS", None)
    if dns_port is not None:
        env.update(BENCH_DNS=f"127.0.0.1:{dns_port}", BENCH_PUBLIC="1")
    log = os.path.join(root, "haraka.log")
    proc = bl.start([exe, "-c", root], log, cwd=root, env=env)
    if not bl.wait_port(port, proc, START_TIMEOUT):
        raise Skip("Haraka did not start: " + Server("", 0, proc, root, log).log_tail(5))
    return Server(name, port, proc, root, log)
