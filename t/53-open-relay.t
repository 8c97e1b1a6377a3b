#!/usr/bin/env python3
"""Open-relay check on the shipped configuration: the whole config/
directory is copied and only the listen addresses (ports), the spool and
certificate paths are changed. On every listener of the default config an
unauthenticated client cannot relay to an outside domain, whatever the
address tricks (case, trailing dot, source route, literal), in plain text
and inside TLS. Then, with auth/flat_file enabled and a submission
listener added, an authenticated user may relay and nobody else may."""
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kasitest import *  # noqa: E402,F401,F403
from tlstest import RawTLS, b64, client_ctx, make_pki  # noqa: E402

CONF = os.path.join(REPO, "config")
PW = "relay-test-Pw1"
OUTSIDE = ["someone@outside.invalid", "someone@OUTSIDE.INVALID", "someone@outside.invalid.",
           "@example.com:someone@outside.invalid", "someone@[192.0.2.1]",
           "someone@example.com.outside.invalid"]

tmp = tempfile.mkdtemp(prefix="kasi-relay-")
pki = make_pki(os.path.join(tmp, "pki"), {"a": ["mail.a.test"]})
ctx = client_ctx(pki["ca"])


def rewrite_smtp_yaml(text, extra_listeners=()):
    """The shipped smtp.yaml with every listener on 127.0.0.1:0 (options
    kept), the test spool, and the test certificate. Returns (text, n)."""
    out, n, in_listen = [], 0, False
    for line in text.splitlines():
        if re.match(r"^\S", line):
            in_listen = line.startswith("listen:")
            if in_listen:
                out.append(line)
                out += extra_listeners
                n += len([x for x in extra_listeners if x.lstrip().startswith("-")])
                continue
        if in_listen and re.match(r"^\s*-\s", line):
            n += 1
            if re.match(r"^\s*-\s*address:", line):
                line = re.sub(r"address:\s*\S+", "address: 127.0.0.1:0", line)
            else:
                line = re.sub(r"-\s*\S+", "- 127.0.0.1:0", line, count=1)
        line = re.sub(r"^spool_dir:.*", "spool_dir: ../spool", line)
        line = re.sub(r"^(\s*-?\s*cert:).*", r"\1 " + pki["a"][0], line)
        line = re.sub(r"^(\s*key:).*", r"\1 " + pki["a"][1], line)
        out.append(line)
    return "\n".join(out) + "\n", n


def copy_config(extra_listeners=(), plugins_edit=None):
    """A Kasi (not started) on a copy of config/."""
    k = Kasi(start=False)
    shutil.rmtree(k.confdir)
    shutil.copytree(CONF, k.confdir)
    with open(os.path.join(CONF, "smtp.yaml")) as f:
        text, n = rewrite_smtp_yaml(f.read(), extra_listeners)
    with open(os.path.join(k.confdir, "smtp.yaml"), "w") as f:
        f.write(text)
    for name in ("me",):           # keep the test's host name out of it
        if os.path.exists(os.path.join(k.confdir, name)):
            os.unlink(os.path.join(k.confdir, name))
    if plugins_edit:
        p = os.path.join(k.confdir, "plugins")
        with open(p) as f:
            names = f.read()
        with open(p, "w") as f:
            f.write(plugins_edit(names))
    k.config["listen"] = ["-"] * n
    k.args += ["--http-listen", "127.0.0.1:0"]     # not the shipped 8025: others may hold it
    k.raw_yaml = True           # the harness adds user: (as root) at start
    return k


def plugin_names(text):
    return [l.split()[0] for l in text.splitlines() if l.strip() and not l.startswith("#")]


def try_relay(c, label):
    """Every outside recipient refused; returns the codes seen."""
    code, _ = c.cmd("MAIL FROM:<sender@client.example.net>")
    if code == 530:
        ok(True, "%s: MAIL needs AUTH (530), so no relaying" % label)
        return
    is_(code, 250, "%s: MAIL accepted" % label)
    for rcpt in OUTSIDE:
        code, lines = c.cmd("RCPT TO:<%s>" % rcpt)
        ok(code is not None and code >= 500 and code < 600,
           "%s: RCPT TO:<%s> refused (%s)" % (label, rcpt, code), lines)
    code, lines = c.cmd("RCPT TO:<victim@outside.invalid>")
    is_((code, lines[:1]), (550, ["5.7.1 Relaying denied"]),
        "%s: 550 5.7.1 Relaying denied" % label)
    c.cmd("RSET")


