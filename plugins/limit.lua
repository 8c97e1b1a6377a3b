-- limit.lua — limits per client and per message:
--   concurrency   simultaneous connections from one IP (or /prefix)
--   rate          connections from one IP (or /prefix) in the last period
--   rates         sliding-window rates of connections, messages and
--                 recipients per IP, per network (/24, /64), per sender,
--                 per recipient or per AUTH user
--   recipients    RCPT TO accepted per message (452 4.5.3)
--   messages      transactions (MAIL FROM) per connection
--   rejections    refused commands per connection before it is closed
--
-- Windows (rate, rates) are counted by a backend: `local` (kasi.counter,
-- shared by every worker process of this host: they hold across reloads
-- and worker restarts) or `redis` (config/redis.yaml: shared by every kasi
-- node using that Redis, so a client meets the same limit whichever node
-- the balancer sends it to). When Redis fails or is slow, on_redis_error
-- says what a count that could not be made means: fail_open lets the
-- client through, fail_closed defers it; either way within redis.yaml's
-- command_timeout, and the next call tries Redis again. Concurrency is
-- always counted here (kasi.counter): a node's open connections are its
-- own. Should the shared table have no room for a new client, the
-- connection is let through (logged). The other limits are per
-- connection. Clients in smtp.yaml limits.exempt (loopback and the relay
-- networks by default) and in this plugin's own exempt list are not limited. The core has hard
-- limits of its own (smtp.yaml: limits.max_connections_per_ip,
-- max_recipients, max_errors); these are policy limits with their own
-- replies. See config/limit.yaml.

local netmask = require "kasi.netmask"
local rates = require "kasi.rates"
local throttle = require "kasi.throttle"

local P = {}
local cfg
local counter = kasi.counter
local windows           -- the rate backend (kasi.rates)

-- one limit: { max = N, reply = {code, enh, message} } (and a period)
local function limit(code, enh, message, extra)
  local keys = {
    max = { "integer", min = 0, default = 0 },
    reply = { "reply", default = { code = code, enh = enh, message = message } },
  }
  for k, v in pairs(extra or {}) do keys[k] = v end
  return { "map", keys = keys, default = {},
           renamed = { code = "reply.code", enh = "reply.enh", message = "reply.message" } }
end

-- rate rules of one kind: { per = what, max = N, period = S, reply = ... }
local function rules(per_values, code, enh, message)
  return { "list", default = {}, of = { "map", keys = {
    per = { "enum", values = per_values, required = true },
    max = { "integer", min = 1, required = true },
    period = { "number", min = 1, max = 86400 * 7, default = 60 },
    ipv4_prefix = { "integer", min = 0, max = 32, default = 24 },
    ipv6_prefix = { "integer", min = 0, max = 128, default = 64 },
    reply = { "reply", default = { code = code, enh = enh, message = message } },
  } } }
end

P.schema = { "map",
  keys = {
    concurrency = limit(421, "4.7.0", "Too many connections from your address, try again later"),
    rate = limit(421, "4.7.0", "Too many connections from your address, slow down",
                 { period = { "number", min = 1, max = 86400, default = 60 } }),
    rates = { "map", default = {}, keys = {
      connections = rules({ "ip", "network" }, 421, "4.7.0",
                          "Too many connections from your address, slow down"),
      messages = rules({ "ip", "network", "sender", "auth_user" }, 451, "4.7.1",
                       "Too many messages, try again later"),
      recipients = rules({ "ip", "network", "sender", "recipient", "auth_user" }, 451, "4.7.1",
                         "Too many recipients, try again later"),
    } },
    backend = { "enum", values = { "local", "redis" }, default = "local" },
    on_redis_error = { "enum", values = { "fail_open", "fail_closed" }, default = "fail_open" },
    redis_error_reply = { "reply", default = { code = 451, enh = "4.3.0",
                                               message = "Temporary local problem, try again later" } },
    key_prefix = { "string", default = "kasi:limit:" },
    recipients = limit(452, "4.5.3", "Too many recipients"),
    messages = limit(421, "4.7.0", "Too many messages in one connection, please reconnect"),
    rejections = limit(421, "4.7.0", "Too many rejected commands, closing connection"),
    ipv4_prefix = { "integer", min = 0, max = 32, default = 32 },
    ipv6_prefix = { "integer", min = 0, max = 128, default = 64 },
    exempt_ips = { "list", of = "cidr", default = {} },
  },
  renamed = { exempt = "exempt_ips" },
}

function P.register(c)
  cfg = {
    conc_max = c.concurrency.max,
    conc_reply = kasi.reply(c.concurrency.reply),
    rate_max = c.rate.max,
    rate_period = c.rate.period,
    rate_reply = kasi.reply(c.rate.reply),
    rcpt_max = c.recipients.max,
    rcpt_reply = kasi.reply(c.recipients.reply),
    msg_max = c.messages.max,
    msg_reply = kasi.reply(c.messages.reply),
    rej_max = c.rejections.max,
    rej_reply = kasi.reply(c.rejections.reply),
    v4_prefix = c.ipv4_prefix,
    v6_prefix = c.ipv6_prefix,
    exempt = netmask.list(c.exempt_ips),
    rates = c.rates,
    fail_closed = c.on_redis_error == "fail_closed",
    error_reply = kasi.reply(c.redis_error_reply),
  }
  for _, list in pairs(c.rates) do
    for _, r in ipairs(list) do r.answer = kasi.reply(r.reply) end
  end
  windows = rates.new(c.backend, c.key_prefix)
end

