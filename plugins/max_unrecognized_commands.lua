-- max_unrecognized_commands.lua — close the connection of a client that
-- keeps sending commands the server does not know (a sign of a confused
-- or hostile client, or of an HTTP/other protocol talking to port 25).
-- The first `max - 1` unknown commands get the core's usual 500 reply; the
-- `max`-th is answered with a 5xx and the connection is closed.
-- See config/max_unrecognized_commands.yaml.

local P = {}
local cfg

P.schema = { "map",
  keys = {
    max = { "integer", min = 1, max = 1000, default = 5 },
    reply = { "reply", default = { code = 554, enh = "5.7.0",
                                   message = "Too many unrecognized commands, goodbye" } },
  },
  renamed = { code = "reply.code", enh = "reply.enh", message = "reply.message" },
}

function P.register(c)
  cfg = c
end

function P.hook_unrecognized_command(conn, txn, line)
  local n = (conn.notes.unrecognized_commands or 0) + 1
  conn.notes.unrecognized_commands = n
  if n < cfg.max then return NEXT end
  conn:result { fail = n }
  conn:loginfo("max_unrecognized_commands: %d unrecognized commands, closing", n)
  return DENYDISCONNECT, kasi.reply(cfg.reply)
end

return P
