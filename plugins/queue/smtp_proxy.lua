-- queue/smtp_proxy — a before-queue proxy: the downstream SMTP server
-- (Postfix on 127.0.0.1:10025 by default) is opened at MAIL and every RCPT
-- is relayed live, so the downstream's recipient validation decides what
-- the client hears at RCPT time; at the queue hook the message goes out
-- over the same connection and the client's DATA reply follows the
-- downstream's. Nothing is accepted that the downstream would refuse.
-- List it last in config/plugins: it answers RCPT for good (OK/DENY).
--
-- The protocol (EHLO, STARTTLS, AUTH, XFORWARD, dot-stuffing) is kasi's one
-- SMTP client, driven a command at a time through kasi.forward_open; this
-- file only decides what each downstream answer means for our client.
-- See docs/queue.md.
local P = {}

local cfg = {}
local NOTE = "smtp_proxy"          -- conn.notes key of the downstream session

P.schema = { "map",
  keys = {
    host = { "string", default = "127.0.0.1" },
    port = { "integer", min = 1, max = 65535, default = 10025 },
    tls = { "enum", values = { "none", "opportunistic", "required" }, default = "none" },
    auth_user = { "string" },
    auth_pass = { "string" },
    helo = { "string", default = "localhost" },
    timeout_connect = { "number", min = 0.001, max = 86400, default = 10 },
    timeout_cmd = { "number", min = 0.001, max = 86400, default = 60 },
    timeout_data = { "number", min = 0.001, max = 86400, default = 300 },
    xforward = { "boolean", default = true },
  },
  check = function(c)
    if c.auth_user and not c.auth_pass then return nil, "needs auth_pass", "auth_user" end
    return true
  end,
}

function P.register(c)
  cfg = c
end

-- The client never hears where the downstream is or what went wrong with
-- it: a generic text, the details in the log with the transaction id.
local TEMPFAIL = "Temporary failure, try again later"
local UNAVAILABLE = { code = 451, enh = "4.4.2", msg = TEMPFAIL }

-- The connection itself failed: the session is dropped. enh: 4.4.1 when
-- the downstream could not be reached, else 4.4.2.
local function lost(conn, txn, why, enh)
  local s = conn.notes[NOTE]
  if s then s.sess:close() end
  conn.notes[NOTE] = nil
  local log = txn or conn
  log:logwarn("downstream %s:%s: %s", cfg.host, tostring(cfg.port), tostring(why))
  return DENYSOFT, { code = 451, enh = enh or "4.4.2", msg = TEMPFAIL }
end

-- The downstream's refusal becomes ours: 5xx as is, anything else 451.
local function refusal(r)
  if r.code >= 500 then
    return DENY, { code = r.code, enh = r.enh ~= "" and r.enh or "5.0.0", msg = r.text }
  end
  local enh = (r.enh ~= "" and r.enh:sub(1, 1) == "4") and r.enh or "4.4.2"
  return DENYSOFT, { code = r.code >= 400 and r.code < 500 and r.code or 451, enh = enh, msg = r.text }
end

local function ok(r) return r.code >= 200 and r.code < 300 end

-- The connection's downstream session, opened (or reset) for a new
-- transaction. nil, err when it cannot be had.
local function session(conn)
  local s = conn.notes[NOTE]
  if s and s.in_txn then
    local r = s.sess:rset()
    if not r or not ok(r) then s.sess:close(); s = nil end
  end
  if s and not s.sess.open then s = nil end
  if not s then
    local sess, err = kasi.forward_open(cfg)
    if not sess then return nil, err end
    s = { sess = sess }
    conn.notes[NOTE] = s
  end
  s.in_txn = false
  return s
end

-- ------------------------------------------------------------ hooks

function P.hook_mail(conn, txn, from)
  local s, err = session(conn)
  if not s then return lost(conn, txn, err, "4.4.1") end
  local r
  r, err = s.sess:mail(txn)
  if not r then return lost(conn, txn, err) end
  s.in_txn = true
  if ok(r) then return NEXT end
  txn:loginfo("downstream refused MAIL: %d %s %s", r.code, r.enh, r.text)
  return refusal(r)
end

function P.hook_rcpt(conn, txn, rcpt)
  local s = conn.notes[NOTE]
  if not s or not s.in_txn then return DENYSOFT, UNAVAILABLE end
  local r, err = s.sess:rcpt(rcpt)
  if not r then return lost(conn, txn, err) end
  if ok(r) then
    return OK, { code = 250, enh = r.enh ~= "" and r.enh or "2.1.5", msg = r.text ~= "" and r.text or "Ok" }
  end
  txn:loginfo("downstream refused <%s>: %d %s %s", rcpt.address, r.code, r.enh, r.text)
  return refusal(r)
end

function P.hook_queue(conn, txn)
  local s = conn.notes[NOTE]
  if not s or not s.in_txn then return DENYSOFT, UNAVAILABLE end
  local r, err = s.sess:data(txn)
  if not r then return lost(conn, txn, "during DATA: " .. tostring(err)) end
  s.in_txn = false
  if ok(r) then
    local theirs = r.queue_id or "?"
    txn:loginfo("proxied downstream, downstream id %s", theirs)
    txn:result { downstream = { theirs } }
    return OK, { code = 250, enh = "2.0.0",
                 msg = string.format("Ok: queued as %s (downstream %s)", txn.id, theirs) }
  end
  txn:logwarn("downstream refused the message: %d %s %s", r.code, r.enh, r.text)
  return refusal(r)
end

function P.hook_rset(conn)
  local s = conn.notes[NOTE]
  if not s or not s.in_txn then return end
  local r = s.sess:rset()
  s.in_txn = false
  if not r or not ok(r) then lost(conn, nil, "RSET failed") end
end

local function quit(conn)
  local s = conn.notes[NOTE]
  conn.notes[NOTE] = nil
  if s then s.sess:close() end     -- QUIT (the open transaction ends with it)
end

P.hook_quit = quit
P.hook_disconnect = quit

return P
