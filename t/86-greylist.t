#!/usr/bin/env python3
"""greylist on one node with a real Redis: a new triplet deferred at RCPT
(451 4.7.1), a retry before the delay deferred again, one after it passes
and whitelists the client's network (another address of that /24 passes
at once, another /24 does not), each message renews the whitelist, a
triplet older than retry_window starts over, sender: domain, the null
sender, IPv6 clients by /64 (named by XCLIENT), and the exemptions (a
relay network, an authenticated client, exempt_ips, exempt_rcpts,
exempt_senders, DNS whitelist zones: a listing passes, an error answer
such as 127.0.0.255 or a code outside the zone's codes does not); Redis
down: fail_open accepts, fail_closed defers. txn.notes.greylist says what
happened."""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kasitest import *  # noqa: E402,F401,F403
from kasinet import Dns  # noqa: E402
from redistest import Redis, have_redis, redis_yaml  # noqa: E402

if not have_redis():
    skip("greylist", "redis-server is not installed (contrib/deps.sh)")
    done()

NOTE = """
local P = {}
function P.hook_rcpt_ok(conn, txn, rcpt)
  conn:loginfo("note greylist=%s", tostring(txn.notes.greylist))
end
return P
"""


# DNS whitelists: wl.test lists 127.0.0.3 (127.0.10.0: dnswl.org's trust
# "none", a listing) and answers 127.0.0.5 with 127.0.0.255 (dnswl.org's
# error code: a query through a public resolver); wl2.test, whose codes
# are 127.0.5.2-127.0.5.3, answers 127.0.5.1 for 127.0.0.6 and 127.0.5.3
# for 127.0.0.7.
ZONES = """
host-record=5.0.0.127.wl.test,127.0.0.255
host-record=6.0.0.127.wl2.test,127.0.5.1
host-record=7.0.0.127.wl2.test,127.0.5.3
"""
XCLIENT_FROM = "127.0.10.0/24"


def kasi(red, dns, grey, relay="allow: [127.0.9.0/24]\n"):
    return Kasi({"xclient_from": [XCLIENT_FROM]}, files={
        "config/plugins": "relay\ngreylist\nnote\nqueue/spool\n",
        "plugins/note.lua": NOTE,
        "config/relay.yaml": relay,
        "config/greylist.yaml": grey,
        "config/redis.yaml": redis_yaml(red.address, command_timeout=0.5, retry_interval=0.3),
        "config/dns.yaml": dns.dns_yaml(),
    })


def rcpt(k, src, rcpt_to, sender="a@sender.test", xclient=None):
    """(code, enh) of RCPT TO from src (after XCLIENT with these
    attributes: src must be in xclient_from)."""
    with Raw(k.port, source=src, banner=True) as c:
        if xclient:
            c.cmd("XCLIENT " + xclient)
        c.cmd("EHLO client.test")
        c.cmd("MAIL FROM:<%s>" % sender)
        code, lines = c.cmd("RCPT TO:<%s>" % rcpt_to)
        return code, (lines or [""])[0][:5]


def until_pass(k, src, rcpt_to, sender="a@sender.test", limit=10, xclient=None):
    deadline = time.monotonic() + scaled(limit)
    while time.monotonic() < deadline:
        if rcpt(k, src, rcpt_to, sender, xclient)[0] == 250:
            return True
        time.sleep(0.1)
    return False


DEFER = (451, "4.7.1")
GREY = "delay: %g\nretry_window: 60\nwhitelist: 600\n" % scaled(2)

