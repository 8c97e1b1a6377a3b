-- karma.lua — a reputation per client, learnt from how its past
-- connections went and kept in Redis, so every kasi node knows it.
--
-- Each connection earns a score from its events: messages accepted (+),
-- commands other plugins refused or deferred (-), protocol errors (-),
-- each weighted by `weights`, the total capped at +-max_per_connection.
-- When the connection ends, its score is added to the client's history
-- (by IP, or by network), which is kept for `memory` seconds after its
-- last connection. At the next connect, on any node, the history is read:
--
--   conn.notes.karma = { score = history, connections = N, known = bool }
--
-- for other plugins to weigh, and karma itself may act on it (each
-- threshold off when absent): reject (554 at connect), defer (421 at
-- connect), or tarpit (every HELO, MAIL, RCPT and DATA answered only after
-- tarpit_delay seconds). Clients that may relay and exempt_ips are left
-- alone. When Redis fails or is slow, on_redis_error decides: fail_open
-- lets the client in unknown (notes.karma.known = false), fail_closed
-- defers it; the history write at the end of a connection is sent without
-- waiting, so a Redis outage never holds a session. See config/karma.yaml.

local match = require "kasi.match"
local netmask = require "kasi.netmask"
local throttle = require "kasi.throttle"

local P = {}
local cfg

local function reply(code, enh, message)
  return { "reply", default = { code = code, enh = enh, message = message } }
end

P.schema = { "map",
  keys = {
    per = { "enum", values = { "ip", "network" }, default = "ip" },
    ipv4_prefix = { "integer", min = 0, max = 32, default = 24 },
    ipv6_prefix = { "integer", min = 0, max = 128, default = 64 },
    weights = { "map", default = {}, keys = {
      accepted = { "number", min = -100, max = 100, default = 1 },
      rejected = { "number", min = -100, max = 100, default = -1 },
      deferred = { "number", min = -100, max = 100, default = -0.5 },
      protocol_error = { "number", min = -100, max = 100, default = -1 },
    } },
    max_per_connection = { "number", min = 0, max = 1000, default = 5 },
    ignore_plugins = { "list", of = "name", default = { "greylist", "karma" } },
    memory = { "number", min = 60, max = 86400 * 366, default = 86400 * 30 },
    thresholds = { "map", default = {}, keys = {
      reject = { "number" },
      defer = { "number" },
      tarpit = { "number" },
    } },
    tarpit_delay = { "number", min = 0, max = 60, default = 5 },
    exempt_ips = { "list", of = "cidr", default = {} },
    exempt_relaying = { "boolean", default = true },
    on_redis_error = { "enum", values = { "fail_open", "fail_closed" }, default = "fail_open" },
    key_prefix = { "string", default = "kasi:karma:" },
    reject_reply = reply(554, "5.7.1", "Your reputation here is too poor"),
    defer_reply = reply(421, "4.7.0", "Your reputation here is poor, try again later"),
    error_reply = reply(421, "4.3.0", "Temporary local problem, try again later"),
  },
}

function P.register(c)
  cfg = c
  cfg.exempt = netmask.list(c.exempt_ips)
  cfg.ignore = match.list(c.ignore_plugins)
  cfg.answers = { reject = kasi.reply(c.reject_reply), defer = kasi.reply(c.defer_reply),
                  error = kasi.reply(c.error_reply) }
end

local function key_of(conn)
  local who = conn.remote_ip
  if cfg.per == "network" then
    who = netmask.network(who, cfg.ipv4_prefix, cfg.ipv6_prefix) or who
  end
  return cfg.key_prefix .. who
end

local function exempt(conn)
  return (cfg.exempt_relaying and conn.relaying)
      or (not cfg.exempt:empty() and cfg.exempt:match(conn.remote_ip) ~= nil)
end

-- what this connection did so far
local function events(conn)
  local e = conn.notes.karma_events
  if not e then
    e = { accepted = 0, rejected = 0, deferred = 0 }
    conn.notes.karma_events = e
  end
  return e
end

-- The history's verdict: "reject", "defer", "tarpit" or nil.
local function verdict(score)
  local t = cfg.thresholds
  if t.reject and score <= t.reject then return "reject" end
  if t.defer and score <= t.defer then return "defer" end
  if t.tarpit and score <= t.tarpit then return "tarpit" end
end

local outage = throttle.new(10)        -- one warning per 10 s

-- The history could not be read: on_redis_error decides.
local function redis_failed(conn, err)
  conn.notes.karma = { score = 0, connections = 0, known = false }
  local quiet = outage:ready()
  if quiet then
    conn:logwarn("history of %s unknown: %s%s", conn.remote_ip, err, throttle.more(quiet))
  end
  if cfg.on_redis_error == "fail_closed" then return DENYSOFT, cfg.answers.error end
  return NEXT
end

function P.hook_connect(conn)
  if exempt(conn) then
    conn.notes.karma = { score = 0, connections = 0, known = false, exempt = true }
    return NEXT
  end
  events(conn)
  local r, err = kasi.redis.call("HMGET", key_of(conn), "score", "connections")
  if not r then return redis_failed(conn, err) end
  local score = tonumber(r[1]) or 0
  local n = tonumber(r[2]) or 0
  conn.notes.karma = { score = score, connections = n, known = n > 0 }
  local act = verdict(score)
  if not act then return NEXT end
  conn:result { score = score, action = act }
  conn:loginfo("%s has %g after %d connections: %s", conn.remote_ip, score, n, act)
  if act == "tarpit" then
    conn.notes.karma_tarpit = true
    return NEXT
  end
  return act == "reject" and DENY or DENYSOFT, cfg.answers[act]
end

local function tarpit(conn)
  if conn.notes.karma_tarpit and cfg.tarpit_delay > 0 then kasi.sleep(cfg.tarpit_delay) end
  return NEXT
end

P.hook_helo = tarpit
P.hook_ehlo = tarpit
P.hook_mail = tarpit
P.hook_rcpt = tarpit
P.hook_data = tarpit

function P.hook_deny(conn, txn, d)
  if cfg.ignore:match(d.plugin or "") then return NEXT end
  local e = events(conn)
  if d.rc == DENYSOFT then e.deferred = e.deferred + 1 else e.rejected = e.rejected + 1 end
  return NEXT
end

function P.hook_queue_ok(conn)
  local e = events(conn)
  e.accepted = e.accepted + 1
  return NEXT
end

-- This connection's score, capped.
local function connection_score(conn)
  local e, w = events(conn), cfg.weights
  local s = e.accepted * w.accepted + e.rejected * w.rejected + e.deferred * w.deferred
            + (conn.errors or 0) * w.protocol_error
  local cap = cfg.max_per_connection
  return math.max(-cap, math.min(cap, s))
end

-- The history grows by the connection's score; sent, not waited for:
-- nothing needs the answer, and an outage must hold nothing, not even the
-- end of a connection.
function P.hook_disconnect(conn)
  local k = conn.notes.karma
  if not k or k.exempt then return NEXT end
  local s, key = connection_score(conn), key_of(conn)
  local ok, err = kasi.redis.pipeline({
    { "HINCRBYFLOAT", key, "score", s },
    { "HINCRBY", key, "connections", 1 },
    { "EXPIRE", key, math.floor(cfg.memory) },
  }, { wait = false })
  local e = events(conn)
  conn:loginfo("connection %+g (accepted %d, rejected %d, deferred %d, errors %d)%s",
               s, e.accepted, e.rejected, e.deferred, conn.errors or 0,
               ok and "" or (": not recorded: " .. tostring(err)))
  return NEXT
end

return P
