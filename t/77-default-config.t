#!/usr/bin/env python3
"""The shipped config/ (plugins list and plugin YAML files): it passes
`kasi -t`, takes mail for example.com (the README's swaks example) and is
not an open relay; every shipped policy plugin loads together."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kasitest import *  # noqa: E402,F401,F403

CONF = os.path.join(REPO, "config")
res = run([KASI_BIN, "-t", "-c", CONF])
ok(res.returncode == 0, "kasi -t -c config", res.stdout + res.stderr)


def shipped(names):
    files = {}
    for n in os.listdir(CONF):
        if n.endswith(".yaml") and n != "smtp.yaml":
            with open(os.path.join(CONF, n)) as f:
                files["config/" + n] = f.read()
    files["config/plugins"] = names
    return files


with open(os.path.join(CONF, "plugins")) as f:
    default_list = f.read()
with Kasi(files=shipped(default_list)) as k:
    with Raw(k.port, ehlo="client.example.net", source="127.0.0.2") as r:
        r.cmd("MAIL FROM:<a@example.net>")
        is_(r.cmd("RCPT TO:<someone@example.com>")[0], 250, "our test domain accepted")
        is_(r.cmd("RCPT TO:<x@localhost>")[0], 250, "localhost accepted")
        is_(r.cmd("RCPT TO:<victim@gmail.test>"), (550, ["5.7.1 Relaying denied"]),
            "not an open relay")
        r.cmd("DATA")
        r.send(b"Subject: default\r\n\r\nhi\r\n.\r\n")
        r.expect(250, "2.0.0", "message queued")
    is_(len(k.wait_spool(1)), 1, "and spooled")
    with Raw(k.port, banner=True, source="127.0.0.2") as r:
        is_(r.cmd("EHLO localhost")[0], 550, "helo_checks is on")
    # like swaks from the same host: HELO checks skip the host itself
    with Raw(k.port, ehlo="shortname") as r:
        r.cmd("MAIL FROM:<a@example.net>")
        is_(r.cmd("RCPT TO:<someone@example.com>")[0], 250, "local swaks-like client")

ALL = ("relay\nearly_talker\naccess\nlimit\nmax_unrecognized_commands\nhelo_checks\n"
       "rcpt_to_host_list\nextended_address\nqueue/spool\n")
files = shipped(ALL)
files["config/early_talker.yaml"] = files["config/early_talker.yaml"].replace(
    "pause: 1", "pause: 0.1").replace("data_pause: 1", "data_pause: 0.1")
with Kasi(files=files) as k:
    with Raw(k.port, ehlo="client.example.net", source="127.0.0.2") as r:
        r.cmd("MAIL FROM:<a@example.net>")
        is_(r.cmd("RCPT TO:<someone-tag@example.com>")[0], 250, "all plugins: rcpt")
        is_(r.cmd("RCPT TO:<x@elsewhere.test>")[0], 550, "all plugins: no relaying")
        r.cmd("DATA")
        r.send(b"Subject: all\r\n\r\nhi\r\n.\r\n")
        mid = queued_id(r.expect(250, "2.0.0", "all plugins: queued"))
    m = k.spool_by_id(mid) if mid else None
    ok(m is not None and m.env["rcpt_to"] == ["someone@example.com"],
       "all plugins: extended address rewritten", repr(m and m.env))

done()
