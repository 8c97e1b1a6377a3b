-- limit.lua — limits per client and per message:
--   concurrency   simultaneous connections from one IP (or /prefix)
--   rate          connections from one IP (or /prefix) in the last period
--   recipients    RCPT TO accepted per message (452 4.5.3)
--   messages      transactions (MAIL FROM) per connection
--   rejections    refused commands per connection before it is closed
--
-- Concurrency and rate are counted with kasi.counter, shared by every
-- worker process: they hold across reloads (connections still open on an
-- old generation count too) and across worker restarts. A connection's
-- concurrency hold is given back when it ends, or when its worker dies.
-- Should the shared table have no room for a new client, the connection
-- is let through (logged). The other limits are per connection.
-- Clients in smtp.yaml limits.exempt (loopback by default) and in this
-- plugin's own exempt list are not limited. The core has hard limits of
-- its own (smtp.yaml: limits.max_connections_per_ip, max_recipients,
-- max_errors); these are policy limits with their own replies. See
-- config/limit.yaml.

local netmask = require "kasi.netmask"

local P = {}
local cfg
local counter = kasi.counter

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

P.schema = { "map",
  keys = {
    concurrency = limit(421, "4.7.0", "Too many connections from your address, try again later"),
    rate = limit(421, "4.7.0", "Too many connections from your address, slow down",
                 { period = { "number", min = 1, max = 86400, default = 60 } }),
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
  }
end

-- the counting key of an address: the address masked to the prefix
local function key_of(ip)
  local b = netmask.parse(ip)
  if not b then return ip end
  local bits = #b == 4 and cfg.v4_prefix or cfg.v6_prefix
  local out = {}
  for i = 1, #b do
    local keep = math.max(0, math.min(8, bits - (i - 1) * 8))
    out[i] = bit.band(b[i], 256 - 2 ^ (8 - keep))
  end
  if #b == 4 then return table.concat(out, ".") .. "/" .. bits end
  for i = 1, 16 do out[i] = string.format("%02x", out[i]) end
  return table.concat(out) .. "/" .. bits
end

local function is_exempt(ip)
  return counter.exempt(ip) or (not cfg.exempt:empty() and cfg.exempt:match(ip))
end

-- n connections from key in the last rate.period seconds, this one included
local function over_rate(conn, key)
  local n, err = counter.incr("limit:rate:" .. key, 1, cfg.rate_period)
  if not n then conn:logwarn("limit: rate of %s not counted: %s", key, err) end
  return n and n > cfg.rate_max, n
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
  if cfg.rate_max > 0 then
    local over, n = over_rate(conn, key)
    if over then
      conn:result { fail = "rate", count = n }
      conn:loginfo("limit: %s: %d connections in %d s", key, n, cfg.rate_period)
      return DENYSOFT, cfg.rate_reply
    end
  end
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
  return NEXT
end

function P.hook_rcpt(conn, txn)
  if too_many_rejections(conn) then return DISCONNECT, cfg.rej_reply end
  if cfg.rcpt_max > 0 and #txn.rcpt_to >= cfg.rcpt_max and not exempt(conn) then
    return DENYSOFT, cfg.rcpt_reply
  end
  return NEXT
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
