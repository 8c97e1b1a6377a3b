#!/usr/bin/env python3
# The dnsbl, mail_from_resolvable and fcrdns plugins against dnsmasq on
# loopback: listed / unlisted / allow-listed clients, reject_at, a zone
# that never answers, return codes, IPv6 nibbles; sender domains with MX,
# A only, NXDOMAIN and timeouts; forward-confirmed reverse DNS.
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kasitest import *
from kasinet import Dns

MSG = b"From: a@example.test\r\nTo: b@mx.kasi.test\r\nSubject: hi\r\n\r\nhello\r\n"


def kasi_with(dns, plugins, confs, listen=None, dns_timeout=1):
    files = {"config/plugins": "\n".join(plugins + ["queue/spool"]) + "\n",
             "config/dns.yaml": dns.dns_yaml(timeout=dns_timeout)}
    for name, text in confs.items():
        files["config/%s.yaml" % name] = text
    cfg = {"listen": listen} if listen else None
    return Kasi(config=cfg, files=files)


def dnsbl_conf(reject_at="rcpt", zones=None, extra=""):
    zones = zones or ["bl.test", "bl2.test"]
    lines = ["zones:"]
    for z in zones:
        lines.append("  - zone: %s" % z)
        lines.append("    codes: [\"127.0.0.2-127.0.0.11\"]")
    return "\n".join(lines) + ("\nallow_zones:\n  - zone: wl.test\n"
                               "exempt_ips: [\"127.0.0.6\", \"127.1.0.0/16\"]\n"
                               "allow_rcpts: [\"abuse@mx.kasi.test\"]\n"
                               "exempt_private: false\ntimeout: 1\n"
                               "reject_at: %s\n" % reject_at) + extra


def rcpt(port, source, to="b@mx.kasi.test", frm="a@example.test"):
    with Raw(port, source=source) as r:
        r.read_reply()
        r.cmd("EHLO c.test")
        r.cmd("MAIL FROM:<%s>" % frm)
        return r.cmd("RCPT TO:<%s>" % to)


