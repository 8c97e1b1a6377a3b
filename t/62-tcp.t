#!/usr/bin/env python3
# kasi.tcp against a line echo server on loopback: a line, N bytes, until
# close, a timeout, connection refused, a host name (DNS and /etc/hosts),
# a UNIX socket,
# streaming the message with send_message, and sessions that go away while
# their hook waits on a socket.
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kasitest import *
from kasinet import Dns, Echo, free_port

PLUGIN = r'''
local P = {}

local function q(s)
  if not s then return "nil" end
  return '"' .. s:gsub("\r", "\\r"):gsub("\n", "\\n") .. '"'
end

local function connect(host, port, t)
  if host:sub(1, 1) == "/" then return kasi.tcp.connect(host, { timeout = t or 2 }) end
  return kasi.tcp.connect(host, tonumber(port), { timeout = t or 2 })
end

function P.hook_unrecognized_command(conn, txn, line)
  local w = {}
  for x in line:gmatch("%S+") do w[#w + 1] = x end
  if w[1] ~= "TCP" then return NEXT end
  local what, host, port = w[2], w[3], w[4]
  local s, err = connect(host, port)
  if not s then return OK, "connect " .. tostring(err) end
  local out
  if what == "LINE" then
    assert(s:send("hello there\r\n") == 13)
    local l, e = s:receive("*l")
    out = "line " .. q(l) .. " " .. tostring(e)
  elseif what == "N" then
    s:send("BLOB 100000\r\n")
    local d = s:receive(100000)
    local crlf = s:receive("*l")
    local tail = s:receive("*l")
    out = "n " .. #d .. " " .. d:sub(1, 3) .. " " .. q(crlf) .. " " .. q(tail)
  elseif what == "ALL" then
    s:send("one\r\ntwo\r\nBYE\r\n")
    local d, e = s:receive("*a")
    local again, e2 = s:receive("*l")
    out = "all " .. q(d) .. " " .. tostring(e) .. " " .. tostring(again) .. " " .. tostring(e2)
  elseif what == "TIMEOUT" then
    s:settimeout(0.5)
    s:send("HUSH\r\n")
    local d, e = s:receive("*l")
    out = "timeout " .. tostring(d) .. " " .. tostring(e)
  elseif what == "HOLD" then
    s:settimeout(30)
    s:send("HUSH\r\n")
    s:receive("*l")
    out = "held"
  end
  s:close()
  local ok2, e3 = s:send("x")
  return OK, out .. " | after close: " .. tostring(ok2) .. " " .. tostring(e3)
end

function P.hook_data_post(conn, txn)
  local port = txn:header("X-Echo-Port")
  local s, err = kasi.tcp.connect("127.0.0.1", tonumber(port), { timeout = 2 })
  if not s then return DENYSOFT, "connect " .. tostring(err) end
  s:send("HUSH\r\n")
  local n, e = s:send_message(txn)
  s:close()
  if not n then return DENYSOFT, "send_message " .. tostring(e) end
  txn:add_header("X-Sent", tostring(n) .. "/" .. tostring(txn.size))
  return NEXT
end

return P
'''


def ask(r, line, timeout=10):
    code, lines = r.cmd(line, timeout=timeout)
    text = " ".join(lines)
    if text.startswith("2.0.0 "):
        text = text[6:]
    return text if code == 250 else "code %r %r" % (code, lines)


