#!/usr/bin/env python3
"""Command line: -V, usage errors, -t configuration checks (with file:line:
key errors), -c with its default, and --listen overriding the listeners."""
import os
import re
import shutil
import socket
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kasitest import *  # noqa: E402,F401,F403


TMPDIRS = []


def write_conf(text, name="smtp.yaml", base=None):
    if base is None:
        base = tempfile.mkdtemp(prefix="kasi-cli-")
        TMPDIRS.append(base)
    os.makedirs(os.path.join(base, "config"), exist_ok=True)
    with open(os.path.join(base, "config", name), "w") as f:
        f.write(text)
    return base, os.path.join(base, "config")


def check_conf(text, **kw):
    _, confdir = write_conf(text)
    return run([KASI_BIN, "-t", "-c", confdir], **kw)


# -V
r = run([KASI_BIN, "-V"])
is_(r.returncode, 0, "-V exits 0")
like(r.stdout, r"^kasi \S+", "-V prints 'kasi <version>'")

# unknown option
r = run([KASI_BIN, "--no-such-option"])
is_(r.returncode, 2, "unknown option exits 2")
like(r.stderr, r"(?i)usage", "unknown option prints usage on stderr")
is_(r.stdout, "", "nothing on stdout for a usage error")

# --user: a user that does not exist is refused before anything starts
_, d = write_conf("listen:\n  - 127.0.0.1:0\n")
r = run([KASI_BIN, "-t", "-c", d, "--user", "no-such-user-kasi"])
is_(r.returncode, 1, "--user with an unknown user: exit 1")
like(r.stderr, r"--user no-such-user-kasi: no such user", "--user: the reason")
r = run([KASI_BIN, "-t", "-c", d, "--user", "nobody"])
ok(r.returncode == 0, "--user nobody: -t accepts it", r.stderr)

# a full, valid configuration
FULL = """\
hostname: mx.example.test
listen:
  - "127.0.0.1:2525"
  - "[::1]:2525"
limits:
  max_connections: 500
  max_connections_per_ip: 20
  max_recipients: 50
  max_errors: 5
  max_message_size: "10M"
  max_line_length: 998
  max_command_length: 2048
  memory_buffer: "256K"
timeouts:
  command: 1.5
  data_block: 60
  shutdown: 0.5
data:
  bare_lf: accept
  long_lines: wrap
spool_dir: /tmp/kasi-spool-check
log:
  target: stderr
  level: info
"""
r = check_conf(FULL)
is_(r.returncode, 0, "-t: full valid config exits 0") or diag(r.stderr)
like(r.stdout + r.stderr, r"configuration ok", "-t prints 'configuration ok'")

r = check_conf(FULL.replace('"10M"', "1048576").replace("bare_lf: accept", "bare_lf: reject")
               .replace("long_lines: wrap", "long_lines: reject"))
is_(r.returncode, 0, "-t: message size in bytes, reject policies") or diag(r.stderr)

r = check_conf("")
is_(r.returncode, 0, "-t: empty smtp.yaml means defaults") or diag(r.stderr)

# unknown keys: file, line and key named
r = check_conf("hostname: a.test\nlisten:\n  - \"127.0.0.1:0\"\nbogus_key: 1\n")
is_(r.returncode, 1, "-t: unknown top-level key exits 1")
like(r.stderr, r"smtp\.yaml:4:", "error names smtp.yaml and line 4")
like(r.stderr, r"bogus_key", "error names the key")

r = check_conf("hostname: a.test\nlimits:\n  max_recipients: 5\n  max_frobs: 3\n")
is_(r.returncode, 1, "-t: unknown key under limits exits 1")
like(r.stderr, r"smtp\.yaml:4:.*max_frobs", "error names file:line and nested key")

r = check_conf("timeouts:\n  command: 10\n  idle_forever: 1\n")
is_(r.returncode, 1, "-t: unknown key under timeouts exits 1")
like(r.stderr, r"smtp\.yaml:3:.*idle_forever", "error names file:line and key")

