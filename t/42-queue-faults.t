#!/usr/bin/env python3
"""queue/smtp_forward when the downstream fails. For every fault: the
client hears 451 (never 250) and, counted over each scenario, messages the
client saw accepted == messages delivered. Faults: Postfix stopped, a fake
downstream dropping mid-DATA, one never answering the final dot, Postfix's
smtpd killed with SIGKILL during a 20 MB transfer, kasi killed with SIGKILL
mid-transaction. Also: a route split whose second downstream fails."""
import os
import re
import signal
import socket
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "lib"))
from kasitest import *  # noqa: E402,F401,F403
from fakesmtp import FakeSmtp  # noqa: E402
import postfix  # noqa: E402

why = postfix.available()
if why:
    print("1..0 # SKIP %s" % why)
    sys.exit(0)

MSG = b"From: alice@client.test\r\nSubject: fault\r\n\r\nbody\r\n.dot\r\n"


def Fake(mode):
    """The scripted downstream: 'ok' (accepts, records), 'drop' (closes
    after 100 bytes of DATA), 'mute' (never answers the final dot)."""
    return FakeSmtp(ehlo=["PIPELINING", "8BITMIME", "SIZE 0"],
                    data="DROP" if mode == "drop" else None,
                    dot="MUTE" if mode == "mute" else None)


def kasi_for(port, extra="", plugins="queue/smtp_forward\n"):
    return Kasi(files={
        "config/plugins": plugins,
        "config/queue/smtp_forward.yaml":
            "port: %d\ntimeout_data: 3\ntimeout_cmd: 3\ntimeout_connect: 3\n"
            "plugin:\n  timeout: 60\n%s" % (port, extra)})


def count(pf_or_fake, user="bob"):
    if isinstance(pf_or_fake, FakeSmtp):
        return len(pf_or_fake.txns)
    return len(pf_or_fake.messages(user))


def worker_pid(k):
    m = re.search(r"worker (\d+) started", k.log())
    return int(m.group(1)) if m else None


def children(ppid, name):
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read()
        except OSError:
            continue
        comm = st[st.index("(") + 1:st.rindex(")")]
        fields = st[st.rindex(")") + 2:].split()
        if comm == name and int(fields[1]) == ppid:
            out.append(int(d))
    return out


tally = {}

# 1. Postfix stopped
with postfix.Postfix() as pf:
    with kasi_for(pf.port) as k:
        sent = acc = 0
        for i in range(3):
            sent += 1
            code, _ = send_message(k.port, "alice@client.test", ["bob@test.example"], MSG)
            acc += code == 250
        pf.wait_messages("bob", acc)    # delivered before the stop, not queued
        pf.stop()
        for i in range(3):
            sent += 1
            code, lines = send_message(k.port, "alice@client.test", ["bob@test.example"], MSG)
            acc += code == 250
            if i == 0:
                is_(code, 451, "postfix stopped: 451")
                like(" ".join(lines), r"^4\.4\.1 ", "postfix stopped: 4.4.1")
        is_(k.spool_names(), [], "postfix stopped: nothing in kasi's spool")
        is_(pf.queue_count(), 0, "postfix stopped: nothing in Postfix's queue")
        tally["stopped"] = (sent, acc, len(pf.messages("bob")))

# 2./3. fake downstream: drop mid-DATA, mute after the dot
for mode in ("drop", "mute"):
    fk = Fake(mode)
    with kasi_for(fk.port) as k:
        t0 = time.time()
        code, lines = send_message(k.port, "alice@client.test", ["bob@test.example"], MSG)
        is_(code, 451, "%s: 451 (%.1f s)" % (mode, time.time() - t0))
        like(" ".join(lines), r"^4\.4\.2 ", "%s: 4.4.2" % mode)
        tally[mode] = (1, int(code == 250), len(fk.txns))
    fk.stop()

