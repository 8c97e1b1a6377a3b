#!/usr/bin/env python3
"""Scale-out: a real HAProxy sending PROXY v2 to three kasi nodes that
share one real Redis (limit with backend redis, greylist, karma).

  * the sample contrib/haproxy/haproxy.cfg is valid, and its SMTP health
    checks (with their own PROXY header) pass on the nodes;
  * the client each node sees (connect log with the client's own port, a
    plugin, the EHLO greeting, Received:) is the 127.0.0.x address the test
    connected from, never HAProxy's;
  * a per-IP message rate of 5 per minute holds across the three nodes:
    exactly 5 of 9 messages accepted, the rest deferred (451 4.7.1), the
    accepted ones on different nodes; another client is not affected;
  * greylisting: deferred on node A, deferred again before the delay,
    accepted on another node B once the delay is over;
  * karma: a client that misbehaved on one node is deferred at connect on
    another; a milder history is read by another plugin from
    conn.notes.karma on a third."""
import json
import os
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kasitest import *  # noqa: E402,F401,F403
from redistest import Redis, have_redis, redis_yaml  # noqa: E402
from scaletest import HAPROXY, Cluster, have_haproxy  # noqa: E402

if not have_redis() or not have_haproxy():
    skip("scale-out", "redis-server or haproxy is not installed (contrib/deps.sh)")
    done()

SEEN = """
local P = {}
function P.hook_connect(conn)
  conn:loginfo("seen remote=%s:%d proxy=%s", conn.remote_ip, conn.remote_port,
               conn.proxy_ip or "-")
end
function P.hook_helo(conn)
  local k = conn.notes.karma
  conn:loginfo("seen karma=%s known=%s", k and k.score or "-", k and tostring(k.known) or "-")
end
P.hook_ehlo = P.hook_helo
return P
"""

GREY_DELAY = scaled(2)


def files(red):
    return {
        "config/plugins": "karma\nseen\nrcpt_to_host_list\nlimit\ngreylist\nqueue/spool\n",
        "plugins/seen.lua": SEEN,
        "config/redis.yaml": redis_yaml(red.address, command_timeout=0.5, retry_interval=0.5),
        "config/rcpt_to_host_list.yaml": "domains: [example.com]\n",
        "config/limit.yaml": ("backend: redis\non_redis_error: fail_open\n"
                              "rates:\n  messages:\n    - {per: ip, max: 5, period: 60}\n"
                              "exempt_ips: [\"127.0.0.12/32\", \"127.0.0.13/32\", \"127.0.0.14/32\"]\n"),
        "config/greylist.yaml": ("delay: %g\nretry_window: 60\nwhitelist: 0\nipv4_prefix: 32\n"
                                 "exempt_ips: [\"127.0.0.11/32\", \"127.0.0.13/32\", "
                                 "\"127.0.0.14/32\", \"127.0.0.16/28\"]\n" % GREY_DELAY),
        "config/karma.yaml": ("thresholds:\n  defer: -5\nignore_plugins: [greylist, karma, limit]\n"
                              "weights:\n  rejected: -1\n  protocol_error: -1\n"
                              "max_per_connection: 5\n"),
    }


def message(c, rcpt="user@example.com", sender="a@sender.test", ehlo="client.test"):
    """EHLO, MAIL, RCPT, DATA; returns the (code, lines) of the first
    refusal or of the end of data."""
    code, lines = c.cmd("EHLO " + ehlo)
    for line in ("MAIL FROM:<%s>" % sender, "RCPT TO:<%s>" % rcpt, "DATA"):
        code, lines = c.cmd(line)
        if code >= 400:
            return code, lines
    c.send(b"Subject: scale\r\n\r\nhello\r\n.\r\n")
    return c.read_reply()


def on_other_node(cl, avoid, source):
    """A session through HAProxy that lands on a node other than avoid."""
    for _ in range(len(cl.nodes) + 1):
        c = Raw(cl.port, source=source)
        code, lines = c.read_reply()
        node = cl.node_named(" ".join(lines))
        if code == 220 and node != avoid:
            return c, node
        c.cmd("QUIT")
        c.close()
    return None, None


def node_log(cl, i):
    return cl.nodes[i].log()


