#!/usr/bin/env python3
"""Strict plugin configuration and the plugin sandbox: the schema checker
(kasi.schema) run by luajit on its own; for every shipped plugin a
mistyped key and a value of the wrong type in its shipped YAML, each
refused by kasi -t with the exact "file:LINE: key: why" and exit 1; a
SIGHUP with a bad plugin YAML (and a bad lua.yaml) keeps the old
generation serving and logs file:line; strict dns.yaml and lua.yaml; the
sandbox (no io, os.execute, debug, ffi, C modules; loadfile only inside
the plugin directories) and `unsafe`."""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kasitest import *  # noqa: E402,F401,F403

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TMPDIRS = []

# ------------------------------------------------------------------ the checker alone

CHECKER = r'''
package.path = REPO .. "/lua/?.lua"
kasi = { config_dir = "/nonexistent" }
local S = require "kasi.schema"
local function case(name, spec, cfg, lines, want_line, want)
  local out, line, msg = S.check(spec, cfg, lines)
  local got = out and "ok" or (line .. " " .. msg)
  local expect = want_line and (want_line .. " " .. want) or "ok"
  if got == expect then print("ok " .. name)
  else print("not ok " .. name .. " | got: " .. got .. " | want: " .. expect) end
  return out
end
local SPEC = {
  port = { "integer", min = 1, max = 65535, default = 783 },
  ratio = { "number", min = 0, max = 1 },
  name = { "string" },
  flag = { "boolean", default = false },
  mode = { "enum", values = { "reject", "note", "off" }, default = "reject" },
  ips = { "list", of = "cidr", default = {} },
  hosts = { "list", of = "ip", min = 1 },
  names = { "list", of = "name" },
  pats = { "list", of = "pattern" },
  checks = { "map", keys = { fqdn = { "enum", values = { "on", "off" }, default = "on" } },
             default = {} },
  routes = { "map", of = { "map", keys = { host = { "string", required = true },
                                          port = { "integer" } } } },
  zone = { "map", scalar = "zone", keys = { zone = { "string" }, txt = { "boolean", default = true } } },
  reply = { "reply", default = { code = 550, enh = "5.7.1", message = "No" } },
  sep = { "string", check = function(v) return #v == 1, "one character" end },
}
local function top(keys) return { "map", keys = keys, renamed = { code = "reply.code" } } end
local T = top(SPEC)

local out = case("empty config: defaults", T, {}, nil)
print((out.port == 783 and out.flag == false and out.mode == "reject" and #out.ips == 0
       and out.checks.fqdn == "on" and out.reply.code == 550 and out.reply.enh == "5.7.1"
       and out.reply.message == "No" and out.name == nil and out.routes == nil)
      and "ok defaults filled in" or "not ok defaults filled in")
local c = { port = 78300000 }
case("integer over its range", T, c, { [c] = { port = 4 } }, 4,
     "port: must be between 1 and 65535, got '78300000'")
case("integer with a fraction", T, { port = 2.5 }, nil, 0, "port: expected an integer, got '2.5'")
case("number as text", T, { ratio = "half" }, nil, 0, "ratio: expected a number, got 'half'")
case("number over max", T, { ratio = 2 }, nil, 0, "ratio: must be between 0 and 1, got '2'")
case("string given a number", T, { name = 404 }, nil, 0,
     "name: expected a string, got '404' (quote it)")
case("boolean yes/no", T, { flag = "yes" }, nil)
case("boolean nonsense", T, { flag = "maybe" }, nil, 0, "flag: expected true or false, got 'maybe'")
case("enum", T, { mode = "loud" }, nil, 0, "mode: expected one of reject, note, off, got 'loud'")
c = { ips = "10.0.0.0/8" }
case("list given a scalar", T, c, { [c] = { ips = 7 } }, 7,
     "ips: expected a list of addresses or networks, got '10.0.0.0/8'")
c = { ips = { "10.0.0.0/8", "10.0.0.0/33" } }
case("bad network in a list", T, c, { [c] = { ips = 2 }, [c.ips] = { 3, 4 } }, 4,
     "ips[1]: expected an address or network (192.0.2.0/24, 2001:db8::/32), got '10.0.0.0/33'")
case("list of a map", T, { ips = { a = 1 } }, nil, 0,
     "ips: expected a list of addresses or networks, got a map")
case("list min", T, { hosts = {} }, nil, 0, "hosts: expected at least 1 items, got 0")
case("ip, not a network", T, { hosts = { "10.0.0.0/8" } }, nil, 0,
     "hosts[0]: expected an IP address, got '10.0.0.0/8'")
case("name with a bad pattern", T, { names = { "~[" } }, nil, 0,
     "names[0]: bad pattern '~[': malformed pattern (missing ']')")
case("pattern", T, { pats = { "^(a" } }, nil, 0,
     "pats[0]: bad Lua pattern '^(a': unfinished capture")
c = { checks = {} }
case("unknown key left empty in the YAML", T, c, { [c] = { checks = 3 }, [c.checks] = { fqnd = 4 } },
     4, "unknown key 'checks.fqnd' (known: fqdn)")
c = { checks = { fqdn = "maybe" } }
case("nested enum", T, c, { [c] = { checks = 3 }, [c.checks] = { fqdn = 4 } }, 4,
     "checks.fqdn: expected one of on, off, got 'maybe'")
case("unknown top key", T, { bogus = 1 }, nil, 0,
     "unknown key 'bogus' (known: checks, flag, hosts, ips, mode, name, names, pats, port, ratio, reply, routes, sep, zone)")
case("renamed key", T, { code = 550 }, nil, 0, "unknown key 'code' (now 'reply.code')")
case("map of maps: required", T, { routes = { ["a.test"] = { port = 25 } } }, nil, 0,
     "routes.a.test.host: required")
case("map of maps: a value", T, { routes = { ["a.test"] = { host = "h", port = "x" } } }, nil, 0,
     "routes.a.test.port: expected an integer, got 'x'")
out = case("scalar stands for its main key", T, { zone = "bl.test" }, nil)
print((out and out.zone.zone == "bl.test" and out.zone.txt == true) and "ok scalar map filled"
      or "not ok scalar map filled")
case("reply: wrong class", T, { reply = { code = 451 } }, nil, 0, "reply.code: must be 5xx, got '451'")
case("reply: bad enh", T, { reply = { enh = "5.7" } }, nil, 0,
     "reply.enh: expected an enhanced status code like 5.7.1, got '5.7'")
case("reply: classes differ", T, { reply = { code = 554, enh = "4.7.1" } }, nil, 0,
     "reply.enh: class 4 does not match code 554")
case("reply: not an integer", T, { reply = { code = "abc" } }, nil, 0,
     "reply.code: expected an integer, got 'abc'")
case("reply: unknown part", T, { reply = { text = "x" } }, nil, 0,
     "unknown key 'reply.text' (known: code, enh, message)")
out = case("reply: a part keeps its default", T, { reply = { message = "Go" } }, nil)
print((out and out.reply.code == 550 and out.reply.message == "Go") and "ok reply merged"
      or "not ok reply merged")
case("check callback", T, { sep = "ab" }, nil, 0, "sep: one character")
case("file without the engine", top { f = { "file" } }, { f = "/etc/hostname" }, nil, 0,
     "f: files are only read when the engine loads a plugin")
case("no settings", top {}, { x = 1 }, nil, 0, "unknown key 'x' (no settings here)")
local ok = pcall(S.check, top { x = { "colour" } }, { x = 1 })
print(ok and "not ok a bad schema raises" or "ok a bad schema raises")
'''


