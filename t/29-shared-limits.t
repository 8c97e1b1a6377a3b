#!/usr/bin/env python3
"""Limits kept in the counters shared by every worker process: the
per-network connection limit (exact under concurrent connects, grouped by
limits.ipv4_prefix, IPv6), limits.exempt (loopback by default), a worker
killed with SIGKILL (its connections are given back, rates and AUTH
failures are kept), the limit plugin's rate and concurrency across a
worker kill and a reload (kasi.counter)."""
import base64
import os
import re
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kasitest import *  # noqa: E402,F401,F403


def connect_many(port, n, source=None, host="127.0.0.1"):
    """n connections at once; returns [(Raw or None, code, lines)] after
    each got its first reply (or failed)."""
    res = [(None, None, [])] * n

    def one(i):
        try:
            r = Raw(port, host=host, source=source)
            code, lines = r.read_reply()
            res[i] = (r, code, lines)
        except OSError as e:
            res[i] = (None, None, [repr(e)])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(scaled(20))
    return res


def tally(res):
    """(served, refused with 421 4.7.0, other) of connect_many's result."""
    served = sum(1 for _, c, _ in res if c == 220)
    refused = sum(1 for _, c, l in res if c == 421 and l and l[0].startswith("4.7.0"))
    return served, refused, len(res) - served - refused


def close_all(res):
    for r, _, _ in res:
        if r:
            r.close()


def banner(port, source=None, host="127.0.0.1"):
    """The first reply's code of one connection, which is then closed."""
    with Raw(port, host=host, source=source) as r:
        return r.read_reply()[0]


def kill_worker(k, name):
    """SIGKILL the newest worker, wait until the supervisor started another
    (connections made meanwhile wait in the listen queue)."""
    started = k.count_log(r"worker \d+ started")
    pid = int(re.findall(r"worker (\d+) started", k.log())[-1])
    os.kill(pid, signal.SIGKILL)
    ok(k.wait_count(r"worker \d+ started", started + 1, 30),
       "%s: worker %d killed, another started" % (name, pid))


def reload(k, gen, name):
    k.signal(signal.SIGHUP)
    ok(k.wait_log(r"plugins \w+: generation %d|generation %d live" % (gen, gen)),
       "%s: reloaded (generation %d)" % (name, gen))


def served_when_free(port, source, timeout=5):
    """Poll until a connection from source is served (slots come back when
    the server has noticed a close). True if one was."""
    deadline = time.monotonic() + scaled(timeout)
    while time.monotonic() < deadline:
        if banner(port, source) == 220:
            return True
        time.sleep(0.05)
    return False


def ipv6_ok():
    try:
        s = socket.socket(socket.AF_INET6)
        s.bind(("::1", 0))
        s.close()
        return True
    except OSError:
        return False


NO_EXEMPT = {"exempt": []}

# ---- per-network limit: exact under concurrency; a kill gives slots back --
with Kasi({"limits": dict(NO_EXEMPT, max_connections_per_ip=5)}) as k:
    res = connect_many(k.port, 20)
    is_(tally(res), (5, 15, 0), "20 concurrent connections, limit 5: 5 served, 15 get 421 4.7.0")
    like(k.log(), r"per-network connection limit \(5\) reached for 127\.0\.0\.1 \(127\.0\.0\.1/32\)",
         "refusals logged with the network")
    kill_worker(k, "5 sessions open")
    close_all(res)
    res = connect_many(k.port, 20)
    is_(tally(res), (5, 15, 0),
        "after the worker was killed with 5 sessions open: exactly 5 served again")
    close_all(res)
    ok(served_when_free(k.port, None), "closed sessions give their slots back")

