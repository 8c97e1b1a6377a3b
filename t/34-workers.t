#!/usr/bin/env python3
"""Worker processes: with workers: 2 the supervisor runs two workers that
accept on the same sockets; concurrent sessions are spread over both
(the log line of each connection names its worker); killing one worker
under load leaves the other's sessions untouched, loses no message that
got 250, and the supervisor starts a replacement; SIGHUP replaces both
workers by a new generation. workers: auto and bad values."""
import os
import re
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kasitest import *  # noqa: E402,F401,F403
from proctest import wait_for  # noqa: E402

MSG = b"From: a@client.test\r\nSubject: workers\r\n\r\nbody\r\n"


def ppid(pid):
    with open("/proc/%d/status" % pid) as f:
        return int(re.search(r"^PPid:\s+(\d+)", f.read(), re.M).group(1))


def worker_of(k, sock):
    """The worker that logged the connection from this client port."""
    port = sock.getsockname()[1]
    m = k.wait_log(r"kasi\[(\d+)\] info: \[\w+\] connect ip=127\.0\.0\.1 port=%d " % port)
    return int(m.group(1)) if m else None


def open_session(port):
    r = Raw(port, timeout=15)
    code, _ = r.read_reply(15)
    r.send("EHLO client.test\r\n")
    code2, _ = r.read_reply(15)
    return r if code == 220 and code2 == 250 else None


def finish_message(r, n):
    """MAIL..DATA..QUIT on an open session; the queued id or None."""
    r.send("MAIL FROM:<a@client.test>\r\nRCPT TO:<b%d@example.test>\r\nDATA\r\n" % n)
    got = r.read_replies(3, 15)
    if [c for c, _ in got] != [250, 250, 354]:
        return None
    r.send(MSG + b".\r\n")
    code, lines = r.read_reply(15)
    r.send("QUIT\r\n")
    return queued_id(lines) if code == 250 else None


