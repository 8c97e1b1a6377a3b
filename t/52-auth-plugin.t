#!/usr/bin/env python3
"""auth/flat_file and the C side around it: `kasi passwd` writes yescrypt
lines atomically and refuses bad input; AUTH PLAIN/LOGIN against the file
(yescrypt and SHA-512-crypt), plaintext lines refused at load, wrong
password 535 5.7.8 after a delay, an authenticated user relays, the
unauthenticated do not; a plugin's own DENY text in the 535; the TLS
fields of conn; sender_must_match (553 5.7.1); failures limited per client
address (auth.max_failures_per_ip) and the auth: keys validated."""
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kasitest import *  # noqa: E402,F401,F403
from tlstest import RawTLS, b64, client_ctx, make_pki, start, tls_yaml  # noqa: E402

CONF = os.path.join(REPO, "config")
ALICE_PW, BOB_PW = "alice-Pw-7x!", "bob pw with spaces"


def passwd(path, user, password, timeout=20):
    return subprocess.run([KASI_BIN, "passwd", path, user], input=password,
                          capture_output=True, text=True, timeout=scaled(timeout))


# ---- kasi passwd ---------------------------------------------------------

tmp = tempfile.mkdtemp(prefix="kasi-passwd-")
users = os.path.join(tmp, "auth_users")
with open(users, "w") as f:
    f.write("# a comment stays\nzed:$6$x$y\n")
os.chmod(users, 0o600)
r = passwd(users, "alice", "first\n")
ok(r.returncode == 0, "kasi passwd: adds a user", r.stderr)
r = passwd(users, "alice", ALICE_PW + "\n")
ok(r.returncode == 0, "kasi passwd: changes a password", r.stderr)
with open(users) as f:
    text = f.read()
lines = text.splitlines()
is_(lines[:2], ["# a comment stays", "zed:$6$x$y"], "other lines kept, in order")
alice = [l for l in lines if l.startswith("alice:")]
is_(len(alice), 1, "one line for the user")
like(alice[0] if alice else "", r"^alice:\$y\$[./0-9A-Za-z]+\$[./0-9A-Za-z]+\$[./0-9A-Za-z]+$",
     "a yescrypt hash")
ok(ALICE_PW not in text and "first" not in text, "no plaintext in the file")
is_(oct(os.stat(users).st_mode & 0o777), "0o600", "the file's mode is kept")
fresh = os.path.join(tmp, "fresh_users")
passwd(fresh, "dave", "pw\n")
is_(oct(os.stat(fresh).st_mode & 0o777), "0o600", "a new file: mode 0600 (its hashes are secret)")
for user, pw, why in [("bad:name", "x\n", "user name with ':'"),
                      ("two words", "x\n", "user name with a blank"),
                      ("", "x\n", "empty user name"),
                      ("carol", "\n", "empty password"),
                      ("carol", "", "no password at all"),
                      ("carol", "y" * 5000 + "\n", "password too long")]:
    r = passwd(users, user, pw)
    ok(r.returncode != 0, "kasi passwd refuses: " + why, r.stderr)
with open(users) as f:
    is_(f.read(), text, "the file is untouched after refusals")
r = passwd(os.path.join(tmp, "no-such-dir", "users"), "carol", "pw\n")
ok(r.returncode != 0 and "no-such-dir" in r.stderr, "kasi passwd: unwritable path refused",
   r.stderr)
ok(not [n for n in os.listdir(tmp) if ".tmp" in n], "no temporary files left behind")
r = subprocess.run([KASI_BIN, "passwd", users], capture_output=True, text=True,
                   stdin=subprocess.DEVNULL, timeout=scaled(10))
is_(r.returncode, 2, "kasi passwd without USER: usage, exit 2")

# ---- the server ----------------------------------------------------------

pki = make_pki(os.path.join(tmp, "pki"), {"a": ["mail.a.test"]})
ctx = client_ctx(pki["ca"])
bob_hash = subprocess.run(["openssl", "passwd", "-6", "-stdin"], input=BOB_PW,
                          capture_output=True, text=True, check=True).stdout.strip()
