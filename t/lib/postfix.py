"""postfix — a throwaway real Postfix instance (and smtp-sink) for tests.

    with Postfix(reject=["refuse@test.example"]) as pf:
        ... send to 127.0.0.1:pf.port ...
        files = pf.wait_messages("bob", 1)      # Maildir files, bounded wait

The instance lives entirely in a temporary directory: its own config
directory (main.cf, master.cf), queue directory, data directory, log file
and the virtual Maildir tree. It listens only on 127.0.0.1, on one port,
with XFORWARD allowed from 127.0.0.0/8; it delivers the virtual domain
test.example into Maildirs (test.example/<user>/) and relays nothing. The
system's own Postfix configuration and queue are never touched. Needs
root (Postfix's master starts as root) and the Debian postfix package.

smtp_sink(port) starts Postfix's smtp-sink (accepts and discards mail) on
a loopback port and returns a handle with .stop().

Only the standard library is used.
"""

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time

from kasitest import stop_process

POSTFIX = "/usr/sbin/postfix"
SMTP_SINK = "/usr/sbin/smtp-sink"
DOMAIN = "test.example"


def available():
    """A reason why no Postfix can be started here, or None."""
    if os.geteuid() != 0:
        return "not root"
    for p in (POSTFIX, SMTP_SINK):
        if not os.access(p, os.X_OK):
            return "%s missing" % p
    try:
        pwd.getpwnam("postfix")
    except KeyError:
        return "no postfix user"
    return None


def free_port():
    """A loopback TCP port nobody listens on right now."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, timeout, host="127.0.0.1"):
    """True once host:port accepts a connection (bounded)."""
    end = time.time() + timeout
    while time.time() < end:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


MASTER_CF = """\
127.0.0.1:{port} inet n - n - - smtpd
  -o smtpd_authorized_xforward_hosts=127.0.0.0/8
cleanup   unix n - n - 0 cleanup
qmgr      unix n - n 300 1 qmgr
tlsmgr    unix - - n 1000? 1 tlsmgr
rewrite   unix - - n - - trivial-rewrite
bounce    unix - - n - 0 bounce
defer     unix - - n - 0 bounce
trace     unix - - n - 0 bounce
verify    unix - - n - 1 verify
flush     unix n - n 1000? 0 flush
proxymap  unix - - n - - proxymap
smtp      unix - - n - - smtp
relay     unix - - n - - smtp
error     unix - - n - - error
retry     unix - - n - - error
discard   unix - - n - - discard
virtual   unix - n n - - virtual
anvil     unix - - n - 1 anvil
scache    unix - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"""

MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {d}/queue
data_directory = {d}/data
mail_owner = postfix
setgid_group = postdrop
syslog_name = postfix-kasitest
maillog_file_prefixes = {d}
maillog_file = {d}/maillog
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = postfix.kasi.test
mydomain = kasi.test
myorigin = $myhostname
mydestination =
relay_domains =
relayhost =
alias_maps =
alias_database =
local_recipient_maps =
mynetworks = 127.0.0.0/8
smtpd_banner = $myhostname ESMTP
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_recipient_restrictions =
  check_recipient_access texthash:{d}/config/rcpt_access,
  permit_mynetworks, reject
virtual_mailbox_domains = {domain}
virtual_mailbox_base = {d}/mail
virtual_mailbox_maps = texthash:{d}/config/vmailbox
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
virtual_mailbox_limit = 0
message_size_limit = 104857600
smtputf8_enable = yes
biff = no
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
delay_warning_time = 0
{tls}
"""


