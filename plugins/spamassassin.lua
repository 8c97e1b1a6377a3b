-- spamassassin.lua — scan each message with spamd (SPAMC/1.5) after DATA.
--
-- The message (headers as edited so far, then the body) is streamed to
-- spamd from the message store, never copied into Lua. The verdict becomes
-- X-Spam-Flag / X-Spam-Score / X-Spam-Status headers (and X-Spam-Report
-- when asked); a score at or above the reject threshold is a 550. When
-- spamd cannot be reached or answers nonsense, `on_failure` decides:
-- accept with "X-Spam-Status: Unknown", or 451. See config/spamassassin.yaml.

local P = {}
local cfg

P.schema = {
  host = { "string", default = "127.0.0.1" },
  port = { "integer", min = 1, max = 65535, default = 783 },
  socket = { "string" },
  user = { "string" },
  timeout = { "number", min = 0.001, max = 3600, default = 30 },
  connect_timeout = { "number", min = 0.001, max = 3600, default = 5 },
  reject_threshold = { "number" },
  relay_reject_threshold = { "number" },
  max_size = { "integer", min = 0, default = 500 * 1024 },
  on_failure = { "enum", values = { "accept", "defer" }, default = "defer" },
  add_report = { "boolean", default = false },
}

function P.register(c)
  cfg = c
end

local SPAM_HEADERS = { "X-Spam-Flag", "X-Spam-Score", "X-Spam-Status",
                       "X-Spam-Report", "X-Spam-Level" }

local function clear_headers(txn)
  for _, h in ipairs(SPAM_HEADERS) do txn:remove_header(h) end
end

-- Talk to spamd. Returns a table {spam=, score=, required=, body=} or
-- nil, why.
local function scan(txn)
  local sock, err
  if cfg.socket then
    sock, err = kasi.tcp.connect(cfg.socket, nil, { timeout = cfg.connect_timeout })
  else
    sock, err = kasi.tcp.connect(cfg.host, cfg.port, { timeout = cfg.connect_timeout })
  end
  if not sock then return nil, "connect: " .. tostring(err) end
  sock:settimeout(cfg.timeout)
  local verb = cfg.add_report and "REPORT" or "SYMBOLS"
  local head = verb .. " SPAMC/1.5\r\nContent-length: " .. txn.size .. "\r\n"
  if cfg.user then head = head .. "User: " .. cfg.user .. "\r\n" end
  local ok
  ok, err = sock:send(head .. "\r\n")
  if ok then ok, err = sock:send_message(txn) end
  if not ok then sock:close(); return nil, "send: " .. tostring(err) end
  local status
  status, err = sock:receive("*l")
  if not status then sock:close(); return nil, "receive: " .. tostring(err) end
  local code, msg = status:match("^SPAMD/%d+%.%d+ (%d+) (.*)$")
  if code ~= "0" then
    sock:close()
    return nil, "spamd: " .. (msg or status)
  end
  local res = {}
  while true do
    local line
    line, err = sock:receive("*l")
    if not line then sock:close(); return nil, "receive: " .. tostring(err) end
    if line == "" then break end
    local flag, score, req = line:match("^Spam:%s*(%a+)%s*;%s*(%-?[%d%.]+)%s*/%s*(%-?[%d%.]+)")
    if flag then
      res.spam = flag:lower() == "true" or flag:lower() == "yes"
      res.score, res.required = tonumber(score), tonumber(req)
    end
  end
  res.body = sock:receive("*a") or ""
  sock:close()
  if not res.score then return nil, "spamd: no Spam: line in the answer" end
  return res
end

local function fold(list, width)
  -- "a,b,c" -> lines of at most `width`, joined with "\n\t" (header folds)
  local out, line = {}, ""
  for item in list:gmatch("[^,%s]+") do
    if #line > 0 and #line + #item + 1 > width then
      out[#out + 1] = line .. ","
      line = item
    else
      line = #line > 0 and (line .. "," .. item) or item
    end
  end
  if #line > 0 then out[#out + 1] = line end
  return table.concat(out, "\n\t")
end

local function add_verdict(txn, r)
  local score = string.format("%.1f", r.score)
  local req = string.format("%.1f", r.required)
  local tests = cfg.add_report and "" or r.body:gsub("%s+", "")
  local status = (r.spam and "Yes" or "No") .. ", score=" .. score ..
                 " required=" .. req
  if tests ~= "" then status = status .. " tests=" .. fold(tests, 60) end
  txn:add_header("X-Spam-Flag", r.spam and "YES" or "NO")
  txn:add_header("X-Spam-Score", score)
  txn:add_header("X-Spam-Status", status)
  if cfg.add_report and r.body:find("%S") then
    local rep = r.body:gsub("\r", ""):gsub("%s+$", ""):gsub("\n", "\n\t")
    txn:add_header("X-Spam-Report", rep)
  end
end

function P.hook_data_post(conn, txn)
  clear_headers(txn)
  if txn.size > cfg.max_size then
    txn:add_header("X-Spam-Status", string.format(
      "Skipped, size=%d max_size=%d", txn.size, cfg.max_size))
    return NEXT
  end
  local r, err = scan(txn)
  if not r then
    txn:logwarn("spamassassin: %s", err)
    txn:result { err = err }
    if cfg.on_failure == "defer" then
      return DENYSOFT, { code = 451, enh = "4.7.1",
                         msg = "Spam scanner unavailable, try again later" }
    end
    txn:add_header("X-Spam-Status", "Unknown, the scanner failed")
    return NEXT
  end
  add_verdict(txn, r)
  txn.notes.spamassassin = { spam = r.spam, score = r.score, required = r.required }
  txn:result { score = r.score, spam = r.spam }
  kasi.stats.observe("score", r.score, { spam = r.spam and "yes" or "no" })
  local limit = cfg.reject_threshold
  if conn.relaying and cfg.relay_reject_threshold then limit = cfg.relay_reject_threshold end
  if limit and r.score >= limit then
    txn:loginfo("spamassassin: rejected, score %.1f >= %.1f", r.score, limit)
    return DENY, { code = 550, enh = "5.7.1",
                   msg = string.format("Message rejected as spam (score %.1f)", r.score) }
  end
  return NEXT
end

return P
