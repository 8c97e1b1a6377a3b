-- access.lua — allow and deny lists: by client IP / network, by reverse
-- DNS name, by HELO name, by envelope sender and by recipient.
--
-- Each category has an allow list and a deny list; within a category the
-- allow list wins. Checks run where the value is known:
--   ip, rdns  at connect (refused with 554 5.7.1 there; rdns is only looked
--             up when an rdns list is configured)
--   helo      at HELO/EHLO       mail  at MAIL FROM      rcpt  at RCPT TO
-- A client allowed by IP or by (forward-confirmed) rDNS is "trusted":
-- with `trusted_skips: true` (default) the helo, mail and rcpt deny lists
-- of this plugin no longer apply to it, and with `trusted_relays: true`
-- it may also relay (conn.relaying). conn.notes.access records what
-- matched. See config/access.yaml for the list syntax.

local match = require "kasi.match"
local netmask = require "kasi.netmask"

local P = {}
local cfg

local CATEGORIES = { "ip", "rdns", "helo", "mail", "rcpt" }

local SIDE = { "map", default = {}, keys = {
  ip = { "list", of = "cidr", default = {} },
  rdns = { "list", of = "name", default = {} },
  helo = { "list", of = "name", default = {} },
  mail = { "list", of = "name", default = {} },
  rcpt = { "list", of = "name", default = {} },
} }

P.schema = { "map",
  keys = {
    allow = SIDE,
    deny = SIDE,
    trusted_skips = { "boolean", default = true },
    trusted_relays = { "boolean", default = false },
    rdns_allow_unconfirmed = { "boolean", default = false },
    reply = { "reply", default = { code = 550, enh = "5.7.1", message = "Access denied" } },
    connect_reply = { "reply", default = { code = 554, enh = "5.7.1", message = "Access denied" } },
  },
  renamed = { code = "reply.code", enh = "reply.enh", message = "reply.message",
              connect_code = "connect_reply.code" },
}

local function lists_of(side)
  local t = {}
  for _, cat in ipairs(CATEGORIES) do
    t[cat] = cat == "ip" and netmask.list(side.ip) or match.list(side[cat])
  end
  return t
end

function P.register(c)
  cfg = {
    allow = lists_of(c.allow),
    deny = lists_of(c.deny),
    trusted_skips = c.trusted_skips,
    trusted_relays = c.trusted_relays,
    rdns_allow_unconfirmed = c.rdns_allow_unconfirmed,
    reply = c.reply,
    connect_reply = c.connect_reply,
  }
end

local function deny(conn, reply, cat, value, entry)
  local text = reply.message:gsub("{(%w+)}", { what = cat, value = value })
  conn:loginfo("access: %s %s denied by '%s'", cat, value, entry)
  return DENY, kasi.reply(reply, text)
end

-- "allow" | "deny" | nil, and the entry that matched
local function judge(cat, value)
  local a = cfg.allow[cat]:match(value)
  if a then return "allow", a end
  local d = cfg.deny[cat]:match(value)
  if d then return "deny", d end
  return nil
end

local function note(conn)
  local n = conn.notes.access
  if not n then n = {}; conn.notes.access = n end
  return n
end

local function trust(conn, cat, entry)
  local n = note(conn)
  n.trusted = cat .. " " .. entry
  conn:result { pass = n.trusted }
  if cfg.trusted_relays then conn.relaying = true end
end

local function check_rdns(conn)
  if cfg.allow.rdns:empty() and cfg.deny.rdns:empty() then return nil end
  local name, confirmed = kasi.dns.rdns(conn)
  if not name then return nil end
  name = name:gsub("%.$", "")
  local verdict, entry = judge("rdns", name)
  if verdict == "allow" and not confirmed and not cfg.rdns_allow_unconfirmed then
    verdict, entry = nil, nil        -- an unconfirmed PTR can be forged
    local d = cfg.deny.rdns:match(name)
    if d then verdict, entry = "deny", d end
  end
  return verdict, entry, name
end

function P.hook_connect(conn)
  local ip = conn.remote_ip
  local verdict, entry = judge("ip", ip)
  if verdict == "allow" then trust(conn, "ip", entry); return NEXT end
  if verdict == "deny" then return deny(conn, cfg.connect_reply, "ip", ip, entry) end
  local rverdict, rentry, name = check_rdns(conn)
  if rverdict == "allow" then trust(conn, "rdns", rentry); return NEXT end
  if rverdict == "deny" then
    return deny(conn, cfg.connect_reply, "rdns", name, rentry)
  end
  return NEXT
end

local function trusted(conn)
  local n = conn.notes.access
  return cfg.trusted_skips and n and n.trusted
end

local function check(conn, cat, value)
  if value == nil or trusted(conn) then return NEXT end
  local verdict, entry = judge(cat, value)
  if verdict == "deny" then return deny(conn, cfg.reply, cat, value, entry) end
  if verdict == "allow" then note(conn)[cat] = entry end
  return NEXT
end

function P.hook_helo(conn, txn, helo)
  return check(conn, "helo", helo)
end

-- an address matches "user@host", "@host" or "host" entries
local function check_addr(conn, cat, addr)
  if trusted(conn) then return NEXT end
  local host = addr.host and addr.host:lower()
  local values = { addr.address }
  if host then
    values[#values + 1] = "@" .. host
    values[#values + 1] = host
  end
  for _, v in ipairs(values) do
    if cfg.allow[cat]:match(v) then note(conn)[cat] = v; return NEXT end
  end
  for _, v in ipairs(values) do
    local d = cfg.deny[cat]:match(v)
    if d then return deny(conn, cfg.reply, cat, addr.address, d) end
  end
  return NEXT
end

function P.hook_mail(conn, txn, from)
  if from.is_null then return check(conn, "mail", "<>") end
  return check_addr(conn, "mail", from)
end

function P.hook_rcpt(conn, txn, rcpt)
  return check_addr(conn, "rcpt", rcpt)
end

return P
