#!/usr/bin/env python3
"""TLS key types and the STARTTLS switch (net/tls.c).

  - an ECDSA P-256 certificate alone serves TLS 1.3 and TLS 1.2
    (ECDHE-ECDSA);
  - an RSA and an ECDSA certificate for the same names on one listener:
    a client that can verify ECDSA gets the ECDSA one, a TLS 1.2 client
    limited to RSA suites gets the RSA one, and SNI still picks another
    name's certificate;
  - a key that does not match its certificate in the pair: kasi -t names
    the entry;
  - STARTTLS moves the socket to TLS once the 220 is out (no "runs as a
    filter" line) and mail goes through, exact bytes in the spool. (The
    filter fallback, for a 220 the socket does not take at once, needs a
    client that leaves megabytes of replies unread; the other STARTTLS
    tests ran on that filter before.)
"""
import os
import shutil
import ssl
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import kasitest  # noqa: E402
from kasitest import *  # noqa: E402,F401,F403
from tlstest import RawTLS, client_ctx, make_cert, make_pki, start, tls_yaml  # noqa: E402

MSG = (b"From: a@client.test\r\nTo: b@example.test\r\nSubject: keys\r\n\r\n"
       b"over TLS\r\n.dot\r\n")
FILTER = r"replies still queued, TLS runs as a filter"

pki_dir = tempfile.mkdtemp(prefix="kasi-pki-")
pki = make_pki(pki_dir, {"rsa": ["mx.keys.test"], "other": ["other.keys.test"]})
CA = pki["ca"]
EC = make_cert(pki_dir, CA, "ec", ["mx.keys.test"], key_type="ec")
EC_OTHER = make_cert(pki_dir, CA, "ecother", ["other.keys.test"], key_type="ec")


def leaf_der(cert_path):
    with open(cert_path) as f:
        pem = f.read()
    first = pem[:pem.index("-----END CERTIFICATE-----") + 25]
    return ssl.PEM_cert_to_DER_cert(first)


def ctx_for(tls12_suite=None):
    c = client_ctx(CA)
    if tls12_suite:
        c.maximum_version = ssl.TLSVersion.TLSv1_2
        c.set_ciphers(tls12_suite)
    return c


def served_cert(k, ctx, sni=None):
    """STARTTLS with ctx; the server's leaf (DER), and the EHLO code after."""
    c = RawTLS(k.port, banner=True)
    c.cmd("EHLO client.test")
    c.send("STARTTLS\r\n")
    c.expect(220, "2.0.0", name="STARTTLS 220")
    s = c.starttls(ctx, server_hostname=sni)
    der = s.getpeercert(binary_form=True)
    code = c.cmd("EHLO client.test")[0]
    c.cmd("QUIT")
    return der, code


def transaction(c):
    c.cmd("EHLO client.test")
    c.cmd("MAIL FROM:<a@client.test>")
    c.cmd("RCPT TO:<b@example.test>")
    code = c.cmd("DATA")[0]
    c.send(dot_stuff(MSG) + b".\r\n")
    return code, c.read_reply(timeout=30)[0]


def spooled_ok(k, name):
    msgs = k.spool()
    ok(msgs and strip_received(msgs[-1].eml)[1] == MSG, name + ": exact bytes in the spool")


def config(k_spool, certs):
    return tls_yaml(k_spool, [{"tls": "starttls"}], certs)


# ---- ECDSA alone ---------------------------------------------------------
with start(config("../spool", [EC]), 1,
           files={"config/plugins": "queue/spool\n"}) as k:
    der, code = served_cert(k, ctx_for())
    ok(der == leaf_der(EC[0]) and code == 250, "ECDSA only: TLS 1.3 with the ECDSA certificate")
    der, code = served_cert(k, ctx_for("ECDHE-ECDSA-AES128-GCM-SHA256"))
    ok(der == leaf_der(EC[0]) and code == 250, "ECDSA only: TLS 1.2 ECDHE-ECDSA")

# ---- RSA + ECDSA on one listener ----------------------------------------
certs = [pki["rsa"], EC, pki["other"], EC_OTHER]
with start(config("../spool", certs), 1,
           files={"config/plugins": "queue/spool\n"}) as k:
    der, _ = served_cert(k, ctx_for())
    ok(der == leaf_der(EC[0]), "both: a client that verifies ECDSA gets the ECDSA certificate")
    der, _ = served_cert(k, ctx_for("ECDHE-RSA-AES128-GCM-SHA256"))
    ok(der == leaf_der(pki["rsa"][0]), "both: a TLS 1.2 client limited to RSA suites gets RSA")
    der, _ = served_cert(k, ctx_for("ECDHE-ECDSA-AES256-GCM-SHA384"))
    ok(der == leaf_der(EC[0]), "both: a TLS 1.2 client limited to ECDSA suites gets ECDSA")
    der, _ = served_cert(k, ctx_for("ECDHE-RSA-AES128-GCM-SHA256"), sni="other.keys.test")
    ok(der == leaf_der(pki["other"][0]), "SNI picks the other name's pair (RSA)")
    der, _ = served_cert(k, ctx_for(), sni="other.keys.test")
    ok(der == leaf_der(EC_OTHER[0]), "SNI picks the other name's pair (ECDSA)")

# ---- a pair whose second key does not match ------------------------------
bad = [pki["rsa"], (EC[0], pki["rsa"][1])]
d = tempfile.mkdtemp(prefix="kasi-t-", dir=pki_dir)
os.makedirs(os.path.join(d, "config"))
with open(os.path.join(d, "config", "smtp.yaml"), "w") as f:
    f.write(config(os.path.join(d, "spool"), bad))
r = subprocess.run([kasitest.KASI_BIN, "-c", os.path.join(d, "config"), "-t"],
                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
out = r.stdout.decode("utf-8", "replace")
ok(r.returncode != 0 and "tls.certificates[1].key" in out,
   "a mismatched key in the pair: -t fails naming tls.certificates[1].key", out)

# ---- STARTTLS: socket switch and filter fallback ------------------------
with start(config("../spool", [pki["rsa"], EC]), 1,
           files={"config/plugins": "queue/spool\n"}) as k:
    c = RawTLS(k.port, banner=True)
    c.cmd("EHLO client.test")
    c.send("STARTTLS\r\n")
    c.expect(220, "2.0.0", name="STARTTLS 220")
    c.starttls(ctx_for())
    is_(transaction(c), (354, 250), "mail over STARTTLS (socket switch)")
    is_(c.cmd("QUIT")[0], 221, "QUIT inside TLS")
    spooled_ok(k, "socket switch")
    is_(k.count_log(FILTER), 0, "the 220 went out at once: no filter")


shutil.rmtree(pki_dir, ignore_errors=True)
done()
