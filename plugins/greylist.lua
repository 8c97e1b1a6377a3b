-- greylist.lua — greylisting in Redis, shared by every kasi node: the
-- first attempt of a triplet (client network, sender, recipient) is
-- deferred at RCPT with 451 4.7.1; a retry after `delay` seconds (and
-- within `retry_window` of the first attempt) passes, and then the client's
-- network is whitelisted for `whitelist` seconds, renewed by each message
-- it sends. Real MTAs retry; most spam engines do not. Because the state
-- is in Redis (config/redis.yaml), a retry that the balancer sends to
-- another node passes there.
--
-- Never greylisted: clients that may relay (relay networks, authenticated
-- clients: conn.relaying), exempt_ips, clients listed in a DNS whitelist
-- zone (dnswl: only the zone's return codes count, never its error
-- answers), exempt recipients (postmaster by default) and exempt senders.
-- When Redis fails or is slow, on_redis_error decides: fail_open accepts
-- (greylisting is a filter, not a gate), fail_closed defers. The triplet's result is in
-- txn.notes.greylist ("new", "early", "pass", "white", "exempt", "error").
-- See config/greylist.yaml.

local dnslist = require "kasi.dnslist"
local match = require "kasi.match"
local netmask = require "kasi.netmask"
local throttle = require "kasi.throttle"

local P = {}
local cfg

-- a DNS whitelist: "zone", or { zone =, codes = } (kasi.dnslist)
local DNSWL = { "map", scalar = "zone", keys = {
  zone = { "string", required = true },
  codes = { "list", of = dnslist.CODE },
} }

P.schema = { "map",
  keys = {
    delay = { "number", min = 0, max = 86400, default = 300 },
    retry_window = { "number", min = 1, max = 86400 * 7, default = 14400 },
    whitelist = { "number", min = 0, max = 86400 * 366, default = 86400 * 36 },
    ipv4_prefix = { "integer", min = 0, max = 32, default = 24 },
    ipv6_prefix = { "integer", min = 0, max = 128, default = 64 },
    sender = { "enum", values = { "address", "domain" }, default = "address" },
    exempt_ips = { "list", of = "cidr", default = {} },
    exempt_relaying = { "boolean", default = true },
    exempt_rcpts = { "list", of = "name", default = { "postmaster", "postmaster@*" } },
    exempt_senders = { "list", of = "name", default = {} },
    dnswl = { "list", of = DNSWL, default = {} },
    dnswl_timeout = { "number", min = 0.1, max = 30, default = 2 },
    on_redis_error = { "enum", values = { "fail_open", "fail_closed" }, default = "fail_open" },
    key_prefix = { "string", default = "kasi:grey:" },
    reply = { "reply", default = { code = 451, enh = "4.7.1",
                                   message = "Greylisted, please try again later" } },
  },
  check = function(c)
    if c.delay >= c.retry_window then
      return nil, "must be longer than delay", "retry_window"
    end
    return true
  end,
}

-- KEYS: the network's whitelist entry, the triplet. ARGV: delay,
-- retry_window, whitelist. Time is the server's (milliseconds): every node
-- agrees.
local CHECK = kasi.redis.script [[
if redis.call('EXISTS', KEYS[1]) == 1 then return { 'white', 0 } end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local first = redis.call('GET', KEYS[2])
if not first then
  redis.call('SET', KEYS[2], now, 'EX', ARGV[2])
  return { 'new', 0 }
end
local age = now - tonumber(first)
if age < tonumber(ARGV[1]) * 1000 then return { 'early', math.floor(age / 1000) } end
redis.call('DEL', KEYS[2])
if tonumber(ARGV[3]) > 0 then redis.call('SET', KEYS[1], now, 'EX', ARGV[3]) end
return { 'pass', math.floor(age / 1000) }
]]

function P.register(c)
  cfg = c
  cfg.exempt = netmask.list(c.exempt_ips)
  cfg.rcpts = match.list(c.exempt_rcpts)
  cfg.senders = match.list(c.exempt_senders)
  cfg.answer = kasi.reply(c.reply)
  for _, z in ipairs(c.dnswl) do z.codes = dnslist.codes(z.codes) end
end

