#!/usr/bin/env python3
"""TLS: config checks, STARTTLS (smtplib and raw), the session reset after
it, the STARTTLS injection defence (CVE-2011-0411), implicit TLS, SNI, no
TLS 1.1, TLS 1.2 with an AEAD cipher, and certificate reload on SIGHUP
(bad certificate kept out, open TLS sessions unaffected)."""
import os
import re
import shutil
import signal
import smtplib
import ssl
import sys
import tempfile
import time
import warnings

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kasitest import *  # noqa: E402,F401,F403
from tlstest import (RawTLS, client_ctx, make_cert, make_pki, peer_names,  # noqa: E402
                     skip, start, tls_yaml)

MSG = (b"From: a@client.test\r\nTo: b@example.test\r\nSubject: tls\r\n\r\n"
       b"over TLS\r\n")

pki_dir = tempfile.mkdtemp(prefix="kasi-pki-")
pki = make_pki(pki_dir, {"a": ["mail.a.test", "a.test"],
                         "b": ["mail.b.test", "*.b.test"]})
CA = pki["ca"]
CERTS = [pki["a"], pki["b"]]


def unfold(h):
    return re.sub(rb"\r?\n[ \t]+", b" ", h).decode("utf-8", "replace")


# ---------------------------------------------------------------- config

def check_config(yaml, want, name):
    with tempfile.TemporaryDirectory() as d:
        os.makedirs(os.path.join(d, "config"))
        with open(os.path.join(d, "config", "smtp.yaml"), "w") as f:
            f.write(yaml)
        r = run([KASI_BIN, "-t", "-c", os.path.join(d, "config")])
        if want is None:
            is_(r.returncode, 0, name + ": accepted")
        else:
            ok(r.returncode != 0, name + ": refused")
            like(r.stderr, want, name + ": message")


check_config(tls_yaml("spool", [{"tls": "implicit"}], []),
             r"smtp\.yaml:\d+: listen\[0\]\.tls: implicit needs tls\.certificates",
             "implicit TLS without certificates")
check_config(tls_yaml("spool", [{"tls": "sometimes"}], CERTS),
             r"smtp\.yaml:\d+: listen\[0\]\.tls: expected one of none, starttls, implicit",
             "bad tls mode")
check_config(tls_yaml("spool", ["127.0.0.1:0"], [("/nonexistent.pem", CERTS[0][1])]),
             r"tls\.certificates\[0\]\.cert: /nonexistent\.pem: ", "missing certificate")
check_config(tls_yaml("spool", ["127.0.0.1:0"], [(CERTS[0][0], CERTS[1][1])]),
             r"tls\.certificates\[0\]\.key: .*b\.key: ", "key of another certificate")
check_config(tls_yaml("spool", ["127.0.0.1:0"], CERTS, extra_tls="min_version: TLSv1.1"),
             r"tls\.min_version: expected one of TLSv1\.2, TLSv1\.3", "min_version 1.1")
check_config(tls_yaml("spool", ["127.0.0.1:0"], CERTS, extra_tls="ciphers: NOPE-NOTHING"),
             r"tls\.ciphers: NOPE-NOTHING: ", "unknown cipher list")
check_config("tls:\n  certificates:\n    - cert: a.pem\n      kye: a.key\n",
             r"smtp\.yaml:4: unknown key 'tls\.certificates\[0\]\.kye' \(known: cert, key\)",
             "unknown certificate key")
check_config(tls_yaml("spool", ["127.0.0.1:0", {"tls": "implicit"}], CERTS,
                      extra_tls="min_version: TLSv1.3\nciphersuites: TLS_AES_128_GCM_SHA256"),
             None, "full tls section")

# relative certificate paths are relative to the config directory
with tempfile.TemporaryDirectory() as d:
    os.makedirs(os.path.join(d, "config", "certs"))
    for src in CERTS[0]:
        shutil.copy(src, os.path.join(d, "config", "certs"))
    with open(os.path.join(d, "config", "smtp.yaml"), "w") as f:
        f.write(tls_yaml("spool", ["127.0.0.1:0"], [("certs/a.pem", "certs/a.key")]))
    r = run([KASI_BIN, "-t", "-c", os.path.join(d, "config")], cwd="/")
    ok(r.returncode == 0, "relative certificate paths: config dir", r.stderr)

# ---------------------------------------------------------- STARTTLS etc.

YAML = tls_yaml("../spool", ["127.0.0.1:0", {"tls": "implicit"}, {"tls": "none"}], CERTS)

