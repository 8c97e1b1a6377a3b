-- fcrdns.lua — forward-confirmed reverse DNS of the client: its PTR name
-- must resolve back to its IP. The lookup starts when the client connects;
-- this plugin waits for it (bounded by rdns_timeout in config/dns.yaml),
-- records the outcome in conn.notes.fcrdns and conn.results.fcrdns, and
-- with `reject: true` refuses clients that fail. See config/fcrdns.yaml.

local netmask = require "kasi.netmask"

local P = {}
local cfg

P.schema = { "map",
  keys = {
    reject = { "boolean", default = false },
    exempt_private = { "boolean", default = true },
  },
  renamed = { allow_private = "exempt_private" },
}

function P.register(c)
  cfg = c
end

function P.hook_connect(conn)
  local name, confirmed = kasi.dns.rdns(conn)
  conn.notes.fcrdns = { name = name, confirmed = confirmed }
  if confirmed then
    conn:result { pass = name }
    return NEXT
  end
  local why = name and ("PTR " .. name .. " does not resolve back to " .. conn.remote_ip)
              or ("no PTR record for " .. conn.remote_ip)
  conn:result { fail = why }
  if cfg.reject and not (cfg.exempt_private and netmask.is_private(conn.remote_ip)) then
    return DENY, { code = 550, enh = "5.7.25",
                   msg = "Reverse DNS check failed: " .. why }
  end
  return NEXT
end

return P
