-- max_unrecognized_commands.lua — close the connection of a client that
-- keeps sending commands the server does not know (a sign of a confused
-- or hostile client, or of an HTTP/other protocol talking to port 25).
-- The first `max - 1` unknown commands get the core's usual 500 reply; the
-- `max`-th is answered with a 5xx and the connection is closed.
-- See config/max_unrecognized_commands.yaml.

local P = {}
local cfg

function P.register(c)
  local max = tonumber(c.max or 5)
  if not max or max < 1 then
    error("max_unrecognized_commands: max must be a number >= 1")
  end
  cfg = {
    max = max,
    code = tonumber(c.code) or 554,
    enh = c.enh or "5.7.0",
    message = c.message or "Too many unrecognized commands, goodbye",
  }
end

function P.hook_unrecognized_command(conn, txn, line)
  local n = (conn.notes.unrecognized_commands or 0) + 1
  conn.notes.unrecognized_commands = n
  if n < cfg.max then return NEXT end
  conn:result { fail = n }
  conn:loginfo("max_unrecognized_commands: %d unrecognized commands, closing", n)
  return DENYDISCONNECT, { code = cfg.code, enh = cfg.enh, msg = cfg.message }
end

return P
