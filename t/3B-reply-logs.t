#!/usr/bin/env python3
"""Replies that say nothing internal and logs that answer questions: a
downstream that cannot be reached answers a generic 451 4.4.1 (the details
are logged with the transaction id); every rejection and deferral is one
log line with plugin, hook, codes, client and addresses; core syntax errors
are logged with the command; a plugin's code of the wrong class is logged
with its name; the summary line has the duration and the counts;
log.target syslog without a syslog socket falls back to stderr; disconnect
hooks may wait (bounded by their budget) after the client is gone."""
import os
import re
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kasitest import *  # noqa: E402,F401,F403

MSG = b"Subject: t\r\n\r\nbody\r\n.\r\n"


def closed_port():
    """A loopback port nothing listens on."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def transaction(r, sender="a@client.test", rcpt="b@example.com"):
    r.cmd("EHLO client.test")
    r.cmd("MAIL FROM:<%s>" % sender)
    r.cmd("RCPT TO:<%s>" % rcpt)
    code, _ = r.cmd("DATA")
    if code != 354:
        return code, []
    r.send(MSG)
    return r.read_reply(timeout=15)


# ---------------------------------------------------------------- downstream
down = closed_port()
for plugin in ("queue/smtp_forward", "queue/smtp_proxy"):
    with Kasi(files={"config/plugins": plugin + "\n",
                     "config/%s.yaml" % plugin: "host: 127.0.0.1\nport: %d\n"
                                                 "timeout_connect: 3\n" % down}) as k:
        with Raw(k.port, banner=True) as r:
            r.cmd("EHLO client.test")
            code, lines = r.cmd("MAIL FROM:<a@client.test>")
            if plugin == "queue/smtp_forward":
                is_(code, 250, "%s: MAIL accepted (forwarded at the end)" % plugin)
                r.cmd("RCPT TO:<b@example.com>")
                r.cmd("DATA")
                r.send(MSG)
                code, lines = r.read_reply(timeout=15)
            is_((code, lines), (451, ["4.4.1 Temporary failure, try again later"]),
                "%s: downstream down: 451 4.4.1 with a generic text" % plugin)
            unlike(" ".join(lines), r"127\.0\.0\.1|%d|refused|[Dd]ownstream" % down,
                   "%s: the reply names no host, port or error" % plugin)
        log = k.wait_log(r"\[\S+\.1\] %s: .*127\.0\.0\.1:%d.*(?:refused|connect)" % (
            re.escape(plugin), down))
        ok(log, "%s: the details are logged with the transaction id" % plugin,
           k.log_tail(10))
        like(k.log(), r"defer plugin=%s hook=(?:queue|mail) code=451 enh=4\.4\.1 "
             r"ip=127\.0\.0\.1 from=<a@client\.test>" % re.escape(plugin),
             "%s: and the deferral line names the plugin" % plugin)

# ---------------------------------------------------------------- log lines
POLICY = r'''
function hook_mail(conn, txn, from)
  if from.user == "soft" then return DENYSOFT, "Greylisted" end
  if from.user == "wrong" then return DENY, { code = 250, enh = "2.0.0", msg = "queued" } end
end
'''
with Kasi(files={"config/plugins": "policy\nrcpt_to_host_list\nqueue/spool\n",
                 "plugins/policy.lua": POLICY,
                 "config/rcpt_to_host_list.yaml": "domains: [example.com]\n"}) as k:
    with Raw(k.port, banner=True) as r:
        r.cmd("EHLO client.test")
        is_(r.cmd("MAIL FROM:<soft@client.test>")[0], 450, "DENYSOFT at mail: 450")
        is_(r.cmd("MAIL FROM:<wrong@client.test>"), (550, ["5.7.1 queued"]),
            "DENY with code 250 and enh 2.0.0: 550 5.7.1")
        is_(r.cmd("MAIL FROM:bad")[0], 501, "syntax error")
        is_(r.cmd("RSET now")[0], 501, "RSET with an argument")
        r.cmd("MAIL FROM:<a@client.test>")
        is_(r.cmd("RCPT TO:<x@other.test>")[0], 550, "relaying denied")
        is_(r.cmd("RCPT TO:<y@example.com>")[0], 250, "local recipient")
        is_(r.cmd("QUIT")[0], 221, "QUIT")
    k.wait_log(r"disconnect ip=")
    log = k.log()
    rejects = re.findall(r".*\breject plugin=rcpt_to_host_list .*", log)
    is_(len(rejects), 1, "one line for the relay refusal")
    like(rejects[0] if rejects else "",
         r'reject plugin=rcpt_to_host_list hook=rcpt code=550 enh=5\.7\.1 '
         r'ip=127\.0\.0\.1 from=<a@client\.test> rcpt=<x@other\.test> msg="Relaying denied"',
         "it has plugin, hook, codes, client, sender, recipient and text")
    is_(len(re.findall(r"rcpt=<x@other\.test>", log)), 1,
        "no second line about the same refusal")
    like(log, r'defer plugin=policy hook=mail code=450 enh=4\.7\.1 ip=127\.0\.0\.1 '
         r'from=<soft@client\.test> msg="Greylisted"', "the deferral line")
    like(log, r"warn: .*plugin policy: hook_mail: code 250 does not fit DENY; enhanced code "
         r"2\.0\.0 does not fit DENY 550; replying 550 5\.7\.1",
         "a code of the wrong class is logged with the plugin's name")
    like(log, r'info: .*error code=501 enh=5\.5\.4 ip=127\.0\.0\.1 cmd="RSET now" '
         r'msg="Syntax: RSET"', "a syntax error is logged at info with the command")
    like(log, r'info: .*error code=501 .*cmd="MAIL FROM:bad"', "so is a bad MAIL")
    like(log, r"disconnect ip=127\.0\.0\.1 .* rejected=4 deferred=1 duration=\d+\.\d{3} "
         r"result=quit", "the summary counts rejections and deferrals, with the duration")

# AUTH credentials never reach the error line
AUTH_YAML = """hostname: mx.kasi.test
listen:
  - {address: "127.0.0.1:0", auth: true, auth_plaintext: true, tls: none}
