#!/usr/bin/env python3
"""PROXY protocol listeners (smtp.yaml listen: proxy_protocol, proxy_from,
timeouts.proxy_header), with the headers written by hand:

  * version 1 and version 2 headers (IPv4, IPv6, TLVs with a CRC32C, a
    balancer's LOCAL health check): the client they name is what the log,
    the EHLO greeting, a plugin (conn.remote_ip/port, local_ip/port,
    proxy_ip), Received: and the per-network connection limit see;
  * bytes the client sent right after the header are the session's;
  * an implicit-TLS listener takes the header before the handshake;
  * refused cleanly (a 421 line, then closed, logged; the server goes on):
    a connection from outside proxy_from, malformed headers (a table), a
    version the listener does not take, plain SMTP with no header, a
    header cut short, a header that does not arrive in time (while one
    trickled in slowly but in time is accepted)."""
import os
import socket
import shutil
import struct
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kasitest import *  # noqa: E402,F401,F403
import tlstest  # noqa: E402

SIG = b"\r\n\r\n\x00\r\nQUIT\n"

SEEN = """
local P = {}
function P.hook_connect(conn)
  conn:loginfo("seen remote=%s:%d local=%s:%d proxy=%s", conn.remote_ip,
               conn.remote_port, conn.local_ip, conn.local_port,
               conn.proxy_ip or "-")
  return NEXT
end
return P
"""


def v1(src="192.0.2.7", dst="198.51.100.1", sport=56324, dport=25, proto="TCP4"):
    return ("PROXY %s %s %s %d %d\r\n" % (proto, src, dst, sport, dport)).encode()


def tlv(t, v):
    return bytes([t]) + struct.pack(">H", len(v)) + v


def crc32c(b):
    c = 0xFFFFFFFF
    for x in b:
        c ^= x
        for _ in range(8):
            c = (c >> 1) ^ (0x82F63B78 if c & 1 else 0)
    return c ^ 0xFFFFFFFF


def v2(src="192.0.2.7", dst="198.51.100.1", sport=56324, dport=25, cmd=1,
       tlvs=b"", crc=False, fam=None):
    if cmd == 0:
        block, fam = b"", 0x00
    elif ":" in src:
        block = (socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst)
                 + struct.pack(">HH", sport, dport))
        fam = fam or 0x21
    else:
        block = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack(">HH", sport, dport)
        fam = fam or 0x11
    body = block + tlvs + (tlv(0x03, b"\0\0\0\0") if crc else b"")
    h = SIG + bytes([0x20 | cmd, fam]) + struct.pack(">H", len(body)) + body
    if crc:
        h = h[:-4] + struct.pack(">I", crc32c(h))
    return h


def yaml(spool, proto="any", proxy_from='["127.0.0.1/32"]', extra=""):
    return ("hostname: mx.kasi.test\nspool_dir: %s\nlog: {target: stderr, level: debug}\n"
            "listen:\n  - address: 127.0.0.1:0\n    proxy_protocol: %s\n"
            "    proxy_from: %s\n%s" % (spool, proto, proxy_from, extra))


def files(extra_plugins=""):
    return {"config/plugins": "seen\n" + extra_plugins + "queue/spool\n",
            "plugins/seen.lua": SEEN}


def start(**kw):
    tmp_spool = kw.pop("spool", None)
    k = Kasi(yaml="", files=files(), start=False)
    with open(os.path.join(k.confdir, "smtp.yaml"), "w") as f:
        f.write(yaml(tmp_spool or k.spool_dir, **kw))
    k.start()
    return k


def connect(k, header, source=None):
    c = Raw(k.port, source=source)
    if header:
        c.send(header)
    return c


def refused(c, code, enh, name):
    got, lines = c.read_reply()
    ok(got == code and lines and lines[0].startswith(enh), "%s: %d %s" % (name, code, enh),
       "reply %r %r" % (got, lines))
    ok(c.closed(), "%s: closed" % name)
    c.close()


def deliver(k, header, ehlo="client.test"):
    """A message through a proxied connection; returns (EHLO lines, 250 id)."""
    with connect(k, header) as c:
        c.expect(220, name="banner after the header")
        code, ehlo_lines = c.cmd("EHLO " + ehlo)
        c.cmd("MAIL FROM:<a@example.org>")
        c.cmd("RCPT TO:<b@example.com>")
        c.cmd("DATA")
        c.send(b"Subject: proxied\r\n\r\nhello\r\n.\r\n")
        code, lines = c.read_reply()
        c.cmd("QUIT")
        return ehlo_lines, queued_id(lines) if code == 250 else None


