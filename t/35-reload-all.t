#!/usr/bin/env python3
"""Reload is all or nothing and the last good generation survives
everything. Clients send without pause while 20 SIGHUPs alternate good
and broken plugins, broken plugin YAML and a broken smtp.yaml, and the
worker is killed three times while a broken version is on disk (once with
each kind of breakage): no connection is refused, every message that got
250 is stored, a restarted worker serves the last good generation (from
its snapshot, not the broken files), and the last good behaviour is live
at the end. A reload that adds a listener and removes another: a session
open on the removed one finishes; the new one answers; the removed one
closes. A reload that changes limits, timeouts, the host name and
dns.yaml says so in its line, and the new banner and max_recipients are
live; one that moves http.listen and pid_file applies them, and one that
changes limits.counters warns that it waits for the next start."""
import http.client
import os
import re
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kasitest import *  # noqa: E402,F401,F403
from kasinet import free_port  # noqa: E402

VER = '''
local P = {}
local word
function P.register(cfg) word = cfg.word end
function P.hook_mail(conn, txn, from)
  return OK, string.format("%s %s gen %d", "VERSION", tostring(word), conn.generation)
end
return P
'''
MSG = b"From: a@client.test\r\nSubject: torture\r\n\r\nbody\r\n"


def write(k, rel, text):
    path = os.path.join(k.tmp, rel)
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.rename(path + ".tmp", path)


def mail_text(port):
    with Raw(port, ehlo="client.test", timeout=15) as r:
        code, lines = r.cmd("MAIL FROM:<a@client.test>")
        return lines[0] if code == 250 and lines else "%r %r" % (code, lines)


def results_count(k):
    return k.count_log(r"generation \d+ live \(was|reload failed, generation")


files = {"config/plugins": "ver\nqueue/spool\n",
         "plugins/ver.lua": VER.replace("VERSION", "v0"),
         "config/ver.yaml": "word: w0\n"}