ok(bob_hash.startswith("$6$"), "a SHA-512-crypt hash for bob")

with open(os.path.join(CONF, "rcpt_to_host_list.yaml")) as f:
    host_list_yaml = f.read()

TLSINFO = """-- test-only: show the TLS fields of conn
local P = {}
function P.hook_mail(conn, txn, from)
  conn:loginfo("tlsinfo tls=%s version=%s cipher=%s sni=%s", tostring(conn.tls),
               tostring(conn.tls_version), tostring(conn.tls_cipher), tostring(conn.tls_sni))
end
return P
"""

LOCKED = """-- test-only: a plugin with its own refusal text
local P = {}
function P.hook_auth(conn, txn, creds)
  if creds.user == "locked" then return DENY, "Account locked, call the help desk" end
end
return P
"""

FLAT = """users_file: auth_users
sender_must_match: true
senders:
  alice: [alice@example.com, "@example.org"]
"""

LISTEN = [{"submission": True},                                  # STARTTLS + AUTH
          "127.0.0.1:0"]                                         # MX, no AUTH


def tls_session(port, sni=None):
    c = RawTLS(port, ehlo="client.test")
    c.send("STARTTLS\r\n")
    c.expect(220, name="STARTTLS")
    c.starttls(ctx, server_hostname=sni)
    c.cmd("EHLO client.test")
    return c


def timed(c, line):
    t = time.monotonic()
    r = c.cmd(line, timeout=15)
    return r, time.monotonic() - t


k = start(tls_yaml("../spool", LISTEN, [pki["a"]]), 2, start=False,
          files={"config/plugins": "test_tlsinfo\ntest_locked\nauth/flat_file\n"
                                   "rcpt_to_host_list\nqueue/spool\n",
                 "config/auth/flat_file.yaml": FLAT,
                 "config/rcpt_to_host_list.yaml": host_list_yaml,
                 "plugins/test_tlsinfo.lua": TLSINFO,
                 "plugins/test_locked.lua": LOCKED})
kusers = os.path.join(k.confdir, "auth_users")
r = passwd(kusers, "alice", ALICE_PW + "\n")
ok(r.returncode == 0, "kasi passwd into the test config", r.stderr)
with open(kusers, "a") as f:
    f.write("bob@example.net:%s\n" % bob_hash)
    f.write("carol:carol-plain-pw\n")          # refused at load
res = run([KASI_BIN, "-t", "-c", k.confdir])
ok(res.returncode == 0, "kasi -t with auth/flat_file", res.stdout + res.stderr)

