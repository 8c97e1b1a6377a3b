#!/usr/bin/env python3
"""kasi --inetd: one SMTP session on stdin/stdout with the configured
plugins and queue, then exit 0. Over a socket (fd 0 and 1 the same
AF_UNIX socket, as inetd hands a TCP socket) and over a pipe pair; the
message is spooled; logging goes to stderr (or to syslog when stderr is
the connection itself)."""
import os
import socket
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kasitest import *  # noqa: E402,F401,F403

MSG = b"From: a@client.test\r\nSubject: inetd\r\n\r\none session\r\n"


class Stream:
    """read_reply over any readable fd."""

    def __init__(self, rfd, wfd):
        self.rfd, self.wfd, self.buf = rfd, wfd, b""

    def send(self, data):
        os.write(self.wfd, data if isinstance(data, bytes) else data.encode())

    def reply(self):
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                chunk = os.read(self.rfd, 65536)
                if not chunk:
                    return None, lines
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            lines.append(line.decode())
            if line[3:4] == b" ":
                return int(line[:3]), lines

    def cmd(self, line):
        self.send(line + "\r\n")
        return self.reply()[0]


def session(st):
    codes = [st.reply()[0], st.cmd("EHLO client.test"), st.cmd("MAIL FROM:<a@client.test>"),
             st.cmd("RCPT TO:<b@example.test>"), st.cmd("DATA")]
    st.send(dot_stuff(MSG) + b".\r\n")
    code, lines = st.reply()
    codes += [code, st.cmd("QUIT")]
    return codes, queued_id(lines)


WANT = [220, 250, 250, 250, 354, 250, 221]
files = {"config/plugins": "queue/spool\n"}

with Kasi(files=files, start=False) as k:
    a, b = socket.socketpair()
    with open(k.logfile, "wb") as log:
        p = subprocess.Popen([KASI_BIN, "--inetd", "-c", k.confdir], stdin=b, stdout=b,
                             stderr=log, cwd=k.tmp)
    b.close()
    codes, mid = session(Stream(a.fileno(), a.fileno()))
    is_(codes, WANT, "socket: a full session")
    is_(p.wait(timeout=scaled(10)), 0, "socket: kasi exits 0 after QUIT")
    a.close()
    m = k.spool_by_id(mid) if mid else None
    if ok(m, "socket: the message is spooled"):
        is_(m.body(), MSG, "  with its bytes")
        is_(m.env.get("remote_ip"), "127.0.0.1", "  a local connection")
    like(k.log(), r"plugins loaded: generation \d+: queue/spool", "the plugins were loaded")
    like(k.log(), r"connect ip=127\.0\.0\.1", "the session is logged to stderr")

with Kasi(files=files, start=False) as k:
    with open(k.logfile, "wb") as log:
        p = subprocess.Popen([KASI_BIN, "--inetd", "-c", k.confdir], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=log, cwd=k.tmp)
    codes, mid = session(Stream(p.stdout.fileno(), p.stdin.fileno()))
    is_(codes, WANT, "pipes: a full session")
    p.stdin.close()
    is_(p.wait(timeout=scaled(10)), 0, "pipes: kasi exits 0")
    p.stdout.close()
    ok(mid and k.spool_by_id(mid), "pipes: the message is spooled")

    # the client goes away without QUIT: the session ends, kasi exits
    with open(k.logfile, "ab") as log:
        p = subprocess.Popen([KASI_BIN, "--inetd", "-c", k.confdir], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=log, cwd=k.tmp)
    st = Stream(p.stdout.fileno(), p.stdin.fileno())
    is_(st.reply()[0], 220, "pipes: banner")
    st.send("EHLO client.test\r\nMAIL FROM:<a@client.test>\r\n")
    p.stdin.close()
    is_(p.wait(timeout=scaled(10)), 0, "stdin closed mid-session: kasi exits 0")
    p.stdout.close()

# a plugin that cannot load: exit 1, nothing served
with Kasi(files={"config/plugins": "nope\n"}, start=False) as k:
    with open(k.logfile, "wb") as log:
        r = subprocess.run([KASI_BIN, "--inetd", "-c", k.confdir], stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=log, cwd=k.tmp, timeout=scaled(10))
    is_(r.returncode, 1, "a broken plugin list: exit 1")
    like(k.log(), r"nope", "  logged")

done()