with Kasi({"workers": 2}, files=files) as k:
    smtp_yaml = open(os.path.join(k.confdir, "smtp.yaml")).read()
    ok(k.wait_workers(2), "two workers serve")
    stop = threading.Event()
    results = []

    def client():
        n = 0
        while not stop.is_set() and n < 3000:
            n += 1
            try:
                code, lines = send_message(k.port, "a@client.test", ["b@example.test"], MSG)
                results.append((code, queued_id(lines)))
            except OSError as e:
                results.append((repr(e), None))

    threads = [threading.Thread(target=client) for _ in range(2)]
    for t in threads:
        t.start()

    BROKEN = [("plugins/ver.lua", "local x = = 2\n", r"ver\.lua:1:"),
              ("config/ver.yaml", "word: [unclosed\n", r"ver\.yaml:\d+"),
              ("config/smtp.yaml", smtp_yaml + "limits:\n  max_recipients: lots\n",
               r"smtp\.yaml:\d+: limits\.max_recipients")]
    good_word = "w0"
    kills = 0
    failed_as_expected = 0
    live_ok = 0
    for i in range(20):
        before = results_count(k)
        if i % 2 == 0:
            good_word = "w%d" % (i + 1)
            write(k, "plugins/ver.lua", VER.replace("VERSION", "v%d" % (i + 1)))
            write(k, "config/ver.yaml", "word: %s\n" % good_word)
            write(k, "config/smtp.yaml", smtp_yaml)
            want = None
        else:
            rel, text, want = BROKEN[(i // 2) % 3]
            write(k, rel, text)
        k.signal(signal.SIGHUP)
        if not k.wait_count(r"generation \d+ live \(was|reload failed, generation",
                            before + 1, timeout=20):
            ok(False, "reload %d: a result is logged" % i, k.log_tail())
            continue
        last = re.findall(r"(generation \d+ live \(was.*|reload failed, generation.*)",
                          k.log())[-1]
        if want is None:
            live_ok += last.startswith("generation")
        else:
            failed_as_expected += bool(re.search(r"reload failed.*" + want, last))
            if kills < 3 and i in (1, 9, 17):     # broken Lua, plugin YAML, smtp.yaml
                pid = (k.current_workers() or [None])[0]
                os.kill(pid, signal.SIGKILL)
                kills += 1
                k.wait_log(r"worker %d ended" % pid)
                ok(k.wait_workers(2, exclude=[pid]), "kill %d: a replacement serves" % kills)
                got = [mail_text(k.port) for _ in range(4)]
                ok(all(g.startswith("2.1.0 v%d %s " % (i, good_word)) for g in got),
                   "kill %d with a broken %s on disk: the last good generation "
                   "serves" % (kills, rel), repr(got))
    is_(live_ok, 10, "the 10 good reloads went live")
    is_(failed_as_expected, 10, "the 10 broken ones were refused, naming file and line")
    is_(kills, 3, "three workers were killed with a broken version on disk")
    time.sleep(0.2)
    stop.set()
    for t in threads:
        t.join(timeout=60)
    good = [mid for code, mid in results if code == 250]
    refused = [c for c, _ in results if "Refused" in str(c)]
    other = [c for c, _ in results if c != 250 and "Refused" not in str(c)]
    ok(len(good) > 50, "clients kept sending (%d messages)" % len(good))
    is_(refused, [], "no connection was refused")
    ok(len(other) <= 3 * 2 * 2, "only sessions of killed workers failed (%d)" % len(other),
       repr(other[:10]))
    stored = {m.id for m in k.wait_spool(len(good))}
    missing = [mid for mid in good if mid not in stored]
    is_(missing, [], "every message that got 250 is in the spool")
    got = mail_text(k.port)
    like(got, r"^2\.1\.0 v19 w19 gen \d+$", "the last good behaviour is live at the end")
    ok(k.running(), "kasi never stopped")

# listeners: add one, remove another while a session is open on it
pa, pb = free_port(), free_port()
with Kasi({"listen": ["127.0.0.1:%d" % pa]}) as k:
    old = Raw(pa, ehlo="client.test")
    is_(old.cmd("MAIL FROM:<a@client.test>")[0], 250, "session open on the old listener")
    cfg = merge(k.config, {"listen": ["127.0.0.1:%d" % pb]})
    write(k, "config/smtp.yaml", to_yaml(cfg) + "\n")
    k.signal(signal.SIGHUP)
    ok(k.wait_log(r"generation 2 live \(was 1\): listeners \+127\.0\.0\.1:%d "
                  r"-127\.0\.0\.1:%d" % (pb, pa)),
       "the reload logs the listener added and the one removed")
    ok(k.wait_log(r"listening on 127\.0\.0\.1:%d" % pb), "the new listener is logged")
    with Raw(pb, ehlo="client.test") as r:
        is_(r.cmd("MAIL FROM:<a@client.test>")[0], 250, "the new listener answers")
    is_(old.cmd("RCPT TO:<b@example.test>")[0], 250, "the old session goes on")
    is_(old.cmd("DATA")[0], 354, "  DATA")
    old.send(MSG + b".\r\n")
    code, lines = old.read_reply()
    is_(code, 250, "  and its message is accepted")
    old.cmd("QUIT")
    old.close()
    ok(k.wait_spool(1) and k.spool_by_id(queued_id(lines)), "  and stored")
    ok(k.wait_log(r"worker \d+ retired \(generation 1, exit 0\)"),
       "the old worker retires once its session ended")
    refused = False
    deadline = time.monotonic() + scaled(5)
    while time.monotonic() < deadline and not refused:
        try:
            socket.create_connection(("127.0.0.1", pa), timeout=1).close()
            time.sleep(0.05)
        except OSError:
            refused = True
    ok(refused, "the removed listener is closed")

    # a reload that cannot bind changes nothing
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        taken = busy.getsockname()[1]
        cfg2 = merge(k.config, {"listen": ["127.0.0.1:%d" % pb, "127.0.0.1:%d" % taken]})
        write(k, "config/smtp.yaml", to_yaml(cfg2) + "\n")
        k.signal(signal.SIGHUP)
        ok(k.wait_log(r"reload failed, generation 2 stays: .*smtp\.yaml:\d+: listen "
                      r"127\.0\.0\.1:%d: Address already in use" % taken),
           "a listener that cannot be bound: reload refused with file:line")
    with Raw(pb, ehlo="client.test") as r:
        is_(r.cmd("MAIL FROM:<a@client.test>")[0], 250, "generation 2 still serves")

# a reload that changes limits, timeouts, the host name and dns.yaml
with Kasi(files={"config/dns.yaml": "timeout: 2\n"}) as k:
    with Raw(k.port) as r:
        like(r.read_reply()[1][0], r"^%s " % re.escape(HOSTNAME), "generation 1: the old host name")
    cfg = merge(k.config, {"hostname": "new.kasi.test", "limits": {"max_recipients": 2},
                           "timeouts": {"command": 120}})
    write(k, "config/smtp.yaml", to_yaml(cfg) + "\n")
    write(k, "config/dns.yaml", "timeout: 3\n")
    k.signal(signal.SIGHUP)
    ok(k.wait_log(r"generation 2 live \(was 1\): limits max_recipients timeouts\.command; "
                  r"settings hostname; files ~config/dns\.yaml ~config/smtp\.yaml; workers"),
       "the reload's line names limits, timeouts, hostname and dns.yaml",
       k.log_tail(5))
    ok(k.wait_log(r"worker \d+ retired \(generation 1"),
       "  the old worker retired (it accepts nothing more)")
    with Raw(k.port) as r:
        like(r.read_reply()[1][0], r"^new\.kasi\.test ", "the new host name is in the banner")
        r.cmd("EHLO client.test")
        r.cmd("MAIL FROM:<a@client.test>")
        is_([r.cmd("RCPT TO:<b%d@example.test>" % i)[0] for i in range(3)], [250, 250, 452],
            "max_recipients 2 is live: the third RCPT gets 452")


def http_status(port):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        c.request("GET", "/metrics")
        return c.getresponse().status
    except OSError:
        return None
    finally:
        c.close()


def read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


# keys the supervisor applies itself, and those that wait for the next start
h1, h2 = free_port(), free_port()
with Kasi({"http": {"listen": "127.0.0.1:%d" % h1}, "pid_file": "../kasi.pid"}) as k:
    pid1, pid2 = os.path.join(k.tmp, "kasi.pid"), os.path.join(k.tmp, "kasi2.pid")
    is_(http_status(h1), 200, "generation 1: the stats page on http.listen")
    is_(read(pid1), str(k.pid), "  and the pid in pid_file")
    cfg = merge(k.config, {"http": {"listen": "127.0.0.1:%d" % h2}, "pid_file": "../kasi2.pid",
                           "limits": {"counters": 32768, "max_connections": 2000}})
    write(k, "config/smtp.yaml", to_yaml(cfg) + "\n")
    k.signal(signal.SIGHUP)
    ok(k.wait_log(r"generation 2 live \(was 1\): limits max_connections; settings "
                  r"http\.listen pid_file; files ~config/smtp\.yaml; at the next start: "
                  r"limits\.counters, the table of limits\.max_connections; workers"),
       "the reload's line names http.listen, pid_file and what waits for the next start",
       k.log_tail(5))
    like(k.log(), r"warn: reload: limits\.counters changed; it takes effect at the next start",
         "limits.counters: a warning")
    like(k.log(), r"warn: reload: limits\.max_connections changed; the new limit holds now, "
         r"but the shared table of connections keeps its size \(for 1000\)",
         "max_connections past the shared table: a warning")
    is_(http_status(h2), 200, "the stats page moved to the new http.listen")
    deadline = time.monotonic() + scaled(5)
    while http_status(h1) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    is_(http_status(h1), None, "  and the old one is closed")
    is_((read(pid1), read(pid2)), (None, str(k.pid)), "pid_file moved: the old file removed, "
        "the new one written")
    cfg3 = merge(cfg, {"http": {"listen": "127.0.0.1:%d" % h1}})
    del cfg3["pid_file"]
    write(k, "config/smtp.yaml", to_yaml(cfg3) + "\n")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", h1))
        busy.listen(1)
        k.signal(signal.SIGHUP)
        ok(k.wait_log(r"reload failed, generation 2 stays: .*smtp\.yaml:\d+: http\.listen "
                      r"127\.0\.0\.1:%d: Address already in use" % h1),
           "an http.listen that cannot be bound: reload refused with file:line")
    is_(http_status(h2), 200, "  the stats page stays where it was")
    is_(read(pid2), str(k.pid), "  and the pid file too")

done()