def luajit():
    for d in os.environ.get("PATH", "").split(":"):
        p = os.path.join(d, "luajit")
        if os.access(p, os.X_OK):
            return p
    return None


LUAJIT = luajit()
ok(LUAJIT, "luajit is installed (contrib/deps.sh: luajit2)")
if LUAJIT:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write("REPO = %r\n" % REPO + CHECKER)
    r = subprocess.run([LUAJIT, f.name], capture_output=True, text=True, timeout=scaled(10))
    os.unlink(f.name)
    is_(r.returncode, 0, "the checker script ran") or diag(r.stderr)
    for line in r.stdout.splitlines():
        name = re.sub(r"^(not )?ok ", "", line).split(" | ")[0]
        ok(line.startswith("ok "), "checker: " + name, line)

# ------------------------------------------------------------------ every shipped plugin


def confdir_with(plugin, yaml_text=None, extra=None):
    """A copy of the shipped config/ listing only `plugin`."""
    base = tempfile.mkdtemp(prefix="kasi-79-")
    TMPDIRS.append(base)
    conf = os.path.join(base, "config")
    shutil.copytree(os.path.join(REPO, "config"), conf)
    with open(os.path.join(conf, "plugins"), "w") as f:
        f.write(plugin + "\n")
    if yaml_text is not None:
        with open(os.path.join(conf, plugin + ".yaml"), "w") as f:
            f.write(yaml_text)
    for rel, text in (extra or {}).items():
        with open(os.path.join(conf, rel), "w") as f:
            f.write(text)
    return conf


