-- early_talker.lua — catch clients that talk before it is their turn.
--
-- A real MTA waits for each reply it needs; much spamware just fires its
-- commands. The plugin waits `pause` seconds before the banner and
-- `data_pause` seconds before the 354 reply to DATA, then looks whether
-- the client has sent anything meanwhile. Input before the banner, or
-- after DATA before the 354, is always early (RFC 5321 4.3.1; RFC 2920
-- makes DATA the last command of a pipelined group). At the end of the
-- message the reply to the final dot is checked too, but only for clients
-- that did not greet with EHLO: with PIPELINING (RFC 2920) the message may
-- be followed by the next commands at once. Commands pipelined after EHLO
-- are never counted. A pause of 0 does not wait but still checks.
--
-- An early talker gets 554 5.7.1 and is disconnected (or, with `reject:
-- false`, is only recorded in conn.notes.early_talker and the results).
-- Clients in `exempt_ips` and clients that may relay are not checked.
-- See config/early_talker.yaml.

local netmask = require "kasi.netmask"

local P = {}
local cfg

P.schema = { "map",
  keys = {
    pause = { "number", min = 0, max = 60, default = 1 },
    data_pause = { "number", min = 0, max = 60 },     -- default: pause
    data_post_pause = { "number", min = 0, max = 60, default = 0 },
    check_data = { "boolean", default = true },
    check_data_post = { "boolean", default = true },
    reject = { "boolean", default = true },
    exempt_ips = { "list", of = "cidr", default = {} },
    reply = { "reply", default = { code = 554, enh = "5.7.1",
                                   message = "You talk too soon: wait for my reply" } },
  },
  renamed = { allow = "exempt_ips", code = "reply.code", enh = "reply.enh",
              message = "reply.message" },
}

function P.register(c)
  cfg = c
  cfg.data_pause = c.data_pause or c.pause
  cfg.exempt_ips = netmask.list(c.exempt_ips)
end

local function skipped(conn)
  return conn.relaying or cfg.exempt_ips:match(conn.remote_ip) ~= nil
end

-- wait, then judge the bytes that arrived; returns the hook's answer
local function check(conn, where, pause)
  if pause > 0 then kasi.sleep(pause) end
  local n = conn:input_pending()
  if n == 0 then return NEXT end
  conn.notes.early_talker = { at = where, bytes = n }
  conn:result { fail = where, bytes = n }
  conn:loginfo("early_talker: %d bytes sent early (%s)", n, where)
  if not cfg.reject then return NEXT end
  return DENYDISCONNECT, kasi.reply(cfg.reply)
end

function P.hook_connect(conn)
  if skipped(conn) then return NEXT end
  return check(conn, "before the banner", cfg.pause)
end

-- DATA (not BDAT, whose chunk follows the command at once): the engine
-- passes the verb as the hook's argument or sets txn.bdat; without either,
-- only sessions greeted with HELO (which cannot use BDAT) are checked.
local function is_data(conn, txn, arg)
  local verb = type(arg) == "string" and arg:upper() or nil
  if verb then return verb == "DATA" end
  if txn and txn.bdat ~= nil then return not txn.bdat end
  return conn.helo_verb == "HELO"
end

function P.hook_data(conn, txn, arg)
  if not cfg.check_data or skipped(conn) then return NEXT end
  if not is_data(conn, txn, arg) then
    if cfg.data_pause > 0 and not (type(arg) == "string" and arg:upper() == "BDAT") then
      kasi.sleep(cfg.data_pause)      -- still slow down, without judging
    end
    return NEXT
  end
  return check(conn, "after DATA", cfg.data_pause)
end

function P.hook_data_post(conn, txn)
  if not cfg.check_data_post or skipped(conn) then return NEXT end
  if conn.helo_verb ~= "HELO" then
    -- PIPELINING: the next commands may follow the message at once
    if cfg.data_post_pause > 0 then kasi.sleep(cfg.data_post_pause) end
    return NEXT
  end
  return check(conn, "after the end of data", cfg.data_post_pause)
end

return P
