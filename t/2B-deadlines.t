#!/usr/bin/env python3
"""Deadlines a trickling client cannot reset: timeouts.tls_handshake bounds
the whole TLS handshake (implicit TLS and STARTTLS; a ClientHello sent one
byte at a time, or nothing at all), and timeouts.min_data_rate bounds a
message's data (DATA or BDAT one byte at a time, each byte well inside the
data_block timeout). A client above the rate, or fast, is served."""
import os
import ssl
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kasitest import *  # noqa: E402,F401,F403
from proctest import settle_fds, worker_pid  # noqa: E402
from tlstest import RawTLS, client_ctx, make_pki, start, tls_yaml  # noqa: E402

pki = make_pki(tempfile.mkdtemp(prefix="kasi-pki-"), {"mx": ["mx.kasi.test"]})
CTX = client_ctx(pki["ca"])


def client_hello():
    """The bytes a TLS client sends first."""
    into, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = CTX.wrap_bio(into, out, server_side=False)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def trickle(c, data, every, limit):
    """Send data a byte at a time, one each `every` seconds, until the
    server closes or `limit` seconds pass. Returns (closed, seconds)."""
    t0 = time.monotonic()
    for b in data:
        if time.monotonic() - t0 > scaled(limit):
            break
        if not c.send(bytes([b])) or paced_closed(c, every):
            return True, time.monotonic() - t0
    return c.closed(0.1), time.monotonic() - t0


def paced_closed(c, every):
    """Wait `every` seconds of real time (the client's pace, not scaled for
    slow builds), then report whether the server has closed."""
    time.sleep(every)
    return c.closed(0.01)


def handshake_server():
    extra = "timeouts:\n  command: 30\n  tls_handshake: 2\n"
    return start(tls_yaml(tempfile.mkdtemp(prefix="kasi-t-spool-"),
                          [{"tls": "starttls"}, {"tls": "implicit"}], [pki["mx"]],
                          extra=extra), 2)


with handshake_server() as k:
    wpid = worker_pid(k)
    c = RawTLS(k.ports[0], banner=True)     # a warm-up: DNS descriptors open
    c.cmd("QUIT")
    c.closed(3)
    c.close()
    base = settle_fds(wpid, 0, 0.5)
    hello = client_hello()
    ok(len(hello) > 100, "a ClientHello of %d bytes" % len(hello))
    nfail = k.count_log(r"TLS handshake failed: not done within 2 s")

    c = RawTLS(k.ports[1])                  # implicit TLS, one byte each 0.3 s
    closed, took = trickle(c, hello, 0.3, 10)
    ok(closed, "implicit TLS: a trickled ClientHello is cut (%.1f s)" % took)
    ok(took >= 1.5, "  not before the 2 s handshake deadline")
    c.close()
    ok(k.wait_count(r"TLS handshake failed: not done within 2 s", nfail + 1, 3), "  logged")

    c = RawTLS(k.ports[1])                  # implicit TLS, silent
    ok(c.closed(8), "implicit TLS: a silent client is closed at the deadline")
    c.close()

    c = RawTLS(k.ports[0], banner=True)     # STARTTLS, then a trickled hello
    c.cmd("EHLO client.test")
    is_(c.cmd("STARTTLS")[0], 220, "STARTTLS: 220")
    closed, took = trickle(c, hello, 0.3, 10)
    ok(closed, "STARTTLS: a trickled ClientHello is cut (%.1f s)" % took)
    c.close()
    ok(k.wait_count(r"TLS handshake failed: not done within 2 s", nfail + 3, 3),
       "  every cut handshake logged")
    got = settle_fds(wpid, base, 5)
    ok(got <= base, "the worker holds no descriptor for them (%d, before %d)" % (got, base))

    c = RawTLS.connect_tls(k.ports[1], CTX) # a normal handshake still works
    c.expect(220, name="implicit TLS: a real client gets the banner")
    is_(c.cmd("EHLO client.test")[0], 250, "  and EHLO")
    c.close()

# ------------------------------------------------------ minimum data rate
with Kasi({"timeouts": {"command": 30, "data_block": 1, "min_data_rate": 100}}) as k:
    def start_data(c, verb="DATA"):
        c.send("MAIL FROM:<a@client.test>\r\nRCPT TO:<b@example.test>\r\n")
        c.read_replies(2)
        if verb == "DATA":
            c.send("DATA\r\n")
            c.expect(354, name="DATA: 354")

    with Raw(k.port, ehlo="client.test") as c:
        start_data(c)
        closed, took = trickle(c, b"Subject: trickle\r\n\r\n" + b"x" * 100, 0.3, 10)
        ok(closed, "DATA one byte each 0.3 s (data_block 1 s) is cut (%.1f s)" % took)
        like(c.buf.decode("latin-1"), r"421 4\.4\.2 ", "  with 421 4.4.2")
    ok(k.wait_log(r"message data slower than 100 bytes/s .*closing"), "  logged")
    ok(k.wait_log(r"result=slow-data"), "  result=slow-data")

    with Raw(k.port, ehlo="client.test") as c:
        start_data(c, "BDAT")
        t0 = time.monotonic()
        closed = False
        while time.monotonic() - t0 < scaled(10) and not closed:
            c.send("BDAT 1\r\nx")
            closed = paced_closed(c, 0.3)
        ok(closed, "BDAT 1 byte a chunk each 0.3 s is cut (%.1f s)" % (time.monotonic() - t0))
        like(c.buf.decode("latin-1"), r"421 4\.4\.2 ", "  with 421 4.4.2")

    with Raw(k.port, ehlo="client.test") as c:  # 300 bytes/s for 3 s: above the rate
        start_data(c)
        body = b"Subject: steady\r\n\r\n" + b"y" * 880 + b"\r\n"
        cut = False
        for i in range(0, len(body), 150):
            c.send(body[i:i + 150])
            if paced_closed(c, 0.5):
                cut = True
                break
        ok(not cut, "a client above min_data_rate is not cut")
        c.send(".\r\n")
        is_(c.read_reply()[0], 250, "  and its message is accepted")

    big = b"Subject: fast\r\n\r\n" + (b"z" * 76 + b"\r\n") * 4000
    res = send_message(k.port, "a@client.test", ["b@example.test"], big)
    is_(res[0], 250, "a fast 300 KB message is accepted")
    is_(len(k.spool()), 2, "both messages spooled")

done()