# 4. Postfix's smtpd killed with SIGKILL while a 20 MB message streams
big = b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * (20 * 1024)
with postfix.Postfix() as pf:
    with kasi_for(pf.port, "pool_idle: 0\n") as k:
        res = {}

        def client():
            res["r"] = send_message(k.port, "alice@client.test", ["bob@test.example"], big)
        th = threading.Thread(target=client)
        th.start()
        killed = []
        end = time.time() + 20
        while not killed and time.time() < end:
            if re.search(r"client=\S+, orig_queue_id", pf.log()):
                for pid in children(pf.master_pid() or -1, "smtpd"):
                    try:
                        os.kill(pid, signal.SIGKILL)
                        killed.append(pid)
                    except OSError:
                        pass
            time.sleep(0.005)
        th.join(60)
        ok(killed, "smtpd killed: found and killed Postfix's smtpd %r" % killed)
        code = res.get("r", (None,))[0]
        is_(code, 451, "smtpd killed mid-transfer: 451")
        time.sleep(1)
        tally["smtpd-killed"] = (1, int(code == 250), len(pf.messages("bob")))
        # and the next message goes through once master restarted smtpd
        code, _ = send_message(k.port, "alice@client.test", ["bob@test.example"], MSG)
        is_(code, 250, "after the kill: the next message is accepted")
        ok(len(pf.wait_messages("bob", 1)) == 1, "after the kill: only that one delivered")

# 5. kasi killed with SIGKILL mid-transaction (the downstream is mute)
fk = Fake("mute")
k = kasi_for(fk.port)
r = Raw(k.port, banner=True)
r.cmd("EHLO client.test")
r.cmd("MAIL FROM:<alice@client.test>")
r.cmd("RCPT TO:<bob@test.example>")
r.cmd("DATA")
r.send(dot_stuff(MSG) + b".\r\n")
ok(fk.muted.wait(scaled(10)), "kasi is forwarding: the message reached the mute downstream")
wp = worker_pid(k)
if wp:
    os.kill(wp, signal.SIGKILL)
k.kill()
code, lines = r.read_reply(timeout=5)
ok(code != 250, "kasi SIGKILLed mid-transaction: the client never saw 250 (%r)" % (code,))
r.close()
tally["kasi-killed"] = (1, int(code == 250), len(fk.txns))
k.cleanup()
fk.stop()

# 6. route split: the second route is down -> 451 (the first got a copy:
# the retry may duplicate it, it is never lost)
fk = Fake("ok")
with kasi_for(fk.port, "routes:\n  down.example:\n    port: %d\n" % postfix.free_port()) as k:
    code, lines = send_message(k.port, "alice@client.test",
                               ["bob@test.example", "x@down.example"], MSG)
    is_(code, 451, "route down: 451 for the message")
    is_(len(fk.txns), 1, "route down: the first route got its copy")
    is_(fk.txns and fk.txns[0]["rcpt"], ["bob@test.example"], "route down: only its own recipient")
    ok(k.wait_log(r"some routes accepted"), "route down: logged loudly")
    code, lines = send_message(k.port, "alice@client.test", ["a@one.example", "b@two.example"], MSG)
    is_(code, 250, "one route, two domains: 250")
    is_(fk.txns[-1]["rcpt"], ["a@one.example", "b@two.example"], "one route: one transaction")
fk.stop()

# 7. the hook's budget runs out while the downstream is mute: the engine
# abandons the hook, the job is cancelled (its connection closed), 451;
# and a client that hangs up mid-forward cancels it too (ASan: no leak)
fk = Fake("mute")
with Kasi(files={"config/plugins": "queue/smtp_forward timeout=1\n",
                 "config/queue/smtp_forward.yaml": "port: %d\n" % fk.port}) as k:
    code, lines = send_message(k.port, "alice@client.test", ["bob@test.example"], MSG)
    is_(code, 451, "hook budget over: 451 (%r)" % lines)
    r = Raw(k.port, banner=True)
    r.cmd("EHLO client.test")
    r.cmd("MAIL FROM:<alice@client.test>")
    r.cmd("RCPT TO:<bob@test.example>")
    r.cmd("DATA")
    fk.muted.clear()
    r.send(dot_stuff(MSG) + b".\r\n")
    ok(fk.muted.wait(scaled(10)), "client gone mid-forward: the forward had started")
    r.close()
    ok(k.wait_log(r"disconnect ip=127\.0\.0\.1 .*msgs=0"), "client gone mid-forward: session ends")
    tally["budget"] = (1, int(code == 250), len(fk.txns))
fk.stop()

for name, (sent, acc, delivered) in tally.items():
    diag("%-13s sent=%d accepted=%d delivered=%d" % (name, sent, acc, delivered))
    is_(acc, delivered, "%s: accepted == delivered" % name)
done()
