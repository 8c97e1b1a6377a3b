#!/usr/bin/env python3
"""The reply contract, table-driven: every hook x every answer (OK, DENY,
DENYSOFT, DENYDISCONNECT, DISCONNECT, NEXT, nothing, 42, "yes") x a custom
reply (none, 250, 550, 451, 354, 999, "abc", enh 2.0.0 / 9.9.9, 550 with
2.0.0, 250 with 4.3.0, a text with CR/LF and a forged reply line, a 10 KB
text). For each case: every reply line is well formed and bounded; DENY is
heard as 5xx, DENYSOFT and unknown answers as 4xx, OK as 2xx (354 at DATA);
a fitting custom code is used; the connection closes exactly when the
answer says so; 2xx to the end of DATA only when the message is in the
spool exactly once; after DATA the session is in command mode unless it
said 354, and a message body full of SMTP commands is never executed.

One server runs every case; the plugin reads the case from the client's
source address (127.1.x.y), so cases run concurrently."""
import base64
import os
import re
import sys
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kasitest import *  # noqa: E402,F401,F403

HOOKS = ["connect", "helo", "ehlo", "auth", "mail", "rcpt", "rcpt_ok", "data",
         "data_post", "queue", "queue_ok", "rset", "quit", "unrecognized_command"]
ANSWERS = ["OK", "DENY", "DENYSOFT", "DENYDISCONNECT", "DISCONNECT", "NEXT",
           "nothing", "42", "yes"]
CUSTOMS = [
    ("none", None),
    ("250", "{ code = 250 }"),
    ("550", "{ code = 550 }"),
    ("451", "{ code = 451 }"),
    ("354", "{ code = 354 }"),
    ("999", "{ code = 999 }"),
    ("abc", '{ code = "abc" }'),
    ("enh 2.0.0", '{ enh = "2.0.0" }'),
    ("enh 9.9.9", '{ enh = "9.9.9" }'),
    ("550 2.0.0", '{ code = 550, enh = "2.0.0" }'),
    ("250 4.3.0", '{ code = 250, enh = "4.3.0", msg = "queued" }'),
    ("crlf", r'{ msg = "one\r\ntwo\nthree\rRSET\r\n250 2.0.0 forged" }'),
    ("10k", '{ msg = string.rep("x", 10240) }'),
]
RC_LUA = {"nothing": "nil", "42": "42", "yes": '"yes"'}

# what the client must hear: a code, or a class digit (2, 4, 5)
ACCEPT = {"connect": 220, "helo": 250, "ehlo": 250, "auth": 235, "mail": 250,
          "rcpt": 250, "data": 354, "data_post": 250, "queue": 250,
          "unrecognized_command": 2}
NEXT_DEFAULT = dict(ACCEPT, auth=535, unrecognized_command=500)
AFTER = ("rcpt_ok", "queue_ok")   # after the 250: only disconnects act

# A message whose body is an SMTP dialogue: in data mode it is just text.
EVIL = (b"Subject: commands\r\n\r\nRSET\r\nMAIL FROM:<forged@evil.test>\r\n"
        b"RCPT TO:<victim@example.test>\r\nDATA\r\nSubject: forged\r\n\r\nforged\r\n.\r\n")


def build_cases():
    cases = []
    for hook in HOOKS:
        for ans in ANSWERS:
            for cname, clua in CUSTOMS:
                if ans == "nothing" and clua:
                    continue
                cases.append((hook, ans, cname, clua))
    return cases


CASES = build_cases()


def plugin_source():
    rows = []
    for i, (hook, ans, _, clua) in enumerate(CASES, 1):
        rc = RC_LUA.get(ans, "kasi." + ans)
        rows.append('  [%d] = { hook = "%s", nothing = %s, rc = %s, custom = %s },'
                    % (i, hook, "true" if ans == "nothing" else "false", rc, clua or "nil"))
    return r'''
local CASES = {
%s
}
local P = {}
local function case_of(conn)
  local a, b = conn.remote_ip:match("^127%%.1%%.(%%d+)%%.(%%d+)$")
  return a and CASES[tonumber(a) * 256 + tonumber(b)]
end
for _, h in ipairs { "connect", "helo", "ehlo", "auth", "mail", "rcpt", "rcpt_ok",
                     "data", "data_post", "queue", "queue_ok", "rset", "quit",
                     "unrecognized_command" } do
  P["hook_" .. h] = function(conn, txn, arg)
    local c = case_of(conn)
    if not c or c.hook ~= h then return NEXT end
    -- a forged transaction run from a message body would pass unhindered
    if txn and txn.mail_from and txn.mail_from.address == "forged@evil.test" then return NEXT end
    if c.nothing then return end
    -- a queue plugin that says OK has stored the message
    if h == "queue" and c.rc == OK then assert(kasi.spool.write(txn)) end
    if c.custom then return c.rc, c.custom end
    return c.rc
  end
end
return P
''' % "\n".join(rows)


