-- rcpt_to_host_list.lua — accept mail only for our own domains: the
-- default inbound policy that keeps kasi from being an open relay.
--
-- A recipient whose domain is one of ours passes (NEXT by default, so
-- later rcpt plugins still have their say; `on_match: ok` answers OK and
-- ends the rcpt chain). Any other domain is refused with 550 5.7.1
-- "Relaying denied", unless the client may relay (conn.relaying: it
-- authenticated, or the relay plugin trusts its IP). <postmaster> without
-- a domain is always accepted (RFC 5321 4.5.1). Recipients found to be
-- ours are noted in txn.notes.local_rcpts (lower-cased address -> true) for
-- later plugins such as extended_address. See config/rcpt_to_host_list.yaml.

local match = require "kasi.match"
local netmask = require "kasi.netmask"

local P = {}
local cfg

P.schema = { "map",
  keys = {
    domains = { "list", of = "name", default = {} },
    patterns = { "list", of = "pattern", default = {} },
    accept_own_literals = { "boolean", default = true },
    on_match = { "enum", values = { "next", "ok" }, default = "next" },
    reply = { "reply", default = { code = 550, enh = "5.7.1", message = "Relaying denied" } },
  },
  renamed = { code = "reply.code", enh = "reply.enh", message = "reply.message" },
}

function P.register(c)
  local domains = match.list(c.domains)
  for _, p in ipairs(c.patterns) do domains:add("~" .. p) end
  if domains:empty() then
    kasi.logwarn("rcpt_to_host_list: no domains configured: every recipient "
                 .. "of a non-relaying client is refused")
  end
  cfg = {
    domains = domains,
    on_match = c.on_match == "ok" and OK or NEXT,
    own_literals = c.accept_own_literals,
    reply = c.reply,
  }
end

-- is host one of our domains? (an address literal: is it our address?)
local function ours(conn, host)
  if host:sub(1, 1) == "[" then
    return cfg.own_literals and netmask.same(host, conn.local_ip)
  end
  return cfg.domains:match((host:gsub("%.$", ""))) ~= nil
end

function P.hook_rcpt(conn, txn, rcpt)
  local host = rcpt.host
  if not host or host == "" then return NEXT end   -- <postmaster>
  if ours(conn, host) then
    local local_rcpts = txn.notes.local_rcpts or {}
    local_rcpts[rcpt.address:lower()] = true
    txn.notes.local_rcpts = local_rcpts
    return cfg.on_match
  end
  if conn.relaying then
    txn:result { relay = rcpt.address }
    return NEXT
  end
  txn:loginfo("rcpt_to_host_list: %s is not our domain, %s may not relay",
              host, conn.remote_ip)
  return DENY, kasi.reply(cfg.reply, (cfg.reply.message:gsub("{(%w+)}",
                                        { domain = host, rcpt = rcpt.address })))
end

return P
