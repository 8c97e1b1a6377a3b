"""kasitest — the integration-test harness for kasi.

Tests in t/*.t are Python 3 scripts that print TAP. They import this module
(t/lib is put on sys.path by the test) and use:

  * TAP helpers: ok(), is_(), like(), unlike(), diag(), done(). There is no
    plan up front; done() prints "1..N" and exits non-zero if anything failed.
    An uncaught exception is reported as a failing test with its traceback.
  * Kasi: a context manager that writes a configuration into a temporary
    directory, starts the server binary (env KASI_BIN, default build/kasi),
    learns its port from the log, and on stop checks the exit status and that
    no sanitizer report came from the supervisor or a worker (reports go to
    files in the temp dir, see sanitizer_env; the log is searched too).
    done() checks the same for every other process the script started.
  * Raw: a line-level SMTP client for everything smtplib would hide.
  * Helpers for spool messages (strip_received) and running commands.

Only the standard library is used.
"""

import atexit
import hashlib
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
KASI_BIN = os.environ.get("KASI_BIN") or os.path.join(REPO, "build", "kasi")
SLOW = 3.0 if os.environ.get("KASI_ASAN") else 1.0
HOSTNAME = "mx.kasi.test"
SANITIZER_MARKS = ("AddressSanitizer", "LeakSanitizer", "runtime error:")
SANITIZER_VARS = ("ASAN_OPTIONS", "LSAN_OPTIONS", "UBSAN_OPTIONS")


def sanitizer_env(prefix, env=None):
    """env (default os.environ) with sanitizer reports sent to files
    PREFIX.<pid>: every process, whatever became of its stderr (a worker,
    a helper, `kasi -t` run with captured output), leaves its report there."""
    env = dict(os.environ if env is None else env)
    for var in SANITIZER_VARS:
        opts = env.get(var, "")
        env[var] = (opts + ":" if opts else "") + "log_path=" + prefix
    return env


# All a report says when the process was killed (SIGKILL: the supervisor
# ends a worker of a generation that will not be) while LeakSanitizer had
# stopped it for its exit check: the check never ran, there is nothing to
# report.
_KILLED_IN_CHECK = re.compile(r"==\d+==Unable to get registers from thread \d+\.")


def sanitizer_reports(prefix):
    """The text of every report file PREFIX.<pid>, as one string (a file
    that only says its process was killed during the leak check left out)."""
    d, base = os.path.split(prefix)
    out = []
    for name in sorted(os.listdir(d)) if os.path.isdir(d) else []:
        if name.startswith(base + "."):
            with open(os.path.join(d, name), "rb") as f:
                text = f.read().decode("utf-8", "replace")
            if all(_KILLED_IN_CHECK.fullmatch(l) for l in text.split("\n") if l.strip()):
                continue
            out.append("%s:\n%s" % (name, text))
    return "\n".join(out)


# Processes this script starts outside a Kasi instance report here; done()
# checks it (a Kasi instance uses its own directory, checked at stop).
_SAN_DIR = tempfile.mkdtemp(prefix="kasi-san-")
_SAN_PREFIX = os.path.join(_SAN_DIR, "report")
os.environ.update(sanitizer_env(_SAN_PREFIX))


def _remove_san_dir():
    try:
        os.rmdir(_SAN_DIR)      # only when empty: a report stays for a look
    except OSError:
        pass


atexit.register(_remove_san_dir)


def scaled(seconds):
    """A timeout, stretched when running against a sanitizer build."""
    return seconds * SLOW


# ---------------------------------------------------------------- TAP ----

class _Tap:
    count = 0
    failed = 0
    finished = False
    lock = threading.RLock()