def source_of(i):
    return "127.1.%d.%d" % (i // 256, i % 256)


def read_reply(r, timeout=5):
    """One reply, checked line by line: (code, lines, problems)."""
    lines, code, problems = [], None, []
    while True:
        line = r.read_line(timeout)
        if line is None:
            return None, lines, problems
        if len(line.encode("utf-8", "surrogateescape")) + 2 > 512:
            problems.append("a line of %d bytes" % (len(line) + 2))
        m = re.match(r"^(\d{3})([ -])(.*)$", line)
        if not m:
            problems.append("malformed line %r" % line[:60])
            return None, lines, problems
        if code is not None and int(m.group(1)) != code:
            problems.append("code changes inside a reply: %r" % line[:60])
        code = int(m.group(1))
        lines.append(m.group(3))
        if m.group(2) == " ":
            break
    if len(lines) > 40:
        problems.append("%d lines" % len(lines))
    for t in lines:
        e = re.match(r"^(\d+)\.\d+\.\d+(?: |$)", t)
        if e and int(e.group(1)) != code // 100:
            problems.append("enhanced code %s with %d" % (t.split(" ")[0], code))
    return code, lines, problems


def expect(hook, ans):
    """(want, closes, after): the main reply, whether the answer closes the
    connection, and for after-the-fact hooks the class of the extra reply."""
    if hook == "quit":
        return 221, True, None
    disconnect = {"DISCONNECT": 4, "DENYDISCONNECT": 5}.get(ans)
    if hook in AFTER:
        return 250, disconnect is not None, disconnect
    if hook == "rset":
        return (disconnect or 250), disconnect is not None, None
    refusal_closes = hook == "connect"
    if ans == "OK":
        return ACCEPT[hook], False, None
    if ans in ("NEXT", "nothing"):
        return NEXT_DEFAULT[hook], False, None
    if ans == "DENY":
        return 5, refusal_closes, None
    if disconnect:
        return disconnect, True, None
    return 4, refusal_closes, None      # DENYSOFT, 42, "yes"


def fits(code, want):
    return code is not None and (code // 100 == want if want < 10 else code == want)


class Run:
    """What one case's client saw."""

    def __init__(self):
        self.main = None            # (code, lines) of the reply under test
        self.after = None           # the extra reply of rcpt_ok / queue_ok
        self.problems = []
        self.closed = None
        self.heard_250 = False      # 2xx to the end of DATA
        self.command_mode = None    # NOOP answered 250 after the main reply


def step(run, r, line=None, data=None, timeout=5):
    if line is not None:
        r.send(line + "\r\n")
    if data is not None:
        r.send(data)
    code, lines, problems = read_reply(r, timeout)
    run.problems += problems
    return code, lines


def message(run, r, sender):
    """MAIL, RCPT, DATA and the body; returns the DATA and end replies."""
    step(run, r, "MAIL FROM:<%s>" % sender)
    step(run, r, "RCPT TO:<r@example.test>")
    data = step(run, r, "DATA")
    if data[0] != 354:
        return data, None
    end = step(run, r, data=EVIL)
    run.heard_250 = end[0] is not None and end[0] // 100 == 2
    return data, end


def dialogue(port, i, hook):
    run = Run()
    sender = "c%d@client.test" % i
    r = Raw(port, source=source_of(i))
    try:
        run.main = step(run, r)                            # the banner
        if hook != "connect" and run.main[0] == 220:
            verb = "HELO" if hook == "helo" else "EHLO"
            run.main = step(run, r, "%s c%d.test" % (verb, i))
            if hook == "auth":
                cred = base64.b64encode(b"\0user\0password").decode()
                run.main = step(run, r, "AUTH PLAIN " + cred, timeout=15)
            elif hook == "mail":
                run.main = step(run, r, "MAIL FROM:<%s>" % sender)
            elif hook in ("rcpt", "rcpt_ok"):
                step(run, r, "MAIL FROM:<%s>" % sender)
                run.main = step(run, r, "RCPT TO:<r@example.test>")
            elif hook == "data":
                run.main, _ = message(run, r, sender)
            elif hook in ("data_post", "queue", "queue_ok"):
                _, run.main = message(run, r, sender)
                run.main = run.main or (None, [])
            elif hook == "rset":
                step(run, r, "MAIL FROM:<%s>" % sender)
                run.main = step(run, r, "RSET")
            elif hook == "quit":
                run.main = step(run, r, "QUIT")
            elif hook == "unrecognized_command":
                run.main = step(run, r, "XCASE %d" % i)
        _, closes, after = expect(hook, CASES[i - 1][1])
        if after:
            run.after = step(run, r)
        if closes:
            run.closed = r.closed(timeout=5)
        else:
            r.send("NOOP\r\n")
            noop = read_reply(r)
            run.command_mode = noop[:2] == (250, ["2.0.0 Ok"])
            run.closed = False
    finally:
        r.close()
    return run


def check(i, run):
    """What is wrong with case i (empty: nothing)."""
    hook, ans, cname, _ = CASES[i - 1]
    want, closes, after = expect(hook, ans)
    bad = list(run.problems)
    code = run.main[0] if run.main else None
    if not fits(code, want):
        bad.append("heard %r, want %s" % (run.main, want if want > 10 else "%dxx" % want))
    if ans in ("DENY", "DENYSOFT", "DENYDISCONNECT", "DISCONNECT") and \
            cname in ("550", "550 2.0.0", "451") and want in (4, 5) and \
            int(cname[:3]) // 100 == want and code != int(cname[:3]):
        bad.append("custom code %s fits but %r was sent" % (cname[:3], code))
    if after and not (run.after and fits(run.after[0], after)):
        bad.append("after the 250: %r, want %dxx" % (run.after, after))
    if closes and not run.closed:
        bad.append("not closed")
    if not closes and not run.command_mode:
        bad.append("no NOOP 250 afterwards (not in command mode, or stray replies)")
    if any(re.match(r"^9\.", t) for t in (run.main[1] if run.main else [])):
        bad.append("enhanced code 9.x.x sent")
    return bad


with Kasi(files={"config/plugins": "case\nqueue/spool\n",
                 "plugins/case.lua": plugin_source()},
          yaml="", start=False) as k:    # raw smtp.yaml: written below
    with open(os.path.join(k.confdir, "smtp.yaml"), "w") as f:
        f.write("hostname: mx.kasi.test\n"
                "listen:\n  - {address: \"127.0.0.1:0\", auth: true, auth_plaintext: true,"
                " tls: none}\n"
                "limits: {max_connections: 2000, max_connections_per_ip: 0}\n"
                "auth: {max_failures_per_ip: 0}\n"
                "spool_dir: %s\nlog: {target: stderr, level: info}\n" % k.spool_dir)
    k.start()
    ids = range(1, len(CASES) + 1)
    with ThreadPoolExecutor(max_workers=16) as pool:
        runs = dict(zip(ids, pool.map(lambda i: dialogue(k.port, i, CASES[i - 1][0]), ids)))

    spooled = {}
    forged = 0
    for m in k.spool():
        frm = m.env.get("mail_from", "")
        spooled[frm] = spooled.get(frm, 0) + 1
        forged += frm == "forged@evil.test"
    for i in ids:
        n = spooled.get("c%d@client.test" % i, 0)
        if n != (1 if runs[i].heard_250 else 0):
            runs[i].problems.append("heard 250 to DATA: %s, in the spool %d times"
                                    % (runs[i].heard_250, n))

    for hook in HOOKS:
        failures = []
        for i in ids:
            if CASES[i - 1][0] != hook:
                continue
            for why in check(i, runs[i]):
                failures.append("%s %s %s: %s" % (hook, CASES[i - 1][1], CASES[i - 1][2], why))
        n = sum(1 for c in CASES if c[0] == hook)
        ok(not failures, "%s: %d answers x custom replies keep the contract" % (hook, n),
           *failures[:15])
    is_(forged, 0, "no message body was ever run as SMTP commands")
    is_(sum(1 for i in ids if runs[i].heard_250), sum(spooled.get("c%d@client.test" % i, 0)
        for i in ids), "every 250 to DATA is one spooled message")
    for hook in ("rcpt", "queue", "data"):
        like(k.log(), r"warn: .*plugin case: hook_%s: code 250 does not fit DENY" % hook,
             "a wrong code at %s is logged with the plugin's name" % hook)
    like(k.log(), r"plugin case: hook_mail failed: it returned 42, an unknown answer value: "
         r"a temporary failure", "an unknown answer is logged")

done()
