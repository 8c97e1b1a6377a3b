-- queue/smtp_proxy — a before-queue proxy: the downstream SMTP server
-- (Postfix on 127.0.0.1:10025 by default) is opened at MAIL and every RCPT
-- is relayed live, so the downstream's recipient validation decides what
-- the client hears at RCPT time; at the queue hook the message goes out
-- over the same connection and the client's DATA reply follows the
-- downstream's. Nothing is accepted that the downstream would refuse.
-- List it last in config/plugins: it answers RCPT for good (OK/DENY).
-- See docs/queue.md.
local P = {}

local cfg = {}
local NOTE = "smtp_proxy"          -- conn.notes key of the downstream state

function P.register(c)
  cfg = {
    host = c.host or "127.0.0.1",
    port = c.port or 10025,
    tls = c.tls == true and "opportunistic" or c.tls or "none",
    auth_user = c.auth_user,
    auth_pass = c.auth_pass,
    helo = c.helo or "localhost",
    timeout_connect = c.timeout_connect or 10,
    timeout_cmd = c.timeout_cmd or 60,
    timeout_data = c.timeout_data or 300,
    xforward = c.xforward ~= false,
  }
  if cfg.tls ~= "none" and cfg.tls ~= "opportunistic" and cfg.tls ~= "required" then
    error("tls: must be none, opportunistic or required")
  end
  if cfg.auth_user and not cfg.auth_pass then error("auth_user needs auth_pass") end
end

