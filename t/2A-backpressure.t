#!/usr/bin/env python3
"""Output backpressure and the budget of commands that move no mail.

A client that pipelines HELP and never reads: kasi stops reading it once
256 KiB of replies wait, the worker's memory stays flat, and when the
client has read nothing for the command timeout it is dropped (and its
descriptor freed). A client that floods and then reads gets every reply,
in order, and the session goes on. In plain SMTP, after STARTTLS and on an
implicit-TLS port. After STARTTLS, a burst of more than 256 KiB (the read
limit) pipelined while a plugin's hook waits (kasi.sleep in hook_mail):
every reply arrives once, in order, each naming its own command, whether
the client reads meanwhile or only afterwards. Then
limits.max_junk_commands: a HELP flood and a RCPT flood past
max_recipients end with 421 4.7.0; an accepted message renews the
budget."""
import os
import re
import select
import ssl
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kasitest import *  # noqa: E402,F401,F403
from proctest import rss_kib, settle_fds, worker_pid  # noqa: E402
from tlstest import RawTLS, client_ctx, make_pki, start, tls_yaml  # noqa: E402

pki = make_pki(tempfile.mkdtemp(prefix="kasi-pki-"), {"mx": ["mx.kasi.test"]})
CTX = client_ctx(pki["ca"])
FLOOD = b"HELP\r\n" * (30 * 1024 * 1024 // 6)     # 30 MB of commands
PIECE = 16384                                     # TLS retries need the same bytes
WOULD_BLOCK = (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError)


def server(extra):
    """Listeners: plain, STARTTLS, implicit TLS. Logs at info: a debug line
    per command would make the log the bottleneck."""
    tmp = tempfile.mkdtemp(prefix="kasi-t-spool-")
    y = tls_yaml(tmp, [{"tls": "none"}, {"tls": "starttls"}, {"tls": "implicit"}],
                 [pki["mx"]], extra="timeouts:\n  shutdown: 1\n" + extra)
    return start(y.replace("level: debug", "level: " + os.environ.get("LVL", "info")), 3)


def connect(k, mode):
    if mode == "implicit":
        c = RawTLS.connect_tls(k.ports[2], CTX)
        c.expect(220, name="implicit: banner")
    else:
        c = RawTLS(k.ports[0 if mode == "plain" else 1], banner=True)
    c.cmd("EHLO client.test")
    if mode == "starttls":
        c.cmd("STARTTLS")
        c.starttls(CTX)
        c.cmd("EHLO client.test")
    return c


def try_send(sock, data, sent):
    """Bytes sent; 0 when the socket is full, -1 when the server is gone."""
    try:
        return sock.send(data[sent:sent + PIECE])
    except WOULD_BLOCK:
        return 0
    except OSError:
        return -1


def flood(c, data, seconds=15):
    """Send data without reading until all is sent, the send makes no
    progress for a second, or `seconds` pass. Returns the bytes sent."""
    s = c.sock
    s.setblocking(False)
    sent, last = 0, time.monotonic()
    end = last + scaled(seconds)
    while sent < len(data) and time.monotonic() < end and time.monotonic() - last < 1:
        select.select([], [s], [], 0.1)
        n = try_send(s, data, sent)
        if n < 0:
            break
        if n:
            sent, last = sent + n, time.monotonic()
    return sent


def try_recv(sock):
    try:
        return sock.recv(65536) or None
    except WOULD_BLOCK:
        return b""
    except OSError:
        return None


def pump(c, data, sent, nlines, seconds=30):
    """Send the rest of data while reading; returns the bytes read once
    nlines reply lines came (or the time is up, or EOF)."""
    s, got, lines = c.sock, bytearray(), 0
    end = time.monotonic() + scaled(seconds)
    while lines < nlines and time.monotonic() < end:
        pending = isinstance(s, ssl.SSLSocket) and s.pending()
        r, w, _ = select.select([s], [s] if sent < len(data) else [], [], 0 if pending else 0.2)
        if r or pending:
            chunk = try_recv(s)
            if chunk is None:
                break
            got += chunk
            lines += chunk.count(b"\n")
        if w:
            sent += max(try_send(s, data, sent), 0)
    return bytes(got)


for mode in ("plain", "starttls", "implicit"):
    # ------------------------------------------------ a client that never reads
    with server("  command: 2\nlimits:\n  max_junk_commands: 0\n") as k:
        wpid = worker_pid(k)
        c = connect(k, mode)
        fds, rss0 = settle_fds(wpid, 0, 0.3), rss_kib(wpid)
        sent = flood(c, FLOOD)
        grown = rss_kib(wpid) - rss0
        diag("%s: sent %d bytes of HELP without reading; worker RSS %+d KiB" %
             (mode, sent, grown))
        ok(k.wait_log(r"output over 256 KiB: input waits", 2),
           "%s: kasi stops reading a client that reads no replies" % mode)
        if os.environ.get("KASI_ASAN"):     # freed memory waits in its quarantine
            diag("sanitizer build: RSS not compared")
        else:
            ok(grown < 32 * 1024, "%s: worker RSS grew %d KiB (< 32 MiB) for %d MB sent" %
               (mode, grown, sent // 1000000))
        ok(k.wait_log(r"client reads no replies \(2 s\), closing", 6),
           "%s: the non-reading client is dropped after the command timeout" % mode)
        ok(k.wait_log(r"disconnect .*result=stalled", 3), "%s: result=stalled" % mode)
        got = settle_fds(wpid, fds - 1, 5)
        ok(got < fds, "%s: its descriptor is closed (%d, was %d)" % (mode, got, fds))
        c.close()

    # ------------------------------------------- a client that floods, then reads
    with server("limits:\n  max_junk_commands: 0\n") as k:
        n = 150000                  # 0.9 MB of commands, 15 MB of replies
        data = b"HELP\r\n" * n + b"VRFY sync\r\n"
        c = connect(k, mode)
        sent = flood(c, data)
        ok(k.wait_log(r"output over 256 KiB: input waits", 2),
           "%s: %d pipelined HELPs fill the output bound" % (mode, n))
        got = pump(c, data, sent, 2 * n + 1)
        last = re.findall(rb"^(\d{3}) ", got, re.M)
        is_(len(last), n + 1, "%s: every reply arrives once the client reads" % mode)
        ok(last[:n] == [b"214"] * n and last[n:] == [b"252"],
           "%s: replies in order, VRFY last" % mode)
        c.sock.setblocking(True)
        c.sock.settimeout(scaled(5))
        is_(c.cmd("NOOP")[0], 250, "%s: the session goes on" % mode)
        c.close()

# ------------- after STARTTLS: past the read limit while a hook waits
# hook_mail sleeps 1 s; each RCPT's reply names its recipient, so a lost,
# doubled or shifted byte shows as a wrong line
ECHO = r'''
function hook_mail(conn, txn, from) kasi.sleep(1) end
function hook_rcpt(conn, txn, rcpt) return OK, "got " .. rcpt.user end
'''
NRCPT = 12000                   # 372 KB of commands, > 256 KiB
BURST = (b"MAIL FROM:<a@client.test>\r\n" +
         b"".join(b"RCPT TO:<u%05d@example.test>\r\n" % i for i in range(NRCPT)) +
         b"QUIT\r\n")
WANT = ([b"250 2.1.0 Ok"] + [b"250 2.1.5 got u%05d" % i for i in range(NRCPT)] +
        [b"221 2.0.0 mx.kasi.test closing connection"])
y = tls_yaml(tempfile.mkdtemp(prefix="kasi-t-spool-"), [{"tls": "starttls"}], [pki["mx"]],
             extra="limits:\n  max_recipients: 100000\n  max_junk_commands: 0\n")
with start(y.replace("level: debug", "level: info"), 1,
           files={"config/plugins": "echo timeout=30\nqueue/discard\n",
                  "plugins/echo.lua": ECHO}) as k:
    for reading in ("while it sends", "only after the burst is in"):
        c = RawTLS(k.port, banner=True)
        c.cmd("EHLO client.test")
        c.cmd("STARTTLS")
        c.starttls(CTX)
        c.cmd("EHLO client.test")
        sent = flood(c, BURST) if reading.startswith("only") else 0
        got = pump(c, BURST, sent, len(WANT))
        lines = got.split(b"\r\n")[:-1]
        bad = [i for i, (a, b) in enumerate(zip(lines, WANT)) if a != b]
        ok(lines == WANT, "STARTTLS, a %d KB burst while hook_mail waits, the client reads %s: "
           "%d replies, in order" % (len(BURST) // 1000, reading, len(WANT)),
           "got %d lines; first wrong: %r" % (len(lines), [(i, lines[i]) for i in bad[:3]]))
        c.close()
    ok(k.wait_count(r"disconnect .*tls=TLSv1\.\d .*rcpts=0 bytes=\d+ .*result=quit", 2),
       "  both sessions end with QUIT")

# ---------------------------------------------------- the budget (plain SMTP)
with Kasi({"limits": {"max_junk_commands": 50, "max_recipients": 2}}) as k:
    with Raw(k.port, ehlo="client.test") as c:      # EHLO is the first of 50
        c.send("HELP\r\n" * 100)
        rs = []
        while True:
            code, _ = c.read_reply()
            rs.append(code)
            if code != 214:
                break
        is_(rs, [214] * 49 + [421], "HELP flood: 49 answers, then 421")
        like(" ".join(c.last[1]), r"^4\.7\.0 Too many commands without mail", "  421 4.7.0")
        ok(c.closed(3), "  and closed")
    ok(k.wait_log(r"too many commands without mail \(50\), closing"), "  logged")

    with Raw(k.port, ehlo="client.test") as c:
        c.send("MAIL FROM:<a@client.test>\r\n" + "RCPT TO:<b@example.test>\r\n" * 60)
        rs = [c.read_reply()[0] for _ in range(3 + 49 + 1)]
        is_(rs, [250, 250, 250] + [452] * 49 + [421],
            "RCPT flood past max_recipients: 452 counts, then 421")
        ok(c.closed(3), "  and closed")

    with Raw(k.port, ehlo="client.test") as c:
        c.send("NOOP\r\n" * 40)
        a = [x for x, _ in c.read_replies(40)]
        c.send("MAIL FROM:<a@client.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n")
        c.read_replies(3)
        c.send("Subject: budget\r\n\r\nrenewed\r\n.\r\n")
        code, _ = c.read_reply()
        c.send("NOOP\r\n" * 40)
        b = [x for x, _ in c.read_replies(40)]
        ok(a == b == [250] * 40 and code == 250,
           "an accepted message renews the budget (40 + message + 40 NOOPs)")
        is_(c.cmd("QUIT")[0], 221, "  QUIT")
    is_(len(k.spool()), 1, "the message is spooled")

done()