with k.start():
    sub, mx = k.ports
    log = k.log()
    like(log, r"auth_users:3: entry refused: not a crypt\(3\) hash",
         "a plaintext line is refused, naming file and line")
    ok("carol-plain-pw" not in log, "the refused line's password is not logged")
    like(log, r"2 user\(s\) from", "two users loaded")

    # right passwords
    c = tls_session(sub, sni="mail.a.test")
    is_(c.cmd("AUTH PLAIN " + b64("\0alice\0" + ALICE_PW)),
        (235, ["2.7.0 Authentication successful"]), "alice (yescrypt), PLAIN: 235")
    is_(c.cmd("MAIL FROM:<alice@example.com>")[0], 250, "alice: her own address")
    is_(c.cmd("RCPT TO:<someone@outside.invalid>")[0], 250, "alice: may relay")
    is_(c.cmd("DATA")[0], 354, "DATA")
    c.send(b"Subject: via flat_file\r\n\r\nhi\r\n.\r\n")
    is_(c.read_reply()[0], 250, "message accepted")
    is_(c.cmd("MAIL FROM:<anyone@example.org>")[0], 250, "alice: any address at @example.org")
    c.cmd("RSET")
    is_(c.cmd("MAIL FROM:<mallory@example.com>"),
        (553, ["5.7.1 Sender address not owned by user"]), "alice: someone else's address: 553")
    is_(c.cmd("MAIL FROM:<>")[0], 553, "alice: the null sender: 553")
    c.cmd("QUIT")
    c.close()
    like(k.log(), r"tlsinfo tls=true version=TLSv1\.[23] cipher=\S+ sni=mail\.a\.test",
         "conn.tls, tls_version, tls_cipher, tls_sni")

    c = tls_session(sub)
    c.send("AUTH LOGIN\r\n")
    c.expect(334, name="LOGIN user prompt")
    c.cmd(b64("bob@example.net"))
    is_(c.cmd(b64(BOB_PW))[0], 235, "bob (SHA-512-crypt), LOGIN: 235")
    is_(c.cmd("MAIL FROM:<Bob@Example.NET>")[0], 250, "bob: his user name as sender")
    c.cmd("RSET")
    is_(c.cmd("MAIL FROM:<alice@example.com>")[0], 553, "bob: not alice's address")
    c.close()

    # wrong passwords
    c = tls_session(sub)
    (code, lines), dt = timed(c, "AUTH PLAIN " + b64("\0alice\0not-" + ALICE_PW))
    is_((code, lines[:1]), (535, ["5.7.8 Authentication credentials invalid"]),
        "wrong password: 535 5.7.8")
    ok(dt >= 0.9, "wrong password: after a delay (%.2f s)" % dt)
    (code, _), dt = timed(c, "AUTH PLAIN " + b64("\0carol\0carol-plain-pw"))
    is_(code, 535, "user with a plaintext line cannot log in")
    c.close()
    c = tls_session(sub)
    (code, lines), _ = timed(c, "AUTH PLAIN " + b64("\0nobody\0whatever"))
    is_(code, 535, "unknown user: 535")
    (code, lines), _ = timed(c, "AUTH PLAIN " + b64("\0locked\0whatever"))
    is_((code, lines), (535, ["5.7.8 Account locked, call the help desk"]),
        "a plugin's DENY text is the 535 text")
    c.close()

    # not authenticated
    c = tls_session(sub)
    is_(c.cmd("MAIL FROM:<alice@example.com>")[0], 530, "submission without AUTH: 530")
    c.close()
    with RawTLS(mx, ehlo="client.test") as c:
        c.cmd("MAIL FROM:<a@client.test>")
        is_(c.cmd("RCPT TO:<victim@outside.invalid>"), (550, ["5.7.1 Relaying denied"]),
            "MX listener, unauthenticated: no relaying")
        is_(c.cmd("RCPT TO:<postmaster@example.com>")[0], 250, "but our domain is fine")
    log = k.log()
    ok(ALICE_PW not in log and BOB_PW not in log and b64("\0alice\0" + ALICE_PW) not in log,
       "no password in the log")

# ---- failures per client address -----------------------------------------

LIMIT = """auth:
  max_failures: 3
  max_failures_per_ip: 3
  failure_window: 60
limits:
  exempt: []       # loopback is exempt by default
"""
k = start(tls_yaml("../spool", [{"auth": True, "auth_plaintext": True, "tls": "none"}],
                   [], extra=LIMIT), 1, start=False,
          files={"config/plugins": "auth/flat_file\nqueue/spool\n"})
passwd(os.path.join(k.confdir, "auth_users"), "alice", ALICE_PW + "\n")
with k.start():
    with Raw(k.port, ehlo="client.test") as c:
        is_(timed(c, "AUTH PLAIN " + b64("\0alice\0bad1"))[0][0], 535, "per-IP: failure 1")
        is_(timed(c, "AUTH PLAIN " + b64("\0alice\0bad2"))[0][0], 535, "per-IP: failure 2")
    with Raw(k.port, ehlo="client.test") as c:
        (code, _), _ = timed(c, "AUTH PLAIN " + b64("\0alice\0bad3"))
        is_(code, 421, "per-IP: third failure from the address (new connection): 421")
        ok(c.closed(5), "and the connection is closed")
    with Raw(k.port, ehlo="client.test") as c:
        t = time.monotonic()
        code, lines = c.cmd("AUTH PLAIN " + b64("\0alice\0" + ALICE_PW))
        is_((code, lines[:1]), (421, ["4.7.0 Too many authentication failures, closing "
                                      "connection"]),
            "per-IP: even the right password is refused at once while limited")
        # (a refusal of this path never waits: only a 535 is delayed)
    with Raw(k.port, ehlo="client.test", source="127.0.0.2") as c:
        is_(c.cmd("AUTH PLAIN " + b64("\0alice\0" + ALICE_PW))[0], 235,
            "another address is not affected")
    ok(k.wait_log(r"too many recent failures from this address"), "logged")