with start(YAML, 3) as k:
    plain, implicit, notls = k.ports
    ctx = client_ctx(CA)

    # EHLO offers STARTTLS on a starttls listener only, and not inside TLS
    with RawTLS(plain, banner=True) as c:
        code, lines = c.cmd("EHLO client.test")
        ok("STARTTLS" in lines, "EHLO offers STARTTLS", lines)
        is_(c.cmd("STARTTLS now")[0], 501, "STARTTLS with an argument: 501")
        c.send("STARTTLS\r\n")
        c.expect(220, "2.0.0", name="STARTTLS: 220 2.0.0")
        c.starttls(ctx)
        is_(c.cmd("MAIL FROM:<a@client.test>")[0], 503, "after STARTTLS the client must EHLO again")
        code, lines = c.cmd("EHLO client.test")
        is_(code, 250, "EHLO inside TLS")
        ok("STARTTLS" not in lines, "STARTTLS no longer offered", lines)
        code, lines = c.cmd("STARTTLS")
        is_((code, lines[:1]), (503, ["5.5.1 Error: TLS already active"]), "STARTTLS twice: 503 5.5.1")
        is_(c.cmd("QUIT")[0], 221, "QUIT inside TLS: 221")

    with RawTLS(plain, banner=True) as c:
        is_(c.cmd("STARTTLS")[0], 503, "STARTTLS before EHLO: 503")
    with RawTLS(notls, ehlo="client.test") as c:
        ok("STARTTLS" not in (c.last[1] if c.last else []), "tls: none: no STARTTLS")
        is_(c.cmd("STARTTLS")[0], 502, "tls: none: STARTTLS is 502")

    # smtplib starttls() and the Received header
    s = smtplib.SMTP("127.0.0.1", plain, timeout=scaled(10))
    s.ehlo("client.test")
    s.starttls(context=ctx)
    s.ehlo("client.test")
    refused = s.sendmail("a@client.test", ["b@example.test"], MSG)
    is_(refused, {}, "smtplib over STARTTLS: accepted")
    version = s.sock.version()
    s.quit()
    msgs = k.wait_spool(1)
    is_(len(msgs), 1, "spooled")
    rec = unfold(msgs[0].received()) if msgs else ""
    like(rec, r"by mx\.kasi\.test \(kasi\) with ESMTPS id ", "Received: with ESMTPS")
    like(rec, r"\(version=%s cipher=[A-Z0-9_-]+\)" % re.escape(version or "?"),
         "Received: protocol and cipher")
    ok(k.wait_log(r"TLS established: version=TLSv1\.3 cipher=\S+ sni=-"),
       "log: TLS established with version and cipher")

    # swaks --tls, when installed
    if shutil.which("swaks"):
        r = run(["swaks", "--server", "127.0.0.1:%d" % plain, "--tls", "--from", "a@client.test",
                 "--to", "b@example.test", "--helo", "client.test"], timeout=30)
        ok(r.returncode == 0 and "TLS started" in r.stdout, "swaks --tls delivers",
           r.stdout[-2000:], r.stderr[-500:])
        ok(k.wait_spool(2) and len(k.spool()) == 2, "swaks message spooled")
    else:
        skip("swaks not installed")
        skip("swaks not installed")

    # CVE-2011-0411: commands pipelined after STARTTLS are thrown away
    with RawTLS(plain, ehlo="client.test") as c:
        c.send("STARTTLS\r\nNOOP\r\nRSET\r\n")
        c.expect(220, "2.0.0", name="injection: 220 for STARTTLS")
        c.starttls(ctx)
        c.send("EHLO inside.test\r\n")
        code, lines = c.read_reply()
        is_(code, 250, "injection: first reply inside TLS is 250")
        like(lines[0] if lines else "", r"Hello inside\.test", "injection: ... and it is the EHLO's")
        is_(c.cmd("NOOP"), (250, ["2.0.0 Ok"]), "injection: NOOP sent inside TLS answered")
        c.cmd("QUIT")
    ok(k.wait_log(r"STARTTLS: discarding 12 pipelined bytes"), "injection: discard logged")

    # plaintext after 220 is no TLS handshake: closed, never answered
    with RawTLS(plain, ehlo="client.test") as c:
        c.send("STARTTLS\r\n")
        c.expect(220, name="garbage handshake: 220")
        c.send("EHLO x\r\n")
        ok(c.closed(5), "garbage handshake: closed")
        unlike(c.buf, rb"250", "garbage handshake: nothing answered")
    ok(k.wait_log(r"TLS handshake failed"), "garbage handshake: logged")

    # implicit TLS: the banner comes after the handshake
    with RawTLS.connect_tls(implicit, ctx, server_hostname="mail.a.test") as c:
        c.expect(220, name="implicit TLS: banner inside TLS")
        code, lines = c.cmd("EHLO client.test")
        ok("STARTTLS" not in lines, "implicit TLS: no STARTTLS offered")
        c.cmd("QUIT")
    s = smtplib.SMTP_SSL("127.0.0.1", implicit, context=ctx, timeout=scaled(10))
    s.ehlo("client.test")
    is_(s.sendmail("a@client.test", ["b@example.test"], MSG), {}, "smtplib SMTP_SSL: accepted")
    s.quit()
    msgs = k.wait_spool(3)
    like(unfold(msgs[-1].received()) if len(msgs) == 3 else "", r"with ESMTPS id .*\(version=TLSv1",
         "implicit TLS: Received says ESMTPS")

    # SNI picks the certificate
    for sni, want in [("mail.b.test", "mail.b.test"), ("x.b.test", "mail.b.test"),
                      ("mail.a.test", "mail.a.test"), ("other.test", "mail.a.test"),
                      (None, "mail.a.test")]:
        with RawTLS.connect_tls(implicit, ctx, server_hostname=sni) as c:
            cn, names = peer_names(c.sock)
            is_(cn, want, "SNI %s: certificate %s" % (sni, want))
            c.expect(220, name="SNI %s: banner" % sni)
    ok(k.wait_log(r"sni=x\.b\.test"), "SNI logged")

    # TLS 1.2 with an AEAD cipher works; TLS 1.1 is refused
    ctx12 = client_ctx(CA)
    ctx12.maximum_version = ssl.TLSVersion.TLSv1_2
    with RawTLS.connect_tls(implicit, ctx12) as c:
        is_(c.sock.version(), "TLSv1.2", "TLS 1.2 accepted")
        like(c.sock.cipher()[0], r"^ECDHE-(RSA|ECDSA)-(AES\d+-GCM|CHACHA20)", "TLS 1.2: ECDHE + AEAD")
        c.expect(220, name="TLS 1.2: banner")
    warnings.simplefilter("ignore", DeprecationWarning)   # TLS 1.1 on purpose
    ctx11 = client_ctx(CA, verify=False)
    try:
        ctx11.set_ciphers("ALL:@SECLEVEL=0")
        ctx11.minimum_version = ssl.TLSVersion.TLSv1_1
        ctx11.maximum_version = ssl.TLSVersion.TLSv1_1
        with RawTLS.connect_tls(implicit, ctx11) as c:
            ok(False, "TLS 1.1 refused", "handshake succeeded: %s" % c.sock.version())
    except (ssl.SSLError, OSError) as e:
        ok(True, "TLS 1.1 refused")
        diag("client says: %s" % e)
    ok(k.wait_log(r"TLS handshake failed: .*(unsupported protocol|version)"),
       "TLS 1.1: server saw a version it refuses")