spool_dir: %s
log: {target: stderr, level: debug}
"""
with Kasi(files={"config/plugins": "queue/spool\n"}, yaml="", start=False) as k:
    with open(os.path.join(k.confdir, "smtp.yaml"), "w") as f:
        f.write(AUTH_YAML % k.spool_dir)
    k.start()
    with Raw(k.port, banner=True) as r:
        r.cmd("EHLO client.test")
        r.cmd("MAIL FROM:<a@client.test>")
        is_(r.cmd("AUTH PLAIN AGFsaWNlAHNlY3JldA==")[0], 503, "AUTH in a transaction: 503")
    k.wait_log(r"disconnect ip=")
    like(k.log(), r'error code=503 .*cmd="AUTH PLAIN" ', "AUTH logged without its response")
    unlike(k.log(), r"AGFsaWNl", "the initial response is not logged")

# ---------------------------------------------------------------- syslog
if os.path.exists("/dev/log"):
    diag("a syslog socket exists here: the fallback is not tested")
else:
    with Kasi(config={"log": {"target": "syslog", "level": "info"}},
              files={"config/plugins": "queue/spool\n"}) as k:
        like(k.log(), r"warn: log\.target: syslog: no syslog socket at /dev/log, "
             r"logging to stderr", "syslog without /dev/log: a warning on stderr")
        with Raw(k.port, banner=True) as r:
            is_(r.cmd("QUIT")[0], 221, "the server runs")
        ok(k.wait_log(r"disconnect ip="), "and logs to stderr")

# ---------------------------------------------------------------- disconnect
WAITER = r'''
local P = {}
local dir
P.schema = { dir = { "string", required = true } }
function P.register(c) dir = c.dir end
function P.hook_disconnect(conn, txn)
  local ok, err = kasi.sleep(0.2)
  local f = assert(io.open(dir .. "/" .. conn.notes.name, "w"))
  f:write(conn.remote_ip, " ", tostring(conn:input_pending()), " ",
          txn and txn.mail_from.address or "-", "\n")
  f:close()
end
function P.hook_helo(conn, txn, helo) conn.notes.name = helo end
P.hook_ehlo = P.hook_helo
return P
'''
SLOW = r'''
function hook_disconnect(conn) kasi.sleep(30) end
'''
# the waiter writes files: unsafe (outside the sandbox, which has no io)
with Kasi(files={"config/plugins": "waiter unsafe\nslow timeout=0.5\nqueue/spool\n",
                 "plugins/waiter.lua": WAITER, "plugins/slow.lua": SLOW},
          start=False) as k:
    with open(os.path.join(k.confdir, "waiter.yaml"), "w") as f:
        f.write("dir: %s\n" % k.tmp)
    k.start()

    def appears(name, timeout=5):
        path = os.path.join(k.tmp, name)
        deadline = time.monotonic() + scaled(timeout)
        while time.monotonic() < deadline:
            if os.path.exists(path):
                with open(path) as f:
                    text = f.read()
                if text.endswith("\n"):        # written to its end
                    return text
            time.sleep(0.02)
        return None

    r = Raw(k.port, banner=True)
    r.cmd("EHLO dropped.test")
    r.cmd("MAIL FROM:<open@client.test>")
    r.close()                               # the client drops the connection
    got = appears("dropped.test")
    is_(got, "127.0.0.1 0 open@client.test\n",
        "a disconnect hook that waits runs to its end after the client is gone")
    ok(k.wait_log(r"plugin slow: hook_disconnect ran past its time budget"),
       "the next disconnect hook is bounded by its budget")

    with Raw(k.port, banner=True) as r:
        r.cmd("EHLO quit.test")
        is_(r.cmd("QUIT")[0], 221, "QUIT")
        ok(r.closed(), "the socket is closed at once")
    is_(appears("quit.test"), "127.0.0.1 0 -\n", "after QUIT too")

    # many clients dropping at once: each disconnect chain ends, nothing stays
    socks = [Raw(k.port, banner=True) for _ in range(20)]
    for i, r in enumerate(socks):
        r.cmd("EHLO many%d.test" % i)
    for r in socks:
        r.close()
    ok(all(appears("many%d.test" % i) for i in range(20)), "20 dropped clients: 20 files")
    ok(k.wait_count(r"plugin slow: hook_disconnect ran past", 22, timeout=10),
       "and every session ended")

    # a session whose disconnect hooks still wait when the server stops
    r = Raw(k.port, banner=True)
    r.cmd("EHLO late.test")
    r.close()
    ok(k.wait_count(r"disconnect ip=", 23), "a last client is gone")
    # leaving the block stops the server now: exit 0, nothing leaked

done()
