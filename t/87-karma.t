#!/usr/bin/env python3
"""karma on one node with a real Redis: each connection's score from its
events (messages accepted, commands refused or deferred by other plugins,
protocol errors; weights; the cap; ignored plugins) added to the
client's history in Redis; conn.notes.karma for other plugins; the
thresholds at connect (reject 554, defer 421, tarpit: replies only after
tarpit_delay); per: network; relay clients left alone; Redis down:
fail_open (unknown history, the end-of-connection write not awaited, no
session waits) and fail_closed (421 4.3.0)."""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kasitest import *  # noqa: E402,F401,F403
from redistest import Redis, have_redis, redis_yaml  # noqa: E402

if not have_redis():
    skip("karma", "redis-server is not installed (contrib/deps.sh)")
    done()

READ = """
local P = {}
function P.hook_helo(conn)
  local k = conn.notes.karma
  conn:loginfo("read score=%s connections=%s known=%s exempt=%s", k.score, k.connections,
               tostring(k.known), tostring(k.exempt))
end
P.hook_ehlo = P.hook_helo
function P.hook_rcpt(conn, txn, rcpt)
  if rcpt.user == "soft" then return DENYSOFT, "not now" end
  if rcpt.user == "grey" then return DENYSOFT, "greylisted" end
end
return P
"""


def kasi(red, karma="", plugins="relay\nkarma\nread\nrcpt_to_host_list\nqueue/spool\n"):
    return Kasi(files={
        "config/plugins": plugins,
        "plugins/read.lua": READ,
        "config/karma.yaml": karma,
        "config/relay.yaml": "allow: [127.0.9.0/24]\n",
        "config/rcpt_to_host_list.yaml": "domains: [example.com]\n",
        "config/redis.yaml": redis_yaml(red.address, command_timeout=0.5, retry_interval=0.3),
    })


def history(red, who, want, name):
    deadline = time.monotonic() + scaled(5)
    while red.cmd("HGET", "kasi:karma:" + who, "score") != want and time.monotonic() < deadline:
        time.sleep(0.05)
    is_(red.cmd("HGET", "kasi:karma:" + who, "score"), want, name)


def session(k, src, rcpts=(), bad=0, messages=0):
    with Raw(k.port, source=src, ehlo="client.test") as c:
        for i in range(messages):
            c.cmd("MAIL FROM:<a@sender.test>")
            c.cmd("RCPT TO:<u@example.com>")
            c.cmd("DATA")
            c.send(b"Subject: k\r\n\r\nx\r\n.\r\n")
            c.read_reply()
        if rcpts:
            c.cmd("MAIL FROM:<a@sender.test>")
            for r in rcpts:
                c.cmd("RCPT TO:<%s>" % r)
            c.cmd("RSET")
        for i in range(bad):
            c.cmd("NONSENSE%d" % i)
        c.cmd("QUIT")


