-- helo_checks.lua — checks of the HELO/EHLO name:
--   valid             RFC 5321 syntax: a domain name or an address literal
--   fqdn              a fully qualified name (a dot, a non-numeric TLD)
--   bare_ip           an IP address without brackets ("1.2.3.4")
--   own_name          our own host name, claimed by another host
--   own_ip            our own address, claimed by another host
--   literal_mismatch  an address literal that is not the client's address
--   must_resolve      the name has A or AAAA records (DNS; off by default)
-- Each check is `reject`, `note` (record only) or `off`. A rejection is
-- 550 5.7.1 with the reason at HELO/EHLO; the client may greet again with
-- a better name. Results go to conn.notes.helo_checks ({fail={...},
-- pass={...}}) and conn.results.helo_checks. Clients that may relay, that
-- talk from the server's own address, or that are in `exempt_ips`, are not
-- checked. See config/helo_checks.yaml.

local domain = require "kasi.domain"
local match = require "kasi.match"
local netmask = require "kasi.netmask"

local P = {}
local cfg

local CHECKS = { "valid", "fqdn", "bare_ip", "own_name", "own_ip",
                 "literal_mismatch", "must_resolve" }
local DEFAULT = { valid = "reject", fqdn = "reject", bare_ip = "reject",
                  own_name = "reject", own_ip = "reject",
                  literal_mismatch = "reject", must_resolve = "off" }
local REASON = {
  valid = "Invalid HELO name {helo}: not a domain name or address literal",
  fqdn = "HELO name {helo} is not a fully qualified domain name",
  bare_ip = "HELO with a bare IP address {helo}: use an address literal [{helo}]",
  own_name = "You are not {helo}: that is my name",
  own_ip = "You are not {helo}: that is my address",
  literal_mismatch = "HELO address literal {helo} is not your address {ip}",
  must_resolve = "HELO name {helo} does not resolve",
}

local check_keys, message_keys = {}, {}
for _, name in ipairs(CHECKS) do
  check_keys[name] = { "enum", values = { "reject", "note", "off" }, default = DEFAULT[name] }
  message_keys[name] = { "string" }
end

P.schema = { "map",
  keys = {
    checks = { "map", keys = check_keys, default = {} },
    own_names = { "list", of = "name", default = {} },
    own_ips = { "list", of = "cidr", default = {} },
    exempt_ips = { "list", of = "cidr", default = {} },
    skip_relaying = { "boolean", default = true },
    dns_timeout = { "number", min = 0, max = 60, default = 0 },
    reply = { "reply", default = { code = 550, enh = "5.7.1" } },
    messages = { "map", keys = message_keys, default = {} },
  },
  renamed = { skip_ips = "exempt_ips", code = "reply.code", enh = "reply.enh" },
}

function P.register(c)
  local messages = {}
  for _, name in ipairs(CHECKS) do
    messages[name] = c.messages[name] or c.reply.message or REASON[name]
  end
  local names = match.list(c.own_names)
  names:add(kasi.hostname)
  cfg = {
    modes = c.checks,
    messages = messages,
    own_names = names,
    own_ips = netmask.list(c.own_ips),
    exempt_ips = netmask.list(c.exempt_ips),
    skip_relaying = c.skip_relaying,
    reply = c.reply,
    dns_timeout = c.dns_timeout,
  }
end

-- ------------------------------------------------------------ the checks

local test = {}

function test.valid(helo)
  return domain.is_domain(helo) or domain.literal(helo) ~= nil
end

function test.fqdn(helo)
  -- address literals are judged by the literal checks
  return domain.literal(helo) ~= nil or netmask.is_ip(helo)
      or domain.is_fqdn(helo)
end

function test.bare_ip(helo)
  return domain.literal(helo) ~= nil or not netmask.is_ip(helo)
end

function test.own_name(helo)
  return cfg.own_names:match((helo:gsub("%.$", ""))) == nil
end

function test.own_ip(helo, conn)
  local ip = domain.literal(helo) or (netmask.is_ip(helo) and helo)
  if not ip then return true end
  return not netmask.same(ip, conn.local_ip) and not cfg.own_ips:match(ip)
end

function test.literal_mismatch(helo, conn)
  local ip = domain.literal(helo)
  return not ip or netmask.same(ip, conn.remote_ip)
end

-- false only when DNS says there is no such name; failures pass
function test.must_resolve(helo)
  if not kasi.dns or domain.literal(helo) or netmask.is_ip(helo) then return true end
  if not domain.is_domain(helo) then return true end
  local opts = cfg.dns_timeout > 0 and { timeout = cfg.dns_timeout } or nil
  local res = kasi.dns.query_many({ { helo, "A" }, { helo, "AAAA" } }, opts)
  for _, r in ipairs(res) do
    if r.answers and #r.answers > 0 then return true end
    if r.err ~= "NXDOMAIN" and r.err ~= "NODATA" then return true end
  end
  return false
end

local function skipped(conn)
  if cfg.skip_relaying and conn.relaying then return "relaying" end
  if netmask.same(conn.remote_ip, conn.local_ip) then return "local" end
  if cfg.exempt_ips:match(conn.remote_ip) then return "exempt_ips" end
  return nil
end

local function reason(name, helo, conn)
  return (cfg.messages[name]:gsub("{(%w+)}", { helo = helo, ip = conn.remote_ip }))
end

function P.hook_helo(conn, txn, helo)
  local why = skipped(conn)
  local notes = { fail = {}, pass = {}, skipped = why }
  conn.notes.helo_checks = notes
  if why then return NEXT end
  helo = helo or ""
  for _, name in ipairs(CHECKS) do
    local mode = cfg.modes[name]
    if mode ~= "off" then
      if test[name](helo, conn) then
        notes.pass[#notes.pass + 1] = name
      else
        notes.fail[#notes.fail + 1] = name
        conn:result { fail = table.concat(notes.fail, ",") }
        conn:loginfo("helo_checks: %s failed for %q (%s)", name, helo, mode)
        if mode == "reject" then
          return DENY, kasi.reply(cfg.reply, reason(name, helo, conn))
        end
      end
    end
  end
  return NEXT
end

return P