def shipped(plugin):
    path = os.path.join(REPO, "config", plugin + ".yaml")
    if not os.path.exists(path):
        return ""
    with open(path) as f:
        return f.read()


def mutate(text, old, new):
    """Replace the first line starting with `old` (None: append); the text
    and the line number of the new line."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if old is None:
        lines.append(new)
        return "\n".join(lines) + "\n", len(lines)
    for i, line in enumerate(lines):
        if line.startswith(old):
            lines[i] = new
            return "\n".join(lines) + "\n", i + 1
    raise ValueError("%r not in the shipped file" % old)


KNOWN_FLAT = "(known: sender_must_match, senders, users_file)"

# plugin, the line that changes (its start; None: add one), the new line,
# the message after "FILE:LINE: "
TYPOS = [
    ("access", "trusted_skips:", "trusted_skip: true",
     "unknown key 'trusted_skip' (known: allow, connect_reply, deny, rdns_allow_unconfirmed, "
     "reply, trusted_relays, trusted_skips)"),
    ("access", "trusted_relays:", "trusted_relays: maybe",
     "trusted_relays: expected true or false, got 'maybe'"),
    ("access", "  ip: []", "  ip: [10.0.0.0/33]",
     "allow.ip[0]: expected an address or network (192.0.2.0/24, 2001:db8::/32), got '10.0.0.0/33'"),
    ("dnsbl", "reject_at:", "reject_on: rcpt",
     "unknown key 'reject_on' (known: allow_rcpts, allow_zones, exempt_ips, exempt_private, "
     "reject_at, reply, timeout, zones)"),
    ("dnsbl", "reject_at:", "reject_at: helo",
     "reject_at: expected one of connect, rcpt, data, got 'helo'"),
    ("dnsbl", "    codes: [\"127.0.0.2\"]", "    codes: [\"127.0.0\"]",
     "zones[1].codes[0]: expected an IPv4 address or a range a.b.c.d-e.f.g.h, got '127.0.0'"),
    ("dnsbl", "exempt_ips:", "allow_ips: []", "unknown key 'allow_ips' (now 'exempt_ips')"),
    ("early_talker", "pause:", "paws: 1",
     "unknown key 'paws' (known: check_data, check_data_post, data_pause, data_post_pause, "
     "exempt_ips, pause, reject, reply)"),
    ("early_talker", "pause:", "pause: 99", "pause: must be between 0 and 60, got '99'"),
    ("extended_address", "exceptions:", "exception:",
     "unknown key 'exception' (known: domains, exceptions, separators)"),
    ("extended_address", "separators:", "separators: [\"ab\"]",
     "separators[0]: a separator is one punctuation character, not 'ab'"),
    ("fcrdns", "reject:", "rejct: false", "unknown key 'rejct' (known: exempt_private, reject)"),
    ("fcrdns", "reject:", "reject: 1", "reject: expected true or false, got '1'"),
    ("helo_checks", "  fqdn:", "  fqnd:",
     "unknown key 'checks.fqnd' (known: bare_ip, fqdn, literal_mismatch, must_resolve, own_ip, "
     "own_name, valid)"),
    ("helo_checks", "dns_timeout:", "dns_timeout: soon",
     "dns_timeout: expected a number, got 'soon'"),
    ("helo_checks", "exempt_ips:", "skip_ips: []", "unknown key 'skip_ips' (now 'exempt_ips')"),
    ("greylist", "delay:", "delya: 300",
     "unknown key 'delya' (known: delay, dnswl, dnswl_timeout, exempt_ips, exempt_rcpts, "
     "exempt_relaying, exempt_senders, ipv4_prefix, ipv6_prefix, key_prefix, on_redis_error, "
     "reply, retry_window, sender, whitelist)"),
    ("greylist", "dnswl:", "dnswl: [{zone: list.dnswl.org, codes: [\"127.0.0.300\"]}]",
     "dnswl[0].codes[0]: expected an IPv4 address or a range a.b.c.d-e.f.g.h, "
     "got '127.0.0.300'"),
    ("greylist", "retry_window:", "retry_window: 100", "retry_window: must be longer than delay"),
    ("karma", "per:", "per: asn", "per: expected one of ip, network, got 'asn'"),
    ("karma", "max_per_connection:", "max_per_conection: 5",
     "unknown key 'max_per_conection' (known: defer_reply, error_reply, exempt_ips, "
     "exempt_relaying, ignore_plugins, ipv4_prefix, ipv6_prefix, key_prefix, "
     "max_per_connection, memory, on_redis_error, per, reject_reply, tarpit_delay, "
     "thresholds, weights)"),
    ("limit", "ipv4_prefix:", "ipv4_prefx: 32",
     "unknown key 'ipv4_prefx' (known: backend, concurrency, exempt_ips, ipv4_prefix, "
     "ipv6_prefix, key_prefix, messages, on_redis_error, rate, rates, recipients, "
     "redis_error_reply, rejections)"),
    ("limit", "backend:", "backend: memcache",
     "backend: expected one of local, redis, got 'memcache'"),
    ("limit", "on_redis_error:", "on_redis_error: ignore",
     "on_redis_error: expected one of fail_open, fail_closed, got 'ignore'"),
    ("limit", "  messages: []", "  messages: [{per: recipient, max: 1}]",
     "rates.messages[0].per: expected one of ip, network, sender, auth_user, got 'recipient'"),
    ("limit", "ipv6_prefix:", "ipv6_prefix: 129", "ipv6_prefix: must be between 0 and 128, got '129'"),
    ("limit", "  max: 0", "  max: -1", "concurrency.max: must be at least 0, got '-1'"),
    ("mail_from_resolvable", "timeout:", "timout: 0",
     "unknown key 'timout' (known: reject, timeout)"),
    ("mail_from_resolvable", "reject:", "reject: maybe", "reject: expected true or false, got 'maybe'"),
    ("max_unrecognized_commands", "max:", "maximum: 5",
     "unknown key 'maximum' (known: max, reply)"),
    ("max_unrecognized_commands", "max:", "max: 0", "max: must be between 1 and 1000, got '0'"),
    ("max_unrecognized_commands", "  code:", "  code: 421", "reply.code: must be 5xx, got '421'"),
    ("rcpt_to_host_list", "on_match:", "on_macth: next",
     "unknown key 'on_macth' (known: accept_own_literals, domains, on_match, patterns, reply)"),
    ("rcpt_to_host_list", "  code:", "  code: abc", "reply.code: expected an integer, got 'abc'"),
    ("rcpt_to_host_list", None, "code: abc", "unknown key 'code' (now 'reply.code')"),
    ("relay", "allow:", "alow: []", "unknown key 'alow' (known: allow)"),
    ("relay", "allow:", "allow: 10.0.0.0/8",
     "allow: expected a list of addresses or networks, got '10.0.0.0/8'"),
    ("spamassassin", "add_report:", "add_reprot: false",
     "unknown key 'add_reprot' (known: add_report, connect_timeout, host, max_size, on_failure, "
     "port, reject_threshold, relay_reject_threshold, socket, timeout, user)"),
    ("spamassassin", "port:", "port: 78300000", "port: must be between 1 and 65535, got '78300000'"),
    ("auth/flat_file", "sender_must_match:", "sender_must_macth: true",
     "unknown key 'sender_must_macth' " + KNOWN_FLAT),
    ("auth/flat_file", "senders:", "senders: [alice]", "senders: expected a map, got a list"),
    ("queue/discard", None, "x: 1", "unknown key 'x' (no settings here)"),
    ("queue/discard", None, "- x", "expected a map of settings at the top level"),
    ("queue/spool", None, "dir: /tmp", "unknown key 'dir' (no settings here)"),
    ("queue/spool", None, "- x", "expected a map of settings at the top level"),
    ("queue/smtp_forward", None, "prot: 10025",
     "unknown key 'prot' (known: auth_pass, auth_user, helo, host, lmtp, pool_idle, pool_max, "
     "port, routes, timeout_cmd, timeout_connect, timeout_data, tls)"),
    ("queue/smtp_forward", None, "routes: {example.com: {host: 10.0.0.5, port: x}}",
     "routes.example.com.port: expected an integer, got 'x'"),
    ("queue/smtp_forward", None, "auth_user: kasi", "auth_user: needs auth_pass"),
    ("queue/lmtp", None, "hots: 127.0.0.1",
     "unknown key 'hots' (known: auth_pass, auth_user, helo, host, lmtp, pool_idle, pool_max, "
     "port, routes, timeout_cmd, timeout_connect, timeout_data, tls)"),
    ("queue/lmtp", None, "tls: yes", "tls: expected one of none, opportunistic, required, got 'yes'"),
    ("queue/smtp_proxy", None, "xforwad: true",
     "unknown key 'xforwad' (known: auth_pass, auth_user, helo, host, port, timeout_cmd, "
     "timeout_connect, timeout_data, tls, xforward)"),
    ("queue/smtp_proxy", None, "timeout_cmd: 0",
     "timeout_cmd: must be between 0.001 and 86400, got '0'"),
]

PLUGIN_DIR = os.path.join(REPO, "plugins")
PLUGINS = sorted(os.path.relpath(os.path.join(d, f), PLUGIN_DIR)[:-len(".lua")]
                 for d, _, fs in os.walk(PLUGIN_DIR) for f in fs if f.endswith(".lua"))
for p in PLUGINS:
    kinds = [t for t in TYPOS if t[0] == p]
    ok(len(kinds) >= 2, "the typo table covers %s (%d cases)" % (p, len(kinds)))

for plugin, old, new, msg in TYPOS:
    text, line = mutate(shipped(plugin), old, new)
    conf = confdir_with(plugin, text)
    r = run([KASI_BIN, "-t", "-c", conf])
    want = "kasi: %s/%s.yaml:%d: %s" % (conf, plugin, line, msg)
    name = "%s: %s" % (plugin, new.strip())
    is_(r.returncode, 1, name + ": kasi -t exits 1")
    is_(r.stderr.strip().splitlines()[-1:], [want], "  " + name + ": file:line: key: why")
    unlike(r.stderr, r"traceback|\.lua:\d+:", "  " + name + ": no Lua traceback")

# the users file of auth/flat_file is a "file" value: read by the engine
text, line = mutate(shipped("auth/flat_file"), "users_file:", "users_file: no_such_users")
conf = confdir_with("auth/flat_file", text)
r = run([KASI_BIN, "-t", "-c", conf])
is_(r.stderr.strip().splitlines()[-1:],
    ["kasi: %s/auth/flat_file.yaml:%d: users_file: cannot read %s/no_such_users: No such file "
     "or directory (create it with: kasi passwd FILE USER)" % (conf, line, conf)],
    "auth/flat_file: a missing users file names the YAML line")

# every shipped plugin with its shipped file: no schema warning, no unsafe
conf = confdir_with("\n".join(PLUGINS))
r = run([KASI_BIN, "-t", "-c", conf])
is_(r.returncode, 0, "all %d shipped plugins load with their shipped files" % len(PLUGINS)) or diag(r.stderr)
unlike(r.stderr, r"declares no schema|runs unsafe", "every shipped plugin has a schema, none is unsafe")

# a plugin without a schema still loads, with a warning
conf = confdir_with("free", "anything: [1, 2]\n")
os.makedirs(os.path.join(os.path.dirname(conf), "plugins"))
with open(os.path.join(os.path.dirname(conf), "plugins", "free.lua"), "w") as f:
    f.write("function register(cfg) assert(cfg.anything[2] == 2) end\n")
r = run([KASI_BIN, "-t", "-c", conf])
is_(r.returncode, 0, "a plugin without a schema gets its table unchecked") or diag(r.stderr)
like(r.stderr, r"plugin free declares no schema: .*free\.yaml is not checked", "  and a warning")

# ------------------------------------------------------------------ SIGHUP keeps the old generation

RELAY_FILES = {"config/plugins": "relay\nrcpt_to_host_list\nqueue/spool\n",
               "config/rcpt_to_host_list.yaml": "domains: [example.com]\n",
               "config/relay.yaml": "allow: [127.0.0.3]\n"}


def relays(port, source):
    with Raw(port, ehlo="client.test", source=source) as r:
        r.cmd("MAIL FROM:<a@client.test>")
        return r.cmd("RCPT TO:<x@elsewhere.test>")[0] == 250


def write(k, rel, text):
    path = os.path.join(k.tmp, rel)
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.rename(path + ".tmp", path)


def wait_relay(port, source, want, timeout=3):
    deadline = time.monotonic() + scaled(timeout)
    while time.monotonic() < deadline:
        if relays(port, source) == want:
            return True
        time.sleep(0.05)
    return False


with Kasi(files=RELAY_FILES) as k:
    ok(relays(k.port, "127.0.0.3") and not relays(k.port, "127.0.0.4"), "generation 1: 127.0.0.3 relays")
    write(k, "config/relay.yaml", "# trusted\nallow: 127.0.0.4\n")
    k.signal(signal.SIGHUP)
    # the supervisor's reload names the operator's file (not the generation's copy)
    want = ("reload failed, generation 1 stays: %s/relay.yaml:2: allow: expected a list of "
            "addresses or networks, got '127.0.0.4'" % k.confdir)
    ok(k.wait_log(re.escape(want)), "SIGHUP with a scalar for a list: refused, file:line: key: why")
    unlike(k.log(), r"traceback", "  no Lua traceback in the log")
    ok(relays(k.port, "127.0.0.3") and not relays(k.port, "127.0.0.4"),
       "  the old generation keeps serving")
    write(k, "config/relay.yaml", "allow: [127.0.0.4]\nips: [127.0.0.5]\n")
    k.signal(signal.SIGHUP)
    ok(k.wait_log(re.escape("relay.yaml:2: unknown key 'ips' (known: allow)")),
       "SIGHUP with an unknown key: refused with file:line")
    ok(relays(k.port, "127.0.0.3"), "  still the old generation")
    write(k, "config/lua.yaml", "timeout: 5\nmemory_cap: 64M\n")
    write(k, "config/relay.yaml", "allow: [127.0.0.4]\n")
    k.signal(signal.SIGHUP)
    ok(k.wait_log(re.escape("lua.yaml:2: unknown key 'memory_cap' (known: timeout, memory_limit)")),
       "SIGHUP with a bad lua.yaml: refused with file:line")
    ok(relays(k.port, "127.0.0.3"), "  still the old generation")
    os.unlink(os.path.join(k.confdir, "lua.yaml"))
    k.signal(signal.SIGHUP)
    ok(wait_relay(k.port, "127.0.0.4", True), "fixed: the new generation serves")
    ok(not relays(k.port, "127.0.0.3"), "  with the new settings")

# ------------------------------------------------------------------ dns.yaml and lua.yaml

CORE_CASES = [
    ("dns.yaml", "servers: 127.0.0.1:53\n", 1,
     "servers: expected a list of resolver addresses, got '127.0.0.1:53'"),
    ("dns.yaml", "servers: [\"127.0.0.1:99999\"]\n", 1,
     "servers[0]: expected a resolver address \"IP\" or \"IP:PORT\", got '127.0.0.1:99999'"),
    ("dns.yaml", "servers:\n  - 127.0.0.1\n  - dns.example\n", 3,
     "servers[1]: expected a resolver address \"IP\" or \"IP:PORT\", got 'dns.example'"),
    ("dns.yaml", "timeout: 0\n", 1, "timeout: must be more than 0 and at most 300, got '0'"),
    ("dns.yaml", "tries: two\n", 1, "tries: expected a positive integer, got 'two'"),
    ("dns.yaml", "tries: 0\n", 1, "tries: must be between 1 and 20, got '0'"),
    ("dns.yaml", "cache_size: -1\n", 1, "cache_size: expected a non-negative integer, got '-1'"),
    ("dns.yaml", "timeout: 2\nrdns_timeot: 5\n", 2,
     "unknown key 'rdns_timeot' (known: servers, timeout, tries, cache_size, rdns_timeout)"),
    ("dns.yaml", "- 127.0.0.1\n", 1, "expected a map of settings at the top level"),
    ("lua.yaml", "memory_limit: 512K\n", 1,
     "memory_limit: must be between 1048576 and 1099511627776, got '512K'"),
    ("lua.yaml", "timeout: fast\n", 1, "timeout: expected a number of seconds, got 'fast'"),
    ("lua.yaml", "timeout: 2\nmemry_limit: 1M\n", 2,
     "unknown key 'memry_limit' (known: timeout, memory_limit)"),
]
for rel, text, line, msg in CORE_CASES:
    conf = confdir_with("queue/spool", extra={rel: text})
    r = run([KASI_BIN, "-t", "-c", conf])
    is_(r.returncode, 1, "%s %r: kasi -t exits 1" % (rel, text))
    is_(r.stderr.strip().splitlines()[-1:], ["kasi: %s/%s:%d: %s" % (conf, rel, line, msg)],
        "  file:line: key: why")

conf = confdir_with("queue/spool", extra={
    "dns.yaml": "servers: [\"127.0.0.1:53\", \"[::1]:5353\", \"::1\", 192.0.2.1]\n"
                "timeout: 1.5\ntries: 3\ncache_size: 0\nrdns_timeout: 2\n",
    "lua.yaml": "timeout: 2.5\nmemory_limit: 64M\n"})
r = run([KASI_BIN, "-t", "-c", conf])
is_(r.returncode, 0, "valid dns.yaml and lua.yaml pass") or diag(r.stderr)

conf = confdir_with("queue/spool", extra={"dns.yaml": "tries: 0\n"})
r = run([KASI_BIN, "-c", conf, "--listen", "127.0.0.1:0"], timeout=10)
is_(r.returncode, 1, "starting with a bad dns.yaml exits 1")
like(r.stderr, re.escape("dns.yaml:1: tries: must be between 1 and 20"), "  and says why")

# ------------------------------------------------------------------ the sandbox

PROBE = r'''
local out = {}
local function t(name, v) out[#out + 1] = name .. "=" .. tostring(v) end
local function err(f, ...) local ok, e = pcall(f, ...); return ok and "no error" or e end
function register()
  t("io", io)
  t("os.execute", os.execute)
  t("os.exit", os.exit)
  t("os.remove", os.remove)
  t("os.rename", os.rename)
  t("os.tmpname", os.tmpname)
  t("os.time", type(os.time))
  t("os.date", type(os.date))
  t("os.getenv", type(os.getenv))
  t("debug", debug)
  t("getfenv", getfenv)
  t("package", package)
  t("string.format", type(string.format))
  t("bit.band", type(bit.band))
  t("coroutine.wrap", type(coroutine.wrap))
  t("require ffi", err(require, "ffi"))
  t("require io", err(require, "io"))
  t("require netmask", type(require("kasi.netmask").parse))
  t("loadstring io", loadstring("return io")())
  t("bytecode", select(2, load(string.dump(function() end))))
  t("loadfile outside", select(2, loadfile("/etc/hostname")))
  t("dofile outside", err(dofile, "/etc/hostname"))
  t("loadfile inside", loadfile((plugin_path:gsub("probe%.lua$", "helper.lua")))())
  t("helper global", helper_was_here)
  string.upper = nil
end
function hook_rcpt() return DENY, out end
'''
HELPER = "helper_was_here = 'yes'\nreturn 'helped'\n"
OTHER = 'function hook_mail() return OK, "upper=" .. type(string.upper) end\n'


def probe(line):
    files = {"config/plugins": line + "\nother\nqueue/spool\n", "plugins/probe.lua": PROBE,
             "plugins/helper.lua": HELPER, "plugins/other.lua": OTHER}
    with Kasi(files=files) as k:
        with Raw(k.port, ehlo="client.test") as r:
            other = r.cmd("MAIL FROM:<a@client.test>")[1]
            code, lines = r.cmd("RCPT TO:<b@example.com>")
            res = dict(l.split(" ", 1)[1].split("=", 1) for l in lines if "=" in l)
            res["other"] = other
        res["log"] = k.log()
    return res


NOT_HERE = "is not available to sandboxed plugins (mark the plugin 'unsafe' in config/plugins to allow it)"
res = probe("probe")
for name in ("io", "os.execute", "os.exit", "os.remove", "os.rename", "os.tmpname", "debug",
             "getfenv", "package", "loadstring io"):
    is_(res.get(name), "nil", "sandbox: %s is nil" % name)
for name in ("os.time", "os.date", "os.getenv", "string.format", "bit.band", "coroutine.wrap",
             "require netmask"):
    is_(res.get(name), "function", "sandbox: %s is there" % name)
like(res.get("require ffi", ""), r"^require 'ffi': .*" + re.escape(NOT_HERE), "sandbox: require 'ffi' is a clear error")
like(res.get("require io", ""), r"^require 'io': ", "sandbox: require 'io' is a clear error")
is_(res.get("bytecode"), "attempt to load chunk with wrong mode", "sandbox: no bytecode")
like(res.get("loadfile outside", ""), r"^loadfile /etc/hostname: .*" + re.escape(NOT_HERE),
     "sandbox: loadfile outside the plugin directories: nil, err")
like(res.get("dofile outside", ""), r"^loadfile /etc/hostname: ", "sandbox: dofile outside raises")
is_(res.get("loadfile inside"), "helped", "sandbox: loadfile inside the plugin directories works")
is_(res.get("helper global"), "yes", "  and the chunk runs in the plugin's environment")
is_(res.get("other"), ["2.1.0 upper=function"], "one plugin's string.upper = nil leaves the others' alone")
unlike(res["log"], r"runs unsafe", "no unsafe plugin logged")

res = probe("probe unsafe")
like(res.get("io", ""), r"^table", "unsafe: io is there")
like(res.get("os.execute", ""), r"^function", "unsafe: os.execute is there")
like(res.get("debug", ""), r"^table", "unsafe: debug is there")
is_(res.get("require ffi"), "no error", "unsafe: require 'ffi' works")
like(res["log"], r"warn: plugin probe runs unsafe", "unsafe: the load says which plugin runs unsafe")

for d in TMPDIRS:
    shutil.rmtree(d, ignore_errors=True)
done()