r = run([HAPROXY, "-c", "-f", os.path.join(REPO, "contrib", "haproxy", "haproxy.cfg")])
ok(r.returncode == 0, "contrib/haproxy/haproxy.cfg is a valid HAProxy configuration",
   r.stdout + r.stderr)

with Redis() as red, Cluster(3, files(red), checks=True) as cl:
    ok(all(k.wait_log(r"disconnect ip=127\.0\.0\.1 port=\d+ helo=balancer\.kasi\.test .*result=quit")
           for k in cl.nodes),
       "HAProxy's SMTP health checks (a PROXY LOCAL header, EHLO, QUIT) pass on every node")
    # ---- the client's address is what every node sees
    served = []
    for src in ("127.0.0.21", "127.0.0.22", "127.0.0.23"):
        c = Raw(cl.port, source=src)
        code, lines = c.read_reply()
        node = cl.node_named(" ".join(lines))
        served.append(node)
        sport = c.sock.getsockname()[1]
        code, ehlo = c.cmd("EHLO client.test")
        like(ehlo[0] if ehlo else "", r"\[%s\]" % src.replace(".", r"\."), "%s: EHLO greets it" % src)
        res = message(c)
        is_(res[0], 250, "%s: message accepted" % src)
        mid = queued_id(res[1])
        c.cmd("QUIT")
        c.close()
        if node is None:
            ok(False, "%s: served by a known node" % src)
            continue
        k = cl.nodes[node]
        ok(k.wait_log(r"connect ip=%s port=%d local=127\.0\.0\.1:%d via=127\.0\.0\.1"
                      % (src.replace(".", r"\."), sport, cl.port)),
           "%s: the node logs the client, its own port and HAProxy's frontend" % src)
        ok(k.wait_log(r"seen remote=%s:%d proxy=127\.0\.0\.1" % (src.replace(".", r"\."), sport)),
           "%s: a plugin sees the client" % src)
        m = k.spool_by_id(mid) if mid else None
        if ok(m is not None, "%s: spooled on the node that answered" % src):
            like(m.received(), r"\(unknown \[%s\]\)" % src.replace(".", r"\."), "%s: Received: names it" % src)
    ok(len(set(x for x in served if x is not None)) >= 2, "the sessions went to several nodes", served)

    # ---- a per-IP message rate across the nodes
    codes = []
    for i in range(9):
        c = cl.client("127.0.0.11")
        res = message(c, sender="rate%d@sender.test" % i)
        codes.append((res[0], (res[1] or [""])[0].split(" ")[0]))
        c.cmd("QUIT")
        c.close()
    ok(codes.count((250, "2.0.0")) == 5, "rate 5/min per IP: 5 of 9 accepted", codes)
    ok(codes.count((451, "4.7.1")) == 4, "the other 4 deferred at MAIL with 451 4.7.1", codes)
    is_(codes[:5], [(250, "2.0.0")] * 5, "the first 5 are the accepted ones")
    per_node = [sum(1 for m in k.spool() if re.search(r'"rate\d@sender\.test"', json.dumps(m.env)))
                for k in cl.nodes]
    is_(sum(per_node), 5, "5 messages of 127.0.0.11 spooled in all")
    ok(sum(1 for n in per_node if n) >= 2, "accepted on more than one node", per_node)
    ok(sum(k.count_log(r"limit: messages per ip: [6-9] in 60 s \(max 5\)") for k in cl.nodes) == 4,
       "each deferral logged by the node that made it")
    c = cl.client("127.0.0.24")
    is_(message(c)[0], 250, "another client is not limited by 127.0.0.11's rate")
    c.close()

    # ---- greylisting: deferred on A, accepted on B after the delay
    c = cl.client("127.0.0.12")
    t0 = time.monotonic()
    res = message(c, rcpt="grey@example.com", sender="g@sender.test")
    is_((res[0], (res[1] or [""])[0][:5]), (451, "4.7.1"), "greylist: first attempt deferred")
    c.close()
    node_a = [i for i in range(3) if "greylist: new 127.0.0.12/32|g@sender.test|grey@example.com"
              in node_log(cl, i)]
    is_(len(node_a), 1, "greylist: one node deferred it (node A)")
    a = node_a[0] if node_a else 0
    c, b = on_other_node(cl, a, "127.0.0.12")
    res = message(c, rcpt="grey@example.com", sender="g@sender.test")
    is_(res[0], 451, "greylist: a retry at once is deferred again, on another node too")
    c.close()
    passed, b = None, None
    deadline = time.monotonic() + scaled(20)
    while time.monotonic() < deadline:
        c, b = on_other_node(cl, a, "127.0.0.12")
        res = message(c, rcpt="grey@example.com", sender="g@sender.test")
        c.cmd("QUIT")
        c.close()
        if res[0] == 250:
            passed = time.monotonic() - t0
            break
        time.sleep(0.25)
    ok(passed is not None, "greylist: a retry after the delay is accepted")
    ok(passed is not None and passed >= GREY_DELAY - 0.1, "greylist: not before the delay (%s s)" % passed)
    ok(b is not None and b != a, "greylist: accepted on node B, deferred on node A (%s, %s)" % (a, b))
    if b is not None:
        ok(cl.nodes[b].wait_log(r"greylist: pass 127\.0\.0\.12/32\|g@sender\.test\|grey@example\.com"),
           "greylist: node B logs the pass")

    # ---- karma: learnt on one node, applied on another
    c = cl.client("127.0.0.13")
    c.cmd("EHLO bad.test")
    c.cmd("MAIL FROM:<x@bad.test>")
    for i in range(4):
        c.cmd("RCPT TO:<u%d@elsewhere.test>" % i)         # 550: relaying denied
    c.cmd("MAIL FROM:<nested@bad.test>")                  # 503: a protocol error
    c.cmd("BOGUS")                                        # 500: another
    c.cmd("QUIT")
    c.close()
    x = [i for i in range(3) if "karma: connection -5 (accepted 0, rejected 4" in node_log(cl, i)]
    deadline = time.monotonic() + scaled(5)
    while not x and time.monotonic() < deadline:
        time.sleep(0.05)
        x = [i for i in range(3) if "karma: connection -5 (accepted 0, rejected 4" in node_log(cl, i)]
    is_(len(x), 1, "karma: the connection scored -5 (capped) on node X")
    deadline = time.monotonic() + scaled(5)
    while red.cmd("HGET", "kasi:karma:127.0.0.13", "score") != "-5" and time.monotonic() < deadline:
        time.sleep(0.05)
    is_(red.cmd("HGET", "kasi:karma:127.0.0.13", "score"), "-5", "karma: the history is in Redis")
    for i in range(3):                    # the next connections, wherever they land
        c = Raw(cl.port, source="127.0.0.13")
        code, lines = c.read_reply()
        is_((code, (lines or [""])[0][:5]), (421, "4.7.0"), "karma: deferred at connect (%d)" % i)
        c.close()
    nodes_deferring = [i for i in range(3) if cl.nodes[i].wait_log(
        r"karma: 127\.0\.0\.13 has -5 after 1 connections: defer", timeout=2)]
    ok(x and [i for i in nodes_deferring if i != x[0]], "karma: applied by a node that did not learn it",
       nodes_deferring)

    c = cl.client("127.0.0.14")
    c.cmd("EHLO meh.test")
    c.cmd("MAIL FROM:<y@meh.test>")
    c.cmd("RCPT TO:<u@elsewhere.test>")
    c.cmd("RCPT TO:<v@elsewhere.test>")
    c.cmd("QUIT")
    c.close()
    deadline = time.monotonic() + scaled(5)
    while red.cmd("HGET", "kasi:karma:127.0.0.14", "score") != "-2" and time.monotonic() < deadline:
        time.sleep(0.05)
    is_(red.cmd("HGET", "kasi:karma:127.0.0.14", "score"), "-2", "karma: a milder history, -2")
    c = cl.client("127.0.0.14")
    code, lines = c.cmd("EHLO meh.test")
    is_(code, 250, "karma -2: above the threshold, served")
    c.close()
    ok(any(k.wait_log(r"seen karma=-2 known=true", timeout=2) for k in cl.nodes),
       "another plugin reads conn.notes.karma")

done()