with Redis() as red:
    with kasi(red, "ignore_plugins: [read]\nmax_per_connection: 5\n") as k:
        session(k, "127.0.1.1", messages=2)
        history(red, "127.0.1.1", "2", "two messages accepted: +2")
        ok(k.wait_log(r"karma: connection \+2 \(accepted 2, rejected 0, deferred 0, errors 0\)"),
           "the connection's score logged")
        session(k, "127.0.1.1", rcpts=["x@elsewhere.test", "y@elsewhere.test"])
        history(red, "127.0.1.1", "0", "two refused recipients (-1 each): back to 0")
        is_(red.cmd("HGET", "kasi:karma:127.0.1.1", "connections"), "2", "two connections counted")
        ok(0 < red.cmd("TTL", "kasi:karma:127.0.1.1") <= 30 * 86400, "the history expires (memory)")
        session(k, "127.0.1.2", bad=3)
        history(red, "127.0.1.2", "-3", "three protocol errors: -3")
        session(k, "127.0.1.3", messages=7)
        history(red, "127.0.1.3", "5", "seven messages, capped at +5")
        session(k, "127.0.1.4", rcpts=["soft@example.com", "grey@example.com"])
        history(red, "127.0.1.4", "0", "refusals of an ignored plugin do not count")
        with Raw(k.port, source="127.0.1.3", ehlo="client.test"):
            pass
        ok(k.wait_log(r"read score=5 connections=1 known=true exempt=nil"),
           "conn.notes.karma for other plugins")
        with Raw(k.port, source="127.0.1.99", ehlo="client.test"):
            pass
        ok(k.wait_log(r"read score=0 connections=0 known=false"), "a new client: known = false")

    with kasi(red, "weights: {deferred: -2}\nmax_per_connection: 10\n") as k:
        session(k, "127.0.2.1", rcpts=["soft@example.com", "soft@example.com"])
        history(red, "127.0.2.1", "-4", "weights: deferred -2, twice")

    # thresholds
    red.cmd("HSET", "kasi:karma:127.0.3.1", "score", "-30", "connections", "6")
    red.cmd("HSET", "kasi:karma:127.0.3.2", "score", "-12", "connections", "3")
    red.cmd("HSET", "kasi:karma:127.0.3.3", "score", "-5", "connections", "2")
    with kasi(red, "thresholds: {reject: -20, defer: -10, tarpit: -4}\ntarpit_delay: 1\n") as k:
        with Raw(k.port, source="127.0.3.1") as c:
            c.expect(554, "5.7.1", name="history -30: rejected at connect")
            ok(c.closed(), "rejected: closed")
        with Raw(k.port, source="127.0.3.2") as c:
            c.expect(421, "4.7.0", name="history -12: deferred at connect")
            ok(c.closed(), "deferred: closed")
        with Raw(k.port, source="127.0.3.3", banner=True) as c:
            t0 = time.monotonic()
            code, _ = c.cmd("EHLO slow.test")
            is_(code, 250, "history -5: tarpitted, but served")
            ok(time.monotonic() - t0 >= 0.95, "tarpit: the EHLO reply waited tarpit_delay")
            t0 = time.monotonic()
            c.cmd("MAIL FROM:<a@sender.test>")
            ok(time.monotonic() - t0 >= 0.95, "tarpit: so did MAIL")
        ok(k.wait_log(r"karma: 127\.0\.3\.3 has -5 after 2 connections: tarpit"), "tarpit logged")
        with Raw(k.port, source="127.0.9.3", banner=True) as c:
            is_(c.cmd("EHLO relay.test")[0], 250, "a relay client is left alone")
        ok(k.wait_log(r"read score=0 connections=0 known=false exempt=true"), "relay: exempt")
        session(k, "127.0.3.9")          # written after it, on the same connection
        history(red, "127.0.3.9", "0", "a later client's history is in")
        is_(red.cmd("EXISTS", "kasi:karma:127.0.9.3"), 0, "relay: no history written")

    # per network
    with kasi(red, "per: network\nipv4_prefix: 24\n") as k:
        session(k, "127.0.4.1", messages=1)
        session(k, "127.0.4.2", messages=1)
        history(red, "127.0.4.0/24", "2", "per: network: two addresses, one history")

    # Redis down
    with kasi(red, "on_redis_error: fail_open\n") as k:
        red.kill()
        t0 = time.monotonic()
        session(k, "127.0.5.1", messages=1)
        ok(k.wait_log(r"karma: history of 127\.0\.5\.1 unknown"), "Redis down, fail_open: unknown, served")
        ok(k.wait_log(r"karma: connection \+1 .*not recorded"), "the write fails at once, logged")
        ok(k.wait_log(r"read score=0 connections=0 known=false"), "notes.karma: known = false")
        session(k, "127.0.5.3")
        session(k, "127.0.5.4")
        is_(k.count_log(r"karma: history of .* unknown"), 1,
            "three connections in the outage: one warning (at most one per 10 s)")
        red.start()
    with kasi(red, "on_redis_error: fail_closed\n") as k:
        red.kill()
        with Raw(k.port, source="127.0.5.2") as c:
            c.expect(421, "4.3.0", name="Redis down, fail_closed: 421 4.3.0 at connect")
        red.start()
        deadline = time.monotonic() + scaled(10)
        code = None
        while time.monotonic() < deadline:
            with Raw(k.port, source="127.0.5.2") as c:
                code, _ = c.read_reply()
            if code == 220:
                break
            time.sleep(0.1)
        is_(code, 220, "Redis back: served again, no reload")
done()