# ---- grouping by prefix ---------------------------------------------------
with Kasi({"limits": dict(NO_EXEMPT, max_connections_per_ip=3, ipv4_prefix=24)}) as k:
    held = [Raw(k.port, source="127.0.0.%d" % i) for i in (2, 3, 4)]
    is_([r.read_reply()[0] for r in held], [220, 220, 220], "/24: 3 addresses of one network served")
    is_(banner(k.port, "127.0.0.5"), 421, "/24: a 4th address of the same /24 is refused")
    like(k.log(), r"reached for 127\.0\.0\.5 \(127\.0\.0\.0/24\)", "  counted as 127.0.0.0/24")
    is_(banner(k.port, "127.0.1.5"), 220, "/24: the next /24 is another network")
    for r in held:
        r.close()

if ipv6_ok():
    with Kasi({"listen": ["[::1]:0"], "limits": dict(NO_EXEMPT, max_connections_per_ip=2)}) as k:
        res = connect_many(k.port, 6, host="::1")
        is_(tally(res), (2, 4, 0), "IPv6 client (::1 in its /64), limit 2: 2 served")
        close_all(res)
    with Kasi({"listen": ["[::1]:0"], "limits": {"max_connections_per_ip": 2}}) as k:
        res = connect_many(k.port, 6, host="::1")
        is_(tally(res), (6, 0, 0), "::1 is exempt by default: all 6 served")
        close_all(res)
else:
    diag("no IPv6 loopback: skipped the IPv6 checks")

# ---- exempt networks ------------------------------------------------------
with Kasi({"limits": {"max_connections": 1000, "exempt": ["127.0.0.0/24"]}}) as k:
    res = connect_many(k.port, 200, source="127.0.0.1")
    is_(tally(res), (200, 0, 0), "200 concurrent sessions from an exempt network: all served "
        "(limit 50)")
    other = connect_many(k.port, 80, source="127.0.1.1")
    is_(tally(other), (50, 30, 0), "80 from a network not exempt: exactly 50 served")
    close_all(res)
    close_all(other)

with Kasi({"limits": {"max_connections_per_ip": 1}}) as k:
    res = connect_many(k.port, 3)
    is_(tally(res), (3, 0, 0), "loopback is exempt by default")
    close_all(res)

# ---- relay networks: exempt by default (the word relay in limits.exempt) --
RELAY = {"config/plugins": "relay\nqueue/spool\n",
         "config/relay.yaml": "allow: [127.0.0.0/24]\n"}
# loopback (127.0.0.0/8) is in the default as well: relay alone here
with Kasi({"limits": {"max_connections_per_ip": 5, "exempt": ["relay"]}}, files=RELAY) as k:
    res = connect_many(k.port, 20, source="127.0.0.1")
    is_(tally(res), (20, 0, 0), "exempt: [relay], relay allow: [127.0.0.0/24]: 20 concurrent "
        "sessions from 127.0.0.1, limit 5: all served")
    other = connect_many(k.port, 20, source="127.0.1.1")
    is_(tally(other), (5, 15, 0), "  from 127.0.1.1, not a relay network: 5 served, 15 get 421")
    close_all(res)
    close_all(other)
    with open(os.path.join(k.confdir, "relay.yaml"), "w") as f:
        f.write("allow: [127.0.2.0/24]\n")
    k.signal(signal.SIGHUP)
    ok(k.wait_log(r"generation 2 live \(was 1\): limits exempt; files ~config/relay\.yaml;"),
       "relay.yaml changed, SIGHUP: generation 2 live, the diff names limits.exempt")
    ok(k.wait_log(r"worker \d+ retired \(generation 1"), "  the old worker retired")
    res = connect_many(k.port, 20, source="127.0.0.2")
    is_(tally(res), (5, 15, 0), "after a reload without 127.0.0.0/24 in relay.yaml: limited, "
        "5 served")
    close_all(res)
    res = connect_many(k.port, 20, source="127.0.2.1")
    is_(tally(res), (20, 0, 0), "  and the network relay.yaml has now is exempt: 20 served")
    close_all(res)

