#!/usr/bin/env python3
"""A JIT-compiled CPU loop in a plugin: in-process interruption cannot
reach it, so the supervisor kills the stuck worker after the budget plus a
grace period and starts a new one. The client never got a 250 (nothing is
lost) and the next session works."""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kasitest import *  # noqa: E402,F401,F403

LOOP = '''
function hook_rcpt(conn, txn, rcpt)
  if rcpt.user == "loop" then
    local n = 0
    while true do n = n + 1 end
  end
end
'''
with Kasi(files={"config/plugins": "spin timeout=1\nqueue/discard\n",
                 "plugins/spin.lua": LOOP}) as k:
    with Raw(k.port, ehlo="client.test", timeout=15) as r:
        r.cmd("MAIL FROM:<a@client.test>")
        code, lines = r.cmd("RCPT TO:<loop@example.test>", timeout=15)
        ok(code in (None, 451), "the looping hook never accepts (got %r)" % code)
        ok(r.closed(timeout=15) or code == 451, "the connection ends or gets 451")
    deadline = time.monotonic() + scaled(10)
    code = None
    while time.monotonic() < deadline and code != 250:
        try:
            with Raw(k.port, ehlo="client.test") as r:
                r.cmd("MAIL FROM:<a@client.test>")
                code = r.cmd("RCPT TO:<fine@example.test>")[0]
        except OSError:
            time.sleep(0.1)
    is_(code, 250, "the next session works")
done()
