-- kasi/domain.lua — syntax of domain names and SMTP greetings (kasi.hostname
-- is the server's own name, a string).
--
--   local domain = require "kasi.domain"
--   domain.is_domain("mx.example.com")  -> true  (RFC 5321 Domain)
--   domain.is_fqdn("mx")                 -> false (needs a dot, TLD not numeric)
--   domain.literal("[192.0.2.1]")        -> "192.0.2.1" (the address) | nil
--   domain.literal("[IPv6:2001:db8::1]") -> "2001:db8::1"

local netmask = require "kasi.netmask"

local M = {}

-- RFC 5321 sub-domain: Let-dig [Ldh-str]; a label is at most 63 octets.
-- Underscores are not allowed (they are in DNS, not in host names).
local function label_ok(l)
  return #l >= 1 and #l <= 63 and l:match("^%w[%w%-]*$") ~= nil
      and l:sub(-1) ~= "-"
end

function M.is_domain(s)
  if type(s) ~= "string" or #s == 0 or #s > 253 then return false end
  s = s:gsub("%.$", "")              -- one trailing dot is the root
  if s == "" then return false end
  for l in (s .. "."):gmatch("([^.]*)%.") do
    if not label_ok(l) then return false end
  end
  return true
end

function M.is_fqdn(s)
  if not M.is_domain(s) then return false end
  s = s:gsub("%.$", "")
  local tld = s:match("%.([^.]+)$")
  return tld ~= nil and not tld:match("^%d+$")
end

-- "[a.b.c.d]" / "[IPv6:...]" -> the address text, else nil
function M.literal(s)
  if type(s) ~= "string" then return nil end
  local inner = s:match("^%[(.+)%]$")
  if not inner then return nil end
  local v6 = inner:match("^[Ii][Pp][Vv]6:(.+)$")
  if v6 then
    return (v6:find(":", 1, true) and netmask.parse(v6)) and v6 or nil
  end
  if inner:find(":", 1, true) then return nil end
  return netmask.parse(inner) and inner or nil
end

return M
