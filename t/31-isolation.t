#!/usr/bin/env python3
"""Plugin isolation: a Lua error is 451 4.3.0 (logged with plugin, hook and
traceback) or NEXT with on_error: next; kasi.sleep waits without blocking
other sessions; a hook past its budget (sleeping or in a CPU loop) is
451 4.4.5; an unbounded allocation is 451; the next session always works."""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kasitest import *  # noqa: E402,F401,F403

# The plugin's behaviour is chosen by the recipient's local part.
BAD = r'''
local function boom() error("kaboom") end
function hook_rcpt(conn, txn, rcpt)
  local u = rcpt.user
  if u == "error" then boom() end
  if u == "nap" then kasi.sleep(0.2); return OK, "rested" end
  if u == "sleepy" then kasi.sleep(30) end
  if u == "loop" then while true do end end
  if u == "yield" then coroutine.yield() end
end
'''
# Its own plugin with a long budget: on a busy machine, filling 64 MB
# with the JIT off can take more than the 1 s budget of "bad".
HOG = r'''
function hook_rcpt(conn, txn, rcpt)
  if rcpt.user == "hog" then
    local t = {}
    for i = 1, 1e9 do t[i] = string.rep("x", 64) .. i end
  end
end
'''
ADVISORY = r'''
function hook_mail(conn, txn, from)
  if from.user == "fail" then error("advisory scorer broke") end
end
'''


def rcpt_reply(k, user, timeout=10):
    with Raw(k.port, ehlo="client.test") as r:
        r.cmd("MAIL FROM:<a@client.test>")
        return r.cmd("RCPT TO:<%s@example.test>" % user, timeout=timeout)


def works(k, name):
    with Raw(k.port, ehlo="client.test") as r:
        r.cmd("MAIL FROM:<a@client.test>")
        is_(r.cmd("RCPT TO:<fine@example.test>")[0], 250, "%s: next session works" % name)


files = {"config/plugins": ("advisory on_error=next\nbad timeout=1 jit=off\n"
                           "hog timeout=60 jit=off\nqueue/discard\n"),
         "plugins/bad.lua": BAD, "plugins/advisory.lua": ADVISORY, "plugins/hog.lua": HOG,
         "config/lua.yaml": "memory_limit: 64M\n"}
with Kasi(files=files) as k:
    code, lines = rcpt_reply(k, "error")
    is_((code, lines[:1]), (451, ["4.3.0 Error: temporary plugin failure, try again later"]),
        "a Lua error: 451 4.3.0")
    m = k.wait_log(r"plugin bad: hook_rcpt failed: .*kaboom")
    ok(m, "error logged with plugin and hook")
    like(k.log(), r"stack traceback:", "with a traceback")
    works(k, "after an error")

    with Raw(k.port, ehlo="client.test") as r:
        is_(r.cmd("MAIL FROM:<fail@client.test>")[0], 250, "on_error: next fails open")
    like(k.log(), r"plugin advisory: hook_mail failed \(on_error: next\)", "and logs it")

    # kasi.sleep: the reply waits, pipelined commands stay in order, other
    # sessions are served meanwhile
    with Raw(k.port, ehlo="client.test") as r:
        t0 = time.monotonic()
        r.send("MAIL FROM:<a@client.test>\r\nRCPT TO:<nap@example.test>\r\n"
               "RCPT TO:<fine@example.test>\r\nRSET\r\n")
        with Raw(k.port, ehlo="other.test") as o:
            is_(o.cmd("NOOP")[0], 250, "another session is served while a hook sleeps")
        got = [r.read_reply() for _ in range(4)]
        is_([c for c, _ in got], [250, 250, 250, 250], "pipelined replies after a sleep")
        is_(got[1][1], ["2.1.5 rested"], "the sleeping hook's answer")
        ok(time.monotonic() - t0 >= 0.2, "the hook really slept")

    # the hook sleeps 30 s: an answer within the 10 s wait is the budget's
    code, lines = rcpt_reply(k, "sleepy")
    is_((code, lines[:1]), (451, ["4.4.5 Error: plugin timed out, try again later"]),
        "sleeping past a 1 s budget: 451 4.4.5 at the budget")
    like(k.log(), r"plugin bad: hook_rcpt ran past its time budget", "timeout logged")
    works(k, "after a timeout")

    code, lines = rcpt_reply(k, "loop")
    is_((code, lines[:1]), (451, ["4.4.5 Error: plugin timed out, try again later"]),
        "while true do end (interpreted): 451 4.4.5")
    works(k, "after a CPU loop")

    code, lines = rcpt_reply(k, "hog", timeout=30)
    is_(code, 451, "unbounded allocation: 451")
    like(k.log(), r"plugin hog: hook_rcpt failed: not enough memory", "memory error logged")
    works(k, "after an allocation bomb")
    code, lines = rcpt_reply(k, "hog", timeout=30)
    is_(code, 451, "again: 451")
    works(k, "after a second allocation bomb")

    code, lines = rcpt_reply(k, "yield")
    is_(code, 451, "a bare coroutine.yield() is an error")
    works(k, "after a bare yield")

    # a session that ends while its hook sleeps: the hook is cancelled
    gone = k.count_log(r"\] disconnect ")
    r = Raw(k.port, ehlo="client.test")
    r.send("MAIL FROM:<a@client.test>\r\nRCPT TO:<sleepy@example.test>\r\n")
    r.read_reply()
    ok(k.wait_log(r"< RCPT TO:<sleepy@"), "the sleeping rcpt hook has started")
    r.close()
    ok(k.wait_count(r"\] disconnect ", gone + 1), "the session ends while its hook sleeps")
    works(k, "after a client left during a sleep")
    ok(k.running(), "server still running")

done()
