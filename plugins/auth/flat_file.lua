-- auth/flat_file.lua — SMTP AUTH against a file of users and password
-- hashes, one "user:hash" per line (create and change entries with
-- `kasi passwd FILE USER`). Hashes are crypt(3) strings — yescrypt ("$y$")
-- or SHA-512-crypt ("$6$"); a line holding anything else (a plaintext
-- password, a legacy DES/MD5 hash) is refused with an error naming the line.
-- The file is read at load (it is the schema's "file" value: the engine
-- reads it, the plugin needs no io), so SIGHUP picks up changes.
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

-- "user:hash" -> user, hash; or nil, why
local function parse_line(line)
  local user, hash = line:match("^([^:]+):(.*)$")
  if not user or user:find("[%s%c]") then return nil, "expected user:hash" end
  local ok, why = kasi.crypt_check(hash)
  if not ok then return nil, why end
  return user, hash
end

local function load_users(file)
  local t, n, lineno = {}, 0, 0
  for line in (file.text .. "\n"):gmatch("([^\n]*)\n") do
    lineno = lineno + 1
    line = line:gsub("\r$", "")
    if line:find("%S") and not line:find("^%s*#") then
      local user, hash = parse_line(line)
      if user then
        if not t[user] then n = n + 1 end
        t[user] = hash
      else
        -- the line itself may hold a password: never log its text
        kasi.logerror("%s:%d: entry refused: %s", file.path, lineno, hash)
      end
    end
  end
  return t, n
end

local function load_senders(map)
  local out = {}
  for user, list in pairs(map) do
    local set = {}
    for _, a in ipairs(list) do set[a:lower()] = true end
    out[user] = set
  end
  return out
end

P.schema = {
  users_file = { "file", default = "auth_users",
                 hint = "create it with: kasi passwd FILE USER" },
  sender_must_match = { "boolean", default = false },
  senders = { "map", of = { "list", of = "string" }, default = {} },
}

function P.register(cfg)
  local n
  users, n = load_users(cfg.users_file)
  must_match = cfg.sender_must_match
  senders = load_senders(cfg.senders)
  kasi.loginfo("%d user(s) from %s%s", n, cfg.users_file.path,
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
