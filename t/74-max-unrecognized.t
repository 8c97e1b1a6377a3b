#!/usr/bin/env python3
"""max_unrecognized_commands: unknown commands get 500 until the max-th,
which is refused with 554 5.7.0 and the connection closed; known commands
do not count; the reply is configurable."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kasitest import *  # noqa: E402,F401,F403

with Kasi(files={"config/plugins": "max_unrecognized_commands\nqueue/spool\n",
                 "config/max_unrecognized_commands.yaml": "max: 3\n"}) as k:
    with Raw(k.port, ehlo="client.test") as r:
        is_(r.cmd("FOO")[0], 500, "1st unknown command: 500")
        is_(r.cmd("NOOP")[0], 250, "a known command")
        is_(r.cmd("GET / HTTP/1.0")[0], 500, "2nd unknown command: 500")
        r.send("BAR\r\n")
        r.expect(554, "5.7.0", "3rd unknown command: 554 5.7.0")
        ok(r.closed(), "and the connection is closed")
    with Raw(k.port, ehlo="client.test") as r:
        is_(r.cmd("FOO")[0], 500, "the count is per connection")
        is_(r.cmd("MAIL FROM:<a@client.test>")[0], 250, "mail still works")

with Kasi(files={"config/plugins": "max_unrecognized_commands\nqueue/spool\n",
                 "config/max_unrecognized_commands.yaml":
                     "max: 1\nreply: {code: 521, enh: 5.5.1, message: Bye}\n"}) as k:
    with Raw(k.port, ehlo="client.test") as r:
        is_(r.cmd("FOO"), (521, ["5.5.1 Bye"]), "custom reply")
        ok(r.closed(), "closed")

with Kasi(files={"config/plugins": "max_unrecognized_commands\n",
                 "config/max_unrecognized_commands.yaml": "max: 0\n"}, start=False) as k:
    res = run([KASI_BIN, "-t", "-c", k.confdir])
    ok(res.returncode != 0, "kasi -t refuses max: 0", res.stdout + res.stderr)

done()
