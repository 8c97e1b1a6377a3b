#!/usr/bin/env python3
"""limit's rate rules, the same table against both backends (local:
kasi.counter; redis: a real redis-server): connections per ip, messages
per sender and per AUTH user (named by XCLIENT LOGIN), recipients per
recipient, per /24 network and per /64 (IPv6 clients named by XCLIENT
ADDR); over the max the rule's reply (421 at
connect, 451 4.7.1 at MAIL and RCPT) while other keys go on; the window
slides (accepted again once the period is over); with backend redis the
windows are in Redis under key_prefix and expire; Redis down with
fail_closed defers with redis_error_reply."""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kasitest import *  # noqa: E402,F401,F403
from redistest import Redis, have_redis, redis_yaml  # noqa: E402

LIMIT = """backend: %s
on_redis_error: fail_closed
rates:
  connections:
    - {per: ip, max: 2, period: 2}
  messages:
    - {per: sender, max: 2, period: 60}
    - {per: auth_user, max: 1, period: 60}
  recipients:
    - {per: recipient, max: 2, period: 60}
    - {per: network, max: 4, period: 60, ipv4_prefix: 24}
"""


def kasi(backend, red):
    files = {"config/plugins": "limit\nqueue/spool\n",
             "config/limit.yaml": LIMIT % backend}
    if red:
        files["config/redis.yaml"] = redis_yaml(red.address, command_timeout=0.5,
                                                retry_interval=0.3)
    return Kasi({"limits": {"exempt": []}, "xclient_from": ["127.0.3.0/24"]}, files=files)


def banner(k, src):
    with Raw(k.port, source=src) as c:
        code, lines = c.read_reply()
        return code, (lines or [""])[0][:5]


def mail(k, src, sender, login=None):
    with Raw(k.port, source=src, banner=True) as c:
        if login:
            c.cmd("XCLIENT LOGIN=%s" % login)
        c.cmd("EHLO client.test")
        code, lines = c.cmd("MAIL FROM:<%s>" % sender)
        return code, (lines or [""])[0][:5]


def rcpts(k, src, to, addr=None):
    """RCPT TO each of to from src, or from addr (XCLIENT ADDR=)."""
    with Raw(k.port, source=src, banner=True) as c:
        if addr:
            c.cmd("XCLIENT ADDR=" + addr)
        c.cmd("EHLO client.test")
        c.cmd("MAIL FROM:<r%s@sender.test>" % time.monotonic_ns())
        out = []
        for t in to:
            code, lines = c.cmd("RCPT TO:<%s>" % t)
            out.append((code, (lines or [""])[0][:5]))
        return out


OK_MAIL, DEFER = (250, "2.1.0"), (451, "4.7.1")


def run(backend, red=None):
    b = backend
    with kasi(backend, red) as k:
        is_([banner(k, "127.0.1.1")[0] for _ in range(3)], [220, 220, 421],
            "%s: connections per ip: the third in 2 s refused" % b)
        is_(banner(k, "127.0.1.1"), (421, "4.7.0"), "%s: ... with 421 4.7.0" % b)
        is_(banner(k, "127.0.1.2")[0], 220, "%s: another ip is served" % b)
        # every attempt counts: probe slower than max per period to let it slide
        is_([banner(k, "127.0.1.3")[0] for _ in range(3)], [220, 220, 421],
            "%s: 127.0.1.3 over its rate" % b)
        deadline = time.monotonic() + scaled(12)
        while banner(k, "127.0.1.3")[0] != 220 and time.monotonic() < deadline:
            time.sleep(1.2)
        ok(time.monotonic() < deadline, "%s: the window slides: served again later" % b)

        is_([mail(k, "127.0.2.%d" % i, "s@sender.test") for i in range(1, 4)],
            [OK_MAIL, OK_MAIL, DEFER], "%s: messages per sender, from any ip" % b)
        is_(mail(k, "127.0.2.4", "S@SENDER.test"), DEFER, "%s: the sender in any case" % b)
        is_(mail(k, "127.0.2.4", "other@sender.test"), OK_MAIL, "%s: another sender" % b)
        is_(mail(k, "127.0.2.5", "", ), OK_MAIL, "%s: the null sender is not counted" % b)
        is_(mail(k, "127.0.2.5", ""), OK_MAIL, "%s: ... ever" % b)

        is_([mail(k, "127.0.3.%d" % (i + 1), "u%d@a.test" % i, login="bob") for i in range(2)],
            [OK_MAIL, DEFER], "%s: messages per auth_user (XCLIENT LOGIN)" % b)
        is_(mail(k, "127.0.3.3", "u9@a.test", login="alice"), OK_MAIL, "%s: another user" % b)
        is_(mail(k, "127.0.3.4", "u8@a.test"), OK_MAIL, "%s: unauthenticated: not counted" % b)

        is_(rcpts(k, "127.0.4.1", ["x@example.com", "x@example.com", "x@example.com"]),
            [(250, "2.1.5"), (250, "2.1.5"), DEFER], "%s: recipients per recipient" % b)
        is_(rcpts(k, "127.0.5.1", ["a@example.com", "b@example.com"]) +
            rcpts(k, "127.0.5.200", ["c@example.com", "d@example.com", "e@example.com"]),
            [(250, "2.1.5")] * 4 + [DEFER], "%s: recipients per /24 network" % b)
        is_(rcpts(k, "127.0.6.1", ["f@example.com"]), [(250, "2.1.5")], "%s: another /24" % b)
        is_(rcpts(k, "127.0.3.10", ["g@example.com", "h@example.com"], "IPV6:2001:db8:1::1") +
            rcpts(k, "127.0.3.11", ["i@example.com", "j@example.com", "k@example.com"],
                  "IPV6:2001:db8:1::2"),
            [(250, "2.1.5")] * 4 + [DEFER], "%s: recipients per /64 network (IPv6)" % b)
        is_(rcpts(k, "127.0.3.12", ["l@example.com"], "IPV6:2001:db8:2::1"), [(250, "2.1.5")],
            "%s: another /64" % b)
        ok(k.wait_log(r"limit: recipients per network: 5 in 60 s \(max 4\)"), "%s: logged" % b)
        if red:
            keys = red.cmd("KEYS", "kasi:limit:*")
            ok("kasi:limit:messages:sender:60:s@sender.test" in keys, "redis: the windows in Redis", keys)
            ok("kasi:limit:recipients:network:60:2001:db8:1::/64" in keys,
               "redis: an IPv6 client counted by its /64", keys)
            ttl = red.cmd("PTTL", "kasi:limit:messages:sender:60:s@sender.test")
            ok(0 < ttl <= 64000, "redis: a window expires with its period", ttl)
            red.kill()
            is_(banner(k, "127.0.7.2"), (451, "4.3.0"),
                "redis down, fail_closed: redis_error_reply (at connect: the first count)")
            red.start()


run("local")
if have_redis():
    with Redis() as red:
        run("redis", red)
else:
    skip("limit with backend redis", "redis-server is not installed")
done()
