-- dnsbl.lua — DNS block lists (and allow lists) for the client's IP.
--
-- At connect every configured zone is asked at once (RFC 5782: reversed
-- IPv4 octets, or IPv6 nibbles, under the zone). An answer counts when it
-- is one of the zone's return codes (kasi.dnslist: by default any
-- 127.x.x.x but the lists' error codes). A listed client is rejected at
-- connect, or (the default) at RCPT / DATA, so mail to postmaster and to
-- allow-listed recipients still gets through. A zone that times out or
-- fails never rejects anyone. Allow-list zones (DNSWL) and the clients in
-- exempt_ips skip the block lists. See config/dnsbl.yaml.

local dnslist = require "kasi.dnslist"
local netmask = require "kasi.netmask"

local P = {}
local cfg

-- ---------------------------------------------------------------- config

local ZONE = { "map", scalar = "zone", keys = {
  zone = { "string", required = true },
  codes = { "list", of = dnslist.CODE },
  message = { "string" },
  txt = { "boolean", default = true },
  ipv6 = { "boolean", default = true },
} }

P.schema = { "map",
  keys = {
    zones = { "list", of = ZONE, default = {} },
    allow_zones = { "list", of = ZONE, default = {} },
    exempt_ips = { "list", of = "cidr", default = {} },
    exempt_private = { "boolean", default = true },
    reject_at = { "enum", values = { "connect", "rcpt", "data" }, default = "rcpt" },
    allow_rcpts = { "list", of = "string", default = {} },
    timeout = { "number", min = 0, max = 60, default = 0 },
    reply = { "reply", default = { code = 550, enh = "5.7.1",
                                   message = "Rejected: {ip} is listed in {zone}{reason}" } },
  },
  renamed = { allow_ips = "exempt_ips", skip_private = "exempt_private",
              message = "reply.message" },
}

local function zones_of(list)
  local out = {}
  for i, z in ipairs(list) do
    out[i] = { zone = z.zone, codes = dnslist.codes(z.codes), message = z.message, txt = z.txt,
               ipv6 = z.ipv6 }
  end
  return out
end

function P.register(c)
  local rcpts = {}
  for _, r in ipairs(c.allow_rcpts) do rcpts[r:lower()] = true end
  cfg = {
    zones = zones_of(c.zones),
    allow_zones = zones_of(c.allow_zones),
    exempt_ips = netmask.list(c.exempt_ips),
    exempt_private = c.exempt_private,
    reject_at = c.reject_at,
    allow_rcpts = rcpts,
    timeout = c.timeout,
    reply = c.reply,
  }
end

-- ---------------------------------------------------------------- lookups

local function ask(zones, ip, v6)
  local qs, used = {}, {}
  for _, z in ipairs(zones) do
    if not v6 or z.ipv6 then
      qs[#qs + 1] = { kasi.dns.reverse(ip, z.zone), "A" }
      used[#used + 1] = z
    end
  end
  local opts = cfg.timeout > 0 and { timeout = cfg.timeout } or nil
  return (#qs > 0 and kasi.dns.query_many(qs, opts) or {}), used, qs
end

-- zones whose answer counts, as {zone=, code=, name=}
local function hits(conn, zones, ip, v6)
  local res, used, qs = ask(zones, ip, v6)
  local out = {}
  for i, r in ipairs(res) do
    if r.answers then
      for _, a in ipairs(r.answers) do
        if dnslist.counts(used[i].codes, a) then
          out[#out + 1] = { z = used[i], code = a, name = qs[i][1] }
          kasi.stats.incr("zone_hits", { zone = used[i].zone })
          break
        end
      end
    elseif r.err ~= "NXDOMAIN" and r.err ~= "NODATA" then
      conn:logwarn("dnsbl: %s: %s (ignored)", used[i].zone, r.err)
    end
  end
  return out
end

local function reasons(listed)
  local qs = {}
  for _, l in ipairs(listed) do
    if l.z.txt then qs[#qs + 1] = { l.name, "TXT" } end
  end
  if #qs == 0 then return end
  local res = kasi.dns.query_many(qs, cfg.timeout > 0 and { timeout = cfg.timeout } or nil)
  local j = 0
  for _, l in ipairs(listed) do
    if l.z.txt then
      j = j + 1
      local a = res[j].answers
      if a and a[1] then l.reason = a[1]:gsub("[%c]", " ") end
    end
  end
end

local function reply_text(ip, l)
  local msg = l.z.message or cfg.reply.message
  local reason = l.reason and (": " .. l.reason) or ""
  return (msg:gsub("{(%w+)}", { ip = ip, zone = l.z.zone, reason = reason,
                                code = l.code }))
end

-- ---------------------------------------------------------------- hooks

function P.hook_connect(conn)
  local b = netmask.parse(conn.remote_ip)
  if not b then return NEXT end
  local ip = netmask.normalize(conn.remote_ip)      -- IPv4-mapped: IPv4
  if cfg.exempt_ips:match(b) then
    conn.notes.dnsbl = { allowed = "ip" }
    return NEXT
  end
  if cfg.exempt_private and netmask.is_private(b) then return NEXT end
  local v6 = #b == 16
  if #cfg.allow_zones > 0 then
    local ok = hits(conn, cfg.allow_zones, ip, v6)
    if #ok > 0 then
      conn.notes.dnsbl = { allowed = ok[1].z.zone }
      conn:result { pass = ok[1].z.zone }
      return NEXT
    end
  end
  local listed = hits(conn, cfg.zones, ip, v6)
  if #listed == 0 then
    conn.notes.dnsbl = { listed = false }
    return NEXT
  end
  reasons(listed)
  local zones = {}
  for i, l in ipairs(listed) do zones[i] = l.z.zone end
  local text = reply_text(ip, listed[1])
  conn.notes.dnsbl = { listed = true, zones = zones, message = text }
  conn:result { fail = table.concat(zones, ","), reason = listed[1].reason }
  conn:loginfo("dnsbl: %s listed in %s", ip, table.concat(zones, ","))
  if cfg.reject_at == "connect" then
    return DENY, { code = 554, enh = cfg.reply.enh, msg = text }
  end
  return NEXT
end

-- postmaster (bare or at any domain) and the allow_rcpts addresses
local function rcpt_allowed(r)
  local user = (r.user or ""):lower()
  return r.is_postmaster or user == "postmaster"
      or cfg.allow_rcpts[(r.address or ""):lower()] or false
end

local function listed_text(conn)
  local n = conn.notes.dnsbl
  return n and n.listed and n.message
end

function P.hook_rcpt(conn, txn, rcpt)
  if cfg.reject_at ~= "rcpt" then return NEXT end
  local text = listed_text(conn)
  if not text then return NEXT end
  if rcpt_allowed(rcpt) then return NEXT end
  return DENY, kasi.reply(cfg.reply, text)
end

function P.hook_data(conn, txn)
  if cfg.reject_at ~= "data" then return NEXT end
  local text = listed_text(conn)
  if not text then return NEXT end
  for _, r in ipairs(txn.rcpt_to) do
    if not rcpt_allowed(r) then
      return DENY, kasi.reply(cfg.reply, text)
    end
  end
  return NEXT
end

return P
