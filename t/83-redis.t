#!/usr/bin/env python3
"""kasi.redis against a real redis-server on loopback: call, pipeline
(with MULTI/EXEC, an error inside, wait = false), scripts (EVALSHA, and
EVAL when the server has forgotten the script), replies of every type,
kasi.redis.null, commands refused on the shared connection, db and AUTH
from redis.yaml, strict redis.yaml (kasi -t); then the failures: Redis
killed (nil, err at once, fail-fast for retry_interval, recovery without
a reload when it is back), Redis hanging (nil, "timeout" within
command_timeout, or within the hook's budget when that is shorter; the
session goes on), a call's own shorter timeout against a busy server
(that call ends, the connection stays: the next call is answered), only
short deadlines against a hung server (dropped once it has said nothing
for command_timeout), a wrong password; a reload that changes the
settings; two servers, the first killed: calls go to the second."""
import os
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kasitest import *  # noqa: E402,F401,F403
from redistest import Redis, have_redis, redis_yaml  # noqa: E402

if not have_redis():
    skip("kasi.redis", "redis-server is not installed (contrib/deps.sh)")
    done()

# RTEST <case> [arg]: the plugin runs the case and answers 250 with the
# result written out (dump), or 550 with the Lua error.
RTEST = r"""
local P = {}
local r = kasi.redis
local counter = r.script([[
  local n = redis.call("INCRBY", KEYS[1], ARGV[1])
  redis.call("EXPIRE", KEYS[1], ARGV[2])
  return n
]])

local function dump(v)
  if v == r.null then return "null" end
  if type(v) ~= "table" then return type(v) == "string" and ("'" .. v .. "'") or tostring(v) end
  local keys, out = {}, {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  for _, k in ipairs(keys) do
    out[#out + 1] = (type(k) == "number" and "" or (k .. "=")) .. dump(v[k])
  end
  return "{" .. table.concat(out, ",") .. "}"
end

local function pack(...) return { n = select("#", ...), ... } end

-- keeps the server busy for ARGV[1] seconds
local busy = r.script([[
  local t = redis.call("TIME")
  local t0 = t[1] * 1e6 + t[2]
  repeat t = redis.call("TIME") until t[1] * 1e6 + t[2] - t0 >= ARGV[1] * 1e6
  return 1
]])

local cases = {
  set = function(a) return r.call("SET", "k:" .. a, a) end,
  get = function(a) return r.call("GET", "k:" .. a) end,
  incr = function(a) return r.call("INCR", "n:" .. a) end,
  expire = function(a) return r.call("EXPIRE", "n:" .. a, 60) end,
  ttl = function(a) return r.call("TTL", "n:" .. a) end,
  bad = function(a) return r.call("INCR", "k:" .. a) end,
  pipe = function(a) return r.pipeline { { "INCR", "p:" .. a }, { "EXPIRE", "p:" .. a, 60 },
                                         { "GET", "p:" .. a }, { "GET", "missing:" .. a } } end,
  multi = function(a) return r.pipeline { { "MULTI" }, { "INCR", "m:" .. a }, { "INCR", "m:" .. a },
                                          { "EXEC" } } end,
  pipe_err = function(a) return r.pipeline { { "SET", "e:" .. a, "x" }, { "INCR", "e:" .. a },
                                             { "GET", "e:" .. a } } end,
  array = function(a)
    r.call("DEL", "l:" .. a)
    r.call("RPUSH", "l:" .. a, "x", "y", 3)
    return r.call("LRANGE", "l:" .. a, 0, -1)
  end,
  nowait = function(a) return r.pipeline({ { "SET", "w:" .. a, "sent" } }, { wait = false }) end,
  script = function(a) return counter:eval({ "s:" .. a }, { 5, 60 }) end,
  sha = function() return counter.sha end,
  script_err = function(a) return r.script("return redis.call('NOSUCH')"):eval({}, {}) end,
  forbidden = function(a) return pcall(r.call, a, "x") end,
  bad_word = function() return pcall(r.call, "SET", "k", {}) end,
  open_multi = function() return pcall(r.pipeline, { { "MULTI" }, { "INCR", "x" } }) end,
  call_multi = function() return pcall(r.call, "MULTI") end,
  empty = function() return pcall(r.pipeline, {}) end,
  busy = function(a) return busy:eval({}, { a }, { timeout = 0.2 }) end,
  short = function(a) return r.pipeline({ { "GET", "k:" .. a } }, { timeout = 0.2 }) end,
}

function P.hook_unrecognized_command(conn, txn, line)
  local name, arg = line:match("^RTEST (%S+) ?(%S*)$")
  if not name then return NEXT end
  local res = pack(cases[name](arg))
  local out = {}
  for i = 1, res.n do out[i] = res[i] == nil and "nil" or dump(res[i]) end
  return OK, "result {" .. table.concat(out, ",") .. "}"
end

function P.hook_disconnect(conn)
  -- nobody needs the answer here: sent, not waited for
  r.pipeline({ { "INCR", "disconnects" } }, { wait = false })
end

return P
"""