# ---- the client the header names is the client everywhere ----
with start() as k:
    like(k.log(), r"listening on 127\.0\.0\.1:\d+ \(PROXY\)", "listener logged as PROXY")
    ehlo, mid = deliver(k, v1())
    like(ehlo[0], r"Hello client\.test \[192\.0\.2\.7\]", "v1: EHLO greets the named client")
    ok(k.wait_log(r"connect ip=192\.0\.2\.7 port=56324 local=198\.51\.100\.1:25 via=127\.0\.0\.1"),
       "v1: connect line names client, destination and balancer")
    ok(k.wait_log(r"seen remote=192\.0\.2\.7:56324 local=198\.51\.100\.1:25 proxy=127\.0\.0\.1"),
       "v1: a plugin sees the named client")
    m = k.spool_by_id(mid)
    ok(m is not None, "v1: message spooled")
    if m:
        like(m.received(), r"from client\.test \(unknown \[192\.0\.2\.7\]\)", "v1: Received: names the client")
        unlike(m.received(), r"127\.0\.0\.1", "v1: Received: never names the balancer")
    ok(k.wait_log(r"disconnect ip=192\.0\.2\.7 port=56324"), "v1: summary line names the client")

    ehlo, mid = deliver(k, v1("2001:db8::7", "2001:db8::1", 443, 2525, "TCP6"))
    like(ehlo[0], r"\[2001:db8::7\]", "v1 TCP6: the IPv6 client")
    ok(k.wait_log(r"connect ip=2001:db8::7 port=443 local=2001:db8::1:2525 via=127\.0\.0\.1"),
       "v1 TCP6: logged")

    hdr = v2("2001:db8::9", "2001:db8::1", 40000, 25, crc=True,
             tlvs=tlv(0x02, b"mx.example") + tlv(0x05, b"req-42") +
             tlv(0x20, bytes([1, 0, 0, 0, 0]) + tlv(0x21, b"TLSv1.3") + tlv(0x23, b"TLS_AES_128_GCM_SHA256"))
             + tlv(0x04, b"\0\0") + tlv(0xE3, b"vendor"))
    ehlo, mid = deliver(k, hdr)
    like(ehlo[0], r"\[2001:db8::9\]", "v2 with TLVs and CRC32C: the named client")
    ok(k.wait_log(r"PROXY v2 from 127\.0\.0\.1:\d+: client \[2001:db8::9\]:40000 to "
                  r"\[2001:db8::1\]:25 authority=mx\.example tls=TLSv1\.3 id=req-42 crc=ok"),
       "v2: TLVs read (authority, TLS, unique id, CRC32C)")
    ok(k.spool_by_id(mid) is not None, "v2 with TLVs: message spooled")

    ehlo, mid = deliver(k, v2(cmd=0))
    like(ehlo[0], r"\[127\.0\.0\.1\]", "v2 LOCAL: the balancer's own connection")
    ok(k.wait_log(r"seen remote=127\.0\.0\.1:\d+ local=127\.0\.0\.1:\d+ proxy=-"),
       "v2 LOCAL: no proxy, the socket's own addresses")

    # the bytes after the header belong to the session, even in one packet
    with connect(k, v1("192.0.2.44") + b"QUIT\r\n") as c:
        c.expect(220, name="header and QUIT in one packet: banner")
        c.expect(221, name="header and QUIT in one packet: QUIT answered")

    # a header trickled in, slowly but within timeouts.proxy_header
    with Raw(k.port) as c:
        h = v2("192.0.2.45")
        for i in range(0, len(h), 5):
            c.send(h[i:i + 5])
            time.sleep(0.05)
        c.expect(220, name="header in 5-byte pieces: banner")
        code, lines = c.cmd("EHLO x")
        like(lines[0] if lines else "", r"\[192\.0\.2\.45\]", "header in pieces: the client named")

    # ---- refused cleanly ----
    bad = [
        ("plain SMTP, no header", b"EHLO client.test\r\n"),
        ("v1 with two spaces", b"PROXY TCP4  192.0.2.7 198.51.100.1 1 25\r\n"),
        ("v1 bad address", b"PROXY TCP4 192.0.2.300 198.51.100.1 1 25\r\n"),
        ("v1 port with a leading zero", b"PROXY TCP4 192.0.2.7 198.51.100.1 01 25\r\n"),
        ("v1 bare LF", b"PROXY TCP4 192.0.2.7 198.51.100.1 1 25\n"),
        ("v1 over 107 bytes", b"PROXY TCP4 " + b"1" * 120),
        ("v2 wrong version nibble", v2()[:12] + b"\x11" + v2()[13:]),
        ("v2 TLV overrunning", v2(tlvs=b"\x02\x00\x09mx")),
        ("v2 bad CRC32C", v2(crc=True)[:-1] + bytes([v2(crc=True)[-1] ^ 1])),
        ("v2 datagram", v2(fam=0x12)),
        ("v2 longer than 2048 bytes", SIG + b"\x21\x11\x08\x00"),
    ]
    for name, data in bad:
        with connect(k, data) as c:
            refused(c, 421, "4.7.0", name)
    ok(k.count_log(r"PROXY header from 127\.0\.0\.1:\d+ refused: ") >= len(bad),
       "every malformed header logged with its reason")

    # cut short: the balancer goes away in the middle of the header
    with connect(k, b"PROXY TCP4 192.0.2.7 ") as c:
        c.sock.shutdown(socket.SHUT_WR)
        ok(c.closed(), "header cut short: closed")
    ok(k.wait_log(r"refused: connection closed before the end of the header"),
       "header cut short: logged")
    ehlo, mid = deliver(k, v1("192.0.2.46"))
    ok(mid, "after all that the listener still serves")

