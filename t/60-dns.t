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
            ok(took > 0.8, "  not before the 1 s timeout (%.2f s)" % took)
            is_(ask(r, "REV 127.0.0.2 bl.test"), "2.0.0.127.bl.test", "reverse IPv4")
            is_(ask(r, "REV ::1 bl.test"),
                "1" + ".0" * 31 + ".bl.test", "reverse IPv6 nibbles")
            is_(ask(r, "REV 2001:db8::1"),
                "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa",
                "reverse IPv6 ip6.arpa")
            is_(ask(r, "REV nonsense"), "nil", "reverse of a non-address")
            got = ask(r, "MANY A client1.test A y.slow.test MX example.test A nope.test")
            is_(got, "client1.test/A=ans 127.0.0.1 ; y.slow.test/A=err timeout ; "
                "example.test/MX=ans 5 mx0.example.test,10 mail.example.test ; "
                "nope.test/A=err NXDOMAIN", "query_many: all results in order")
            # the gate answers only once it holds both names: queries sent
            # one after another would leave the first to time out
            dns.gate.reset(need=2)
            is_(ask(r, "MANY A one.gate.test A two.gate.test"),
                "one.gate.test/A=ans 192.0.2.99 ; two.gate.test/A=ans 192.0.2.99",
                "query_many sends its queries together")
            is_(ask(r, "RDNS"), "client1.test true client1.test",
                "rdns of 127.0.0.1: forward-confirmed")
        with Raw(k.port, ehlo="client.test", source="127.0.0.2") as r:
            is_(ask(r, "RDNS"), "liar.test false liar.test",
                "rdns of 127.0.0.2: PTR without a matching A")
        with Raw(k.port, ehlo="client.test", source="127.0.0.5") as r:
            is_(ask(r, "RDNS"), "nil false nil", "rdns of 127.0.0.5: none")

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

    # a hook waiting on DNS does not slow anyone else down: it waits on the
    # gate (and a 90 s resolver timeout) until the 100 others are done
    with Kasi(files=files(dns, timeout=90)) as k:
        dns.gate.reset()
        slow = Raw(k.port, ehlo="client.test")
        slow.send("DNSQ A z.gate.test\r\n")
        ok(dns.gate.wait_held(1, scaled(10)), "a hook waits on the gate")
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

        threads = [threading.Thread(target=one) for _ in range(100)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        is_(results.count(250), 100, "100 sessions complete while a hook waits")
        is_(slow.read_reply(timeout=0.05)[0], None, "  and that hook is still waiting")
        dns.gate.open()
        code, lines = slow.read_reply(timeout=10)
        is_((code, lines), (250, ["2.0.0 ans 192.0.2.99"]), "then it gets its answer")
        slow.close()

    # the resolver's server does not answer at all: no delay to the banner
    # (first with a resolver that would wait 90 s: a banner within the 10 s
    # wait was not held for rDNS; then rDNS itself gives up)
    def bh_files(timeout, rdns_timeout):
        f = files(dns)
        f["config/dns.yaml"] = ("servers: [\"127.0.0.1:%d\"]\ntimeout: %d\n"
                                "tries: 1\nrdns_timeout: %d\n"
                                % (dns.bh.port, timeout, rdns_timeout))
        return f
    with Kasi(files=bh_files(90, 90)) as k:
        with Raw(k.port, banner=False, timeout=10) as r:
            is_(r.read_reply(timeout=10)[0], 220, "banner not delayed by rDNS")
    with Kasi(files=bh_files(1, 3)) as k:
        with Raw(k.port, ehlo="client.test") as r:
            is_(ask(r, "RDNS"), "nil false nil", "rdns gives up")

done()