def start(red, extra_yaml="", plugin_opts="", redis_keys=None, servers=None):
    keys = {"command_timeout": 0.3, "retry_interval": 1, "connect_timeout": 0.5}
    keys.update(redis_keys or {})
    servers = servers or [red.address]
    return Kasi(files={"config/plugins": "rtest%s\n" % plugin_opts,
                       "plugins/rtest.lua": RTEST,
                       "config/redis.yaml": redis_yaml(*servers, **keys) + extra_yaml})


def rt(c, case, arg="", timeout=5):
    code, lines = c.cmd("RTEST %s %s" % (case, arg), timeout=timeout)
    text = lines[0] if lines else ""
    m = re.match(r"^2\.0\.0 result (.*)$", text)
    return code, m.group(1) if m else text


with Redis() as red:
    with start(red) as k:
        c = Raw(k.port, ehlo="client.test")
        is_(rt(c, "set", "a"), (250, "{'OK'}"), "call SET: status reply as a string")
        is_(rt(c, "get", "a"), (250, "{'a'}"), "call GET: the bulk string")
        is_(rt(c, "get", "none"), (250, "{null}"), "call GET of nothing: kasi.redis.null")
        is_(rt(c, "incr", "a"), (250, "{1}"), "call INCR: a number")
        is_(rt(c, "expire", "a"), (250, "{1}"), "call with a number argument")
        code, t = rt(c, "ttl", "a")
        ok(code == 250 and 0 < int(t.strip("{}")) <= 60, "the number argument took effect", t)
        code, t = rt(c, "bad", "a")
        like(t, r"^\{nil,'ERR value is not an integer", "error reply from call: nil, err")
        is_(rt(c, "pipe", "a"), (250, "{{1,1,'1',null}}"), "pipeline: replies in order")
        is_(rt(c, "multi", "a"), (250, "{{'OK','QUEUED','QUEUED',{1,2}}}"),
            "pipeline with MULTI/EXEC: the transaction's results")
        code, t = rt(c, "pipe_err", "a")
        like(t, r"^\{\{'OK',\{err='ERR value is not an integer[^}]*\},'x'\}\}$",
             "an error inside a pipeline: {err=...}, the rest goes on")
        is_(rt(c, "array", "a"), (250, "{{'x','y','3'}}"), "array reply: a table of strings")
        is_(rt(c, "nowait", "a"), (250, "{true}"), "pipeline wait=false: true at once")
        deadline = time.monotonic() + scaled(5)
        while red.cmd("GET", "w:a") != "sent" and time.monotonic() < deadline:
            time.sleep(0.02)
        is_(red.cmd("GET", "w:a"), "sent", "wait=false: the command was sent")
        is_(rt(c, "script", "a"), (250, "{5}"), "script: first eval")
        is_(rt(c, "script", "a"), (250, "{10}"), "script: second eval")
        code, sha = rt(c, "sha")
        sha = sha.strip("{}'")
        is_(red.cmd("SCRIPT", "EXISTS", sha), [1], "script: loaded in Redis under its SHA1")
        red.cmd("SCRIPT", "FLUSH")
        is_(rt(c, "script", "a"), (250, "{15}"), "script after SCRIPT FLUSH: EVAL fallback")
        is_(red.cmd("SCRIPT", "EXISTS", sha), [1], "script: loaded again by the fallback")
        red.cmd("CONFIG", "RESETSTAT")
        rt(c, "script", "a")
        stats = red.cmd("INFO", "commandstats")
        like(stats, r"cmdstat_evalsha:calls=1,", "script: EVALSHA once it is known")
        unlike(stats, r"cmdstat_eval:calls", "script: no EVAL once it is known")
        code, t = rt(c, "script_err")
        like(t, r"^\{nil,'ERR ", "script error: nil, err")
        for cmd in ("SUBSCRIBE", "SELECT", "AUTH", "WATCH", "BLPOP", "MONITOR"):
            code, t = rt(c, "forbidden", cmd)
            like(t, r"^\{false,'.*not allowed on the shared connection'\}$", "%s raises" % cmd)
        like(rt(c, "bad_word")[1], r"^\{false,'.*word 3 of a command is a table", "a table word raises")
        like(rt(c, "open_multi")[1], r"MULTI without EXEC", "MULTI left open raises")
        like(rt(c, "call_multi")[1], r"MULTI goes in a pipeline", "MULTI in call raises")
        like(rt(c, "empty")[1], r"1 to 1000 commands", "an empty pipeline raises")
        c.cmd("QUIT")
        c.close()
        deadline = time.monotonic() + scaled(5)
        while red.cmd("GET", "disconnects") is None and time.monotonic() < deadline:
            time.sleep(0.02)
        is_(red.cmd("GET", "disconnects"), "1", "wait=false in hook_disconnect: sent")
        ok(k.wait_log(r"redis 127\.0\.0\.1:\d+: connected"), "first connection logged")

        # ---- an outage: Redis killed, then back on the same port
        c = Raw(k.port, ehlo="client.test")
        red.kill()
        code, t = rt(c, "get", "a")
        like(t, r"^\{nil,'(connection lost|cannot connect)", "Redis killed: nil, err")
        ok(k.wait_log(r"warn: redis 127\.0\.0\.1:\d+: (connection lost|cannot connect)"),
           "the outage logged (warn)")
        code, t = rt(c, "get", "a")
        like(t, r"^\{nil,'cannot connect", "during retry_interval: fails at once")
        code, t = rt(c, "incr", "b")
        like(t, r"^\{nil,'", "every command fails, none waits")
        red.start()
        deadline = time.monotonic() + scaled(8)
        res = None
        while time.monotonic() < deadline:
            res = rt(c, "incr", "back")
            if res == (250, "{1}"):
                break
            time.sleep(0.1)
        is_(res, (250, "{1}"), "Redis back: commands work again, no reload")
        ok(k.wait_log(r"info: redis 127\.0\.0\.1:\d+: connected"), "recovery logged")
        is_(rt(c, "set", "z")[0], 250, "the session lived through the outage")

        # ---- a hanging Redis: SIGSTOP
        red.pause()
        code, t = rt(c, "get", "z", timeout=10)
        is_(t, "{nil,'timeout'}", "Redis hanging: nil, 'timeout' after command_timeout")
        code, t = rt(c, "get", "z", timeout=10)
        like(t, r"^\{nil,'", "hanging: the next command fails too (dropped, retry later)")
        red.resume()
        deadline = time.monotonic() + scaled(8)
        while time.monotonic() < deadline and rt(c, "get", "z") != (250, "{'z'}"):
            time.sleep(0.1)
        is_(rt(c, "get", "z"), (250, "{'z'}"), "Redis resumed: recovered")
        c.cmd("QUIT")
        c.close()

    # a call's own timeout, shorter than command_timeout, ends that call
    # only: the server is busy, not gone, and the connection is kept
    with start(red, redis_keys={"command_timeout": 2}) as k:
        c = Raw(k.port, ehlo="client.test")
        rt(c, "set", "s")
        t0 = time.monotonic()
        code, t = rt(c, "busy", "0.8")
        took = time.monotonic() - t0
        is_(t, "{nil,'timeout'}", "a call with timeout 0.2 against a server busy for 0.8 s: "
            "nil, 'timeout'")
        ok(took < scaled(0.7), "... after its own timeout, not command_timeout (2 s)", took)
        t0 = time.monotonic()
        is_(rt(c, "get", "s"), (250, "{'s'}"), "the next call on the same worker is answered "
            "(no fail-fast: the connection was kept)")
        ok(time.monotonic() - t0 < scaled(1.5), "... once the server is free")
        is_(k.count_log(r"connection dropped"), 0, "no connection dropped")

        # only short deadlines against a server that hangs: the connection
        # goes once the server has said nothing for command_timeout
        red.pause()
        t0 = time.monotonic()
        seen = []
        while time.monotonic() - t0 < scaled(8):
            seen.append(rt(c, "short", "s", timeout=10)[1])
            if seen[-1] != "{nil,'timeout'}":
                break
        took = time.monotonic() - t0
        is_(seen[-1], "{nil,'connection dropped: no answer in time'}",
            "short deadlines against a hung server: dropped, then calls fail at once")
        ok(took >= 1.9, "... not before it has said nothing for command_timeout (2 s)", took)
        ok(took < scaled(3.5), "... nor much later (%d calls of 0.2 s)" % len(seen), took)
        red.resume()
        deadline = time.monotonic() + scaled(8)
        while time.monotonic() < deadline and rt(c, "get", "s") != (250, "{'s'}"):
            time.sleep(0.1)
        is_(rt(c, "get", "s"), (250, "{'s'}"), "the server back: recovered")
        c.close()

    # the hook's budget is shorter than command_timeout: the call ends first
    with start(red, plugin_opts=" timeout=1", redis_keys={"command_timeout": 5}) as k:
        c = Raw(k.port, ehlo="client.test")
        rt(c, "set", "q")
        red.pause()
        code, t = rt(c, "get", "q", timeout=10)
        is_((code, t), (250, "{nil,'timeout'}"), "budget 1 s, command_timeout 5 s: nil, 'timeout' "
            "in the hook's time, the hook answers")
        red.resume()
        c.close()

    # db and a reload that changes it
    with start(red, redis_keys={"db": 3}) as k:
        c = Raw(k.port, ehlo="client.test")
        rt(c, "set", "db3")
        is_(red.cmd("GET", "k:db3", db=3), "db3", "redis.yaml db: 3 used")
        is_(red.cmd("GET", "k:db3"), None, "not in db 0")
        c.close()
        with open(os.path.join(k.confdir, "redis.yaml"), "w") as f:
            f.write(redis_yaml(red.address, db=4))
        k.signal(signal.SIGHUP)
        ok(k.wait_log(r"generation 2 live \(was 1\)"), "reload with another db")
        c = Raw(k.port, ehlo="client.test")
        rt(c, "set", "db4")
        is_(red.cmd("GET", "k:db4", db=4), "db4", "after the reload: db 4")
        c.close()