class Postfix:
    """A running throwaway Postfix. users: local parts that have a Maildir;
    reject: full addresses refused at RCPT with 550 via an access map."""

    def __init__(self, users=("bob", "carol", "dave"), reject=(), port=None,
                 tls=False, extra_users=0, start_timeout=30):
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="kasi-postfix-")
        os.chmod(self.dir, 0o755)
        self.users = list(users) + ["u%02d" % i for i in range(extra_users)]
        self.reject = list(reject)
        self.tls = tls
        self.start_timeout = start_timeout
        self.running = False

    # -- setup ------------------------------------------------------------

    def _write(self, rel, text):
        path = os.path.join(self.dir, rel)
        with open(path, "w") as f:
            f.write(text)
        return path

    def _tls_conf(self):
        if not self.tls:
            return ""
        key = os.path.join(self.dir, "config", "key.pem")
        crt = os.path.join(self.dir, "config", "cert.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048",
                        "-nodes", "-subj", "/CN=postfix.kasi.test", "-days",
                        "2", "-keyout", key, "-out", crt],
                       check=True, capture_output=True, timeout=60)
        return ("smtpd_tls_security_level = may\n"
                "smtpd_tls_cert_file = %s\nsmtpd_tls_key_file = %s\n"
                "smtpd_tls_received_header = yes\n" % (crt, key))

    def _configure(self):
        pw = pwd.getpwnam("postfix")
        for sub in ("config", "queue", "data", "mail"):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        os.chown(os.path.join(self.dir, "data"), pw.pw_uid, pw.pw_gid)
        os.chown(os.path.join(self.dir, "mail"), pw.pw_uid, pw.pw_gid)
        self._write("config/master.cf", MASTER_CF.format(port=self.port))
        self._write("config/main.cf", MAIN_CF.format(
            d=self.dir, domain=DOMAIN, uid=pw.pw_uid, gid=pw.pw_gid,
            tls=self._tls_conf()))
        self._write("config/vmailbox", "".join(
            "%s@%s %s/%s/\n" % (u, DOMAIN, DOMAIN, u) for u in self.users))
        self._write("config/rcpt_access", "".join(
            "%s REJECT 5.7.1 refused by test policy\n" % a for a in self.reject)
            or "# none\n")

    def _postfix(self, *args, timeout=60):
        return subprocess.run([POSTFIX, "-c", os.path.join(self.dir, "config")]
                              + list(args), capture_output=True, text=True,
                              timeout=timeout)

    # -- life cycle -------------------------------------------------------

    def start(self):
        self._configure()
        r = self._postfix("start")
        if r.returncode != 0:
            self.cleanup()
            raise RuntimeError("postfix start failed: %s%s\n%s"
                               % (r.stdout, r.stderr, self.log()))
        self.running = True
        if not wait_port(self.port, self.start_timeout):
            log = self.log()
            self.stop()
            raise RuntimeError("postfix did not listen on %d\n%s"
                               % (self.port, log))
        return self

    def master_pid(self):
        try:
            with open(os.path.join(self.dir, "queue", "pid",
                                   "master.pid")) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def stop(self):
        """Stop the instance (bounded); the master is killed by PID if it
        does not go. Idempotent."""
        if not self.running:
            return
        self.running = False
        pid = self.master_pid()
        try:
            self._postfix("stop", timeout=30)
        except subprocess.TimeoutExpired:
            pass
        end = time.time() + 10
        while pid and time.time() < end and _alive(pid):
            time.sleep(0.1)
        if pid and _alive(pid):
            try:
                os.kill(pid, 9)
            except OSError:
                pass
        # the listener must be gone before callers count on it
        end = time.time() + 10
        while time.time() < end and wait_port(self.port, 0.2):
            time.sleep(0.1)

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        if not os.environ.get("KASI_KEEP_POSTFIX"):
            self.cleanup()
        return False

    # -- inspection -------------------------------------------------------

    def log(self):
        try:
            with open(os.path.join(self.dir, "maillog"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def maildir(self, user):
        return os.path.join(self.dir, "mail", DOMAIN, user)

    def messages(self, user):
        """Paths of delivered messages for user, oldest first."""
        files = glob.glob(os.path.join(self.maildir(user), "new", "*"))
        files += glob.glob(os.path.join(self.maildir(user), "cur", "*"))
        return sorted(files, key=os.path.getmtime)

    def wait_messages(self, user, n, timeout=30):
        """Wait (bounded) until user has at least n messages; returns the
        list of paths (possibly shorter on timeout)."""
        end = time.time() + timeout
        while True:
            files = self.messages(user)
            if len(files) >= n or time.time() >= end:
                return files
            time.sleep(0.1)

    def wait_log(self, pattern, timeout=10):
        """Wait (bounded) for a regex in the mail log; the match or None."""
        import re
        end = time.time() + timeout
        while True:
            m = re.search(pattern, self.log())
            if m or time.time() >= end:
                return m
            time.sleep(0.1)

    def queue_count(self):
        """Files in the instance's queues (incoming/active/deferred/hold)."""
        n = 0
        for q in ("incoming", "active", "deferred", "hold", "maildrop"):
            for _root, _dirs, files in os.walk(os.path.join(self.dir, "queue", q)):
                n += len(files)
        return n


def _alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


class SmtpSink:
    """Postfix's smtp-sink on a loopback port: accepts everything, keeps
    nothing."""

    def __init__(self, port=None, backlog=256, args=()):
        self.port = port or free_port()
        self.proc = subprocess.Popen(
            [SMTP_SINK, "-u", "postfix"] + list(args)
            + ["127.0.0.1:%d" % self.port, str(backlog)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not wait_port(self.port, 10):
            self.stop()
            raise RuntimeError("smtp-sink did not listen on %d" % self.port)

    def stop(self):
        stop_process(self.proc, 5)
        self.proc = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False


def smtp_sink(port=None, backlog=256, args=()):
    return SmtpSink(port, backlog, args)