with Kasi({"workers": 2}) as k:
    pids = k.wait_workers(2)
    ok(pids and len(set(pids)) == 2, "two worker processes", k.log_tail())
    pids = pids or []
    ok(all(ppid(p) == k.pid for p in pids), "both are children of the supervisor")

    # 40 sessions open at once, then each sends a message
    sessions = []
    for i in range(40):
        r = open_session(k.port)
        if r:
            sessions.append(r)
    is_(len(sessions), 40, "40 concurrent sessions open")
    owners = [worker_of(k, r.sock) for r in sessions]
    # which worker wins a given accept is the kernel's choice: on a busy
    # machine one may take a whole burst, so open more (bounded, 160 at
    # most, held open) until each worker has served some
    extra = []
    while len(set(owners) & set(pids)) < len(pids) and len(extra) < 160:
        r = open_session(k.port)
        if not r:
            break
        extra.append(r)
        owners.append(worker_of(k, r.sock))
    counts = {p: owners.count(p) for p in pids}
    ok(all(counts.get(p, 0) > 0 for p in pids) and sum(counts.values()) == len(owners),
       "concurrent sessions are spread over both workers %r" % counts)
    for r in extra:
        r.close()
    ids = [finish_message(r, i) for i, r in enumerate(sessions)]
    for r in sessions:
        r.close()
    ok(all(ids), "all 40 messages got 250")
    stored = {m.id for m in k.wait_spool(40)}
    ok(set(ids) <= stored, "and all 40 are in the spool")

    # kill one worker under load: the other's sessions carry on
    victim, survivor = pids[0], pids[1]
    held = []                   # open sessions on the survivor
    while len(held) < 5:
        r = open_session(k.port)
        if r is None:
            break
        if worker_of(k, r.sock) == survivor:
            held.append(r)
        else:
            r.close()
    is_(len(held), 5, "5 sessions held open on worker %d" % survivor)
    stop = threading.Event()
    results = []

    def load():
        n = 0
        while not stop.is_set() and n < 500:
            n += 1
            try:
                code, lines = send_message(k.port, "a@client.test", ["b@example.test"], MSG)
                results.append((code, queued_id(lines)))
            except OSError as e:            # the killed worker's sessions
                results.append((repr(e), None))

    def good_count():
        return sum(1 for code, _ in list(results) if code == 250)

    def wait_good(n, timeout=60):
        deadline = time.monotonic() + scaled(timeout)
        while good_count() < n and time.monotonic() < deadline:
            time.sleep(0.05)
        return good_count() >= n

    threads = [threading.Thread(target=load) for _ in range(3)]
    for t in threads:
        t.start()
    wait_good(10)               # the load runs on both workers first
    os.kill(victim, signal.SIGKILL)
    ok(k.wait_log(r"worker %d ended \(signal 9\), restarting" % victim),
       "the supervisor sees the killed worker")
    fresh = k.wait_workers(2, exclude=[victim])
    ok(fresh and victim not in fresh and survivor in fresh, "a replacement worker serves",
       repr(fresh))
    after_kill = good_count()
    ok(wait_good(after_kill + 10), "the load goes on after the kill (%d more messages)"
       % (good_count() - after_kill))
    stop.set()
    for t in threads:
        t.join(timeout=60)
    held_ids = [finish_message(r, 100 + i) for i, r in enumerate(held)]
    for r in held:
        r.close()
    ok(all(held_ids), "every session held on the other worker finished its message",
       repr(held_ids))
    good = [mid for code, mid in results if code == 250]
    refused = [c for c, _ in results if "Refused" in str(c)]
    ok(len(good) >= 20, "the load kept going (%d messages, %d failures)"
       % (len(good), len(results) - len(good)))
    is_(refused, [], "no connection was refused")
    stored = {m.id for m in k.wait_spool(40 + len(good) + 5)}
    missing = [mid for mid in good + held_ids if mid not in stored]
    is_(missing, [], "every message that got 250 is in the spool")

    # SIGHUP reaches both: a new generation of two workers
    before = set(k.worker_pids())
    k.signal(signal.SIGHUP)
    m = k.wait_log(r"generation 2 live \(was 1\): .*; workers (\d+) (\d+) ready")
    ok(m, "SIGHUP: generation 2 live with two new workers")
    if m:
        new = {int(m.group(1)), int(m.group(2))}
        ok(not (new & before), "both workers are new")
        ok(all(k.wait_log(r"worker %d retired \(generation 1, exit 0\)" % p) for p in before),
           "both old workers retired cleanly")
    with Raw(k.port, ehlo="client.test") as r:
        is_(r.cmd("MAIL FROM:<a@client.test>")[0], 250, "the new generation serves")

# the supervisor killed: its workers do not serve on unsupervised; each
# gets SIGTERM from the kernel and drains
with Kasi({"workers": 2}) as k:
    pids = k.wait_workers(2) or []
    is_(len(pids), 2, "two workers")
    k.kill()                                # SIGKILL to the supervisor

    def gone():
        return all(not os.path.exists("/proc/%d" % p) or
                   open("/proc/%d/stat" % p).read().split(") ")[1][0] == "Z" for p in pids)
    ok(wait_for(gone, 20), "the workers exit once their supervisor is killed")
    ok(all(k.wait_log(r"kasi\[%d\] info: stopped" % p) for p in pids), "  after draining")
    k.check_sanitizers("the orphaned workers")

# workers: auto starts one per CPU
with Kasi({"workers": "auto"}) as k:
    n = os.cpu_count() or 1
    pids = k.wait_workers(n)
    is_(len(pids or []), n, "workers: auto: one worker per CPU (%d)" % n)

for bad, why in [(0, r"workers: must be auto or between 1 and 64, got '0'"),
                 (65, r"workers: must be auto or between 1 and 64, got '65'"),
                 ("many", r"workers: expected auto or a number of processes, got 'many'")]:
    d = Kasi({"workers": bad}, start=False)
    r = run([KASI_BIN, "-t", "-c", d.confdir])
    ok(r.returncode == 1 and re.search(r"smtp\.yaml:\d+: " + why, r.stderr),
       "workers: %r refused with file:line" % (bad,), r.stderr)
    d.cleanup()

done()
