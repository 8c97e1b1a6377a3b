-- relay.lua — clients allowed to relay. A client whose IP is in one of the
-- configured networks gets conn.relaying = true at connect, so plugins such
-- as rcpt_to_host_list let it send to any domain. Authenticated clients are
-- marked relaying by the core; this plugin is for trusted hosts (web
-- servers, internal networks) that do not authenticate.
-- See config/relay.yaml.

local netmask = require "kasi.netmask"

local P = {}
local nets

P.schema = {
  allow = { "list", of = "cidr", default = {} },
}

function P.register(cfg)
  nets = netmask.list(cfg.allow)
end

function P.hook_connect(conn)
  local hit = nets:match(conn.remote_ip)
  if hit then
    conn.relaying = true
    conn.notes.relay = hit
    conn:result { pass = hit }
    conn:loginfo("relay: %s may relay (%s)", conn.remote_ip, hit)
  end
  return NEXT
end

return P