-- the counting key of an address: its network (the address masked to the
-- prefix), or the text itself when it is not an address
local function key_of(ip, v4, v6)
  return netmask.network(ip, v4 or cfg.v4_prefix, v6 or cfg.v6_prefix) or ip
end

local function is_exempt(ip)
  return counter.exempt(ip) or (not cfg.exempt:empty() and cfg.exempt:match(ip))
end

-- The value a rule counts by, or nil when it does not apply (no AUTH
-- user, the null sender).
local function rule_value(r, conn, txn, rcpt)
  if r.per == "ip" then return conn.remote_ip end
  if r.per == "network" then return key_of(conn.remote_ip, r.ipv4_prefix, r.ipv6_prefix) end
  if r.per == "auth_user" then return conn.auth_user end
  if r.per == "recipient" then return rcpt and rcpt.address:lower() end
  local from = txn and txn.mail_from
  if from and not from.is_null then return from.address:lower() end
end

local outage = throttle.new(10)        -- one warning per 10 s

-- A count that could not be made: fail_open lets the client through.
local function count_failed(conn, what, err)
  local quiet = outage:ready()
  if quiet then
    conn:logwarn("%s not counted (%s): %s%s", what, err,
                 cfg.fail_closed and "deferring" or "letting clients through",
                 throttle.more(quiet))
  end
  conn:result { err = err }
  if cfg.fail_closed then return DENYSOFT, cfg.error_reply end
  return NEXT
end

-- Count one event in every window of list (and in extra, the old `rate`);
-- the first one over its max answers.
local function check_rates(conn, txn, rcpt, kind, list, extra)
  local items, used = {}, {}
  for _, r in ipairs(extra or {}) do items[#items + 1] = r.item; used[#used + 1] = r end
  for _, r in ipairs(list) do
    local v = rule_value(r, conn, txn, rcpt)
    if v then
      items[#items + 1] = { key = kind .. ":" .. r.per .. ":" .. r.period .. ":" .. v,
                            window = r.period }
      used[#used + 1] = r
    end
  end
  if #items == 0 then return NEXT end
  local counts, err = windows:add(items)
  if not counts then return count_failed(conn, kind, err) end
  for i, r in ipairs(used) do
    if counts[i] > r.max then
      local what = r.per and (kind .. " per " .. r.per) or "rate"
      local obj = txn or conn
      obj:result { fail = what, count = counts[i] }
      obj:loginfo("%s: %d in %d s (max %d)", what, counts[i], r.period, r.max)
      return DENYSOFT, r.answer
    end
  end
  return NEXT
end

-- hold one of key's concurrency slots for as long as the connection lasts
local function over_concurrency(conn, key)
  local held, n = counter.hold(conn, "limit:conc:" .. key, cfg.conc_max)
  if held == nil then conn:logwarn("limit: connections of %s not counted: %s", key, n) end
  return held == false, n
end

function P.hook_connect(conn)
  if is_exempt(conn.remote_ip) then
    conn.notes.limit_exempt = true
    return NEXT
  end
  local key = key_of(conn.remote_ip)
  local old = cfg.rate_max > 0 and { { max = cfg.rate_max, period = cfg.rate_period,
    answer = cfg.rate_reply, item = { key = "rate:" .. key, window = cfg.rate_period } } }
  local rc, msg = check_rates(conn, nil, nil, "connections", cfg.rates.connections, old)
  if rc ~= NEXT then return rc, msg end
  if cfg.conc_max > 0 then
    local over, n = over_concurrency(conn, key)
    if over then
      conn:result { fail = "concurrency", count = n + 1 }
      conn:loginfo("limit: %s: %d connections at once", key, n + 1)
      return DENYSOFT, cfg.conc_reply
    end
  end
  return NEXT
end

local function exempt(conn) return conn.notes.limit_exempt end

local function too_many_rejections(conn)
  return cfg.rej_max > 0 and not exempt(conn)
     and (conn.notes.limit_rejections or 0) >= cfg.rej_max
end

function P.hook_deny(conn, txn, d)
  if d.plugin ~= plugin_name then
    conn.notes.limit_rejections = (conn.notes.limit_rejections or 0) + 1
  end
  return NEXT
end

function P.hook_helo(conn)
  if too_many_rejections(conn) then return DISCONNECT, cfg.rej_reply end
  return NEXT
end

function P.hook_mail(conn, txn)
  if too_many_rejections(conn) then return DISCONNECT, cfg.rej_reply end
  local n = (conn.notes.limit_messages or 0) + 1
  conn.notes.limit_messages = n
  if cfg.msg_max > 0 and n > cfg.msg_max and not exempt(conn) then
    txn:loginfo("limit: %d transactions in one connection", n)
    return DISCONNECT, cfg.msg_reply
  end
  if exempt(conn) then return NEXT end
  return check_rates(conn, txn, nil, "messages", cfg.rates.messages)
end

function P.hook_rcpt(conn, txn, rcpt)
  if too_many_rejections(conn) then return DISCONNECT, cfg.rej_reply end
  if exempt(conn) then return NEXT end
  if cfg.rcpt_max > 0 and #txn.rcpt_to >= cfg.rcpt_max then
    return DENYSOFT, cfg.rcpt_reply
  end
  return check_rates(conn, txn, rcpt, "recipients", cfg.rates.recipients)
end

function P.hook_data(conn)
  if too_many_rejections(conn) then return DISCONNECT, cfg.rej_reply end
  return NEXT
end

function P.hook_unrecognized_command(conn)
  if too_many_rejections(conn) then return DISCONNECT, cfg.rej_reply end
  return NEXT
end

return P