sockdir = tempfile.mkdtemp(prefix="kasi-sock-")
upath = os.path.join(sockdir, "echo.sock")
with Dns() as dns, Echo() as echo, Echo(unix_path=upath) as uecho:
    files = {"config/plugins": "t_tcp\nqueue/spool\n", "plugins/t_tcp.lua": PLUGIN,
             "config/dns.yaml": dns.dns_yaml()}
    with Kasi(config={"timeouts": {"shutdown": 1}}, files=files) as k:
        p = echo.port
        with Raw(k.port, ehlo="c.test") as r:
            is_(ask(r, "TCP LINE 127.0.0.1 %d" % p),
                'line "hello there" nil | after close: nil closed', "a line")
            is_(ask(r, "TCP N 127.0.0.1 %d" % p), 'n 100000 xxx "" "end" | after close: nil closed',
                "N bytes, then lines")
            is_(ask(r, "TCP ALL 127.0.0.1 %d" % p),
                r'all "one\r\ntwo\r\nbye\r\n" nil nil closed | after close: nil closed',
                "until close")
            t0 = time.monotonic()
            is_(ask(r, "TCP TIMEOUT 127.0.0.1 %d" % p),
                "timeout nil timeout | after close: nil closed", "receive timeout")
            ok(time.monotonic() - t0 > 0.4, "... not before 0.5 s")
            closed = free_port()
            like(ask(r, "TCP LINE 127.0.0.1 %d" % closed), r"^connect .*[Rr]efused",
                 "connection refused -> nil, err")
            is_(ask(r, "TCP LINE client1.test %d" % p),
                'line "hello there" nil | after close: nil closed', "connect by host name")
            like(ask(r, "TCP LINE nope.test %d" % p), r"^connect cannot resolve nope\.test: NXDOMAIN",
                 "unknown host name")
            is_(ask(r, "TCP LINE localhost %d" % p),
                'line "hello there" nil | after close: nil closed',
                "a name from /etc/hosts (the resolver reads it like getaddrinfo)")
            is_(ask(r, "TCP LINE %s 0" % upath),
                'line "hello there" nil | after close: nil closed', "UNIX socket")
            like(ask(r, "TCP LINE /nonexistent/sock 0"), r"^connect .*No such file",
                 "missing UNIX socket")

        # stream a 3 MB message through send_message
        body = b"".join(b"line %07d of the message, some padding to make it longer\r\n" % i
                        for i in range(50000))
        msg = b"X-Echo-Port: %d\r\nSubject: big\r\n\r\n" % p + body
        before = len(echo.received)
        res = send_message(k.port, "a@example.test", ["b@mx.kasi.test"], msg)
        is_(res[0], 250, "message with send_message accepted")
        spooled = k.wait_spool(1)
        ok(len(spooled) == 1, "spooled")
        if spooled:
            eml = spooled[0].eml
            m = re.search(rb"X-Sent: (\d+)/(\d+)", eml)
            ok(m and m.group(1) == m.group(2), "send_message sent txn.size bytes")
            deadline = time.monotonic() + scaled(5)
            while time.monotonic() < deadline:
                got = b"".join(echo.received[before:])
                if len(got) >= int(m.group(1)) + 6:
                    break
                time.sleep(0.05)
            got = b"".join(echo.received[before:])
            ok(got.startswith(b"HUSH\r\n"), "echo server got the command first")
            sent = got[6:]
            is_(len(sent), int(m.group(1)), "... then every byte of the message")
            ok(sent.endswith(body) and b"Subject: big\r\n" in sent,
               "... headers and the exact body")

        # sessions that end while their hook waits on a socket
        conns_before = echo.conns
        closed_before = echo.closed
        for _ in range(10):
            c = Raw(k.port)
            c.read_reply()
            c.send("EHLO c.test\r\nTCP HOLD 127.0.0.1 %d\r\n" % p)
            c.read_reply()
            time.sleep(0.05)
            c.close()
        deadline = time.monotonic() + scaled(5)
        while time.monotonic() < deadline and echo.closed - closed_before < 10:
            time.sleep(0.05)
        is_(echo.conns - conns_before, 10, "10 sockets opened by waiting hooks")
        is_(echo.closed - closed_before, 10, "... all closed when their sessions went away")
        with Raw(k.port, ehlo="c.test") as r:
            is_(ask(r, "TCP LINE 127.0.0.1 %d" % p),
                'line "hello there" nil | after close: nil closed', "still serving")
        # the server stops while a hook waits on a socket
        c = Raw(k.port)
        c.read_reply()
        c.send("EHLO c.test\r\nTCP HOLD 127.0.0.1 %d\r\n" % p)
        c.read_reply()
        time.sleep(0.1)
    c.close()
try:
    os.unlink(upath)
    os.rmdir(sockdir)
except OSError:
    pass
done()