with open(os.path.join(CONF, "plugins")) as f:
    shipped = f.read()
names = plugin_names(shipped)
ok("rcpt_to_host_list" in names, "the default plugin list has rcpt_to_host_list", names)

# ---- the default config, as shipped -----------------------------------------
k = copy_config()
res = run([KASI_BIN, "-t", "-c", k.confdir])
ok(res.returncode == 0, "kasi -t on the copied default config", res.stdout + res.stderr)
with k.start():
    ok(len(k.ports) >= 1, "default config: %d listener(s)" % len(k.ports))
    for i, port in enumerate(k.ports):
        for src in ("127.0.0.2", "127.0.0.1"):
            with RawTLS(port, ehlo="client.example.net", source=src) as c:
                starttls = "STARTTLS" in c.last[1]
                try_relay(c, "listener %d from %s" % (i, src))
                if starttls:
                    c.send("STARTTLS\r\n")
                    c.expect(220, name="STARTTLS")
                    c.starttls(ctx)
                    c.cmd("EHLO client.example.net")
                    try_relay(c, "listener %d from %s inside TLS" % (i, src))
    ok(not k.spool(), "nothing was queued")

# ---- with auth/flat_file and a submission listener ---------------------------


def add_auth(text):
    if "auth/flat_file" in plugin_names(text):
        return text
    out = []
    for l in text.splitlines():
        if l.strip().split()[:1] == ["rcpt_to_host_list"]:
            out.append("auth/flat_file")
        out.append(l)
    return "\n".join(out) + "\n"


SUB = ["  - address: 127.0.0.1:0", "    submission: true", "    tls: starttls"]
TLS = "tls:\n  certificates:\n    - cert: %s\n      key: %s\n" % pki["a"]
k = copy_config(SUB, add_auth)
smtp = os.path.join(k.confdir, "smtp.yaml")
with open(smtp) as f:
    has_tls = re.search(r"^tls:", f.read(), re.M)
if not has_tls:
    with open(smtp, "a") as f:
        f.write(TLS)
r = subprocess.run([KASI_BIN, "passwd", os.path.join(k.confdir, "auth_users"), "alice"],
                   input=PW + "\n", capture_output=True, text=True, timeout=scaled(20))
ok(r.returncode == 0, "kasi passwd alice", r.stderr)
res = run([KASI_BIN, "-t", "-c", k.confdir])
ok(res.returncode == 0, "kasi -t with auth/flat_file and a submission listener",
   res.stdout + res.stderr)


def tls_session(port):
    c = RawTLS(port, ehlo="client.example.net", source="127.0.0.2")
    c.send("STARTTLS\r\n")
    c.expect(220, name="STARTTLS")
    c.starttls(ctx)
    c.cmd("EHLO client.example.net")
    return c


with k.start():
    sub = k.ports[0]
    c = tls_session(sub)
    is_(c.cmd("MAIL FROM:<alice@example.com>")[0], 530, "submission: no AUTH, no MAIL (530)")
    is_(c.cmd("AUTH PLAIN " + b64("\0alice\0" + PW))[0], 235, "submission: AUTH as alice")
    is_(c.cmd("MAIL FROM:<alice@example.com>")[0], 250, "authenticated: MAIL")
    is_(c.cmd("RCPT TO:<someone@outside.invalid>")[0], 250, "authenticated: may relay")
    is_(c.cmd("DATA")[0], 354, "DATA")
    c.send(b"Subject: relayed\r\n\r\nhi\r\n.\r\n")
    is_(c.read_reply()[0], 250, "authenticated: message accepted for relaying")
    c.close()
    for i, port in enumerate(k.ports[1:]):
        with RawTLS(port, ehlo="client.example.net", source="127.0.0.2") as c:
            try_relay(c, "with auth enabled, listener %d, unauthenticated" % i)
    c = tls_session(sub)
    c.cmd("AUTH PLAIN " + b64("\0alice\0wrong"), timeout=10)
    is_(c.cmd("MAIL FROM:<alice@example.com>")[0], 530, "failed AUTH: still 530")
    c.close()

done()
