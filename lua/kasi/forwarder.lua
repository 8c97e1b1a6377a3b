-- kasi/forwarder.lua — the logic of the queue plugins queue/smtp_forward
-- and queue/lmtp: their config schema, the routes (a destination per
-- recipient domain), and the queue hook that forwards each route's
-- recipients with kasi.forward and answers the client once: 250 only when
-- every route took the message. The module keeps no state: configure()
-- returns a table the plugin passes back to deliver().
--
--   local forwarder = require "kasi.forwarder"
--   P.schema = forwarder.schema
--   function P.register(c) st = forwarder.configure(c, false) end
--   function P.hook_queue(conn, txn) return forwarder.deliver(st, conn, txn) end
local M = {}

local SECONDS = { "number", min = 0.001, max = 86400 }

-- the keys of a destination; routes take the same keys
local DEST = {
  host = { "string" },
  port = { "integer", min = 1, max = 65535 },
  lmtp = { "boolean" },
  tls = { "enum", values = { "none", "opportunistic", "required" } },
  auth_user = { "string" },
  auth_pass = { "string" },
  helo = { "string" },
  timeout_connect = SECONDS,
  timeout_cmd = SECONDS,
  timeout_data = SECONDS,
  pool_max = { "integer", min = 0, max = 1000 },
  pool_idle = { "number", min = 0, max = 86400 },
}

local function auth_pair(d)
  if d.auth_user and not d.auth_pass then return nil, "needs auth_pass", "auth_user" end
  return true
end

local top = { routes = { "map", of = { "map", keys = DEST }, default = {} } }
for k, v in pairs(DEST) do top[k] = v end
M.schema = { "map", keys = top, check = auth_pair }

local function dest_from(t, base)
  local d = {}
  for k in pairs(DEST) do
    local v = t[k]
    if v == nil and base then v = base[k] end
    d[k] = v
  end
  return d
end

-- The state of one plugin from its checked config: the default destination
-- and the routes. lmtp (queue/lmtp) forces LMTP and its default port.
function M.configure(c, lmtp)
  local base = dest_from(c)
  base.host = base.host or "127.0.0.1"
  base.port = base.port or (lmtp and 24 or 10025)
  base.tls = base.tls or "none"
  if base.pool_max == nil then base.pool_max = 4 end
  if base.pool_idle == nil then base.pool_idle = 30 end
  base.lmtp = lmtp and true or base.lmtp
  local st = { dest = base, routes = {} }
  for domain, r in pairs(c.routes) do
    st.routes[domain:lower()] = dest_from(r, base)
  end
  return st
end

local function route_of(st, addr)
  local host = addr.host
  return host and st.routes[string.lower(host)] or st.dest
end

-- Group the recipients per destination, keeping their order.
local function plan(st, txn)
  local groups, by_dest = {}, {}
  for _, r in ipairs(txn.rcpt_to) do
    local d = route_of(st, r)
    local g = by_dest[d]
    if not g then
      g = { dest = d, rcpts = {} }
      by_dest[d] = g
      groups[#groups + 1] = g
    end
    g.rcpts[#g.rcpts + 1] = r.address
  end
  return groups
end

local function where(d)
  return (d.lmtp and "lmtp:" or "smtp:") .. tostring(d.host) .. ":" .. tostring(d.port)
end

-- A 2xx for the message but some recipients refused: log each loudly.
local function note_refused(conn, txn, g, res)
  local refused = {}
  for _, r in ipairs(res.rcpt) do
    if r.code < 200 or r.code >= 300 then
      refused[#refused + 1] = { address = r.address, code = r.code,
                                enh = r.enh, text = r.text }
      txn:logwarn("downstream %s refused <%s>: %d %s %s (not delivered)",
                  where(g.dest), r.address, r.code, r.enh or "", r.text)
    end
  end
  return refused
end

-- What the client hears when a route failed. The downstream's own reply
-- (fail == "reply") is passed on; kasi's failures (connect, timeout, TLS,
-- a missing extension...) get a generic text: their details name our
-- hosts and ports and go to the log with the transaction id instead.
local TEMPFAIL = "Temporary failure, try again later"

local function deny_of(res)
  local theirs = res.fail == "reply" and res.text ~= ""
  if res.code >= 500 then
    return DENY, { code = res.code, enh = res.enh ~= "" and res.enh or "5.0.0",
                   msg = theirs and res.text or "Message cannot be delivered as sent" }
  end
  -- 4xx, unreachable, timeout, connection lost: the client keeps its copy
  local enh = res.enh
  if not enh or enh == "" or enh:sub(1, 1) ~= "4" then enh = theirs and "4.4.2" or "4.4.1" end
  return DENYSOFT, { code = 451, enh = enh, msg = theirs and res.text or TEMPFAIL }
end

-- Did this route take the message? SMTP: the downstream said 2xx to the
-- final dot (some recipients may have been refused at RCPT). LMTP: at
-- least one recipient got 2xx; those copies are delivered, so a 4xx to
-- the client would only make it send duplicates (docs/queue.md).
local function delivered(res, dest)
  if res.code >= 200 and res.code < 300 then return true end
  if dest.lmtp and res.fail == "reply" then
    for _, r in ipairs(res.rcpt) do
      if r.code >= 200 and r.code < 300 then return true end
    end
  end
  return false
end

-- The queue hook's work: every route, then one answer for the client.
function M.deliver(st, conn, txn)
  local groups = plan(st, txn)
  local ids, refused, failed = {}, {}, nil
  for _, g in ipairs(groups) do
    local res = kasi.forward(txn, g.dest, g.rcpts)
    if delivered(res, g.dest) then
      ids[#ids + 1] = res.queue_id or "?"
      txn:loginfo("forwarded to %s: %d rcpts, downstream id %s%s", where(g.dest),
                  #g.rcpts, res.queue_id or "?", res.reused and " (pooled)" or "")
      for _, r in ipairs(note_refused(conn, txn, g, res)) do refused[#refused + 1] = r end
    else
      txn:logwarn("forward to %s failed (%s): %d %s %s", where(g.dest), res.fail,
                  res.code, res.enh or "", res.text)
      -- a temporary failure wins over a permanent one: the client retries
      if not failed or (failed.code >= 500 and res.code < 500) then failed = res end
    end
  end
  txn:result { downstream = ids, refused = refused, routes = #groups }
  if failed then
    if #ids > 0 then
      txn:logwarn("some routes accepted (ids %s) but not all: answering %d, "
                  .. "the retry may duplicate the delivered copies",
                  table.concat(ids, ","), failed.code)
    end
    return deny_of(failed)
  end
  return OK, { code = 250, enh = "2.0.0",
               msg = string.format("Ok: queued as %s (downstream %s)", txn.id,
                                   table.concat(ids, ",")) }
end

return M
