#!/usr/bin/env python3
"""Redis lost in the middle of a run, behind HAProxy with two kasi nodes
(karma, limit with backend redis, greylist):

  * killed (SIGKILL) while sessions run: with on_redis_error fail_open
    every message is still accepted, and logged as not counted; with
    fail_closed (after a SIGHUP to change it) MAIL is deferred with the
    plugin's 451 4.3.0;
  * hanging (SIGSTOP): each session gets the policy once command_timeout
    is over, and goes on;
  * in every case no session hangs (each one ends with a reply), nothing
    is lost (every 250 is a spooled message, everything else a 4xx to
    retry), no node crashes;
  * when Redis is back, the plugins use it again without a reload (limit
    counts in it, greylist defers a new triplet)."""
import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kasitest import *  # noqa: E402,F401,F403
from redistest import Redis, have_redis, redis_yaml  # noqa: E402
from scaletest import Cluster, have_haproxy  # noqa: E402

if not have_redis() or not have_haproxy():
    skip("redis outage", "redis-server or haproxy is not installed (contrib/deps.sh)")
    done()

WHITE = "kasi:grey:white:127.0.0.0/24"


def plugin_files(policy_limit, policy_grey, policy_karma):
    return {
        "config/limit.yaml": ("backend: redis\non_redis_error: %s\n"
                              "rates:\n  messages:\n    - {per: ip, max: 1000, period: 60}\n"
                              % policy_limit),
        "config/greylist.yaml": "delay: 1\nwhitelist: 600\non_redis_error: %s\n" % policy_grey,
        "config/karma.yaml": "on_redis_error: %s\n" % policy_karma,
    }


def files(red):
    f = {"config/plugins": "karma\nlimit\ngreylist\nqueue/spool\n",
         "config/redis.yaml": redis_yaml(red.address, command_timeout=0.5, retry_interval=0.5,
                                         connect_timeout=0.5)}
    f.update(plugin_files("fail_open", "fail_open", "fail_open"))
    return f


def session(port, src, i):
    """One message; (final code, enhanced code, seconds). Never raises."""
    t0 = time.monotonic()
    try:
        with Raw(port, source=src, timeout=15) as c:
            code, lines = c.read_reply(timeout=15)
            if code != 220:
                return code, (lines or [""])[0][:5], time.monotonic() - t0
            for line in ("EHLO client.test", "MAIL FROM:<s%d@sender.test>" % i,
                         "RCPT TO:<u%d@example.com>" % i, "DATA"):
                code, lines = c.cmd(line, timeout=15)
                if code is None or code >= 400:
                    return code, (lines or [""])[0][:5], time.monotonic() - t0
            c.send(b"Subject: outage %d\r\n\r\nbody\r\n.\r\n" % i)
            code, lines = c.read_reply(timeout=15)
            c.cmd("QUIT")
            return code, (lines or [""])[0][:5], time.monotonic() - t0
    except OSError as e:
        return None, repr(e), time.monotonic() - t0


class Run:
    """n sessions in a thread (bounded), from rotating 127.0.0.x."""

    def __init__(self, cl, n, first):
        self.results = []
        self.started = threading.Event()
        self.t = threading.Thread(target=self._go, args=(cl.port, n, first))
        self.t.start()

    def _go(self, port, n, first):
        for i in range(n):
            self.results.append(session(port, "127.0.0.%d" % (40 + i % 10), first + i))
            if len(self.results) == 3:
                self.started.set()
        self.started.set()

    def wait(self):
        self.t.join(timeout=scaled(120))
        return self.results


def check_run(cl, res, name, want):
    codes = [(c, e) for c, e, _ in res]
    ok(all(c is not None for c, _ in codes), "%s: every session ended with a reply" % name, codes)
    ok(all(c in want for c in codes), "%s: only %s" % (name, want), codes)
    diag("%s: slowest session %.2f s" % (name, max(t for _, _, t in res)))


def accepted_spooled(cl, name, total):
    n = len(cl.spooled())
    is_(n, total, "%s: every 250 is a spooled message (%d)" % (name, total))