local function network(conn)
  return netmask.network(conn.remote_ip, cfg.ipv4_prefix, cfg.ipv6_prefix) or conn.remote_ip
end

local function listed_in(zone, answers)
  for _, a in ipairs(answers or {}) do
    if dnslist.counts(zone.codes, a) then return true end
  end
  return false
end

-- The first DNS whitelist zone that lists ip, or false; all are asked at
-- once. Only a zone's codes count: an error answer such as dnswl.org's
-- 127.0.0.255 (a query through a public resolver) is no listing.
local function dnswl_zone(ip)
  local qs = {}
  for i, z in ipairs(cfg.dnswl) do qs[i] = { kasi.dns.reverse(ip, z.zone), "A" } end
  for i, r in ipairs(kasi.dns.query_many(qs, { timeout = cfg.dnswl_timeout })) do
    if listed_in(cfg.dnswl[i], r.answers) then return cfg.dnswl[i].zone end
  end
  return false
end

-- Asked once per connection.
local function dnswl_listed(conn)
  local seen = conn.notes.greylist_dnswl
  if seen == nil then
    local ip = netmask.normalize(conn.remote_ip)
    seen = ip and dnswl_zone(ip) or false
    conn.notes.greylist_dnswl = seen
  end
  return seen
end

-- the sender's address, lower-cased; the null sender as <>
local function sender_address(txn)
  local from = txn.mail_from
  return from.is_null and "<>" or from.address:lower()
end

local function exempt(conn, txn, rcpt)
  if cfg.exempt_relaying and conn.relaying then return "relaying" end
  if not cfg.exempt:empty() and cfg.exempt:match(conn.remote_ip) then return "exempt_ips" end
  if cfg.rcpts:match(rcpt.address:lower()) then return "recipient" end
  if cfg.senders:match(sender_address(txn)) then return "sender" end
  local zone = #cfg.dnswl > 0 and dnswl_listed(conn)
  if zone then return "dnswl " .. zone end
end

-- what of the sender a triplet holds
local function sender_of(txn)
  local from = txn.mail_from
  if cfg.sender == "domain" and not from.is_null then return (from.host or ""):lower() end
  return sender_address(txn)
end

local function note(txn, status)
  txn.notes.greylist = status
  return status
end

local outage = throttle.new(10)        -- one warning per 10 s

-- Redis failed: on_redis_error decides.
local function redis_failed(txn, triplet, err)
  note(txn, "error")
  local closed = cfg.on_redis_error == "fail_closed"
  local quiet = outage:ready()
  if quiet then
    txn:logwarn("%s: %s (%s)%s", triplet, err, closed and "deferred" or "accepted",
                throttle.more(quiet))
  end
  if closed then return DENYSOFT, cfg.answer end
  return NEXT
end

function P.hook_rcpt(conn, txn, rcpt)
  local why = exempt(conn, txn, rcpt)
  if why then
    note(txn, "exempt")
    return NEXT
  end
  local net = network(conn)
  local triplet = net .. "|" .. sender_of(txn) .. "|" .. rcpt.address:lower()
  local r, err = CHECK:eval({ cfg.key_prefix .. "white:" .. net, cfg.key_prefix .. "t:" .. triplet },
                            { cfg.delay, cfg.retry_window, cfg.whitelist })
  if not r then return redis_failed(txn, triplet, err) end
  local status, age = note(txn, r[1]), r[2]
  if status == "new" or status == "early" then
    txn:result { greylisted = triplet, status = status, age = age }
    txn:loginfo("%s %s (after %d s, delay %d s)", status, triplet, age, cfg.delay)
    return DENYSOFT, cfg.answer
  end
  if status == "pass" then
    txn:loginfo("pass %s after %d s: %s whitelisted", triplet, age, net)
  end
  return NEXT
end

-- A message from a whitelisted network renews its entry (not waited for).
function P.hook_queue_ok(conn, txn)
  local s = txn.notes.greylist
  if (s == "white" or s == "pass") and cfg.whitelist > 0 then
    kasi.redis.pipeline({ { "EXPIRE", cfg.key_prefix .. "white:" .. network(conn), cfg.whitelist } },
                        { wait = false })
  end
  return NEXT
end

return P