with Redis() as red, Dns(extra=ZONES) as dns:
    with kasi(red, dns, GREY + "dnswl: [wl.test, {zone: wl2.test, codes: [\"127.0.5.2-127.0.5.3\"]}]\n"
              "exempt_ips: [127.0.8.8]\n"
              "exempt_rcpts: [\"postmaster@*\", \"abuse@example.com\"]\n"
              "exempt_senders: [\"*@partner.test\"]\n") as k:
        t0 = time.monotonic()
        is_(rcpt(k, "127.0.1.5", "u@example.com"), DEFER, "new triplet: 451 4.7.1")
        is_(rcpt(k, "127.0.1.5", "u@example.com"), DEFER, "at once again: still deferred")
        ok(k.wait_log(r"greylist: early 127\.0\.1\.0/24\|a@sender\.test\|u@example\.com"),
           "logged: early, with the triplet")
        ok(until_pass(k, "127.0.1.5", "u@example.com"), "after the delay: accepted")
        ok(time.monotonic() - t0 >= scaled(2) - 0.1, "not before the delay")
        ok(k.wait_log(r"greylist: pass .* 127\.0\.1\.0/24 whitelisted"), "pass logged, network whitelisted")
        ttl = red.cmd("TTL", "kasi:grey:white:127.0.1.0/24")
        ok(500 < ttl <= 600, "the whitelist entry lives `whitelist` seconds", ttl)
        is_(rcpt(k, "127.0.1.77", "other@example.com", "b@else.test")[0], 250,
            "whitelisted network: another address, sender and recipient pass at once")
        ok(k.wait_log(r"note greylist=white"), "txn.notes.greylist = white")
        is_(rcpt(k, "127.0.2.5", "u@example.com"), DEFER, "another /24: greylisted")

        red.cmd("EXPIRE", "kasi:grey:white:127.0.1.0/24", 20)
        with Raw(k.port, source="127.0.1.5", ehlo="client.test") as c:
            c.cmd("MAIL FROM:<a@sender.test>")
            c.cmd("RCPT TO:<u@example.com>")
            c.cmd("DATA")
            c.send(b"Subject: renew\r\n\r\nx\r\n.\r\n")
            is_(c.read_reply()[0], 250, "a message from the whitelisted network")
        deadline = time.monotonic() + scaled(5)
        while red.cmd("TTL", "kasi:grey:white:127.0.1.0/24") <= 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        ok(red.cmd("TTL", "kasi:grey:white:127.0.1.0/24") > 500, "the message renewed the whitelist")

        is_(rcpt(k, "127.0.3.5", "u@example.com", sender="")[0], 451, "null sender: greylisted too")
        ok(k.wait_log(r"greylist: new 127\.0\.3\.0/24\|<>\|u@example\.com"), "null sender as <>")

        is_(rcpt(k, "127.0.9.5", "u@example.com")[0], 250, "a relay network: never greylisted")
        ok(k.wait_log(r"note greylist=exempt"), "txn.notes.greylist = exempt")
        is_(rcpt(k, "127.0.8.8", "u@example.com")[0], 250, "exempt_ips: never greylisted")
        is_(rcpt(k, "127.0.5.5", "postmaster@example.com")[0], 250, "exempt_rcpts (glob)")
        is_(rcpt(k, "127.0.5.5", "abuse@example.com")[0], 250, "exempt_rcpts (exact)")
        is_(rcpt(k, "127.0.5.5", "u@example.com"), DEFER, "... other recipients are greylisted")
        is_(rcpt(k, "127.0.5.5", "u@example.com", "x@partner.test")[0], 250,
            "exempt_senders (glob)")
        is_(rcpt(k, "127.0.5.5", "u@example.com", "x@partner.test.evil"), DEFER,
            "... other senders are greylisted")
        is_(rcpt(k, "127.0.10.1", "u@example.com", xclient="LOGIN=bob")[0], 250,
            "an authenticated client (XCLIENT LOGIN): never greylisted")
        is_(rcpt(k, "127.0.10.1", "u@example.com"), DEFER,
            "... the same client unauthenticated: greylisted")
        is_(rcpt(k, "127.0.0.3", "u@example.com")[0], 250,
            "listed in a DNS whitelist (trust none, 127.0.10.0): passes")
        is_(rcpt(k, "127.0.0.4", "u@example.com"), DEFER, "not listed: greylisted")
        is_(rcpt(k, "127.0.0.5", "e255@example.com"), DEFER,
            "a DNS whitelist's error answer (127.0.0.255): greylisted")
        ok(k.wait_log(r"greylist: new 127\.0\.0\.0/24\|a@sender\.test\|e255@example\.com"),
           "... as a new triplet")
        is_(rcpt(k, "127.0.0.6", "c1@example.com"), DEFER,
            "an answer outside the zone's codes: greylisted")
        is_(rcpt(k, "127.0.0.7", "c3@example.com")[0], 250, "an answer among the zone's codes: passes")

        # IPv6 clients: the triplet's network and the whitelist are their /64
        def v6(ip):
            return "ADDR=IPV6:" + ip
        is_(rcpt(k, "127.0.10.2", "u@example.com", xclient=v6("2001:db8:1::1")), DEFER,
            "IPv6: a new triplet deferred")
        ok(k.wait_log(r"greylist: new 2001:db8:1::/64\|a@sender\.test\|u@example\.com"),
           "IPv6: the triplet holds the client's /64")
        ok(until_pass(k, "127.0.10.2", "u@example.com", xclient=v6("2001:db8:1::2")),
           "IPv6: the retry from another address of the /64 passes")
        is_(rcpt(k, "127.0.10.2", "w@example.com", "b@else.test", xclient=v6("2001:db8:1::99"))[0],
            250, "IPv6: the /64 whitelisted: another address, sender and recipient pass")
        is_(rcpt(k, "127.0.10.2", "u@example.com", xclient=v6("2001:db8:2::1")), DEFER,
            "IPv6: another /64 is greylisted")

    # a retry later than retry_window starts over; sender: domain
    with kasi(red, dns, "delay: 1\nretry_window: 2\nwhitelist: 0\nsender: domain\n") as k:
        is_(rcpt(k, "127.0.6.5", "u@example.com", "x1@list.test"), DEFER, "domain: first")
        ok(until_pass(k, "127.0.6.5", "u@example.com", "x2@list.test"),
           "sender: domain: another address of the domain passes the retry")
        is_(rcpt(k, "127.0.6.5", "v@example.com", "x3@list.test"), DEFER,
            "whitelist: 0: the network is not whitelisted")
        deadline = time.monotonic() + scaled(10)
        while red.cmd("EXISTS", "kasi:grey:t:127.0.6.0/24|list.test|v@example.com") == 1 \
                and time.monotonic() < deadline:
            time.sleep(0.1)
        is_(rcpt(k, "127.0.6.5", "v@example.com", "x3@list.test"), DEFER,
            "after retry_window: deferred as new")
        is_(k.count_log(r"greylist: new 127\.0\.6\.0/24\|list\.test\|v@example\.com"), 2,
            "logged as new twice")

    # Redis down
    with kasi(red, dns, GREY + "on_redis_error: fail_open\n") as k:
        red.kill()
        is_(rcpt(k, "127.0.7.5", "u@example.com")[0], 250, "Redis down, fail_open: accepted")
        ok(k.wait_log(r"note greylist=error"), "txn.notes.greylist = error")
        ok(k.wait_log(r"warn: .*greylist: .*\(accepted\)"), "logged")
        is_([rcpt(k, "127.0.7.5", "u%d@example.com" % i)[0] for i in range(3)], [250] * 3,
            "... and the next recipients")
        is_(k.count_log(r"warn: .*greylist: "), 1, "one warning (at most one per 10 s)")
        red.start()
    with kasi(red, dns, GREY + "on_redis_error: fail_closed\n") as k:
        red.kill()
        is_(rcpt(k, "127.0.7.6", "u@example.com"), DEFER, "Redis down, fail_closed: deferred")
        red.start()
        ok(k.wait_log(r"greylist: .*\(deferred\)"), "logged")
        ok(until_pass(k, "127.0.7.6", "u@example.com", limit=15) and
           k.count_log(r"greylist: new 127\.0\.7\.0/24") == 1,
           "Redis back: greylisting again (new, then a pass), no reload")
done()
