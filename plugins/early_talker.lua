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
-- Clients in `allow` and clients that may relay are not checked.
-- See config/early_talker.yaml.

local netmask = require "kasi.netmask"

local P = {}
local cfg

local function seconds(v, name, default)
  if v == nil then return default end
  local n = tonumber(v)
  if not n or n < 0 or n > 60 then error("early_talker: " .. name .. " must be 0..60 seconds") end
  return n
end

function P.register(c)
  cfg = {
    pause = seconds(c.pause, "pause", 1),
    data_pause = seconds(c.data_pause, "data_pause", c.pause and seconds(c.pause, "pause") or 1),
    data_post_pause = seconds(c.data_post_pause, "data_post_pause", 0),
    check_data = c.check_data ~= false,
    check_data_post = c.check_data_post ~= false,
    reject = c.reject ~= false,
    allow = netmask.list(c.allow or {}, "early_talker: allow"),
    code = tonumber(c.code) or 554,
    enh = c.enh or "5.7.1",
    message = c.message or "You talk too soon: wait for my reply",
  }
end

local function skipped(conn)
  return conn.relaying or cfg.allow:match(conn.remote_ip) ~= nil
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
  return DENYDISCONNECT, { code = cfg.code, enh = cfg.enh, msg = cfg.message }
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