# two servers: the first answers; killed, the calls go to the second
with Redis() as first, Redis() as second:
    with start(first, servers=[first.address, second.address]) as k:
        c = Raw(k.port, ehlo="client.test")
        is_(rt(c, "set", "one"), (250, "{'OK'}"), "two servers: a call answered")
        is_((first.cmd("GET", "k:one"), second.cmd("GET", "k:one")), ("one", None),
            "... by the first")
        first.kill()
        t0 = time.monotonic()
        deadline = t0 + scaled(8)
        res = None
        while time.monotonic() < deadline:
            res = rt(c, "set", "two")
            if res == (250, "{'OK'}"):
                break
            time.sleep(0.1)
        took = time.monotonic() - t0
        is_(res, (250, "{'OK'}"), "the first killed: calls answered again")
        is_(second.cmd("GET", "k:two"), "two", "... by the second")
        ok(took < scaled(3), "... within the first failed call and retry_interval (1 s)", took)
        ok(k.wait_log(r"info: redis 127\.0\.0\.1:%d: connected" % second.port),
           "the connection to the second logged")
        is_(rt(c, "get", "two"), (250, "{'two'}"), "the next calls stay on the second")
        c.close()

with Redis(password="s3cret") as red:
    with start(red, redis_keys={"password": "s3cret"}) as k:
        c = Raw(k.port, ehlo="client.test")
        is_(rt(c, "set", "auth"), (250, "{'OK'}"), "AUTH with redis.yaml password")
        c.close()
    with start(red, redis_keys={"password": "wrong"}) as k:
        c = Raw(k.port, ehlo="client.test")
        code, t = rt(c, "get", "auth")
        like(t, r"^\{nil,'.*(WRONGPASS|invalid password|NOAUTH)", "a wrong password: nil, err")
        ok(k.wait_log(r"redis .*setup refused"), "a refused AUTH logged")
        c.close()

