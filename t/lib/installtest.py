"""installtest — helpers for the installation tests (t/95-install.t,
t/96-deb.t, and t/38-privdrop.t's run under the unit's capabilities): run
the top-level Makefile into a temporary build directory, start an
installed kasi binary on a configuration directory of our choice (also
with only the capabilities a systemd unit gives it), send it a message
with smtplib and look at its spool.

The Kasi class of kasitest writes its own smtp.yaml and runs $KASI_BIN;
these tests need the opposite (a given binary, a given config), hence this
small separate runner. Standard library only."""

import os
import re
import shutil
import smtplib
import subprocess
import tempfile
import time

import kasitest
from kasitest import REPO, ok, is_, diag, scaled, stop_process, run


def tempdir(tag):
    """A fresh directory for one test file, under the tree's build/ (these
    tests run for tens of seconds; a directory there is not swept away by
    a clean-up of the shared /tmp meanwhile), or in /tmp when build/ is not
    writable."""
    base = os.path.join(REPO, "build")
    try:
        os.makedirs(base, exist_ok=True)
        return tempfile.mkdtemp(prefix="t-%s-" % tag, dir=base)
    except OSError:
        return tempfile.mkdtemp(prefix="kasi-t-%s-" % tag)


def make(*args, timeout=300):
    """`make -C REPO args...`, without the flags of a make we run under
    (make test): our BUILD=, DESTDIR= and PREFIX= must be the only ones."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")}
    r = subprocess.run(["make", "-C", REPO] + list(args), env=env,
                       stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=scaled(timeout))
    if r.returncode != 0:
        diag("make %s failed:\n%s" % (" ".join(args), (r.stdout + r.stderr)[-4000:]))
    return r


def todo_ok(cond, name, reason, *diags):
    """A test that is expected to fail for a known reason (TAP TODO): a
    failure is reported but does not fail the file."""
    if cond:
        return ok(True, name)
    kasitest._Tap.count += 1
    print("not ok %d - %s # TODO %s" % (kasitest._Tap.count, name, reason), flush=True)
    for d in diags:
        diag(d)
    return False


def run_as_root(confdir):
    """Started as root, kasi wants user: in smtp.yaml; a test that runs a
    config without one as root says user: root (and one worker)."""
    path = os.path.join(confdir, "smtp.yaml")
    if os.geteuid() != 0 or not os.path.exists(path):
        return
    with open(path) as f:
        text = f.read()
    if not re.search(r"(?m)^user:", text):
        with open(path, "a") as f:
            f.write("\nuser: root\n" + ("" if re.search(r"(?m)^workers:", text)
                                          else "workers: 1\n"))


class Server:
    """An installed kasi: `binary -c confdir --listen 127.0.0.1:0` in cwd
    (and its statistics page on a free port too: two suites at once, or a
    kasi of the developer's, hold the shipped 127.0.0.1:8025),
    output to cwd/kasi.log; ready when it logs its port. wrap: a command
    that runs it (unit_setpriv)."""

    def __init__(self, binary, confdir, cwd, args=(), wrap=()):
        run_as_root(confdir)
        self.logfile = os.path.join(cwd, "kasi.log")
        self._log = open(self.logfile, "wb")
        self.proc = subprocess.Popen(
            list(wrap) + [binary, "-c", confdir, "--listen", "127.0.0.1:0",
                          "--http-listen", "127.0.0.1:0"] + list(args),
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            cwd=cwd)
        self.port = self._wait_port()

    def log(self):
        with open(self.logfile, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def _wait_port(self):
        deadline = time.monotonic() + scaled(10)
        while time.monotonic() < deadline and self.proc.poll() is None:
            m = re.search(r"listening on 127\.0\.0\.1:(\d+)", self.log())
            if m:
                return int(m.group(1))
            time.sleep(0.02)
        diag("kasi did not start (exit %r):\n%s" % (self.proc.poll(), self.log()[-3000:]))
        return None

    def stop(self):
        """SIGTERM and a bounded wait; returns the exit status."""
        stop_process(self.proc, grace=scaled(15))
        self._log.close()
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.stop()
        return False


def send(port, rcpt, subject):
    """One message over SMTP; returns the (code, text) of the DATA reply,
    or of the first command refused."""
    msg = ("From: a@example.net\r\nTo: %s\r\nSubject: %s\r\n\r\nhello\r\n"
           % (rcpt, subject))
    with smtplib.SMTP("127.0.0.1", port, local_hostname="client.example.net",
                      timeout=scaled(10)) as s:
        for step in (lambda: s.ehlo(), lambda: s.mail("a@example.net"),
                     lambda: s.rcpt(rcpt)):
            code, text = step()
            if code >= 400:
                return code, text.decode()
        code, text = s.data(msg)
        return code, text.decode()


def spooled(spool, subject):
    """Ids of the complete messages in spool whose .eml has the subject."""
    found = []
    for name in sorted(os.listdir(spool)) if os.path.isdir(spool) else []:
        if not name.endswith(".eml") or name.startswith("."):
            continue
        mid = name[:-4]
        with open(os.path.join(spool, name), "rb") as f:
            eml = f.read()
        if (b"Subject: " + subject.encode()) in eml and \
                os.path.exists(os.path.join(spool, mid + ".env")):
            found.append(mid)
    return found


def wait_spooled(spool, subject, timeout=5):
    deadline = time.monotonic() + scaled(timeout)
    while True:
        ids = spooled(spool, subject)
        if ids or time.monotonic() > deadline:
            return ids
        time.sleep(0.02)


def unit_setpriv(unit):
    """The command that runs a program as the systemd unit file `unit`
    runs its root process: only the capabilities of its
    CapabilityBoundingSet= (setpriv --bounding-set; at exec root keeps
    just those), and NoNewPrivileges. (argv, None), or (None, why not)."""
    if os.geteuid() != 0:
        return None, "needs root"
    if not shutil.which("setpriv"):
        return None, "setpriv (util-linux) is not installed"
    with open(unit) as f:
        lines = re.findall(r"(?m)^CapabilityBoundingSet=(.*)$", f.read())
    caps = []
    for line in lines:
        if line.startswith("~"):
            return None, "%s: a ~ capability set is not understood here" % unit
        caps = caps + line.split() if line.strip() else []
    bset = ",".join(["-all"] + ["+" + c[4:].lower() for c in caps])
    return ["setpriv", "--bounding-set=" + bset, "--no-new-privs"], None


def serve_confined(binary, confdir, cwd, spool, wrap, name, workers=None):
    """binary on confdir, started under wrap (unit_setpriv), with the
    control commands under wrap too (ExecReload= runs so): a message is
    spooled, `kasi reload` is ok and the new generation spools one too,
    `kasi status` shows its workers serving (`workers` of them, if given),
    `kasi stop` ends it. Returns the ids spooled."""
    def ctl(cmd):
        return run(list(wrap) + [binary, "-c", confdir, cmd], timeout=120)
    ids, failed = [], kasitest._Tap.failed
    with Server(binary, confdir, cwd, wrap=wrap) as s:
        if not ok(s.port, "%s: starts" % name):
            return ids
        for gen in (1, 2):
            subject = "%s %d" % (name, gen)
            is_(send(s.port, "someone@example.com", subject)[0], 250,
                "%s: 250 from generation %d" % (name, gen))
            got = wait_spooled(spool, subject)
            is_(len(got), 1, "%s: the message is in %s" % (name, spool))
            ids += got
            if gen == 1:
                r = ctl("reload")
                ok(r.returncode == 0 and "reload ok: generation 2" in r.stdout,
                   "%s: kasi reload" % name, r.stdout + r.stderr)
        r = ctl("status")
        m = re.search(r"\ngeneration 2, (\d+) workers", r.stdout)
        serving = re.findall(r"(?m)^  worker \d+  generation 2  serving ", r.stdout)
        ok(r.returncode == 0 and m and int(m.group(1)) == len(serving) >= 1 and
           (workers is None or len(serving) == workers),
           "%s: kasi status shows the workers serving" % name, r.stdout + r.stderr)
        # we are kasi's parent: reap it while `kasi stop` waits for it to go
        stop = subprocess.Popen(list(wrap) + [binary, "-c", confdir, "stop"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        try:
            code = s.proc.wait(timeout=scaled(30))
        except subprocess.TimeoutExpired:
            code = None
        out = stop.communicate(timeout=scaled(30))[0]
        ok(stop.returncode == 0 and "kasi: stopped" in out, "%s: kasi stop" % name, out)
        is_(code, 0, "%s: kasi has exited, status 0" % name)
        if kasitest._Tap.failed > failed:
            diag(s.log()[-3000:])
    return ids
