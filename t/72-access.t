#!/usr/bin/env python3
"""access: allow/deny by client IP and network (IPv4, IPv6), rDNS (exact,
glob, forward-confirmed for allow), HELO, sender and recipient; allow wins
over deny; trusted clients skip the other lists and may relay."""
import os
import socket
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kasitest import *  # noqa: E402,F401,F403
from kasinet import Dns  # noqa: E402

ACCESS = """
allow:
  ip: [127.0.0.3/32]
  helo: [ok.bad.test]
  mail: [good@spam.test]
  rcpt: [postmaster@example.com]
deny:
  ip: [127.0.0.2, 127.0.0.128/25, "::1/128"]
  helo: ["*.bad.test", "~^dsl%d+%."]
  mail: ["@spam.test", "*@evil.test", "<>"]
  rcpt: ["@example.com", blocked@other.test]
"""


def has_v6():
    try:
        s = socket.socket(socket.AF_INET6)
        s.bind(("::1", 0))
        s.close()
        return True
    except OSError:
        return False


listen = ["127.0.0.1:0"] + (["[::1]:0"] if has_v6() else [])
with Kasi({"listen": listen},
          files={"config/plugins": "access\nqueue/spool\n",
                 "config/access.yaml": ACCESS}) as k:
    with Raw(k.port, source="127.0.0.2") as r:
        r.expect(554, "5.7.1", "denied IP: 554 5.7.1 at connect")
        ok(r.closed(), "and closed")
    with Raw(k.port, source="127.0.0.200") as r:
        r.expect(554, "5.7.1", "denied network 127.0.0.128/25")
    if len(k.ports) > 1:
        with Raw(k.ports[1], host="::1") as r:
            r.expect(554, "5.7.1", "denied IPv6 ::1/128")
    else:
        ok(True, "# SKIP no IPv6 loopback")
    with Raw(k.port, banner=True, source="127.0.0.4") as r:
        is_(r.cmd("EHLO x.bad.test"), (550, ["5.7.1 Access denied"]), "HELO glob deny")
        is_(r.cmd("EHLO dsl42.isp.test")[0], 550, "HELO Lua pattern deny")
        is_(r.cmd("HELO OK.bad.test")[0], 250, "HELO allow wins over deny (any case)")
        is_(r.cmd("MAIL FROM:<x@spam.test>")[0], 550, "sender @domain deny")
        is_(r.cmd("MAIL FROM:<x@EVIL.test>")[0], 550, "sender glob deny")
        is_(r.cmd("MAIL FROM:<>")[0], 550, "null sender deny")
        is_(r.cmd("MAIL FROM:<good@spam.test>")[0], 250, "sender allow wins")
        is_(r.cmd("RCPT TO:<someone@example.com>")[0], 550, "recipient domain deny")
        is_(r.cmd("RCPT TO:<blocked@other.test>")[0], 550, "recipient address deny")
        is_(r.cmd("RCPT TO:<Postmaster@example.com>")[0], 250, "recipient allow wins")
        is_(r.cmd("RCPT TO:<fine@other.test>")[0], 250, "unlisted recipient passes")
    # a client allowed by IP is trusted
    with Raw(k.port, banner=True, source="127.0.0.3") as r:
        is_(r.cmd("EHLO x.bad.test")[0], 250, "trusted client skips the HELO deny list")
        is_(r.cmd("MAIL FROM:<x@spam.test>")[0], 250, "and the sender deny list")
        is_(r.cmd("RCPT TO:<a@example.com>")[0], 250, "and the recipient deny list")

# allow beats deny for the IP category; trusted_skips off; trusted_relays;
# custom reply
with Kasi(files={"config/plugins": "access\nrcpt_to_host_list\nqueue/spool\n",
                 "config/rcpt_to_host_list.yaml": "domains: [example.com]\n",
                 "config/access.yaml":
                     "allow: {ip: [127.0.0.3]}\ndeny: {ip: [127.0.0.0/8], helo: [x.bad.test]}\n"
                     "trusted_skips: false\ntrusted_relays: true\n"
                     "connect_reply: {code: 521, enh: 5.7.9, message: 'Go away {value}'}\n"
                     "reply: {code: 553, enh: 5.7.8, message: 'No {what} {value}'}\n"}) as k:
    with Raw(k.port, source="127.0.0.9") as r:
        is_(r.read_reply(), (521, ["5.7.9 Go away 127.0.0.9"]), "custom connect reply")
    with Raw(k.port, banner=True, source="127.0.0.3") as r:
        is_(r.cmd("EHLO x.bad.test"), (553, ["5.7.8 No helo x.bad.test"]),
            "trusted_skips false: HELO list still applies")
        is_(r.cmd("EHLO y.bad.test")[0], 250, "other HELO")
        r.cmd("MAIL FROM:<a@client.test>")
        is_(r.cmd("RCPT TO:<x@elsewhere.test>")[0], 250, "trusted_relays: may relay")

# rDNS: deny by name, allow only when forward-confirmed
with Dns() as dns:
    with Kasi(files={"config/plugins": "access\nqueue/spool\n",
                     "config/dns.yaml": dns.dns_yaml(),
                     "config/access.yaml":
                         "allow: {rdns: [client3.test, liar.test]}\n"
                         "deny: {rdns: ['*.test']}\n"}) as k:
        with Raw(k.port, source="127.0.0.3") as r:
            r.expect(220, name="confirmed rDNS on the allow list passes")
        with Raw(k.port, source="127.0.0.2") as r:
            r.expect(554, "5.7.1", "unconfirmed rDNS allow entry does not count")
        with Raw(k.port, source="127.0.0.1") as r:
            r.expect(554, "5.7.1", "rDNS glob deny (client1.test)")
        with Raw(k.port, source="127.0.0.7") as r:
            r.expect(220, name="no rDNS: not denied")

with Kasi(files={"config/plugins": "access\n",
                 "config/access.yaml": "deny: {ip: [300.1.2.3]}\n"}, start=False) as k:
    res = run([KASI_BIN, "-t", "-c", k.confdir])
    ok(res.returncode != 0 and "300.1.2.3" in res.stdout + res.stderr,
       "kasi -t refuses a bad network", res.stdout + res.stderr)

done()