with Kasi({"limits": {"max_connections_per_ip": 5, "exempt": []}}, files=RELAY) as k:
    res = connect_many(k.port, 20, source="127.0.0.1")
    is_(tally(res), (5, 15, 0), "exempt: [] with the same relay network: limited, 5 served")
    close_all(res)

# ---- the limit plugin: rate across a kill and a reload --------------------
RATE = "rate: {max: 3, period: 600}\n"
with Kasi({"limits": NO_EXEMPT}, files={"config/plugins": "limit\nqueue/spool\n",
                                        "config/limit.yaml": RATE}) as k:
    is_([banner(k.port, "127.0.0.7") for _ in range(4)], [220, 220, 220, 421],
        "rate 3 per 600 s: the 4th connection is refused")
    kill_worker(k, "rate")
    is_(banner(k.port, "127.0.0.7"), 421, "the rate holds across a worker killed with SIGKILL")
    reload(k, 2, "rate")
    is_(banner(k.port, "127.0.0.7"), 421, "and across a reload")
    is_(banner(k.port, "127.0.0.8"), 220, "another address has its own count")

# ---- the limit plugin: concurrency across a reload and a kill -------------
CONC = "concurrency: {max: 2}\n"
with Kasi({"limits": {"exempt": ["127.0.0.100"]}},
          files={"config/plugins": "limit\nqueue/spool\n", "config/limit.yaml": CONC}) as k:
    a = Raw(k.port, banner=True, source="127.0.0.9")
    b = Raw(k.port, banner=True, source="127.0.0.9")
    reload(k, 2, "concurrency")
    is_(banner(k.port, "127.0.0.9"), 421,
        "a 3rd connection on the new generation counts the 2 on the old one: 421")
    a.close()
    ok(served_when_free(k.port, "127.0.0.9"), "a slot comes back when an old-generation "
       "connection ends")
    kill_worker(k, "concurrency")
    b.close()
    res = connect_many(k.port, 4, source="127.0.0.9")
    is_(tally(res), (2, 2, 0), "after a kill: the dead worker's holds are given back, 2 served")
    close_all(res)
    res = connect_many(k.port, 4, source="127.0.0.100")
    is_(tally(res), (4, 0, 0), "an address in smtp.yaml limits.exempt is not limited by the plugin")
    close_all(res)

# ---- AUTH failures per network survive a worker restart -------------------
AUTH_YAML = """hostname: mx.kasi.test
spool_dir: ../spool
log: {target: stderr, level: debug}
listen:
  - address: 127.0.0.1:0
    auth: true
    auth_plaintext: true
auth:
  max_failures_per_ip: 2
  failure_window: 600
limits:
  exempt: [127.0.0.9]
"""
DENY_ALL = "function hook_auth(conn, txn, creds) return DENY end\n"
PLAIN = "AUTH PLAIN " + base64.b64encode(b"\0alice\0wrong").decode()


def auth_once(port, source=None):
    with Raw(port, ehlo="client.test", source=source) as r:
        return r.cmd(PLAIN, timeout=10)


