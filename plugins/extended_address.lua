-- extended_address.lua — sub-addressing: mail to user-anything@domain is
-- delivered to user@domain (RFC 5233 "detail"). The recipient is rewritten
-- at RCPT, so the queue (and the spool's .env) sees user@domain; the
-- original address and the tag are kept in txn.notes.extended_address
-- ({ {original=, address=, tag=}, ... }) and in the plugin's results.
--
-- Only our own domains are rewritten: those in `domains` when set, else
-- the recipients rcpt_to_host_list found to be ours (txn.notes.local_rcpts;
-- place this plugin after it), else, without rcpt_to_host_list, every
-- recipient of a client that may not relay.
-- See config/extended_address.yaml.

local match = require "kasi.match"

local P = {}
local cfg

local function separator(s)
  if #s ~= 1 or s:match("[%w@\"%s]") then
    return nil, "a separator is one punctuation character, not '" .. s .. "'"
  end
  return true
end

P.schema = { "map",
  keys = {
    separators = { "list", of = { "string", check = separator }, min = 1, default = { "-" } },
    domains = { "list", of = "name" },          -- not set: see above
    exceptions = { "list", of = "string", default = { "mailer-daemon", "no-reply" } },
  },
  renamed = { separator = "separators" },
}

function P.register(c)
  local keep = {}
  for _, u in ipairs(c.exceptions) do keep[u:lower()] = true end
  cfg = {
    seps = c.separators,
    domains = c.domains and match.list(c.domains) or nil,
    keep = keep,
  }
end

-- "user-tag" -> "user", "tag" (at the first separator), or nil
local function split(user)
  local best
  for _, s in ipairs(cfg.seps) do
    local i = user:find(s, 1, true)
    if i and (not best or i < best) then best = i end
  end
  if not best or best == 1 or best == #user then return nil end
  return user:sub(1, best - 1), user:sub(best + 1)
end

local function ours(conn, txn, rcpt)
  if cfg.domains then return cfg.domains:match((rcpt.host:gsub("%.$", ""))) ~= nil end
  local noted = txn.notes.local_rcpts        -- set by rcpt_to_host_list
  if noted then return noted[rcpt.address:lower()] == true end
  return not conn.relaying
end

function P.hook_rcpt(conn, txn, rcpt)
  local user, host = rcpt.user, rcpt.host
  if not host or not user or user:sub(1, 1) == '"' then return NEXT end
  if cfg.keep[user:lower()] or cfg.keep[rcpt.address:lower()] then return NEXT end
  if not ours(conn, txn, rcpt) then return NEXT end
  local base, tag = split(user)
  if not base then return NEXT end
  local original = rcpt.address
  rcpt:set(base .. "@" .. host)
  local list = txn.notes.extended_address or {}
  list[#list + 1] = { original = original, address = rcpt.address, tag = tag }
  txn.notes.extended_address = list
  txn:result { rewritten = #list }
  txn:logdebug("extended_address: %s -> %s", original, rcpt.address)
  return NEXT
end

return P
