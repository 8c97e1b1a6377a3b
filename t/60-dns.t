#!/usr/bin/env python3
# kasi.dns against a real DNS server (dnsmasq) on loopback: every record
# type, NXDOMAIN / NODATA / timeout told apart, parallel queries, the
# client's forward-confirmed reverse DNS, and a hook that waits on a server
# that never answers while 100 other sessions complete.
import os
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kasitest import *
from kasinet import Dns

PLUGIN = r'''
local P = {}

local function ser(ans)
  local out = {}
  for _, x in ipairs(ans) do
    if type(x) == "table" then x = x.preference .. " " .. x.exchange end
    out[#out + 1] = x
  end
  return table.concat(out, ",")
end

local function show(ans, err)
  if ans then return "ans " .. ser(ans) end
  return "err " .. tostring(err)
end

function P.hook_unrecognized_command(conn, txn, line)
  local words = {}
  for w in line:gmatch("%S+") do words[#words + 1] = w end
  local cmd = words[1]
  if cmd == "DNSQ" then
    return OK, show(kasi.dns.query(words[3], words[2]))
  elseif cmd == "PTR" then
    return OK, show(kasi.dns.ptr(words[2]))
  elseif cmd == "REV" then
    return OK, tostring(kasi.dns.reverse(words[2], words[3]))
  elseif cmd == "MANY" then
    local qs = {}
    for i = 2, #words, 2 do qs[#qs + 1] = { words[i + 1], words[i] } end
    local res = kasi.dns.query_many(qs)
    local out = {}
    for i, r in ipairs(res) do
      out[i] = r.name .. "/" .. r.type .. "=" .. show(r.answers, r.err)
    end
    return OK, table.concat(out, " ; ")
  elseif cmd == "RDNS" then
    local name, confirmed = kasi.dns.rdns(conn)
    return OK, tostring(name) .. " " .. tostring(confirmed) .. " " .. tostring(conn.rdns)
  end
  return NEXT
end

return P
'''


def files(dns, **kw):
    return {"config/plugins": "t_dns\n", "plugins/t_dns.lua": PLUGIN,
            "config/dns.yaml": dns.dns_yaml(**kw)}


def ask(r, line, timeout=10):
    code, lines = r.cmd(line, timeout=timeout)
    text = " ".join(lines)
    if text.startswith("2.0.0 "):
        text = text[6:]
    return text if code == 250 else "code %r %r" % (code, lines)


