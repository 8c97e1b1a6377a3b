-- kasi/netmask.lua — IPv4 and IPv6 addresses and networks for plugins.
--
--   local netmask = require "kasi.netmask"
--   netmask.parse("2001:db8::1")        -> 16 bytes (array) | nil
--   netmask.normalize("::ffff:1.2.3.4")  -> "1.2.3.4" (canonical text) | nil
--   netmask.same("[1.2.3.4]", "1.2.3.4") -> true
--   local nets = netmask.list { "192.0.2.0/24", "2001:db8::/32", "10.1.2.3" }
--   nets:match("192.0.2.7")              -> "192.0.2.0/24" | nil
--
-- Addresses may carry brackets and an "IPv6:" tag (SMTP address literals)
-- and an IPv6 zone ("%eth0", ignored). An IPv4-mapped IPv6 address
-- (::ffff:a.b.c.d) is treated as the IPv4 address it carries, so an IPv4
-- network matches a client that arrived on a dual-stack socket.

local M = {}
local band, floor, tonumber = bit.band, math.floor, tonumber

local function parse4(s)
  local a, b, c, d = s:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if not a then return nil end
  local out = { tonumber(a), tonumber(b), tonumber(c), tonumber(d) }
  for i = 1, 4 do
    if out[i] > 255 or #select(i, a, b, c, d) > 3 then return nil end
  end
  return out
end