with Kasi(yaml=AUTH_YAML, files={"config/plugins": "deny_all\nqueue/spool\n",
                                 "plugins/deny_all.lua": DENY_ALL}) as k:
    is_(auth_once(k.port)[0], 535, "AUTH failure 1 from 127.0.0.1: 535")
    code, lines = auth_once(k.port)
    is_((code, lines[:1]), (421, ["4.7.0 Too many authentication failures, closing connection"]),
        "failure 2 reaches the per-network limit: 421 4.7.0")
    kill_worker(k, "auth")
    with Raw(k.port, ehlo="client.test") as r:
        is_(r.cmd(PLAIN)[0], 421, "after a worker restart the failures still count: AUTH refused")
    is_(auth_once(k.port, "127.0.0.2")[0], 535, "another network is not limited")
    codes = []
    threads = [threading.Thread(target=lambda: codes.append(auth_once(k.port, "127.0.0.9")[0]))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(scaled(15))
    is_(codes, [535, 535, 535], "an exempt address: 3 failures, no per-network limit")
    is_(auth_once(k.port, "127.0.0.9")[0], 535, "  and a 4th is still only 535")

# ---- the kasi.counter API -------------------------------------------------
CTR = r"""
local P = {}
local c = kasi.counter
local function show(...)
  local t = {}
  for i = 1, select("#", ...) do t[i] = tostring((select(i, ...))) end
  return table.concat(t, " ")
end
local prev, cur
function P.hook_connect(conn) prev, cur = cur, conn end
function P.hook_unrecognized_command(conn, txn, line)
  local verb, a, b, d = line:match("^X(%a+)%s*(%S*)%s*(%S*)%s*(%S*)")
  local good, r = pcall(function()
    if verb == "INCR" then return show(c.incr(a, tonumber(b), tonumber(d))) end
    if verb == "GET" then return show(c.get(a)) end
    if verb == "HOLD" then return show(c.hold(conn, a, tonumber(b))) end
    if verb == "RELEASE" then return show(c.release(conn, a)) end
    if verb == "HELD" then return show(c.held(a)) end
    if verb == "EXEMPT" then return show(c.exempt(a)) end
    if verb == "LONG" then return show(c.incr(string.rep("k", 80))) end
    if verb == "NEG" then return show(c.incr("k", -1)) end
    if verb == "FRAC" then return show(c.incr("k", 1.5)) end
    if verb == "STALE" then return show(c.hold(prev, "k")) end
    if verb == "MANY" then
      for i = 1, 17 do c.hold(conn, "many" .. i) end
    end
  end)
  return DENY, { code = 550, enh = "5.5.1", msg = (good and "ok " or "err ") .. tostring(r) }
end
return P
"""


def said(r, line):
    code, lines = r.cmd(line)
    return lines[0][len("5.5.1 "):] if code == 550 and lines else "%r %r" % (code, lines)


with Kasi(files={"config/plugins": "ctr\nqueue/spool\n", "plugins/ctr.lua": CTR}) as k:
    a = Raw(k.port, ehlo="a.test")
    b = Raw(k.port, ehlo="b.test")
    is_([said(a, "XHOLD k 2"), said(a, "XHOLD k 2"), said(a, "XHOLD k 2")],
        ["ok true 1", "ok true 2", "ok false 2"], "hold with max 2: true 1, true 2, false 2")
    is_(said(b, "XHELD k"), "ok 2", "another connection sees both holds")
    is_(said(b, "XHOLD k 2"), "ok false 2", "  and cannot hold a third")
    is_(said(a, "XRELEASE k"), "ok 1", "release gives one back")
    is_(said(b, "XHOLD k 2"), "ok true 2", "  which the other connection can take")
    is_(said(b, "XRELEASE k"), "ok 1", "release by b")
    is_(said(b, "XRELEASE k"), "ok 1", "a release with nothing held changes nothing")
    a.cmd("QUIT")
    a.close()
    deadline = time.monotonic() + scaled(5)
    while said(b, "XHELD k") != "ok 0" and time.monotonic() < deadline:
        time.sleep(0.05)
    is_(said(b, "XHELD k"), "ok 0", "a connection's holds are given back when it ends")
    b.close()
    with Raw(k.port, ehlo="c.test") as r:
        is_([said(r, "XINCR w 1 60"), said(r, "XINCR w 2 60"), said(r, "XGET w")],
            ["ok 1", "ok 3", "ok 3"], "incr over a window, get")
        is_(said(r, "XGET nothing"), "ok 0", "get of an unknown key: 0")
        is_([said(r, "XEXEMPT 127.0.0.1"), said(r, "XEXEMPT 192.0.2.1"),
             said(r, "XEXEMPT junk")], ["ok true", "ok false", "ok false"],
            "exempt: loopback by default, not others, not junk")
        like(said(r, "XLONG"), r"^err .*a key is 1 to 79 bytes", "a key of 80 bytes raises")
        like(said(r, "XNEG"), r"^err .*n is a whole number >= 0", "a negative n raises")
        like(said(r, "XFRAC"), r"^err .*n is a whole number >= 0", "a fraction raises")
    with Raw(k.port, ehlo="e.test") as r:
        like(said(r, "XSTALE"), r"^err .*(gone|stale|over)", "hold with a conn that has ended raises")
        like(said(r, "XMANY"), r"^err .*holds at most 16 keys", "a 17th key held by one connection raises")
        is_(said(r, "XHELD many16"), "ok 1", "  the first 16 are held")
    with Raw(k.port, ehlo="f.test") as r:
        deadline = time.monotonic() + scaled(5)
        while said(r, "XHELD many1") != "ok 0" and time.monotonic() < deadline:
            time.sleep(0.05)
        is_(said(r, "XHELD many1"), "ok 0", "  and given back when that connection ends")
    reload(k, 2, "kasi.counter")
    with Raw(k.port, ehlo="d.test") as r:
        is_(said(r, "XINCR w 1 60"), "ok 4", "a reload keeps the counts")

# the default limits.exempt is [127.0.0.0/8, "::1", relay]: the relay
# plugin's networks are exempt for the limit plugin too (kasi.counter.exempt)
with Kasi(files={"config/plugins": "relay\nctr\nqueue/spool\n", "plugins/ctr.lua": CTR,
                 "config/relay.yaml": "allow: [192.0.2.0/24, \"2001:db8::/32\"]\n"}) as k:
    with Raw(k.port, ehlo="r.test") as r:
        is_([said(r, "XEXEMPT 127.0.0.1"), said(r, "XEXEMPT 192.0.2.7"),
             said(r, "XEXEMPT 2001:db8::9"), said(r, "XEXEMPT 198.51.100.1")],
            ["ok true", "ok true", "ok true", "ok false"],
            "default exempt: loopback and the relay plugin's networks, not others")

# ---- several workers (skipped while smtp.yaml has no workers: key) -------


def children(pid):
    """Pids of pid's child processes."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid and fields[0] != "Z":
                    out.append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    return out


def wait_children(pid, n, timeout=30, gone=None):
    """n children of pid, none of them `gone` (a killed one may still be
    listed until it is reaped)."""
    deadline = time.monotonic() + scaled(timeout)

    def done():
        c = children(pid)
        return len(c) == n and gone not in c
    while not done() and time.monotonic() < deadline:
        time.sleep(0.05)
    return done()


W4 = {"workers": 4, "limits": dict(NO_EXEMPT, max_connections_per_ip=5)}
probe = Kasi(W4, start=False)
has_workers = run([KASI_BIN, "-t", "-c", probe.confdir]).returncode == 0
probe.cleanup()
if has_workers:
    with Kasi(W4) as k:
        ok(wait_children(k.pid, 4), "4 workers run")
        res = connect_many(k.port, 20)
        is_(tally(res), (5, 15, 0), "4 workers, 20 concurrent connections, limit 5: exactly 5 served")
        victim = children(k.pid)[0]
        os.kill(victim, signal.SIGKILL)
        ok(wait_children(k.pid, 4, gone=victim), "one of the 4 workers killed, replaced")
        alive = 0
        for r, code, _ in res:
            if code == 220 and r.cmd("NOOP")[0] == 250:
                alive += 1
        more = connect_many(k.port, 20)
        is_(tally(more)[0], 5 - alive, "the killed worker's sessions were given back: %d open, "
            "%d more served" % (alive, 5 - alive))
        close_all(res)
        close_all(more)
else:
    diag("smtp.yaml has no workers: key yet: skipped the tests with 4 workers")

done()
