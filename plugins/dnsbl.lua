-- dnsbl.lua — DNS block lists (and allow lists) for the client's IP.
--
-- At connect every configured zone is asked at once (RFC 5782: reversed
-- IPv4 octets, or IPv6 nibbles, under the zone). An answer counts when it
-- is one of the zone's return codes. A listed client is rejected at
-- connect, or (the default) at RCPT / DATA, so mail to postmaster and to
-- allow-listed recipients still gets through. A zone that times out or
-- fails never rejects anyone. Allow-list zones (DNSWL) and allow-listed
-- IPs / networks skip the block lists. See config/dnsbl.yaml.

local P = {}
local cfg

-- ---------------------------------------------------------------- addresses

local function ip_bytes(ip)
  if ip:find(":", 1, true) then
    -- IPv6: expand "::" and return 16 bytes
    local head, tail = ip:match("^(.-)::(.*)$")
    local groups = {}
    local function add(part)
      for g in part:gmatch("[^:]+") do groups[#groups + 1] = g end
    end
    if head then
      local h, t = {}, {}
      for g in head:gmatch("[^:]+") do h[#h + 1] = g end
      for g in tail:gmatch("[^:]+") do t[#t + 1] = g end
      for _, g in ipairs(h) do groups[#groups + 1] = g end
      for _ = 1, 8 - #h - #t do groups[#groups + 1] = "0" end
      for _, g in ipairs(t) do groups[#groups + 1] = g end
    else
      add(ip)
    end
    if #groups ~= 8 then return nil end
    local b = {}
    for _, g in ipairs(groups) do
      local v = tonumber(g, 16)
      if not v then return nil end
      b[#b + 1] = math.floor(v / 256)
      b[#b + 1] = v % 256
    end
    return b
  end
  local a, b2, c, d = ip:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if not a then return nil end
  return { tonumber(a), tonumber(b2), tonumber(c), tonumber(d) }
end

-- "192.0.2.0/24", "2001:db8::/32" or a single address -> matcher
local function parse_cidr(s)
  local addr, len = s:match("^([^/]+)/(%d+)$")
  addr = addr or s
  local b = ip_bytes(addr)
  if not b then error("dnsbl: bad address or network '" .. s .. "'") end
  return { bytes = b, len = tonumber(len) or #b * 8 }
end

local function cidr_match(net, b)
  if #net.bytes ~= #b then return false end
  local bits = net.len
  for i = 1, #b do
    if bits <= 0 then return true end
    local mask = bits >= 8 and 255 or (256 - 2 ^ (8 - bits))
    if bit.band(b[i], mask) ~= bit.band(net.bytes[i], mask) then return false end
    bits = bits - 8
  end
  return true
end

local function is_private(b)
  if #b == 4 then
    return b[1] == 10 or b[1] == 127 or (b[1] == 172 and b[2] >= 16 and b[2] < 32)
        or (b[1] == 192 and b[2] == 168) or (b[1] == 169 and b[2] == 254)
  end
  local zero = true
  for i = 1, 15 do if b[i] ~= 0 then zero = false end end
  return (zero and b[16] == 1) or b[1] == 0xfe and b[2] >= 0x80 and b[2] < 0xc0
      or bit.band(b[1], 0xfe) == 0xfc
end

-- ---------------------------------------------------------------- config

-- "127.0.0.2", "127.0.0.2-127.0.0.11" -> {lo, hi} as numbers
local function ip4num(s)
  local b = ip_bytes(s)
  if not b or #b ~= 4 then error("dnsbl: bad return code '" .. tostring(s) .. "'") end
  return ((b[1] * 256 + b[2]) * 256 + b[3]) * 256 + b[4]
end

local function parse_codes(list)
  if not list then
    -- default: anything in 127.0.0.0/8 except 127.255.255.x (error codes)
    return { { ip4num("127.0.0.0"), ip4num("127.255.254.255") } }
  end
  local out = {}
  for _, c in ipairs(list) do
    local lo, hi = tostring(c):match("^%s*([%d%.]+)%s*%-%s*([%d%.]+)%s*$")
    if lo then out[#out + 1] = { ip4num(lo), ip4num(hi) }
    else out[#out + 1] = { ip4num(c), ip4num(c) } end
  end
  return out
end

local function code_counts(zone, answer)
  local b = ip_bytes(answer)
  if not b or #b ~= 4 then return false end
  local n = ip4num(answer)
  for _, r in ipairs(zone.codes) do
    if n >= r[1] and n <= r[2] then return true end
  end
  return false
end

local function parse_zones(list)
  local out = {}
  for _, z in ipairs(list or {}) do
    if type(z) == "string" then z = { zone = z } end
    if type(z) ~= "table" or type(z.zone) ~= "string" then
      error("dnsbl: each zone needs a 'zone' name")
    end
    out[#out + 1] = {
      zone = z.zone, codes = parse_codes(z.codes), message = z.message,
      txt = z.txt ~= false, ipv6 = z.ipv6 ~= false,
    }
  end
  return out
end

function P.register(c)
  cfg = {
    zones = parse_zones(c.zones),
    allow_zones = parse_zones(c.allow_zones),
    allow_ips = {},
    reject_at = c.reject_at or "rcpt",
    allow_rcpts = {},
    skip_private = c.skip_private ~= false,
    timeout = tonumber(c.timeout) or 0,
    message = c.message or "Rejected: {ip} is listed in {zone}{reason}",
  }
  for _, s in ipairs(c.allow_ips or {}) do cfg.allow_ips[#cfg.allow_ips + 1] = parse_cidr(s) end
  for _, r in ipairs(c.allow_rcpts or {}) do cfg.allow_rcpts[r:lower()] = true end
  local at = cfg.reject_at
  if at ~= "connect" and at ~= "rcpt" and at ~= "data" then
    error("dnsbl: reject_at must be connect, rcpt or data")
  end
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
        if code_counts(used[i], a) then
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
  local msg = l.z.message or cfg.message
  local reason = l.reason and (": " .. l.reason) or ""
  return (msg:gsub("{(%w+)}", { ip = ip, zone = l.z.zone, reason = reason,
                                code = l.code }))
end

-- ---------------------------------------------------------------- hooks

function P.hook_connect(conn)
  local ip = conn.remote_ip
  local b = ip_bytes(ip)
  if not b then return NEXT end
  for _, net in ipairs(cfg.allow_ips) do
    if cidr_match(net, b) then
      conn.notes.dnsbl = { allowed = "ip" }
      return NEXT
    end
  end
  if cfg.skip_private and is_private(b) then return NEXT end
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
    return DENY, { code = 554, enh = "5.7.1", msg = text }
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
  return DENY, { code = 550, enh = "5.7.1", msg = text }
end

function P.hook_data(conn, txn)
  if cfg.reject_at ~= "data" then return NEXT end
  local text = listed_text(conn)
  if not text then return NEXT end
  for _, r in ipairs(txn.rcpt_to) do
    if not rcpt_allowed(r) then
      return DENY, { code = 550, enh = "5.7.1", msg = text }
    end
  end
  return NEXT
end

return P
