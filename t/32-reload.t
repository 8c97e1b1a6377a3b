#!/usr/bin/env python3
"""Plugin generations: a site plugin overrides a shipped one; SIGHUP loads a
new generation (new code and re-read YAML live for new sessions, open
sessions keep theirs); a broken plugin or YAML keeps the old generation
and logs file and line; reloads under load fail no transaction."""
import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kasitest import *  # noqa: E402,F401,F403

# site override of a shipped plugin name
OVERRIDE = 'function hook_queue(conn, txn) return DENYSOFT, "site spool override" end\n'
with Kasi(files={"plugins/queue/spool.lua": OVERRIDE}) as k:
    code, lines = send_message(k.port, "a@client.test", ["b@example.test"], b"Subject: x\r\n\r\nx\r\n")
    is_((code, lines), (451, ["4.3.0 site spool override"]),
        "no config/plugins: queue/spool, and the site copy wins over the shipped one")

VER = '''
local P = {}
local word
function P.register(cfg) word = cfg.word end
function P.hook_mail(conn, txn, from)
  return OK, string.format("%s %s gen %d", "VERSION", tostring(word), conn.generation)
end
return P
'''


def ver(v):
    return VER.replace("VERSION", v)


def write(k, rel, text):
    path = os.path.join(k.tmp, rel)
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.rename(path + ".tmp", path)


def mail_text(port):
    with Raw(port, ehlo="client.test") as r:
        code, lines = r.cmd("MAIL FROM:<a@client.test>")
        return lines[0] if code == 250 and lines else "%r %r" % (code, lines)


def wait_text(port, want, timeout=3):
    deadline = time.monotonic() + scaled(timeout)
    got = None
    while time.monotonic() < deadline:
        got = mail_text(port)
        if got == want:
            return got
        time.sleep(0.05)
    return got


with Kasi(files={"config/plugins": "ver\nqueue/discard\n",
                 "plugins/ver.lua": ver("v1"),
                 "config/ver.yaml": "word: apple\n"}) as k:
    is_(mail_text(k.port), "2.1.0 v1 apple gen 1", "generation 1")
    old = Raw(k.port, ehlo="client.test")
    is_(old.cmd("MAIL FROM:<a@client.test>")[1], ["2.1.0 v1 apple gen 1"], "open session on gen 1")
    old.cmd("RSET")

    write(k, "plugins/ver.lua", ver("v2"))
    write(k, "config/ver.yaml", "word: pear\n")
    k.signal(signal.SIGHUP)
    is_(wait_text(k.port, "2.1.0 v2 pear gen 2"), "2.1.0 v2 pear gen 2",
        "after SIGHUP: new code and re-read YAML for new sessions")
    is_(old.cmd("MAIL FROM:<a@client.test>")[1], ["2.1.0 v1 apple gen 1"],
        "the open session keeps its generation")
    old.cmd("QUIT")
    old.close()
    ok(k.wait_log(r"plugin generation 1 freed"), "the old generation is freed with its last session")

    write(k, "plugins/ver.lua", "local x = = 2\n")
    k.signal(signal.SIGHUP)
    ok(k.wait_log(r"reload failed, generation 2 stays: .*ver\.lua:1:"),
       "syntax error: reload refused, logged with file and line")
    is_(mail_text(k.port), "2.1.0 v2 pear gen 2", "old behaviour continues")

    write(k, "plugins/ver.lua", ver("v3"))
    write(k, "config/ver.yaml", "word: [unclosed\n")
    k.signal(signal.SIGHUP)
    ok(k.wait_log(r"reload failed, generation 2 stays: .*ver\.yaml:\d+"),
       "bad YAML: reload refused, logged with file and line")
    is_(mail_text(k.port), "2.1.0 v2 pear gen 2", "old behaviour continues after bad YAML")

    write(k, "config/ver.yaml", "word: plum\n")
    write(k, "plugins/ver.lua", ver("v4").replace("function P.register(cfg)",
                                                "function P.register(cfg) error('nope')"))
    k.signal(signal.SIGHUP)
    ok(k.wait_log(r"reload failed, generation 2 stays: plugin ver: register: .*nope"),
       "register raising: reload refused")
    is_(mail_text(k.port), "2.1.0 v2 pear gen 2", "old behaviour continues after register error")

    # reload under load: transactions without pause, 20 reloads
    stop = threading.Event()
    results = []

    def client():
        while not stop.is_set() and len(results) < 2000:
            try:
                code, _ = send_message(k.port, "a@client.test", ["b@example.test"],
                                       b"Subject: load\r\n\r\nx\r\n")
            except Exception as e:  # a dropped connection counts as a failure
                code = repr(e)
            results.append(code)

    th = threading.Thread(target=client)
    th.start()
    live = []
    for i in range(20):
        write(k, "plugins/ver.lua", ver("L%d" % i))
        write(k, "config/ver.yaml", "word: w%d\n" % i)
        k.signal(signal.SIGHUP)
        t0 = time.monotonic()
        got = ""
        while time.monotonic() - t0 < scaled(15):
            got = mail_text(k.port)
            if got.startswith("2.1.0 L%d w%d " % (i, i)):
                break
        live.append(time.monotonic() - t0 if got.startswith("2.1.0 L%d " % i) else None)
    stop.set()
    th.join(timeout=30)
    ok(results and all(c == 250 for c in results),
       "every transaction during 20 reloads succeeded (%d)" % len(results),
       "codes: %r" % sorted(set(map(str, results))))
    ok(all(x is not None for x in live), "new behaviour live after each SIGHUP",
       "delays: %r" % live)
    diag("seconds from SIGHUP to new behaviour: max %.2f"
         % max(x for x in live if x is not None) if any(live) else "none went live")
    unlike(k.log(), r"worker \d+ ended", "the worker never died")

done()
