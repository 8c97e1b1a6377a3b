#!/usr/bin/env python3
"""The Lua helper modules of the shipped plugins (kasi.netmask, kasi.match,
kasi.domain, kasi.dnslist, kasi.throttle) are plain Lua: the cases run in luajit directly, with the
library directory on package.path, and print TAP."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LUAJIT = "/usr/bin/luajit"
if not os.access(LUAJIT, os.X_OK):
    print("1..0 # SKIP luajit not installed")
    sys.exit(0)

CASES = r'''
local n = require "kasi.netmask"
local m = require "kasi.match"
local h = require "kasi.domain"
local dl = require "kasi.dnslist"
local th = require "kasi.throttle"
local out = {}
local function t(c, name) out[#out + 1] = (c and "ok " or "not ok ") .. (#out + 1) .. " - " .. name end
  t(n.normalize("::ffff:1.2.3.4") == "1.2.3.4", "IPv4-mapped address unmapped")
  t(n.normalize("2001:0DB8:0:0:0:0:0:1") == "2001:db8::1", "IPv6 compressed")
  t(n.normalize("1:0:0:2:0:0:0:3") == "1:0:0:2::3", "longest zero run compressed")
  t(n.normalize("::") == "::" and n.normalize("1::") == "1::", ":: and 1::")
  t(n.parse("1.2.3.256") == nil and n.parse("1.2.3") == nil, "bad IPv4")
  t(n.parse("1:2:3:4:5:6:7:8:9") == nil and n.parse("1::2::3") == nil, "bad IPv6")
  t(n.parse("::ffff:1.2.3.4.5") == nil and n.parse("g::1") == nil, "bad IPv6 groups")
  t(n.same("[IPv6:2001:db8::1]", "2001:DB8:0::1"), "literal equals address")
  t(n.same("fe80::1%eth0", "fe80::1"), "zone ignored")
  local l = n.list { "192.0.2.0/24", "2001:db8::/32", "10.0.0.1", "::ffff:198.51.100.0/120" }
  t(l:match("192.0.2.77") == "192.0.2.0/24" and not l:match("192.0.3.1"), "IPv4 network")
  t(l:match("2001:db8:ffff::5") == "2001:db8::/32" and not l:match("2001:db9::5"), "IPv6 network")
  t(l:match("::ffff:10.0.0.1") == "10.0.0.1", "mapped client matches IPv4 entry")
  t(l:match("198.51.100.9") == "::ffff:198.51.100.0/120", "mapped network")
  t(n.list({ "0.0.0.0/0" }):match("8.8.8.8") and not n.list({ "0.0.0.0/0" }):match("::1"),
    "/0 matches its family only")
  t(n.list({ "192.0.2.128/25" }):match("192.0.2.200") and not n.list({ "192.0.2.128/25" }):match("192.0.2.1"),
    "odd prefix")
  t(not pcall(n.list, { "1.2.3.4/33" }) and not pcall(n.list, { "foo" }), "bad entries raise")
  t(n.is_private("10.1.2.3") and n.is_private("fd00::1") and not n.is_private("8.8.8.8"), "private")
  t(n.network("192.0.2.77", 24, 64) == "192.0.2.0/24" and n.network("192.0.2.77", 32, 64) ==
    "192.0.2.77/32", "network of an IPv4 address")
  t(n.network("2001:db8:1:2:3::9", 24, 64) == "2001:db8:1:2::/64" and
    n.network("::ffff:10.1.2.3", 16, 64) == "10.1.0.0/16", "network of IPv6 and mapped addresses")
  t(n.network("10.9.8.7", 0, 0) == "0.0.0.0/0" and n.network("x", 24, 64) == nil,
    "network /0, not an address")
  local ml = m.list { "Mail.Example.com", "*.example.net", "~^dsl%d+%.", "a?c.test" }
  t(ml:match("mail.example.COM") == "Mail.Example.com", "exact, any case")
  t(ml:match("a.b.example.net") == "*.example.net", "glob")
  t(not ml:match("example.net") and not ml:match("xexample.net"), "glob needs the dot")
  t(ml:match("dsl12.foo") == "~^dsl%d+%.", "Lua pattern")
  t(ml:match("abc.test") and not ml:match("abbc.test"), "? is one character")
  t(not pcall(m.list, { "~[" }), "bad pattern raises")
  t(h.is_fqdn("mx.example.com") and not h.is_fqdn("mx") and not h.is_fqdn("1.2.3.4"), "fqdn")
  t(not h.is_domain("a_b.com") and not h.is_domain("-a.com") and not h.is_domain("a-.com"), "bad labels")
  t(not h.is_domain("a..com") and h.is_domain("example.com."), "empty label, root dot")
  t(not h.is_domain(string.rep("a", 64) .. ".com"), "label over 63")
  t(h.literal("[1.2.3.4]") == "1.2.3.4" and h.literal("[IPv6:::1]") == "::1", "literals")
  t(h.literal("[::1]") == nil and h.literal("[1.2.3]") == nil, "bad literals")
  local d = dl.codes(nil)
  t(dl.counts(d, "127.0.0.2") and dl.counts(d, "127.0.10.0") and dl.counts(d, "127.1.2.3"),
    "dnslist default: listings in 127/8 count")
  t(not dl.counts(d, "127.0.0.255") and not dl.counts(d, "127.255.255.254") and
    not dl.counts(d, "127.255.255.0"), "dnslist default: the lists' error codes do not")
  t(not dl.counts(d, "10.0.0.2") and not dl.counts(d, "::1") and not dl.counts(d, "x"),
    "dnslist default: nothing outside 127/8")
  local c = dl.codes { "127.0.0.2", " 127.0.5.2 - 127.0.5.3 " }
  t(dl.counts(c, "127.0.0.2") and dl.counts(c, "127.0.5.3") and not dl.counts(c, "127.0.5.1")
    and not dl.counts(c, "127.0.0.3"), "dnslist codes: addresses and ranges")
  t(dl.CODE.check("127.0.0.1-127.0.0.9") and not dl.CODE.check("127.0.0.9-127.0.0.1") and
    not dl.CODE.check("127.0.0") and not dl.CODE.check("::1"), "dnslist: the code check")
  local o = th.new(10)
  t(o:ready(100) == 0 and o:ready(101) == nil and o:ready(109) == nil, "throttle: the first passes, then quiet")
  t(o:ready(110) == 2 and o:ready(115) == nil and o:ready(120) == 1, "throttle: one per period, the quiet counted")
  t(th.more(0) == "" and th.more(3) == " (3 more since the last line)", "throttle: the suffix")
for _, line in ipairs(out) do print(line) end
print("1.." .. #out)
'''

p = subprocess.run([LUAJIT, "-e", "package.path = %r" % (os.path.join(ROOT, "lua", "?.lua") + ";;"),
                    "-"], input=CASES, capture_output=True, text=True, timeout=60)
sys.stdout.write(p.stdout)
if p.returncode != 0 or p.stderr:
    print("not ok - luajit failed: %s" % p.stderr.replace("\n", " "))
    sys.exit(1)
sys.exit(1 if "not ok" in p.stdout else 0)