-- ------------------------------------------------------------ the wire

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local function base64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local q = { math.floor(n / 262144) % 64, math.floor(n / 4096) % 64,
                math.floor(n / 64) % 64, n % 64 }
    out[#out + 1] = B64:sub(q[1] + 1, q[1] + 1) .. B64:sub(q[2] + 1, q[2] + 1)
      .. (b and B64:sub(q[3] + 1, q[3] + 1) or "=")
      .. (c and B64:sub(q[4] + 1, q[4] + 1) or "=")
  end
  return table.concat(out)
end

-- One reply: code, enh ("" when none), text (lines joined by "\n"),
-- or nil, err when the connection failed.
local function read_reply(sock)
  local lines, code = {}, nil
  for _ = 1, 1000 do
    local line, err = sock:receive("*l")
    if not line then return nil, err end
    local c, more, text = line:match("^(%d%d%d)([ -]?)(.*)$")
    if not c then return nil, "garbled reply: " .. line:sub(1, 80) end
    code = tonumber(c)
    lines[#lines + 1] = text
    if more ~= "-" then
      local first = lines[1]
      local enh, rest = first:match("^(%d%.%d%d?%d?%.%d%d?%d?) (.*)$")
      if enh and enh:sub(1, 1) == c:sub(1, 1) then
        lines[1] = rest
      else
        enh = ""
      end
      return code, enh, table.concat(lines, "\n")
    end
  end
  return nil, "reply too long"
end

local function command(sock, line)
  local ok, err = sock:send(line .. "\r\n")
  if not ok then return nil, err end
  return read_reply(sock)
end

-- A failure of the connection itself: 451 and the state is dropped.
local function lost(conn, why)
  local st = conn.notes[NOTE]
  if st and st.sock then pcall(st.sock.close, st.sock) end
  conn.notes[NOTE] = nil
  conn:logwarn("downstream %s:%s: %s", cfg.host, tostring(cfg.port), tostring(why))
  return DENYSOFT, { code = 451, enh = "4.4.2", msg = "Downstream unavailable, try again later" }
end

-- The downstream's refusal becomes ours: 5xx as is, anything else 451.
local function refusal(code, enh, text)
  if code >= 500 then
    return DENY, { code = code, enh = enh ~= "" and enh or "5.0.0", msg = text }
  end
  if enh == "" or enh:sub(1, 1) ~= "4" then enh = "4.4.2" end
  return DENYSOFT, { code = code >= 400 and code or 451, enh = enh, msg = text }
end

local function ehlo(st)
  local code, enh, text = command(st.sock, "EHLO " .. cfg.helo)
  if not code then return nil, enh end
  if code ~= 250 then return nil, "EHLO refused: " .. code .. " " .. text end
  st.ext = {}
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    local kw, args = line:match("^(%S+)%s*(.*)$")
    if kw then st.ext[kw:upper()] = args end
  end
  return true
end

local function secure(st)
  if cfg.tls == "none" then return true end
  if not st.ext.STARTTLS then
    if cfg.tls == "required" then return nil, "STARTTLS required but not offered" end
    return true
  end
  local code, _, text = command(st.sock, "STARTTLS")
  if code ~= 220 then return nil, "STARTTLS refused: " .. tostring(code) .. " " .. tostring(text) end
  local ok, err = st.sock:starttls { tls_verify = false }
  if not ok then return nil, "TLS: " .. tostring(err) end
  return ehlo(st)
end

local function authenticate(st)
  if not cfg.auth_user then return true end
  local code, _, text = command(st.sock, "AUTH PLAIN "
    .. base64("\0" .. cfg.auth_user .. "\0" .. cfg.auth_pass))
  if code ~= 235 then return nil, "AUTH failed: " .. tostring(code) .. " " .. tostring(text) end
  return true
end

local function open(conn)
  local sock, err = kasi.tcp.connect(cfg.host, cfg.port, { timeout = cfg.timeout_connect })
  if not sock then return nil, "connect: " .. tostring(err) end
  sock:settimeout(cfg.timeout_cmd)
  local st = { sock = sock, in_txn = false }
  local code, _, text = read_reply(sock)
  if code ~= 220 then
    pcall(sock.close, sock)
    return nil, "greeting: " .. tostring(code) .. " " .. tostring(text)
  end
  local ok, why = ehlo(st)
  if ok then ok, why = secure(st) end
  if ok then ok, why = authenticate(st) end
  if not ok then
    pcall(sock.close, sock)
    return nil, why
  end
  conn.notes[NOTE] = st
  return st
end

-- XFORWARD with the attributes the downstream lists (Postfix).
local function xforward(st, env)
  local offered = st.ext.XFORWARD
  if not cfg.xforward or not offered then return true end
  local x = env.xforward
  local function val(v)    -- xtext (RFC 3461)
    if not v or v == "" then return "[UNAVAILABLE]" end
    return (v:gsub("[^!-*,-<>-~]", function(ch) return string.format("+%02X", ch:byte()) end))
  end
  local addr = x.addr and (x.addr:find(":") and "IPV6:" .. x.addr or x.addr)
  local attrs = { NAME = val(x.name), ADDR = val(addr), PORT = x.port ~= 0 and tostring(x.port) or nil,
                  HELO = val(x.helo), PROTO = val(x.proto), IDENT = val(x.ident),
                  SOURCE = "REMOTE", LOGIN = x.login and val(x.login) or nil }
  local parts = {}
  for kw in offered:upper():gmatch("%S+") do
    if attrs[kw] then parts[#parts + 1] = kw .. "=" .. attrs[kw] end
  end
  if #parts == 0 then return true end
  local code, enh, text = command(st.sock, "XFORWARD " .. table.concat(parts, " "))
  if not code then return nil, enh end
  if code ~= 250 then st.sock:close(); return nil, "XFORWARD refused: " .. code .. " " .. text end
  return true
end

local function reset(st)
  if not st.in_txn then return true end
  local code = command(st.sock, "RSET")
  st.in_txn = false
  return code == 250
end

-- ------------------------------------------------------------ hooks

function P.hook_mail(conn, txn, from)
  local env = kasi.forward_envelope(txn)
  local st = conn.notes[NOTE]
  if st and not reset(st) then
    pcall(st.sock.close, st.sock)
    st = nil
  end
  if not st then
    local err
    st, err = open(conn)
    if not st then return lost(conn, err) end
  end
  local params = ""
  if env.smtputf8 then
    if not st.ext.SMTPUTF8 then
      return DENY, { code = 550, enh = "5.6.7", msg = "SMTPUTF8 is not supported downstream" }
    end
    params = params .. " SMTPUTF8"
  end
  if env.body == "8BITMIME" then
    if not st.ext["8BITMIME"] then
      return DENYSOFT, { code = 451, enh = "4.6.3", msg = "8BITMIME is not supported downstream" }
    end
    params = params .. " BODY=8BITMIME"
  elseif env.body == "BINARYMIME" then
    return DENYSOFT, { code = 451, enh = "4.6.3", msg = "BINARYMIME cannot be relayed" }
  end
  local ok, err = xforward(st, env)
  if not ok then return lost(conn, err) end
  local code, enh, text = command(st.sock, "MAIL FROM:<" .. env.mail_from .. ">" .. params)
  if not code then return lost(conn, enh) end
  st.in_txn = true
  st.naccepted = 0
  if code >= 200 and code < 300 then return NEXT end
  txn:loginfo("downstream refused MAIL: %d %s %s", code, enh, text)
  return refusal(code, enh, text)
end

function P.hook_rcpt(conn, txn, rcpt)
  local st = conn.notes[NOTE]
  if not st or not st.in_txn then
    return DENYSOFT, { code = 451, enh = "4.4.2", msg = "Downstream unavailable, try again later" }
  end
  local code, enh, text = command(st.sock, "RCPT TO:<" .. rcpt.address .. ">")
  if not code then return lost(conn, enh) end
  if code >= 200 and code < 300 then
    st.naccepted = st.naccepted + 1
    return OK, { code = 250, enh = enh ~= "" and enh or "2.1.5", msg = text ~= "" and text or "Ok" }
  end
  txn:loginfo("downstream refused <%s>: %d %s %s", rcpt.address, code, enh, text)
  return refusal(code, enh, text)
end

local function send_data(st, txn)
  local code, enh, text = command(st.sock, "DATA")
  if not code then return nil, enh end
  if code ~= 354 then return code, enh, text end
  st.sock:settimeout(cfg.timeout_data)
  for chunk in kasi.forward_chunks(txn) do
    local ok, err = st.sock:send(chunk)
    if not ok then return nil, err end
  end
  code, enh, text = read_reply(st.sock)
  st.sock:settimeout(cfg.timeout_cmd)
  return code, enh, text
end

function P.hook_queue(conn, txn)
  local st = conn.notes[NOTE]
  if not st or not st.in_txn then
    return DENYSOFT, { code = 451, enh = "4.4.2", msg = "Downstream unavailable, try again later" }
  end
  local code, enh, text = send_data(st, txn)
  if not code then return lost(conn, "during DATA: " .. tostring(enh)) end
  st.in_txn = false
  if code >= 200 and code < 300 then
    local theirs = text:match("queued as (%S+)") or "?"
    txn:loginfo("proxied downstream, downstream id %s", theirs)
    txn:result { downstream = { theirs } }
    return OK, { code = 250, enh = "2.0.0",
                 msg = string.format("Ok: queued as %s (downstream %s)", txn.id, theirs) }
  end
  txn:logwarn("downstream refused the message: %d %s %s", code, enh, text)
  if code < 500 then return DENYSOFT, { code = 451, enh = enh ~= "" and enh or "4.4.2", msg = text } end
  return refusal(code, enh, text)
end

function P.hook_rset(conn)
  local st = conn.notes[NOTE]
  if st and not reset(st) then lost(conn, "RSET failed") end
end

local function quit(conn)
  local st = conn.notes[NOTE]
  if not st then return end
  conn.notes[NOTE] = nil
  if st.in_txn then st.sock:send("RSET\r\n") end
  st.sock:send("QUIT\r\n")
  pcall(st.sock.close, st.sock)
end

P.hook_quit = quit
P.hook_disconnect = quit

return P