with Dns() as dns:
    # ---- dnsbl, deferred to RCPT
    with kasi_with(dns, ["dnsbl"], {"dnsbl": dnsbl_conf("rcpt")}) as k:
        code, lines = rcpt(k.port, "127.0.0.2")
        is_(code, 550, "listed client: RCPT rejected")
        like(" ".join(lines), r"^5\.7\.1 Rejected: 127\.0\.0\.2 is listed in bl\.test: "
             r"Listed in bl\.test, see http://bl\.test/q\?127\.0\.0\.2",
             "... with the zone's TXT reason")
        is_(rcpt(k.port, "127.0.0.2", to="postmaster")[0], 250,
            "listed client may write to postmaster")
        is_(rcpt(k.port, "127.0.0.2", to="abuse@mx.kasi.test")[0], 250,
            "... and to an allow-listed recipient")
        is_(rcpt(k.port, "127.0.0.1")[0], 250, "unlisted client passes")
        is_(rcpt(k.port, "127.0.0.4")[0], 250,
            "a return code that does not count (127.0.0.99) passes")
        is_(rcpt(k.port, "127.0.0.3")[0], 250, "allow-listed by DNSWL passes")
        is_(rcpt(k.port, "127.0.0.6")[0], 250, "allow-listed IP passes")
        # a full message from an unlisted client arrives
        res = send_message(k.port, "a@example.test", ["b@mx.kasi.test"], MSG)
        is_(res[0], 250, "unlisted client's message accepted")
        like(k.log(), r"dnsbl: 127\.0\.0\.2 listed in bl\.test,bl2\.test",
             "both zones queried and logged")

    # ---- reject at connect; a zone that never answers
    # (the resolver would wait 90 s: the plugin's own 1 s timeout must cut it)
    conf = dnsbl_conf("connect", zones=["slow.test", "bl.test"])
    with kasi_with(dns, ["dnsbl"], {"dnsbl": conf}, dns_timeout=90) as k:
        with Raw(k.port, source="127.0.0.2") as r:
            code, lines = r.read_reply(timeout=10)
            is_(code, 554, "reject_at connect: 554 banner")
            like(" ".join(lines), r"listed in bl\.test", "... naming the zone")
        with Raw(k.port, source="127.0.0.1") as r:
            code, _ = r.read_reply(timeout=10)
            is_(code, 220, "a zone that times out never rejects, after the plugin's "
                "timeout, not the resolver's")
        like(k.log(), r"dnsbl: slow\.test: timeout \(ignored\)", "timeout logged")

    # ---- reject at DATA
    with kasi_with(dns, ["dnsbl"], {"dnsbl": dnsbl_conf("data")}) as k:
        with Raw(k.port, source="127.0.0.2") as r:
            r.read_reply()
            r.cmd("EHLO c.test")
            r.cmd("MAIL FROM:<a@example.test>")
            is_(r.cmd("RCPT TO:<b@mx.kasi.test>")[0], 250, "reject_at data: RCPT ok")
            code, lines = r.cmd("DATA")
            is_(code, 550, "... DATA rejected")
        with Raw(k.port, source="127.0.0.2") as r:
            r.read_reply()
            r.cmd("EHLO c.test")
            r.cmd("MAIL FROM:<a@example.test>")
            r.cmd("RCPT TO:<postmaster@mx.kasi.test>")
            is_(r.cmd("DATA")[0], 354, "... unless every recipient is postmaster")

    # ---- IPv6 (::1 is listed in bl.test in nibble form)
    try:
        import socket as _s
        t = _s.socket(_s.AF_INET6)
        t.bind(("::1", 0))
        t.close()
        have_v6 = True
    except OSError:
        have_v6 = False
    if have_v6:
        with kasi_with(dns, ["dnsbl"], {"dnsbl": dnsbl_conf("connect")},
                       listen=["[::1]:0"]) as k:
            with Raw(k.port, host="::1") as r:
                code, lines = r.read_reply(timeout=10)
                is_(code, 554, "IPv6 client listed via nibble query")
    else:
        diag("no IPv6 loopback: skipping the IPv6 DNSBL check")

    # ---- mail_from_resolvable
    with kasi_with(dns, ["mail_from_resolvable"], {}) as k:
        with Raw(k.port, ehlo="c.test") as r:
            is_(r.cmd("MAIL FROM:<a@example.test>")[0], 250, "MX domain accepted")
            r.cmd("RSET")
            is_(r.cmd("MAIL FROM:<a@aonly.test>")[0], 250, "A-only domain accepted")
            r.cmd("RSET")
            code, lines = r.cmd("MAIL FROM:<a@nope.test>")
            is_((code, lines[0][:5] if lines else None), (550, "5.1.8"),
                "NXDOMAIN: 550 5.1.8")
            code, lines = r.cmd("MAIL FROM:<a@x.slow.test>", timeout=10)
            is_((code, lines[0][:5] if lines else None), (450, "4.1.8"),
                "timeout: 450 4.1.8")
            is_(r.cmd("MAIL FROM:<>")[0], 250, "null sender accepted")

    # ---- fcrdns
    with kasi_with(dns, ["fcrdns"], {"fcrdns": "reject: true\nexempt_private: false\n"}) as k:
        with Raw(k.port, source="127.0.0.1") as r:
            is_(r.read_reply(timeout=10)[0], 220, "fcrdns: confirmed client accepted")
        with Raw(k.port, source="127.0.0.2") as r:
            code, lines = r.read_reply(timeout=10)
            is_(code, 550, "fcrdns: PTR that does not resolve back rejected")
            like(" ".join(lines), r"5\.7\.25 .*liar\.test", "... naming the PTR")
        with Raw(k.port, source="127.0.0.5") as r:
            is_(r.read_reply(timeout=10)[0], 550, "fcrdns: no PTR rejected")
    with kasi_with(dns, ["fcrdns"], {"fcrdns": "reject: false\n"}) as k:
        with Raw(k.port, source="127.0.0.2") as r:
            is_(r.read_reply(timeout=10)[0], 220, "fcrdns: annotate only")

done()
