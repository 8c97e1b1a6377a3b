#!/usr/bin/env python3
"""extended_address: user-tag@domain is queued as user@domain (visible in
the spool's .env), the original kept in txn.notes; separators, exceptions,
domains; a relaying client's mail elsewhere is not rewritten."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kasitest import *  # noqa: E402,F401,F403

SHOW = r'''
function hook_data_post(conn, txn)
  for _, e in ipairs(txn.notes.extended_address or {}) do
    txn:add_header("X-Original", e.original .. " " .. e.address .. " " .. e.tag)
  end
end
'''


def deliver(k, rcpts, source="127.0.0.2"):
    with Raw(k.port, ehlo="client.test", source=source) as r:
        r.cmd("MAIL FROM:<a@client.test>")
        for rc in rcpts:
            r.cmd("RCPT TO:<%s>" % rc)
        r.cmd("DATA")
        r.send(b"Subject: t\r\n\r\nx\r\n.\r\n")
        code, lines = r.read_reply()
        mid = queued_id(lines) if code == 250 else None
    return k.spool_by_id(mid) if mid else None


FILES = {"config/plugins": "relay\nrcpt_to_host_list\nextended_address\nshow\nqueue/spool\n",
         "plugins/show.lua": SHOW,
         "config/relay.yaml": "allow: [127.0.0.3]\n",
         "config/rcpt_to_host_list.yaml": "domains: [example.com]\n"}

with Kasi(files=FILES) as k:
    m = deliver(k, ["joe-news@example.com", "ann-a-b@example.com", "plain@example.com",
                    "Mailer-Daemon@example.com", "-x@example.com", "y-@example.com",
                    "bob+tag@example.com"])
    if ok(m is not None, "message spooled"):
        is_(m.env["rcpt_to"], ["joe@example.com", "ann@example.com", "plain@example.com",
                               "Mailer-Daemon@example.com", "-x@example.com",
                               "y-@example.com", "bob+tag@example.com"],
            "rewritten in the .env: split at the first '-', exceptions and edge cases kept")
        like(m.eml, rb"X-Original: joe-news@example.com joe@example.com news\r\n",
             "original and tag in txn.notes")
        like(m.eml, rb"X-Original: ann-a-b@example.com ann@example.com a-b\r\n",
             "second rewrite noted")
    m = deliver(k, ["joe-news@other.test", "joe-news@example.com"], source="127.0.0.3")
    if ok(m is not None, "relayed message spooled"):
        is_(m.env["rcpt_to"], ["joe-news@other.test", "joe@example.com"],
            "relaying client: other domains are not rewritten (no domains set)")

files = dict(FILES)
files["config/extended_address.yaml"] = ("separators: ['+', '-']\ndomains: [example.com, other.test]\n"
                                         "exceptions: [no-reply, special-box@example.com]\n")
with Kasi(files=files) as k:
    m = deliver(k, ["bob+tag@example.com", "joe-x@other.test", "special-box@example.com",
                    "a+b-c@example.com", "joe-x@third.test"], source="127.0.0.3")
    if ok(m is not None, "message spooled"):
        is_(m.env["rcpt_to"], ["bob@example.com", "joe@other.test", "special-box@example.com",
                               "a@example.com", "joe-x@third.test"],
            "separators, domains and whole-address exceptions")

files["config/extended_address.yaml"] = "separators: ['ab']\n"
with Kasi(files=files, start=False) as k:
    res = run([KASI_BIN, "-t", "-c", k.confdir])
    ok(res.returncode != 0, "kasi -t refuses a bad separator", res.stdout + res.stderr)

done()