# ---- kasi.crypt_verify runs beside the event loop -------------------------

cheap = subprocess.run(["openssl", "passwd", "-6", "-stdin"], input="pw",
                       capture_output=True, text=True, check=True).stdout.strip()
SLOW = """-- test-only: an expensive hash (seconds) for user "slow"
local P = {}
function P.hook_auth(conn, txn, creds)
  local hash = creds.user == "slow" and "$6$rounds=16000000$abcdefgh$" or "%s"
  kasi.loginfo("hashing for %%s", creds.user)
  local ok, err = kasi.crypt_verify(creds.password, hash)
  if ok == nil then return DENYSOFT, err end
  return ok and OK or DENY
end
return P
""" % cheap
k = start(tls_yaml("../spool", [{"auth": True, "auth_plaintext": True, "tls": "none"}], []),
          1, files={"config/plugins": "test_slow timeout=2\nqueue/spool\n",
                    "plugins/test_slow.lua": SLOW})
with k:
    a = Raw(k.port, ehlo="client.test")
    a.send("AUTH PLAIN %s\r\n" % b64("\0slow\0pw"))
    with Raw(k.port, ehlo="client.test") as b:
        is_(b.cmd("NOOP")[0], 250, "another client is served while a hash is computed")
        # a blocked loop would serve it only after the hook's 2 s budget
        is_(a.read_reply(timeout=0.05)[0], None, "  before the hashing client's answer")
    code, lines = a.read_reply(timeout=10)
    is_((code, lines[:1]), (451, ["4.4.5 Error: plugin timed out, try again later"]),
        "a hash over the hook's budget: 451 4.4.5")
    a.close()
    with Raw(k.port, ehlo="client.test") as c:
        c.send("AUTH PLAIN %s\r\n" % b64("\0slow\0pw"))
        ok(k.wait_count(r"hashing for slow", 2, 10),
           "a session that ends while its hash runs")
    with Raw(k.port, ehlo="client.test") as c:
        is_(c.cmd("AUTH PLAIN " + b64("\0quick\0pw"))[0], 235,
            "crypt_verify: the right password (SHA-512-crypt): 235")
    with Raw(k.port, ehlo="client.test") as c:
        is_(c.cmd("AUTH PLAIN " + b64("\0quick\0nope"), timeout=10)[0], 535,
            "crypt_verify: a wrong password: 535")
    ok(k.wait_count(r"crypt: a hash ended after its hook was abandoned", 2, 30),
       "the abandoned hashes ended")
    ok(k.running(), "server still up")

for bad, why in [("auth:\n  max_failures_per_ip: -1\n", "negative limit"),
                 ("auth:\n  failure_window: 0\n", "zero window"),
                 ("auth:\n  max_failures: 0\n", "zero per-connection limit"),
                 ("auth:\n  max_failures_per_day: 3\n", "unknown key")]:
    d = tempfile.mkdtemp(prefix="kasi-cfg-")
    with open(os.path.join(d, "smtp.yaml"), "w") as f:
        f.write("listen:\n  - 127.0.0.1:0\n" + bad)
    res = run([KASI_BIN, "-t", "-c", d])
    ok(res.returncode != 0 and "auth." in res.stderr, "smtp.yaml refused: " + why,
       res.stdout + res.stderr)

done()