# ---- strict redis.yaml
bad = [
    ("servers: [\"localhost:6379\"]\n", r"redis\.yaml:1: servers\[0\]: expected an IP address"),
    ("servers: []\n", r"redis\.yaml:1: servers: expected a list of 1 to 8 servers"),
    ("servers: [\"unix:relative\"]\n", r"redis\.yaml:1: servers\[0\]: a UNIX socket is an absolute path"),
    ("db: 16\n", r"redis\.yaml:1: db: must be between 0 and 15"),
    ("command_timeout: 0\n", r"redis\.yaml:1: command_timeout: must be more than 0"),
    ("servers: [\"127.0.0.1:6379\"]\ncomand_timeout: 1\n", r"redis\.yaml:2: unknown key 'comand_timeout'"),
    ("password: \"two words\"\n", r"redis\.yaml:1: password: spaces"),
    ("username: bob\n", r"redis\.yaml: username: needs a password"),
]
for text, rx in bad:
    k = Kasi(files={"config/plugins": "", "config/redis.yaml": text}, start=False)
    r = run([KASI_BIN, "-t", "-c", k.confdir])
    ok(r.returncode == 1 and re.search(rx, r.stdout + r.stderr), "kasi -t refuses %r" % text.strip(),
       r.stdout + r.stderr)
    k.cleanup()
k = Kasi(files={"config/plugins": "", "config/redis.yaml":
                redis_yaml("127.0.0.1:6390", "[::1]:6391", "unix:/run/redis/redis.sock", db=2,
                           password="pw", connect_timeout=0.5, command_timeout=0.25,
                           retry_interval=2, max_pending=100)}, start=False)
r = run([KASI_BIN, "-t", "-c", k.confdir])
is_(r.returncode, 0, "kasi -t takes every key", )
k.cleanup()

done()