with Dns() as dns:
    with Kasi(files=files(dns)) as k:
        with Raw(k.port, ehlo="client.test") as r:
            is_(ask(r, "DNSQ A client1.test"), "ans 127.0.0.1", "A")
            is_(ask(r, "DNSQ AAAA mail.example.test"), "ans 2001:db8::1", "AAAA")
            is_(ask(r, "DNSQ MX example.test"),
                "ans 5 mx0.example.test,10 mail.example.test",
                "MX sorted by preference")
            like(ask(r, "DNSQ TXT txt.test"), r"^ans (v=spf1 -all,second record|second record,v=spf1 -all)$",
                 "TXT, two records")
            is_(ask(r, "DNSQ PTR 1.0.0.127.in-addr.arpa"), "ans client1.test", "PTR")
            is_(ask(r, "PTR 127.0.0.2"), "ans liar.test", "kasi.dns.ptr")
            is_(ask(r, "DNSQ A nope.test"), "err NXDOMAIN", "NXDOMAIN")
            is_(ask(r, "DNSQ AAAA aonly.test"), "err NODATA", "NODATA")
            is_(ask(r, "DNSQ A client1.test"), "ans 127.0.0.1", "A again (cache)")
            t0 = time.monotonic()
            is_(ask(r, "DNSQ A x.slow.test"), "err timeout", "timeout")
            took = time.monotonic() - t0
            ok(0.8 < took < scaled(2.5), "timeout after about 1 s (%.2f s)" % took)
            is_(ask(r, "REV 127.0.0.2 bl.test"), "2.0.0.127.bl.test", "reverse IPv4")
            is_(ask(r, "REV ::1 bl.test"),
                "1" + ".0" * 31 + ".bl.test", "reverse IPv6 nibbles")
            is_(ask(r, "REV 2001:db8::1"),
                "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa",
                "reverse IPv6 ip6.arpa")
            is_(ask(r, "REV nonsense"), "nil", "reverse of a non-address")
            t0 = time.monotonic()
            got = ask(r, "MANY A client1.test A y.slow.test MX example.test A nope.test")
            took = time.monotonic() - t0
            is_(got, "client1.test/A=ans 127.0.0.1 ; y.slow.test/A=err timeout ; "
                "example.test/MX=ans 5 mx0.example.test,10 mail.example.test ; "
                "nope.test/A=err NXDOMAIN", "query_many: all results in order")
            ok(took < scaled(2.5), "query_many runs in parallel (%.2f s)" % took)
            is_(ask(r, "RDNS"), "client1.test true client1.test",
                "rdns of 127.0.0.1: forward-confirmed")
        with Raw(k.port, ehlo="client.test", source="127.0.0.2") as r:
            is_(ask(r, "RDNS"), "liar.test false liar.test",
                "rdns of 127.0.0.2: PTR without a matching A")
        with Raw(k.port, ehlo="client.test", source="127.0.0.5") as r:
            is_(ask(r, "RDNS"), "nil false nil", "rdns of 127.0.0.5: none")

        # a hook waiting on the black hole does not slow anyone else down
        slow = Raw(k.port, ehlo="client.test")
        slow.send("DNSQ A z.slow.test\r\n")
        results = []

        def one():
            try:
                with Raw(k.port, timeout=10) as c:
                    c.read_reply()
                    c.cmd("EHLO c.test")
                    results.append(c.cmd("NOOP")[0])
                    c.cmd("QUIT")
            except OSError as e:
                results.append(repr(e))

        t0 = time.monotonic()
        threads = [threading.Thread(target=one) for _ in range(100)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        took = time.monotonic() - t0
        is_(results.count(250), 100, "100 sessions complete while a hook waits")
        ok(took < scaled(5), "... quickly (%.2f s)" % took)
        code, lines = slow.read_reply(timeout=10)
        is_((code, lines), (250, ["2.0.0 err timeout"]), "the waiting hook gets its timeout")
        slow.close()

        # a session closed while its hook waits on DNS: no crash, no leak
        asked = k.count_log(r"< DNSQ A w\.slow\.test")
        gone = k.count_log(r"\] disconnect ")
        for i in range(5):
            c = Raw(k.port, ehlo="client.test")
            c.send("DNSQ A w.slow.test\r\n")
            k.wait_count(r"< DNSQ A w\.slow\.test", asked + i + 1)
            c.close()
        ok(k.wait_count(r"\] disconnect ", gone + 5),
           "5 sessions closed while their hooks wait on DNS")
        with Raw(k.port, ehlo="client.test") as r:
            is_(ask(r, "DNSQ A client1.test"), "ans 127.0.0.1", "still serving")

    # the resolver's server does not answer at all: no delay to the banner
    bh_files = files(dns)
    bh_files["config/dns.yaml"] = ("servers: [\"127.0.0.1:%d\"]\ntimeout: 1\n"
                                   "tries: 1\nrdns_timeout: 3\n" % dns.bh.port)
    with Kasi(files=bh_files) as k:
        t0 = time.monotonic()
        with Raw(k.port, banner=True) as r:
            ok(time.monotonic() - t0 < scaled(0.5), "banner not delayed by rDNS")
            r.cmd("EHLO client.test")
            t0 = time.monotonic()
            is_(ask(r, "RDNS"), "nil false nil", "rdns gives up")
            ok(time.monotonic() - t0 < scaled(3.5), "within rdns_timeout")

done()