-- "1:2:3" -> array of 16-bit numbers; a trailing dotted quad gives two
local function groups_of(part, allow_v4)
  local out = {}
  if part == "" then return out end
  local items = {}
  for g in (part .. ":"):gmatch("([^:]*):") do items[#items + 1] = g end
  for i, g in ipairs(items) do
    if allow_v4 and i == #items and g:find(".", 1, true) then
      local q = parse4(g)
      if not q then return nil end
      out[#out + 1] = q[1] * 256 + q[2]
      out[#out + 1] = q[3] * 256 + q[4]
    else
      if not g:match("^%x%x?%x?%x?$") then return nil end
      out[#out + 1] = tonumber(g, 16)
    end
  end
  return out
end

local function parse6(s)
  s = s:gsub("%%.*$", "")
  local head, tail = s:match("^(.-)::(.*)$")
  local g
  if head then
    if tail:find("::", 1, true) then return nil end
    local h, t = groups_of(head, false), groups_of(tail, true)
    if not h or not t or #h + #t > 7 then return nil end
    g = h
    for _ = 1, 8 - #h - #t do g[#g + 1] = 0 end
    for _, v in ipairs(t) do g[#g + 1] = v end
  else
    g = groups_of(s, true)
    if not g or #g ~= 8 then return nil end
  end
  local b = {}
  for i = 1, 8 do
    b[2 * i - 1] = floor(g[i] / 256)
    b[2 * i] = g[i] % 256
  end
  return b
end

local function unmap(b)
  if #b ~= 16 then return b end
  for i = 1, 10 do if b[i] ~= 0 then return b end end
  if b[11] ~= 255 or b[12] ~= 255 then return b end
  return { b[13], b[14], b[15], b[16] }
end

-- strip "[...]" and "IPv6:" of an address literal
local function bare(s)
  s = s:match("^%[(.*)%]$") or s
  return s:match("^[Ii][Pp][Vv]6:(.*)$") or s
end

-- address text -> array of 4 or 16 bytes, nil if it is not an address
function M.parse(s)
  if type(s) ~= "string" then return nil end
  s = bare(s)
  local b
  if s:find(":", 1, true) then b = parse6(s) else b = parse4(s) end
  return b and unmap(b)
end

function M.is_ip(s) return M.parse(s) ~= nil end

local function text_of(b)
  if #b == 4 then return table.concat(b, ".") end
  local g = {}
  for i = 1, 8 do g[i] = b[2 * i - 1] * 256 + b[2 * i] end
  -- longest run of zero groups (2 or more) becomes "::"
  local best, blen, i = 0, 0, 1
  while i <= 8 do
    if g[i] == 0 then
      local j = i
      while j <= 8 and g[j] == 0 do j = j + 1 end
      if j - i > blen then best, blen = i, j - i end
      i = j
    else
      i = i + 1
    end
  end
  local parts = {}
  for k = 1, 8 do parts[k] = string.format("%x", g[k]) end
  if blen < 2 then return table.concat(parts, ":") end
  local left = table.concat(parts, ":", 1, best - 1)
  local right = table.concat(parts, ":", best + blen, 8)
  return left .. "::" .. right
end

-- canonical text of an address (lower-case, compressed IPv6, IPv4 unmapped)
function M.normalize(s)
  local b = M.parse(s)
  return b and text_of(b)
end

-- the network of an address: "192.0.2.0/24", "2001:db8::/64" for an IPv4
-- address by its first v4bits, an IPv6 one by its first v6bits; nil if s
-- is not an address
function M.network(s, v4bits, v6bits)
  local b = M.parse(s)
  if not b then return nil end
  local bits = #b == 4 and v4bits or v6bits
  local out = {}
  for i = 1, #b do
    local keep = math.max(0, math.min(8, bits - (i - 1) * 8))
    out[i] = bit.band(b[i], 256 - 2 ^ (8 - keep))
  end
  return text_of(out) .. "/" .. bits
end

-- the same address written two ways?
function M.same(a, b)
  local x, y = M.parse(a), M.parse(b)
  if not x or not y or #x ~= #y then return false end
  for i = 1, #x do if x[i] ~= y[i] then return false end end
  return true
end

-- "net/len" or a single address -> { bytes=, len=, text= } | nil, err
function M.cidr(s)
  if type(s) ~= "string" then return nil, "not a string" end
  local addr, len = s:match("^%s*([^/%s]+)/(%d+)%s*$")
  addr = addr or s:match("^%s*(.-)%s*$")
  local raw = bare(addr)
  local b = M.parse(addr)
  if not b then return nil, "bad address or network '" .. s .. "'" end
  len = tonumber(len)
  local max = #b * 8
  if len and #b == 4 and raw:find(":", 1, true) then
    len = len - 96      -- ::ffff:a.b.c.d/120 is a.b.c.d/24
  end
  if len and (len < 0 or len > max) then
    return nil, "bad prefix length in '" .. s .. "'"
  end
  return { bytes = b, len = len or max, text = s }
end

function M.contains(net, b)
  if #net.bytes ~= #b then return false end
  local bits = net.len
  for i = 1, #b do
    if bits <= 0 then return true end
    local mask = bits >= 8 and 255 or (256 - 2 ^ (8 - bits))
    if band(b[i], mask) ~= band(net.bytes[i], mask) then return false end
    bits = bits - 8
  end
  return true
end

local List = {}
List.__index = List

-- the first network holding ip (its text as configured), or nil
function List:match(ip)
  local b = type(ip) == "table" and ip or M.parse(ip)
  if not b then return nil end
  for _, net in ipairs(self.nets) do
    if M.contains(net, b) then return net.text end
  end
  return nil
end

function List:empty() return #self.nets == 0 end

-- a list of networks; raises "what: bad address ..." on a bad entry
function M.list(entries, what)
  local self = setmetatable({ nets = {} }, List)
  if type(entries) == "string" then entries = { entries } end
  for _, e in ipairs(entries or {}) do
    local net, err = M.cidr(tostring(e))
    if not net then error((what and (what .. ": ") or "") .. err, 2) end
    self.nets[#self.nets + 1] = net
  end
  return self
end

-- loopback, private (RFC 1918, ULA) and link-local
function M.is_private(ip)
  local b = type(ip) == "table" and ip or M.parse(ip)
  if not b then return false end
  if #b == 4 then
    return b[1] == 10 or b[1] == 127 or (b[1] == 172 and b[2] >= 16 and b[2] < 32)
        or (b[1] == 192 and b[2] == 168) or (b[1] == 169 and b[2] == 254)
  end
  local zero = true
  for i = 1, 15 do if b[i] ~= 0 then zero = false end end
  return (zero and b[16] == 1) or (b[1] == 0xfe and b[2] >= 0x80 and b[2] < 0xc0)
      or band(b[1], 0xfe) == 0xfc
end

return M