def wait_recovered(cl, red, first):
    """Sessions until the plugins use the new Redis again: one is
    greylisted, and the limit plugin has counted in it. The worker's
    connection can come back between limit's call at MAIL (failed fast:
    not counted) and greylist's at RCPT, and each node reconnects on its
    own, so wait for both. (greylist, limit)."""
    deadline = time.monotonic() + scaled(15)
    i = first
    grey = counted = False
    while time.monotonic() < deadline and not (grey and counted):
        code, enh, _ = session(cl.port, "127.0.0.60", i)
        i += 1
        grey = grey or (code, enh) == (451, "4.7.1")
        counted = counted or bool(red.cmd("KEYS", "kasi:limit:*"))
        if not (grey and counted):
            time.sleep(0.1)
    return grey, counted


with Redis() as red, Cluster(2, files(red)) as cl:
    red.cmd("SET", WHITE, "1", "EX", 600)
    accepted = 0

    # ---- fail_open: Redis killed in the middle of a run
    run = Run(cl, 30, 0)
    ok(run.started.wait(scaled(30)), "fail_open: the run is under way")
    red.kill()
    res = run.wait()
    check_run(cl, res, "fail_open, killed", [(250, "2.0.0")])
    accepted += sum(1 for c, _, _ in res if c == 250)
    accepted_spooled(cl, "fail_open, killed", accepted)
    logs = "".join(k.log() for k in cl.nodes)
    like(logs, r"limit: messages not counted \(.*\): letting clients through", "limit: fail_open logged")
    like(logs, r"greylist: .*\(accepted\)", "greylist: fail_open logged")
    like(logs, r"karma: history of 127\.0\.0\.\d+ unknown", "karma: fail_open logged")
    like(logs, r"warn: redis 127\.0\.0\.1:\d+: (connection lost|cannot connect)", "the outage logged")

    red.start()
    grey, counted = wait_recovered(cl, red, 100)
    ok(grey, "Redis back (empty): greylist defers again, no reload")
    ok(counted, "limit counts in the new Redis")
    red.cmd("SET", WHITE, "1", "EX", 600)
    accepted = len(cl.spooled())

    # ---- hanging Redis (SIGSTOP), fail_open: the timeout, then the policy
    run = Run(cl, 8, 200)
    ok(run.started.wait(scaled(30)), "hang: the run is under way")
    red.pause()
    res = run.wait()
    red.resume()
    check_run(cl, res, "fail_open, hanging", [(250, "2.0.0")])
    accepted += sum(1 for c, _, _ in res if c == 250)
    accepted_spooled(cl, "fail_open, hanging", accepted)
    like("".join(k.log() for k in cl.nodes), r"no answer in time", "hang: the timeout logged")

    # ---- fail_closed for limit and greylist, by a reload
    for k in cl.nodes:
        for rel, text in plugin_files("fail_closed", "fail_closed", "fail_open").items():
            with open(os.path.join(k.tmp, rel), "w") as f:
                f.write(text)
    cl.signal_all(signal.SIGHUP)
    ok(all(k.wait_log(r"generation 2 live \(was 1\)") for k in cl.nodes), "reloaded with fail_closed")
    deadline = time.monotonic() + scaled(10)
    while time.monotonic() < deadline and session(cl.port, "127.0.0.61", 300)[0] != 250:
        time.sleep(0.1)
    accepted = len(cl.spooled())
    run = Run(cl, 20, 400)
    ok(run.started.wait(scaled(30)), "fail_closed: the run is under way")
    red.kill()
    res = run.wait()
    check_run(cl, res, "fail_closed, killed", [(250, "2.0.0"), (451, "4.3.0")])
    ok((451, "4.3.0") in [(c, e) for c, e, _ in res], "fail_closed: MAIL deferred once Redis is gone")
    accepted += sum(1 for c, _, _ in res if c == 250)
    accepted_spooled(cl, "fail_closed, killed", accepted)
    red.start()
    ok(all(wait_recovered(cl, red, 500)), "fail_closed: Redis back, the plugins use it again")
    for k in cl.nodes:
        ok(k.running(), "node %d still running" % k.port)

done()
