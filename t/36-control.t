#!/usr/bin/env python3
"""Control: kasi -d detaches once it serves and writes pid_file; kasi
status prints the workers (pid, generation, state, uptime, connections),
the generation and the last reload; kasi reload waits for the result (0
ok, 1 refused with the reason); kasi stop waits until it is gone and the
pid file is removed; status without a server says so (exit 3). -d with a
plugin that cannot load exits 1 and says why."""
import atexit
import os
import re
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kasitest import *  # noqa: E402,F401,F403
from kasinet import free_port  # noqa: E402


def kasi(k, *args, timeout=30):
    return run([KASI_BIN, "-c", k.confdir] + list(args), timeout=timeout)


def stop_daemon(path):
    """Whatever happened, a daemon this test started does not stay."""
    try:
        os.kill(int(open(path).read()), 15)
    except (OSError, ValueError):
        pass


def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


port = free_port()
k = Kasi({"listen": ["127.0.0.1:%d" % port], "workers": 2, "pid_file": "../kasi.pid"},
         files={"config/plugins": "queue/spool\n"}, start=False)
pid_file = os.path.join(k.tmp, "kasi.pid")

r = kasi(k, "status")
is_(r.returncode, 3, "status without a server: exit 3")
like(r.stdout, r"not running", "  and says so")

r = kasi(k, "-d")
ok(r.returncode == 0, "kasi -d returns 0 once serving", r.stderr)
pid = None
if ok(os.path.exists(pid_file), "the pid file is written"):
    pid = int(open(pid_file).read())
ok(pid and alive(pid), "the supervisor runs in the background")
with Raw(port, ehlo="client.test") as c:
    is_(c.cmd("MAIL FROM:<a@client.test>")[0], 250, "the daemon serves")
    held = Raw(port, ehlo="client.test")

    r = kasi(k, "status")
    is_(r.returncode, 0, "status: exit 0")
    like(r.stdout, r"kasi running, pid %d, up \d+s" % pid, "status: pid and uptime")
    like(r.stdout, r"generation 1, 2 workers", "status: generation and workers")
    workers = re.findall(r"worker (\d+)  generation 1  serving\s+up \d+s\s+(\d+) connections",
                         r.stdout)
    ok(len(workers) == 2, "status: both workers serving, with their uptime", r.stdout)
    # the open connection counts are refreshed within a second
    deadline = time.monotonic() + scaled(5)
    while time.monotonic() < deadline:
        r = kasi(k, "status")
        if re.search(r"2 open connections", r.stdout):
            break
        time.sleep(0.2)
    like(r.stdout, r"2 open connections", "status: open connections")
    like(r.stdout, r"last reload: none yet", "status: no reload yet")

r = kasi(k, "reload")
ok(r.returncode == 0, "reload: exit 0", r.stderr)
like(r.stdout, r"kasi: reload ok: generation 2: nothing changed", "reload: the result")
r = kasi(k, "status")
like(r.stdout, r"generation 2, 2 workers", "status after reload: generation 2")
like(r.stdout, r"worker \d+  generation 1  draining", "status: the held session's worker drains")
held.cmd("QUIT")
held.close()

with open(os.path.join(k.confdir, "plugins"), "w") as f:
    f.write("no_such_plugin\nqueue/spool\n")
r = kasi(k, "reload")
is_(r.returncode, 1, "broken reload: exit 1")
like(r.stderr, r"kasi: reload failed: .*no_such_plugin", "broken reload: why")
r = kasi(k, "status")
like(r.stdout, r"generation 2, 2 workers", "status: generation 2 stays")
like(r.stdout, r"last reload: failed: .*no_such_plugin", "status: the failed reload")
with Raw(port, ehlo="client.test") as c:
    is_(c.cmd("MAIL FROM:<a@client.test>")[0], 250, "still serving")

r = kasi(k, "stop")
ok(r.returncode == 0, "stop: exit 0", r.stderr)
ok(pid and not alive(pid), "stop: the supervisor is gone")
ok(not os.path.exists(pid_file), "stop: the pid file is removed")
ok(not os.path.exists(os.path.join(k.spool_dir, ".gen")),
   "stop: the generations, status file and lock are removed")
r = kasi(k, "stop")
is_(r.returncode, 0, "stop when not running: exit 0")
k.cleanup()

# -d and a first generation that cannot start: exit 1 with the reason
k = Kasi({"listen": ["127.0.0.1:%d" % free_port()]},
         files={"config/plugins": "broken\n", "plugins/broken.lua": "local = 1\n"},
         start=False)
r = kasi(k, "-d")
is_(r.returncode, 1, "-d with a broken plugin: exit 1")
like(r.stderr, r"broken\.lua:1:", "  naming file and line")
k.cleanup()

done()
