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

local function num(v, name, default)
  if v == nil then return default end
  local n = tonumber(v)
  if not n or n < 0 then error("limit: " .. name .. " must be a number >= 0") end
  return n
end

local function reply(c, code, enh, msg)
  c = c or {}
  return { code = tonumber(c.code) or code, enh = c.enh or enh, msg = c.message or msg }
end

function P.register(c)
  local conc, rt = c.concurrency or {}, c.rate or {}
  local rc, msgs, rej = c.recipients or {}, c.messages or {}, c.rejections or {}
  cfg = {
    conc_max = num(conc.max, "concurrency.max", 0),
    conc_reply = reply(conc, 421, "4.7.0", "Too many connections from your address, try again later"),
    rate_max = num(rt.max, "rate.max", 0),
    rate_period = num(rt.period, "rate.period", 60),
    rate_reply = reply(rt, 421, "4.7.0", "Too many connections from your address, slow down"),
    rcpt_max = num(rc.max, "recipients.max", 0),
    rcpt_reply = reply(rc, 452, "4.5.3", "Too many recipients"),
    msg_max = num(msgs.max, "messages.max", 0),
    msg_reply = reply(msgs, 421, "4.7.0", "Too many messages in one connection, please reconnect"),
    rej_max = num(rej.max, "rejections.max", 0),
    rej_reply = reply(rej, 421, "4.7.0", "Too many rejected commands, closing connection"),
    v4_prefix = num(c.ipv4_prefix, "ipv4_prefix", 32),
    v6_prefix = num(c.ipv6_prefix, "ipv6_prefix", 64),
    exempt = netmask.list(c.exempt or {}, "limit: exempt"),
  }
  if cfg.rate_period <= 0 then error("limit: rate.period must be > 0") end
  if cfg.v4_prefix > 32 or cfg.v6_prefix > 128 then
    error("limit: ipv4_prefix <= 32, ipv6_prefix <= 128")
  end
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
