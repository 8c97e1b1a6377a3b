#!/usr/bin/env python3
"""rcpt_to_host_list and relay: only our domains (exact, glob, pattern,
our address literal, <postmaster>) for clients that may not relay; 550
5.7.1 Relaying denied otherwise; clients in relay's networks (and
authenticated ones) send anywhere; on_match next vs ok."""
import base64
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kasitest import *  # noqa: E402,F401,F403

HOSTS = ("domains: [example.com, '*.example.org']\n"
         "patterns: ['^mx%d+%.example%.net$']\n")

with Kasi(files={"config/plugins": "relay\nrcpt_to_host_list\nqueue/spool\n",
                 "config/relay.yaml": "allow: [127.0.0.3, '127.0.1.0/24']\n",
                 "config/rcpt_to_host_list.yaml": HOSTS}) as k:
    with Raw(k.port, ehlo="client.test", source="127.0.0.2") as r:
        r.cmd("MAIL FROM:<a@client.test>")
        for rcpt in ("x@example.com", "x@EXAMPLE.COM",
                     "x@a.example.org", "x@a.b.example.org", "x@mx12.example.net",
                     "postmaster", "x@[127.0.0.1]"):
            is_(r.cmd("RCPT TO:<%s>" % rcpt)[0], 250, "our domain: %s" % rcpt)
        for rcpt in ("x@other.test", "x@example.org", "x@notexample.com",
                     "x@mx1.example.net.evil", "x@[192.0.2.1]", "x@sub.example.com"):
            is_(r.cmd("RCPT TO:<%s>" % rcpt), (550, ["5.7.1 Relaying denied"]),
                "not ours: %s" % rcpt)
        r.cmd("DATA")
        r.send(b"Subject: t\r\n\r\nx\r\n.\r\n")
        mid = queued_id(r.expect(250, "2.0.0", "message to our domains accepted"))
    m = k.spool_by_id(mid) if mid else None
    ok(m is not None and "x@other.test" not in m.env["rcpt_to"]
       and "x@example.com" in m.env["rcpt_to"], "only our recipients spooled",
       repr(m and m.env))
    for src in ("127.0.0.3", "127.0.1.77"):
        with Raw(k.port, ehlo="client.test", source=src) as r:
            r.cmd("MAIL FROM:<a@client.test>")
            is_(r.cmd("RCPT TO:<x@other.test>")[0], 250, "relay client %s: any domain" % src)
    like(k.log(), r"relay: 127\.0\.0\.3 may relay", "relay logged")

# an authenticated client relays (the core sets conn.relaying)
AUTH = "function hook_auth() return OK end  -- test only: anyone\n"
AUTH_YAML = """hostname: mx.kasi.test
listen:
  - { address: "127.0.0.1:0", auth: true, auth_plaintext: true, tls: none }
spool_dir: ../spool
log: { target: stderr, level: debug }
"""
with Kasi(yaml=AUTH_YAML,
          files={"config/plugins": "auth\nrcpt_to_host_list\nqueue/spool\n",
                 "plugins/auth.lua": AUTH,
                 "config/rcpt_to_host_list.yaml": "domains: [example.com]\n"}) as k:
    with Raw(k.port, ehlo="client.test", source="127.0.0.2") as r:
        r.cmd("MAIL FROM:<a@client.test>")
        is_(r.cmd("RCPT TO:<x@other.test>")[0], 550, "before AUTH: relaying denied")
        r.cmd("RSET")
        is_(r.cmd("AUTH PLAIN " + base64.b64encode(b"\0alice\0pw").decode())[0], 235,
            "AUTH")
        r.cmd("MAIL FROM:<a@client.test>")
        is_(r.cmd("RCPT TO:<x@other.test>")[0], 250, "authenticated: any domain")

# on_match: ok ends the rcpt chain; next lets later plugins decide
NO = 'function hook_rcpt() return DENY, "later plugin says no" end\n'
for mode, want in (("ok", 250), ("next", 550)):
    with Kasi(files={"config/plugins": "rcpt_to_host_list\nno\nqueue/spool\n",
                     "plugins/no.lua": NO,
                     "config/rcpt_to_host_list.yaml":
                         "domains: [example.com]\non_match: %s\n"
                         "reply: {message: 'No relaying to {domain} ({rcpt})'}\n" % mode}) as k:
        with Raw(k.port, ehlo="client.test", source="127.0.0.2") as r:
            r.cmd("MAIL FROM:<a@client.test>")
            is_(r.cmd("RCPT TO:<x@example.com>")[0], want, "on_match %s: %d" % (mode, want))
            is_(r.cmd("RCPT TO:<y@other.test>"),
                (550, ["5.7.1 No relaying to other.test (y@other.test)"]),
                "custom message")

# no domains: nothing is accepted from a non-relaying client (and a warning)
with Kasi(files={"config/plugins": "rcpt_to_host_list\nqueue/spool\n"}) as k:
    with Raw(k.port, ehlo="client.test") as r:
        r.cmd("MAIL FROM:<a@client.test>")
        is_(r.cmd("RCPT TO:<x@example.com>")[0], 550, "no domains: refused")
        is_(r.cmd("RCPT TO:<postmaster>")[0], 250, "but <postmaster> is accepted")
    like(k.log(), r"rcpt_to_host_list: no domains configured", "warning logged")

with Kasi(files={"config/plugins": "relay\n",
                 "config/relay.yaml": "allow: [1.2.3.4/40]\n"}, start=False) as k:
    res = run([KASI_BIN, "-t", "-c", k.confdir])
    ok(res.returncode != 0, "kasi -t refuses a bad relay network", res.stdout + res.stderr)

done()
