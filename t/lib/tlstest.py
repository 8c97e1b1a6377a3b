"""tlstest — TLS helpers for kasi's integration tests.

  * make_pki(dir): a throw-away CA and server certificates made with the
    openssl command line tool; returns {"ca": path, NAME: (cert, key)}.
  * tls_yaml(...): smtp.yaml text with listener maps and a tls: section
    (kasitest.to_yaml does not write lists of maps).
  * client_ctx(): an ssl.SSLContext trusting the test CA.
  * RawTLS: kasitest.Raw whose socket can be switched to TLS mid-session.
  * skip(): report a skipped test.

Only the standard library and the openssl binary are used.
"""

import base64
import os
import ssl
import subprocess

import kasitest
from kasitest import Raw, scaled


def _openssl(args, cwd):
    subprocess.run(["openssl"] + args, cwd=cwd, check=True, timeout=scaled(60),
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE)


def make_cert(d, ca, name, sans, cn=None, days=2, key_type="rsa"):
    """A key and a certificate for `sans` (DNS names) signed by the CA in
    d/ca.pem; returns (cert path, key path). The certificate file holds
    the chain (leaf, then the CA). key_type: "rsa" (2048 bits) or "ec"
    (ECDSA P-256)."""
    key, csr, ext = name + ".key", name + ".csr", name + ".ext"
    newkey = (["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"] if key_type == "ec"
              else ["-newkey", "rsa:2048"])
    _openssl(["req"] + newkey + ["-nodes", "-keyout", key, "-out", csr,
              "-subj", "/CN=" + (cn or sans[0])], d)
    with open(os.path.join(d, ext), "w") as f:
        f.write("subjectAltName=" + ",".join("DNS:" + s for s in sans) + "\n")
    _openssl(["x509", "-req", "-in", csr, "-CA", "ca.pem", "-CAkey", "ca.key",
              "-CAcreateserial", "-out", name + ".leaf", "-days", str(days),
              "-extfile", ext], d)
    with open(os.path.join(d, name + ".leaf"), "rb") as f:
        leaf = f.read()
    with open(os.path.join(d, name + ".pem"), "wb") as f:
        f.write(leaf + open(ca, "rb").read())
    return os.path.join(d, name + ".pem"), os.path.join(d, key)


def make_pki(d, certs=None):
    """A CA in d plus one certificate per {name: [dns names]}."""
    os.makedirs(d, exist_ok=True)
    _openssl(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
              "-out", "ca.pem", "-days", "2", "-subj", "/CN=kasi test CA"], d)
    ca = os.path.join(d, "ca.pem")
    out = {"ca": ca}
    for name, sans in (certs or {}).items():
        out[name] = make_cert(d, ca, name, sans)
    return out


def tls_yaml(spool, listeners, certs, extra_tls="", hostname=kasitest.HOSTNAME,
             extra=""):
    """smtp.yaml text. listeners: list of dicts (address defaults to
    127.0.0.1:0) or address strings; certs: list of (cert, key)."""
    out = ["hostname: %s" % hostname, "spool_dir: %s" % spool,
           "log:", "  target: stderr", "  level: debug", "listen:"]
    for l in listeners:
        if isinstance(l, str):
            out.append("  - %s" % l)
            continue
        l = dict(l)
        out.append("  - address: %s" % l.pop("address", "127.0.0.1:0"))
        for k, v in l.items():
            out.append("    %s: %s" % (k, "true" if v is True else "false" if v is False
                                       else v))
    if certs:
        out += ["tls:", "  certificates:"]
        for cert, key in certs:
            out += ["    - cert: %s" % cert, "      key: %s" % key]
        out += ["  " + x for x in extra_tls.splitlines() if x.strip()]
    return "\n".join(out) + "\n" + extra


def client_ctx(ca=None, verify=True):
    ctx = ssl.create_default_context(cafile=ca) if ca else ssl.create_default_context()
    ctx.check_hostname = False
    if not verify:
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def peer_names(sslsock):
    """The DNS names and CN of the server's certificate."""
    cert = sslsock.getpeercert()
    names = [v for k, v in cert.get("subjectAltName", ()) if k == "DNS"]
    cn = [v for rdn in cert.get("subject", ()) for k, v in rdn if k == "commonName"]
    return cn[0] if cn else None, names


class RawTLS(Raw):
    """Raw, plus starttls(ctx) to switch the socket to TLS in place and
    connect_tls() for implicit TLS ports."""

    @classmethod
    def connect_tls(cls, port, ctx, server_hostname=None, timeout=5):
        self = cls(port, timeout=timeout)
        self.sock = ctx.wrap_socket(self.sock, server_hostname=server_hostname)
        return self

    def starttls(self, ctx, server_hostname=None):
        """Wrap the socket (after the 220 was read). Raises ssl.SSLError or
        OSError when the handshake fails."""
        if self.buf:
            raise AssertionError("bytes after the 220: %r" % self.buf)
        self.sock = ctx.wrap_socket(self.sock, server_hostname=server_hostname)
        return self.sock

    def _fill(self, deadline):
        # an SSL socket may hold decrypted bytes select() cannot see
        if isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
            self.buf += self.sock.recv(65536)
            return True
        try:
            return Raw._fill(self, deadline)
        except (ssl.SSLError, OSError) as e:
            self.eof = True
            self.error = "tls: %r" % (e,)
            return False


def skip(reason):
    """Report one skipped test."""
    kasitest._Tap.count += 1
    kasitest._out("ok %d # skip %s" % (kasitest._Tap.count, reason))


def engine_has_auth():
    """True when the plugin engine passes credentials to hook_auth."""
    src = os.path.join(kasitest.REPO, "src")
    for n in os.listdir(src):
        if n.startswith("lua_") and n.endswith(".c"):
            with open(os.path.join(src, n), encoding="utf-8", errors="replace") as f:
                if "HOOK_AUTH" in f.read():
                    return True
    return False


def b64(s):
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def start(yaml, nlisten, **kw):
    """A Kasi on raw smtp.yaml text that waits for nlisten listeners."""
    return kasitest.Kasi(config={"listen": ["-"] * nlisten}, yaml=yaml, **kw)