# ------------------------------------------------------------ reload

d = tempfile.mkdtemp(prefix="kasi-reload-")
live_cert, live_key = os.path.join(d, "live.pem"), os.path.join(d, "live.key")
shutil.copy(CERTS[0][0], live_cert)
shutil.copy(CERTS[0][1], live_key)
new_cert, new_key = make_cert(pki_dir, CA, "renewed", ["mail.a.test"], cn="renewed.a.test")

with start(tls_yaml("../spool", ["127.0.0.1:0", {"tls": "implicit"}], [(live_cert, live_key)]), 2) as k:
    plain, implicit = k.ports
    ctx = client_ctx(CA)
    old = RawTLS(plain, ehlo="client.test")
    old.send("STARTTLS\r\n")
    old.expect(220, name="reload: old session STARTTLS")
    old.starttls(ctx)
    is_(peer_names(old.sock)[0], "mail.a.test", "reload: old session has the first certificate")
    old.cmd("EHLO client.test")
    old.cmd("MAIL FROM:<a@client.test>")

    shutil.copy(new_cert, live_cert)
    shutil.copy(new_key, live_key)
    gen1 = k.worker_pids()
    k.signal(signal.SIGHUP)
    # the supervisor builds the certificates of a generation (as root,
    # before its workers fork) and logs what changed
    ok(k.wait_log(r"generation 2 live \(was 1\): .*tls certificates or settings changed"),
       "reload: logged")
    # the old generation's workers are told to drain as it goes live:
    # until each has closed its listeners, it may still take a connection
    ok(gen1 and all(k.wait_log(r"kasi\[%d\] info: draining: " % p, timeout=10) for p in gen1),
       "reload: the old workers stopped accepting")
    with RawTLS.connect_tls(implicit, ctx) as c:
        is_(peer_names(c.sock)[0], "renewed.a.test", "reload: new connections get the new certificate")
        c.expect(220, name="reload: new connection banner")

    # the old session finishes its message on the old certificate
    is_(old.cmd("RCPT TO:<b@example.test>")[0], 250, "reload: old session RCPT")
    is_(old.cmd("DATA")[0], 354, "reload: old session DATA")
    old.send(dot_stuff(MSG) + b".\r\n")
    is_(old.read_reply()[0], 250, "reload: old session message accepted")
    is_(peer_names(old.sock)[0], "mail.a.test", "reload: old session still on the old certificate")
    old.cmd("QUIT")
    old.close()

    # a broken certificate on reload: logged, the last good one stays
    with open(live_cert, "w") as f:
        f.write("-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n")
    k.signal(signal.SIGHUP)
    ok(k.wait_log(r"reload failed, generation 2 stays: tls\.certificates\[0\]\.cert"),
       "bad reload: error logged")
    with RawTLS.connect_tls(implicit, ctx) as c:
        is_(peer_names(c.sock)[0], "renewed.a.test", "bad reload: previous certificate still served")
        c.expect(220, name="bad reload: banner")
    ok(k.running(), "bad reload: still running")

shutil.rmtree(d, ignore_errors=True)
shutil.rmtree(pki_dir, ignore_errors=True)
done()