# bad values
bad_values = [
    ("data:\n  bare_lf: maybe\n", 2, "bare_lf"),
    ("data:\n  long_lines: chop\n", 2, "long_lines"),
    ("log:\n  level: loud\n", 2, "level"),
    ("log:\n  target: printer\n", 2, "target"),
    ("limits:\n  max_message_size: \"ten megs\"\n", 2, "max_message_size"),
    ("limits:\n  max_recipients: -3\n", 2, "max_recipients"),
    ("timeouts:\n  command: soon\n", 2, "command"),
    ("listen:\n  - \"127.0.0.1\"\n", 2, "listen"),
    ("listen: 25\nhostname: x\n", 1, "listen"),
]
for text, line, key in bad_values:
    r = check_conf(text)
    is_(r.returncode, 1, "-t rejects %r" % text)
    like(r.stderr, r"smtp\.yaml:%d:" % line, "  error names smtp.yaml:%d" % line)
    like(r.stderr, key, "  error names %s" % key)

r = check_conf("limits: [1, 2\n")
is_(r.returncode, 1, "-t: YAML syntax error exits 1")
like(r.stderr, r"smtp\.yaml:\d+:", "  YAML syntax error names file:line")

# -c defaults to ./config
base, _ = write_conf("hostname: a.test\nnot_a_key: 1\n")
r = run([KASI_BIN, "-t"], cwd=base)
is_(r.returncode, 1, "-t without -c reads ./config (bad key found)")
like(r.stderr, r"smtp\.yaml:2:.*not_a_key", "  and names ./config/smtp.yaml:2")
base, _ = write_conf("hostname: a.test\n")
r = run([KASI_BIN, "-t"], cwd=base)
is_(r.returncode, 0, "-t without -c: good ./config exits 0") or diag(r.stderr)

# a running server: banner uses the hostname
with Kasi() as k:
    with Raw(k.port) as c:
        code, lines = c.read_reply()
        is_(code, 220, "server answers with 220")
        like(lines[0] if lines else "", r"^mx\.kasi\.test ESMTP kasi",
             "banner is '<hostname> ESMTP kasi'")
    like(k.log(), r"listening on 127\.0\.0\.1:%d" % k.port, "log names the bound port")


def ipv6_loopback():
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.bind(("::1", 0))
        s.close()
        return True
    except OSError:
        return False


# --listen overrides the configured listeners (repeatable)
listens = ["--listen", "127.0.0.1:0"]
if ipv6_loopback():
    listens += ["--listen", "[::1]:0"]
with Kasi({"listen": ["127.0.0.2:0"]}, args=listens,
          ready_regex=r"listening on (?:127\.0\.0\.\d|\[::1\]):(\d+)") as k:
    log = k.log()
    unlike(log, r"listening on 127\.0\.0\.2:", "--listen replaces configured listeners")
    m = re.search(r"listening on 127\.0\.0\.1:(\d+)", log)
    ok(m, "--listen 127.0.0.1:0 is used")
    if m:
        with Raw(int(m.group(1)), banner=True) as c:
            c.cmd("QUIT")
    if "[::1]:0" in listens:
        m = re.search(r"listening on \[::1\]:(\d+)", log)
        ok(m, "second --listen [::1]:0 is used too")
        if m:
            with Raw(int(m.group(1)), host="::1", banner=True) as c:
                code, _ = c.cmd("EHLO v6.test")
                is_(code, 250, "EHLO over IPv6")
    else:
        diag("no IPv6 loopback: skipped the [::1] listener")

# IPv6 listener from the config file
if ipv6_loopback():
    with Kasi({"listen": ["[::1]:0"]}) as k:
        with Raw(k.port, host="::1", banner=True) as c:
            c.cmd("EHLO v6.test")
            c.cmd("MAIL FROM:<a@v6.test>")
            c.cmd("RCPT TO:<b@v6.test>")
            c.cmd("DATA")
            c.send("Subject: v6\r\n\r\nhi\r\n.\r\n")
            c.expect(250, "2.0.0", "message over IPv6 accepted")
        msgs = k.spool()
        is_(len(msgs), 1, "IPv6 message spooled")
        if msgs:
            is_(msgs[0].env.get("remote_ip"), "::1", "remote_ip is ::1")

# the server refuses to start on a broken config, naming file:line
d = Kasi(yaml="hostname: x\nlimits:\n  nope: 1\n", start=False)
r = run([KASI_BIN, "-c", d.confdir])
is_(r.returncode, 1, "server exits 1 on a bad config")
like(r.stderr, r"smtp\.yaml:3:.*nope", "  naming file:line and key")
d.cleanup()

for path in TMPDIRS:
    shutil.rmtree(path, ignore_errors=True)
done()