# ---- listener variants and limits ----
with start(proto="v2") as k:
    with connect(k, v1()) as c:
        refused(c, 421, "4.7.0", "v1 header on a v2-only listener")
    ok(k.wait_log(r"version 1 header on a version 2 listener"), "v2-only: reason logged")
    ehlo, mid = deliver(k, v2("192.0.2.50"))
    like(ehlo[0], r"\[192\.0\.2\.50\]", "v2-only listener takes v2")

with start(proto="v1") as k:
    with connect(k, v2()) as c:
        refused(c, 421, "4.7.0", "v2 header on a v1-only listener")

with start(proxy_from='["127.0.0.2/32"]') as k:
    with connect(k, v1()) as c:
        refused(c, 421, "4.7.0", "connection from outside proxy_from")
    ok(k.wait_log(r"connection from 127\.0\.0\.1:\d+ refused: not in proxy_from"),
       "outside proxy_from: logged")
    ok(not k.wait_log(r"connect ip=", timeout=0.3), "outside proxy_from: no session began")

with start(extra="timeouts:\n  proxy_header: 1\n") as k:
    t0 = time.monotonic()
    with connect(k, b"PROXY TCP4 192.0.2.7") as c:
        refused(c, 421, "4.4.2", "slow header")
    ok(time.monotonic() - t0 >= 0.9, "slow header: not refused before timeouts.proxy_header")
    ok(k.wait_log(r"no complete header within 1 s \(20 bytes\)"), "slow header: logged with what came")
    with Raw(k.port) as c:                  # nothing at all
        refused(c, 421, "4.4.2", "silent connection")

# the per-network connection limit counts the client the header names
lim = "limits:\n  max_connections_per_ip: 2\n  exempt: []\n"
with start(extra=lim) as k:
    held = [connect(k, v1("192.0.2.60", sport=1000 + i)) for i in range(2)]
    for i, c in enumerate(held):
        c.expect(220, name="limit: connection %d from 192.0.2.60" % (i + 1))
    with connect(k, v1("192.0.2.60", sport=1002)) as c:
        refused(c, 421, "4.7.0", "limit: a third from 192.0.2.60")
    with connect(k, v1("192.0.2.61")) as c:
        c.expect(220, name="limit: another client through the same balancer is admitted")
    ok(k.wait_log(r"per-network connection limit \(2\) reached for 192\.0\.2\.60"),
       "limit: logged for the named client, not the balancer")
    for c in held:
        c.close()

# implicit TLS: the header comes before the handshake, which then works
d = tempfile.mkdtemp(prefix="kasi-pki-")
pki = tlstest.make_pki(d, {"mx": ["mx.kasi.test"]})
cert, key = pki["mx"]
tls_extra = "tls:\n  certificates:\n    - {cert: %s, key: %s}\n" % (cert, key)
k = Kasi(yaml="", files=files(), start=False)
with open(os.path.join(k.confdir, "smtp.yaml"), "w") as f:
    f.write(yaml(k.spool_dir, extra=tls_extra).replace(
        "    proxy_protocol:", "    tls: implicit\n    proxy_protocol:"))
with k.start():
    s = socket.create_connection(("127.0.0.1", k.port), timeout=scaled(5))
    s.sendall(v1("192.0.2.70"))
    ts = tlstest.client_ctx(pki["ca"]).wrap_socket(s, server_hostname="mx.kasi.test")
    banner = ts.recv(4096)
    like(banner.decode(), r"^220 ", "implicit TLS after the header: banner over TLS")
    ts.sendall(b"EHLO x\r\n")
    like(ts.recv(4096).decode(), r"\[192\.0\.2\.70\]", "implicit TLS: the named client")
    ts.close()
shutil.rmtree(d, ignore_errors=True)

done()
