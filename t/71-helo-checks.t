#!/usr/bin/env python3
"""helo_checks: invalid names, non-FQDNs, bare IPs, our own name and
address claimed by a foreign client, mismatched address literals, the
optional DNS check; reject vs note; relaying and local clients skipped."""
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kasitest import *  # noqa: E402,F401,F403
from kasinet import Dns  # noqa: E402

FOREIGN = "127.0.0.2"       # the server listens on 127.0.0.1

with Kasi(files={"config/plugins": "helo_checks\nqueue/spool\n",
                 "config/helo_checks.yaml": "own_names: [mx.kasi.test, '*.kasi.test']\n"}) as k:
    with Raw(k.port, banner=True, source=FOREIGN) as r:
        for verb in ("EHLO", "HELO"):
            for name, why in (("bad_name.example.com", "Invalid HELO name"),
                              ("-x.example.com", "Invalid HELO name"),
                              ("a..example.com", "Invalid HELO name"),
                              ("[1.2.3]", "Invalid HELO name"),
                              ("mx", "not a fully qualified"),
                              ("localhost", "not a fully qualified"),
                              ("host.123", "not a fully qualified"),
                              ("192.0.2.1", "bare IP"),
                              ("mx.kasi.test", "that is my name"),
                              ("MX.KASI.TEST.", "that is my name"),
                              ("other.kasi.test", "that is my name"),
                              ("[127.0.0.1]", "that is my address"),
                              ("[192.0.2.1]", "is not your address 127.0.0.2"),
                              ("[IPv6:2001:db8::1]", "is not your address")):
                code, lines = r.cmd("%s %s" % (verb, name))
                ok(code == 550 and lines[0].startswith("5.7.1 ") and why in lines[0],
                   "%s %s: 550 5.7.1 (%s)" % (verb, name, why), repr((code, lines)))
        is_(r.cmd("MAIL FROM:<a@client.test>")[0], 503, "refused greetings leave it ungreeted")
        for name in ("client.example.com", "[127.0.0.2]", "Client-1.Example.COM."):
            is_(r.cmd("EHLO " + name)[0], 250, "EHLO %s accepted" % name)
        is_(r.cmd("MAIL FROM:<a@client.test>")[0], 250, "then mail is accepted")

    # the server's own address talking to itself is not foreign
    with Raw(k.port, banner=True) as r:
        is_(r.cmd("EHLO mx.kasi.test")[0], 250, "local client may use our name")
        is_(r.cmd("EHLO mx")[0], 250, "local client is not checked at all")

# note mode, checks off, custom message; a later plugin reads the notes
READ = r'''
function hook_mail(conn, txn)
  local n = conn.notes.helo_checks
  return DENY, "fail=" .. table.concat(n.fail, ",") .. " pass=" .. table.concat(n.pass, ",")
end
'''
with Kasi(files={"config/plugins": "helo_checks\nread\nqueue/spool\n",
                 "plugins/read.lua": READ,
                 "config/helo_checks.yaml":
                     "checks:\n  fqdn: note\n  bare_ip: off\n  literal_mismatch: reject\n"
                     "messages:\n  literal_mismatch: 'Liar: {helo} vs {ip}'\n"
                     "reply: {code: 553, enh: 5.7.9}\n"}) as k:
    with Raw(k.port, banner=True, source=FOREIGN) as r:
        is_(r.cmd("EHLO mx")[0], 250, "fqdn: note lets a short name pass")
        is_(r.cmd("MAIL FROM:<a@client.test>"),
            (550, ["5.7.1 fail=fqdn pass=valid,own_name,own_ip,literal_mismatch"]),
            "conn.notes.helo_checks records the failure and passes")
        is_(r.cmd("EHLO 192.0.2.9")[0], 250, "bare_ip: off")
        is_(r.cmd("EHLO [192.0.2.9]"), (553, ["5.7.9 Liar: [192.0.2.9] vs 127.0.0.2"]),
            "custom code, enhanced code and message")

# relaying clients are skipped; exempt_ips
with Kasi(files={"config/plugins": "relay\nhelo_checks\nqueue/spool\n",
                 "config/relay.yaml": "allow: [127.0.0.3]\n",
                 "config/helo_checks.yaml": "exempt_ips: [127.0.0.4/32]\n"}) as k:
    with Raw(k.port, banner=True, source="127.0.0.3") as r:
        is_(r.cmd("EHLO mx")[0], 250, "relaying client not checked")
    with Raw(k.port, banner=True, source="127.0.0.4") as r:
        is_(r.cmd("EHLO mx")[0], 250, "exempt_ips client not checked")
    with Raw(k.port, banner=True, source="127.0.0.5") as r:
        is_(r.cmd("EHLO mx")[0], 550, "other client checked")

# must_resolve against a test DNS server
with Dns() as dns:
    with Kasi(files={"config/plugins": "helo_checks\nqueue/spool\n",
                     "config/dns.yaml": dns.dns_yaml(),
                     "config/helo_checks.yaml": "checks: {must_resolve: reject}\n"}) as k:
        with Raw(k.port, banner=True, source=FOREIGN) as r:
            is_(r.cmd("EHLO mail.example.test")[0], 250, "a name with A records passes")
            code, lines = r.cmd("EHLO nope.test")
            ok(code == 550 and "does not resolve" in lines[0],
               "a name that does not exist: 550", repr((code, lines)))
            is_(r.cmd("EHLO x.slow.test", timeout=15)[0], 250,
                "a DNS timeout never rejects")

with Kasi(files={"config/plugins": "helo_checks\n",
                 "config/helo_checks.yaml": "checks: {fqdn: maybe}\n"}, start=False) as k:
    res = run([KASI_BIN, "-t", "-c", k.confdir])
    ok(res.returncode != 0 and
       re.search(r"helo_checks\.yaml:1: checks\.fqdn: expected one of reject, note, off",
                 res.stderr),
       "kasi -t refuses a bad check mode", res.stdout + res.stderr)

done()
