-- auth/flat_file.lua — SMTP AUTH against a file of users and password
-- hashes, one "user:hash" per line (create and change entries with
-- `kasi passwd FILE USER`). Hashes are crypt(3) strings — yescrypt ("$y$")
-- or SHA-512-crypt ("$6$"); a line holding anything else (a plaintext
-- password, a legacy DES/MD5 hash) is refused with an error naming the line.
-- The file is read at load, so SIGHUP picks up changes.
--
-- Optionally (sender_must_match) an authenticated user may only use the
-- envelope senders listed for them. See config/auth/flat_file.yaml.

local P = {}

local users          -- user -> hash
local senders        -- user -> { ["addr@dom"] = true, ["@dom"] = true }
local must_match

-- A hash of a random password nobody knows: an unknown user costs the same
-- time as a known one, so replies do not tell which user names exist.
local DUMMY = "$y$j9T$h0xswLYBMbGdSsqn4VXuU.$UeHxYAJWpZg02FwENz0DRqbsiR.QwsczbAjoalRXHG9"

local function path_of(file)
  if file:sub(1, 1) == "/" then return file end
  return kasi.config_dir .. "/" .. file
end

-- "user:hash" -> user, hash; or nil, why
local function parse_line(line)
  local user, hash = line:match("^([^:]+):(.*)$")
  if not user or user:find("[%s%c]") then return nil, "expected user:hash" end
  local ok, why = kasi.crypt_check(hash)
  if not ok then return nil, why end
  return user, hash
end

local function load_users(path)
  local f, err = io.open(path, "r")
  if not f then
    error("auth/flat_file: cannot read " .. tostring(err) ..
          " (create it with: kasi passwd FILE USER)", 0)
  end
  local t, n, lineno = {}, 0, 0
  for line in f:lines() do
    lineno = lineno + 1
    line = line:gsub("\r$", "")
    if line:find("%S") and not line:find("^%s*#") then
      local user, hash = parse_line(line)
      if user then
        if not t[user] then n = n + 1 end
        t[user] = hash
      else
        -- the line itself may hold a password: never log its text
        kasi.logerror("%s:%d: entry refused: %s", path, lineno, hash)
      end
    end
  end
  f:close()
  return t, n
end

local function load_senders(map)
  local out = {}
  for user, list in pairs(map or {}) do
    if type(list) ~= "table" then list = { list } end
    local set = {}
    for _, a in ipairs(list) do set[tostring(a):lower()] = true end
    out[tostring(user)] = set
  end
  return out
end

function P.register(cfg)
  local path = path_of(cfg.users_file or "auth_users")
  local n
  users, n = load_users(path)
  must_match = cfg.sender_must_match == true
  senders = load_senders(cfg.senders)
  kasi.loginfo("auth/flat_file: %d user(s) from %s%s", n, path,
               must_match and ", senders must match" or "")
end

function P.hook_auth(conn, txn, creds)
  if not creds then return NEXT end
  local hash = users[creds.user]
  local ok, err = kasi.crypt_verify(creds.password, hash or DUMMY)
  if ok == nil then
    conn:logerror("auth/flat_file: password check failed: %s", err)
    return DENYSOFT
  end
  if ok and hash then
    conn:result { user = creds.user }
    return OK
  end
  return DENY
end

-- May the authenticated user send as this address?
local function owns(user, from)
  if from.is_null then return false end
  local addr = (from.user .. "@" .. (from.host or "")):lower()
  local set = senders[user]
  if not set then return addr == user:lower() end
  return set[addr] or set["@" .. (from.host or ""):lower()] or false
end

function P.hook_mail(conn, txn, from)
  local user = conn.auth_user
  if not must_match or not user or not from then return NEXT end
  if owns(user, from) then return NEXT end
  conn:loginfo("auth/flat_file: %s may not send as <%s>", user, tostring(from))
  return DENY, { code = 553, enh = "5.7.1", msg = "Sender address not owned by user" }
end

return P
