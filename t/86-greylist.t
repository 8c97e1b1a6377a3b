#!/usr/bin/env python3
"""greylist on one node with a real Redis: a new triplet deferred at RCPT
(451 4.7.1), a retry before the delay deferred again, one after it passes
and whitelists the client's network (another address of that /24 passes
at once, another /24 does not), each message renews the whitelist, a
triplet older than retry_window starts over, sender: domain, the null
sender, and the exemptions (a relay network, exempt_ips, exempt_rcpts,
a DNS whitelist zone); Redis down: fail_open accepts, fail_closed defers.
txn.notes.greylist says what happened."""
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


def kasi(red, dns, grey, relay="allow: [127.0.9.0/24]\n"):
    return Kasi(files={
        "config/plugins": "relay\ngreylist\nnote\nqueue/spool\n",
        "plugins/note.lua": NOTE,
        "config/relay.yaml": relay,
        "config/greylist.yaml": grey,
        "config/redis.yaml": redis_yaml(red.address, command_timeout=0.5, retry_interval=0.3),
        "config/dns.yaml": dns.dns_yaml(),
    })


def rcpt(k, src, rcpt_to, sender="a@sender.test"):
    """(code, enh) of RCPT TO from src."""
    with Raw(k.port, source=src, ehlo="client.test") as c:
        c.cmd("MAIL FROM:<%s>" % sender)
        code, lines = c.cmd("RCPT TO:<%s>" % rcpt_to)
        return code, (lines or [""])[0][:5]


def until_pass(k, src, rcpt_to, sender="a@sender.test", limit=10):
    deadline = time.monotonic() + scaled(limit)
    while time.monotonic() < deadline:
        if rcpt(k, src, rcpt_to, sender)[0] == 250:
            return True
        time.sleep(0.1)
    return False


DEFER = (451, "4.7.1")
GREY = "delay: %g\nretry_window: 60\nwhitelist: 600\n" % scaled(2)

with Redis() as red, Dns() as dns:
    with kasi(red, dns, GREY + "dnswl: [wl.test]\nexempt_ips: [127.0.8.8]\n"
              "exempt_rcpts: [\"postmaster@*\", \"abuse@example.com\"]\n") as k:
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
        is_(rcpt(k, "127.0.0.3", "u@example.com")[0], 250, "listed in the DNS whitelist: passes")
        is_(rcpt(k, "127.0.0.4", "u@example.com"), DEFER, "not listed: greylisted")

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