def _out(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def diag(msg):
    """Print a diagnostic: every line prefixed with '# '."""
    for line in str(msg).splitlines() or [""]:
        _out("# " + line)


def ok(cond, name="", *diags):
    name = name.replace("#", "\\#").replace("\n", " ")
    with _Tap.lock:             # tests may report from several threads
        _Tap.count += 1
        if cond:
            _out("ok %d - %s" % (_Tap.count, name))
        else:
            _Tap.failed += 1
            _out("not ok %d - %s" % (_Tap.count, name))
    if not cond:
        caller = traceback.extract_stack(limit=4)
        for fr in caller[:-1]:
            if fr.filename != __file__:
                diag("  at %s line %d" % (os.path.basename(fr.filename), fr.lineno))
                break
        for d in diags:
            diag(d)
    return bool(cond)


def is_(got, want, name=""):
    return ok(got == want, name,
              "         got: %r" % (_short(got),),
              "    expected: %r" % (_short(want),))


def isnt(got, notwant, name=""):
    return ok(got != notwant, name, "         got: %r (unwanted)" % (_short(got),))


def like(s, regex, name=""):
    text = s if isinstance(s, (str, bytes)) else ("" if s is None else str(s))
    if isinstance(text, bytes) and isinstance(regex, str):
        text = text.decode("utf-8", "replace")
    good = re.search(regex, text, re.S) is not None
    return ok(good, name, "    %r" % (_short(text),),
              "    doesn't match %r" % (regex,))


def unlike(s, regex, name=""):
    text = s if isinstance(s, (str, bytes)) else ("" if s is None else str(s))
    if isinstance(text, bytes) and isinstance(regex, str):
        text = text.decode("utf-8", "replace")
    good = re.search(regex, text, re.S) is None
    return ok(good, name, "    %r" % (_short(text),),
              "    matches %r" % (regex,))


def skip(name, reason):
    """A test that cannot run here (a missing package), reported as skipped."""
    _Tap.count += 1
    _out("ok %d - %s # skip %s" % (_Tap.count, name.replace("#", "\\#"), reason))


def _short(v, limit=600):
    if isinstance(v, (str, bytes)) and len(v) > limit:
        return v[:limit // 2] + (b"..." if isinstance(v, bytes) else "...") + v[-limit // 2:]
    return v


def _check_other_sanitizers():
    reports = sanitizer_reports(_SAN_PREFIX)
    ok(not reports, "no sanitizer report from any other process",
       *([reports[-8000:]] if reports else []))
    if not reports:
        shutil.rmtree(_SAN_DIR, ignore_errors=True)


def done():
    """Finish: stop any server still running, check that no other process
    left a sanitizer report, print the plan, exit."""
    _stop_all()
    _check_other_sanitizers()
    _Tap.finished = True
    _out("1..%d" % _Tap.count)
    if _Tap.failed:
        diag("failed %d of %d tests" % (_Tap.failed, _Tap.count))
    sys.stdout.flush()
    sys.exit(1 if _Tap.failed or _Tap.count == 0 else 0)


def _excepthook(etype, value, tb):
    ok(False, "uncaught exception: %s: %s" % (etype.__name__, value))
    for line in traceback.format_exception(etype, value, tb):
        diag(line.rstrip("\n"))
    _stop_all(kill=True)
    _out("1..%d" % _Tap.count)
    sys.stdout.flush()
    os._exit(255)


sys.excepthook = _excepthook


# --------------------------------------------------------------- YAML ----

def _yaml_scalar(v):
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return json.dumps(str(v))


def to_yaml(d, indent=0):
    """Emit a dict of dicts/lists/scalars as block YAML."""
    pad = "  " * indent
    out = []
    for k, v in d.items():
        if isinstance(v, dict):
            out.append("%s%s:" % (pad, k))
            out.append(to_yaml(v, indent + 1))
        elif isinstance(v, (list, tuple)):
            out.append("%s%s:" % (pad, k))
            out.extend("%s  - %s" % (pad, _yaml_scalar(x)) for x in v)
        else:
            out.append("%s%s: %s" % (pad, k, _yaml_scalar(v)))
    return "\n".join(x for x in out if x != "")


def merge(base, over):
    """Deep-merge `over` into a copy of `base`; a None value deletes a key."""
    res = dict(base)
    for k, v in over.items():
        if v is None:
            res.pop(k, None)
        elif isinstance(v, dict) and isinstance(res.get(k), dict):
            res[k] = merge(res[k], v)
        else:
            res[k] = v
    return res


# --------------------------------------------------------------- Kasi ----

_running = []


def _stop_all(kill=False):
    for k in list(_running):
        try:
            if kill:
                k.kill()
            else:
                k.stop()
        except Exception as e:  # keep going: every server must go away
            diag("error stopping kasi: %r" % (e,))
            k.kill()


atexit.register(_stop_all, True)


class SpoolMessage:
    def __init__(self, mid, env, eml):
        self.id = mid
        self.env = env
        self.eml = eml

    def body(self):
        """The .eml with the leading Received header removed."""
        return strip_received(self.eml)[1]

    def received(self):
        return strip_received(self.eml)[0]

    def __repr__(self):
        return "<SpoolMessage %s %r>" % (self.id, self.env)


def strip_received(eml):
    """Split off the first header (expected: Received:, possibly folded).
    Returns (received_header_bytes, rest)."""
    if not eml.lower().startswith(b"received:"):
        return b"", eml
    pos = 0
    while True:
        nl = eml.find(b"\n", pos)
        if nl < 0:
            return eml, b""
        pos = nl + 1
        if pos >= len(eml) or eml[pos:pos + 1] not in (b" ", b"\t"):
            return eml[:pos], eml[pos:]


class Kasi:
    """A kasi server in a temporary directory.

        with Kasi({"limits": {"max_recipients": 3}}) as k:
            r = Raw(k.port)

    config: overrides deep-merged into the default smtp.yaml dict.
    yaml:   raw smtp.yaml text, written as is instead of the dict.
    files:  {relative path: str|bytes} written under the temp dir
            (e.g. "config/plugins", "plugins/x.lua").
    args:   extra command-line arguments.
    """

    def __init__(self, config=None, yaml=None, files=None, args=None,
                 start=True, ready_regex=None):
        self.failed_before = _Tap.failed
        self.tmp = tempfile.mkdtemp(prefix="kasi-t-")
        self.confdir = os.path.join(self.tmp, "config")
        self.spool_dir = os.path.join(self.tmp, "spool")
        self.logfile = os.path.join(self.tmp, "kasi.log")
        self.san_prefix = os.path.join(self.tmp, "sanitizer")
        os.makedirs(self.confdir)
        os.makedirs(self.spool_dir)
        self.config = merge(self.default_config(), config or {})
        with open(os.path.join(self.confdir, "smtp.yaml"), "w") as f:
            f.write(yaml if yaml is not None else to_yaml(self.config) + "\n")
        for rel, content in (files or {}).items():
            path = os.path.join(self.tmp, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(content.encode() if isinstance(content, str) else content)
        self.args = list(args or [])
        self.raw_yaml = yaml is not None
        self.proc = None
        self.ports = []
        self.exit_code = None
        self.ready_regex = ready_regex
        if start:
            self.start()

    def default_config(self):
        cfg = {
            "hostname": HOSTNAME,
            "listen": ["127.0.0.1:0"],
            "spool_dir": self.spool_dir,
            "log": {"target": "stderr", "level": "debug"},
            "workers": 1,
        }
        if os.geteuid() == 0:   # the suite runs as root: say so explicitly
            cfg["user"] = "root"
        return cfg

    def process_defaults(self, yaml):
        """Raw smtp.yaml text gets the harness's workers: and user: when
        the server starts, unless it sets them (appended: line numbers
        above stay)."""
        for key in ("workers", "user"):
            if key in self.config and not re.search(r"(?m)^%s:" % key, yaml):
                yaml = yaml.rstrip("\n") + "\n%s: %s\n" % (key, _yaml_scalar(self.config[key]))
        return yaml

    # -- process -------------------------------------------------------

    def start(self):
        if not os.access(KASI_BIN, os.X_OK):
            raise RuntimeError("server binary not found: %s (set KASI_BIN)" % KASI_BIN)
        if self.raw_yaml:
            path = os.path.join(self.confdir, "smtp.yaml")
            with open(path) as f:
                text = f.read()
            with open(path, "w") as f:
                f.write(self.process_defaults(text))
        self._log = open(self.logfile, "wb")
        self.proc = subprocess.Popen([KASI_BIN, "-c", self.confdir] + self.args,
                                     stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, cwd=self.tmp,
                                     env=sanitizer_env(self.san_prefix))
        _running.append(self)
        rx = self.ready_regex or r"listening on (?:127\.0\.0\.1|\[::1\]):(\d+)"
        deadline = time.monotonic() + scaled(10)
        while time.monotonic() < deadline:
            self.ports = [int(p) for p in re.findall(rx, self.log())]
            if self.ports and len(self.ports) >= self._listener_count():
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        log = self.log()
        self.kill()
        raise RuntimeError("kasi did not start (exit %r); log:\n%s"
                           % (self.proc.returncode, log[-4000:]))

    def _listener_count(self):
        if "--listen" in self.args:
            return self.args.count("--listen")
        return len(self.config.get("listen") or [1])

    @property
    def port(self):
        return self.ports[0]

    @property
    def pid(self):
        return self.proc.pid

    def signal(self, sig):
        self.proc.send_signal(sig)

    def worker_pids(self):
        """PIDs of the workers alive now, from the supervisor's log lines
        ("worker N started" minus those that stopped, retired or ended, and
        those whose failure refused a reload: "(worker N, exit 3)")."""
        log = self.log()
        started = re.findall(r"\bworker (\d+) started", log)
        gone = set(re.findall(r"\bworker (\d+) (?:ended|retired|stopped)", log))
        gone |= set(re.findall(r"\(worker (\d+), (?:exit|signal) \d+\)", log))
        return [int(p) for p in started if p not in gone]

    def current_workers(self):
        """PIDs of the live workers of the generation that is live now."""
        log = self.log()
        gens = re.findall(r"generation (\d+) live", log)
        if not gens:
            return []
        gen = gens[-1]
        live = set(self.worker_pids())
        started = re.findall(r"\bworker (\d+) started \(generation %s\)" % gen, log)
        return [int(p) for p in started if int(p) in live]

    def wait_workers(self, n, timeout=10, exclude=()):
        """Wait until n workers (none of them in exclude) are serving:
        started and told to accept. Returns their PIDs, or None."""
        deadline = time.monotonic() + scaled(timeout)
        while time.monotonic() < deadline:
            pids = [p for p in self.current_workers() if p not in exclude]
            serving = [p for p in pids if re.search(
                r"kasi\[%d\] debug: accepting connections" % p, self.log())]
            if len(serving) >= n:
                return serving
            time.sleep(0.02)
        return None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def wait_exit(self, timeout):
        try:
            return self.proc.wait(timeout=scaled(timeout))
        except subprocess.TimeoutExpired:
            return None

    def stop(self, name="kasi"):
        """SIGTERM, wait for exit, then check exit status and sanitizers.
        Reports two tests. Returns the exit code (None if killed)."""
        if self.proc is None or self not in _running:
            return self.exit_code
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        rc = self.wait_exit(15)
        if rc is None:
            self.kill()
            ok(False, "%s exits within 15 s of SIGTERM" % name, self.log_tail())
        else:
            ok(rc == 0, "%s exits with status 0" % name,
               "exit status %r" % rc, self.log_tail())
        self.check_sanitizers(name)
        self._finish()
        return rc

    def check_sanitizers(self, name="kasi"):
        """One test: no sanitizer report from the supervisor or any worker,
        neither in the log nor in the report files."""
        log = self.log()
        reports = sanitizer_reports(self.san_prefix)
        bad = [m for m in SANITIZER_MARKS if m in log]
        if reports:
            bad.append("report files")
        ok(not bad, "%s: no sanitizer report in the log" % name,
           *(["found %s" % ", ".join(bad), (reports or log)[-8000:]] if bad else []))

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        if self in _running and sanitizer_reports(self.san_prefix):
            self.check_sanitizers()     # a report before the kill still counts
        self._finish()

    def _finish(self):
        if self.proc is not None:
            self.exit_code = self.proc.returncode
        if self in _running:
            _running.remove(self)
        if getattr(self, "_log", None):
            self._log.close()
            self._log = None

    def cleanup(self):
        if _Tap.failed > self.failed_before or os.environ.get("KASI_KEEP"):
            diag("kept test directory %s" % self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, etype, value, tb):
        if etype is None:
            if self in _running:
                self.stop()
        else:
            self.kill()
            diag(self.log_tail())
            self.failed_before = -1  # keep the directory for a post-mortem
        self.cleanup()
        return False

    # -- log -------------------------------------------------------------

    def log(self):
        try:
            with open(self.logfile, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, n=40):
        return "log tail:\n" + "\n".join(self.log().splitlines()[-n:])

    def wait_log(self, regex, timeout=5):
        """Wait for a log line matching regex; returns the match or None."""
        deadline = time.monotonic() + scaled(timeout)
        while True:
            m = re.search(regex, self.log(), re.M)
            if m or time.monotonic() > deadline:
                return m
            time.sleep(0.02)

    def count_log(self, regex):
        return len(re.findall(regex, self.log(), re.M))

    def wait_count(self, regex, n, timeout=5):
        """Wait until at least n log lines match regex; True if they do."""
        deadline = time.monotonic() + scaled(timeout)
        while self.count_log(regex) < n:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    # -- spool -----------------------------------------------------------

    def spool(self):
        """Complete messages in the spool (both <id>.env and <id>.eml),
        sorted by id; dot-files (temporary) are ignored."""
        try:
            names = os.listdir(self.spool_dir)
        except FileNotFoundError:
            return []
        ids = sorted(n[:-4] for n in names
                     if n.endswith(".env") and not n.startswith("."))
        msgs = []
        for mid in ids:
            eml_path = os.path.join(self.spool_dir, mid + ".eml")
            if not os.path.exists(eml_path):
                continue
            with open(os.path.join(self.spool_dir, mid + ".env"), "rb") as f:
                env = json.loads(f.read().decode("utf-8"))
            with open(eml_path, "rb") as f:
                eml = f.read()
            msgs.append(SpoolMessage(mid, env, eml))
        return msgs

    def spool_names(self):
        """Every name in the spool but .gen (the supervisor's state)."""
        try:
            return sorted(n for n in os.listdir(self.spool_dir) if n != ".gen")
        except FileNotFoundError:
            return []

    def wait_spool(self, n, timeout=5):
        """Wait until at least n messages are in the spool; returns them."""
        deadline = time.monotonic() + scaled(timeout)
        while True:
            msgs = self.spool()
            if len(msgs) >= n or time.monotonic() > deadline:
                return msgs
            time.sleep(0.02)

    def spool_by_id(self, mid):
        for m in self.spool():
            if m.id == mid:
                return m
        return None


# ---------------------------------------------------------------- Raw ----

class Raw:
    """A raw SMTP client: bytes in, replies out.

    read_reply() returns (code, lines) where lines are the texts after
    "250-" / "250 " of one full reply; code is None on EOF or timeout
    (self.error says which)."""

    def __init__(self, port, host="127.0.0.1", timeout=5, banner=False,
                 ehlo=None, helo=None, source=None):
        self.sock = socket.create_connection(
            (host, port), timeout=scaled(timeout),
            source_address=(source, 0) if source else None)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.eof = False
        self.error = None
        self.last = None
        if banner or ehlo or helo:
            self.expect(220, name="banner")
        if ehlo:
            self.send("EHLO %s\r\n" % ehlo)
            self.expect(250, name="EHLO %s" % ehlo)
        elif helo:
            self.send("HELO %s\r\n" % helo)
            self.expect(250, name="HELO %s" % helo)

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("utf-8")
        try:
            self.sock.sendall(data)
            return True
        except OSError as e:
            self.error = "send: %r" % (e,)
            return False

    def cmd(self, line, timeout=5):
        """Send one command line (CRLF added) and read its reply."""
        self.send(line + "\r\n")
        return self.read_reply(timeout)

    def _fill(self, deadline):
        if self.eof:
            return False
        left = deadline - time.monotonic()
        if left <= 0:
            self.error = "timeout"
            return False
        r, _, _ = select.select([self.sock], [], [], left)
        if not r:
            self.error = "timeout"
            return False
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError) as e:
            data = b""
            self.error = "reset: %r" % (e,)
        if not data:
            self.eof = True
            self.error = self.error or "eof"
            return False
        self.buf += data
        return True

    def read_line(self, timeout=5):
        deadline = time.monotonic() + scaled(timeout)
        while b"\r\n" not in self.buf:
            if not self._fill(deadline):
                return None
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode("utf-8", "replace")

    def read_reply(self, timeout=5):
        lines = []
        code = None
        while True:
            line = self.read_line(timeout)
            if line is None:
                self.last = (None, lines)
                return None, lines
            m = re.match(r"^(\d{3})([ -])(.*)$", line)
            if not m:
                self.error = "malformed reply line %r" % line
                self.last = (None, lines + [line])
                return None, lines + [line]
            c = int(m.group(1))
            if code is not None and c != code:
                self.error = "reply code changed inside a reply: %r" % line
            code = c
            lines.append(m.group(3))
            if m.group(2) == " ":
                self.last = (code, lines)
                return code, lines

    def read_replies(self, n, timeout=5):
        return [self.read_reply(timeout) for _ in range(n)]

    def expect(self, code, enh=None, name=None, timeout=5):
        """Read one reply and test its code (and enhanced code, e.g. "2.1.0",
        on the first line). Returns the reply lines."""
        got, lines = self.read_reply(timeout)
        name = name or "reply %d%s" % (code, " " + enh if enh else "")
        why = ["reply: %r %r (%s)" % (got, lines, self.error)]
        if enh is None:
            ok(got == code, name, *why)
        else:
            ok(got == code and bool(lines) and lines[0].startswith(enh + " ")
               or got == code and bool(lines) and lines[0] == enh,
               name, *why)
        return lines

    def closed(self, timeout=5):
        """True if the server closes the connection within timeout (any
        data that arrives first is kept in self.buf)."""
        deadline = time.monotonic() + scaled(timeout)
        while not self.eof:
            if not self._fill(deadline):
                break
        return self.eof

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()
        return False


# ------------------------------------------------------------ helpers ----

def stop_process(proc, grace=5):
    """SIGTERM a child we started, wait (bounded), SIGKILL if it lingers."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def send_message(port, mail_from, rcpts, data, ehlo="client.test",
                 raw_data=False):
    """One full transaction over a Raw session. `data` is the message
    (CRLF lines, not yet dot-stuffed unless raw_data) Returns the final
    (code, lines) for the data."""
    with Raw(port, banner=True) as r:
        r.cmd("EHLO " + ehlo)
        r.cmd("MAIL FROM:<%s>" % mail_from)
        for rc in rcpts:
            r.cmd("RCPT TO:<%s>" % rc)
        r.cmd("DATA")
        r.send(data if raw_data else dot_stuff(data) + b".\r\n")
        res = r.read_reply(timeout=30)
        r.cmd("QUIT")
        return res


def dot_stuff(data):
    """Dot-stuff CRLF message bytes and make sure they end in CRLF."""
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    out = re.sub(rb"(^|\r\n)\.", rb"\1..", data)
    return out


def queued_id(lines):
    """The id from a '2.0.0 Ok: queued as <ID>' reply, or None."""
    m = re.search(r"queued as (\S+)", " ".join(lines or []))
    return m.group(1) if m else None


def run(argv, timeout=10, **kw):
    """Run a command; returns CompletedProcess with text stdout/stderr."""
    return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                          timeout=scaled(timeout), text=True, **kw)


def sha256(b):
    return hashlib.sha256(b).hexdigest()
