-- kasi/dnslist.lua — the answers of DNS lists (RFC 5782), for the plugins
-- that ask them (dnsbl, greylist's dnswl). A list answers for a listed
-- address with an A record in 127.0.0.0/8, its return code; a zone's
-- `codes` say which answers count. Not every answer is a listing: lists
-- report errors the same way, and counting those as listings blocks (or
-- lets through) everyone. The default counts any 127.x.x.x except the
-- error codes of the big lists: 127.255.255.x (Spamhaus: a query through
-- a public resolver, excessive use) and 127.0.0.255 (dnswl.org: the same).
--
--   local dnslist = require "kasi.dnslist"
--   codes = { "list", of = dnslist.CODE }        -- in a plugin's schema
--   local codes = dnslist.codes(cfg.codes)       -- nil: the default
--   dnslist.counts(codes, "127.0.0.2")           -- true | false
--
-- A code is an address ("127.0.0.2") or a range of them
-- ("127.0.0.2-127.0.0.11", both ends included).

local netmask = require "kasi.netmask"

local M = {}

-- "127.0.0.2" -> a number; nil unless an IPv4 address
local function ip4num(s)
  local b = s and netmask.parse(s)
  if not b or #b ~= 4 then return nil end
  return ((b[1] * 256 + b[2]) * 256 + b[3]) * 256 + b[4]
end

-- "127.0.0.2" or "127.0.0.2-127.0.0.11" -> { lo, hi } | nil
local function range(c)
  local lo, hi = c:match("^%s*([%d%.]+)%s*%-%s*([%d%.]+)%s*$")
  lo, hi = ip4num(lo or c), ip4num(hi or c)
  if not lo or not hi or lo > hi then return nil end
  return { lo, hi }
end

local function code_ok(c)
  if range(c) then return true end
  return nil, "expected an IPv4 address or a range a.b.c.d-e.f.g.h, got '" .. c .. "'"
end

-- the schema of one code
M.CODE = { "string", check = code_ok }

-- the default: 127.0.0.0/8 but 127.0.0.255 and 127.255.255.0/24
M.DEFAULT = {
  { ip4num("127.0.0.0"), ip4num("127.0.0.254") },
  { ip4num("127.0.1.0"), ip4num("127.255.254.255") },
}

-- checked code strings -> ranges; nil -> the default
function M.codes(list)
  if not list then return M.DEFAULT end
  local out = {}
  for i, c in ipairs(list) do out[i] = range(c) end
  return out
end

-- Is the answer (an address string) one of the codes?
function M.counts(codes, answer)
  local n = ip4num(answer)
  if not n then return false end
  for _, r in ipairs(codes) do
    if n >= r[1] and n <= r[2] then return true end
  end
  return false
end

return M
