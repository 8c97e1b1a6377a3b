-- kasi/schema.lua — strict plugin configuration. A plugin declares the keys
-- of its config/<name>.yaml in P.schema; the engine checks the file against
-- it before calling P.register(cfg), and an unknown key or a bad value
-- fails the load (kasi -t, start, SIGHUP) with "file:line: key: why".
-- register() gets the checked copy, with the defaults filled in.
--
--   P.schema = {
--     port    = { "integer", min = 1, max = 65535, default = 783 },
--     allow   = { "list", of = "cidr", default = {} },
--     mode    = { "enum", values = { "reject", "note", "off" }, default = "reject" },
--     checks  = { "map", keys = { fqdn = { "boolean", default = true } }, default = {} },
--     routes  = { "map", of = { "map", keys = { host = { "string", required = true } } } },
--     reply   = { "reply", default = { code = 550, enh = "5.7.1", message = "Denied" } },
--   }
--
-- A spec is { TYPE, options... } or just "TYPE". Types:
--   string, number, integer (min, max), boolean (also yes/no), enum (values),
--   list (of = spec; min, max: number of items), map (keys = { name = spec }
--   for fixed keys, or of = spec for any keys; scalar = "key": a lone value
--   stands for { key = value }), ip (an address), cidr (an
--   address or a network), name (an entry of a kasi.match list: text, glob
--   or "~pattern"), pattern (a Lua pattern), reply ({code, enh, message}:
--   each missing part comes from the default; the code keeps the default's
--   class), file (a path, relative to the config directory; the value is
--   { path =, text = } with the file read), any.
-- Options of every type: default (used, and checked, when the key is
-- absent or empty), required, check = function(value) -> true | nil, why
-- [, key] (after the type checks; key names the sub-key to blame). A map
-- may say renamed = { old = "new.path" } for keys that moved.
--
--   schema.check(spec, cfg [, lines [, read]]) -> checked | nil, line, "key: why"
-- lines maps each table of cfg to { [key or index] = line } (the engine
-- builds it from the YAML); it also holds keys whose value is empty.
-- read(path) -> text | nil, err reads "file" values; only the engine
-- passes one.

local match = require "kasi.match"
local netmask = require "kasi.netmask"

local M = {}
local format, type, tostring, pairs, ipairs = string.format, type, tostring, pairs, ipairs

local Fail = {}               -- a config error travelling up through check()

local function fail(line, key, fmt, ...)
  error(setmetatable({ line = line, msg = (key ~= "" and key .. ": " or "")
                                          .. format(fmt, ...) }, Fail), 0)
end

local function spec_of(s)
  if type(s) == "string" then return { s } end
  if type(s) ~= "table" or type(s[1]) ~= "string" then
    error("schema: a spec is { TYPE, ... } or \"TYPE\", got " .. tostring(s), 0)
  end
  return s
end

local function is_list(t)
  local n = #t
  for k in pairs(t) do
    if type(k) ~= "number" or k < 1 or k > n or k % 1 ~= 0 then return false end
  end
  return true
end

local function got(v)
  if type(v) == "table" then
    if next(v) == nil then return "an empty list" end
    return is_list(v) and "a list" or "a map"
  end
  return "'" .. tostring(v) .. "'"
end

local function child(key, name)
  if type(name) == "number" then return format("%s[%d]", key, name - 1) end
  return key == "" and name or key .. "." .. name
end

-- the context of a value inside the one being checked
local function sub(c, key, line)
  return { key = key, line = line or c.line, lines = c.lines, read = c.read }
end

local function copy(v)
  if type(v) ~= "table" then return v end
  local t = {}
  for k, x in pairs(v) do t[k] = copy(x) end
  return t
end

local check_value

-- ------------------------------------------------------------ scalar types

local T = {}

function T.string(v, s, c)
  if type(v) ~= "string" then
    local hint = (type(v) == "number" or type(v) == "boolean") and " (quote it)" or ""
    fail(c.line, c.key, "expected a string, got %s%s", got(v), hint)
  end
  return v
end

local function range(v, s, c)
  if (s.min and v < s.min) or (s.max and v > s.max) then
    if s.min and s.max then
      fail(c.line, c.key, "must be between %s and %s, got '%s'", s.min, s.max, v)
    end
    fail(c.line, c.key, "must be %s %s, got '%s'", s.min and "at least" or "at most",
         s.min or s.max, v)
  end
  return v
end

function T.number(v, s, c)
  if type(v) ~= "number" then fail(c.line, c.key, "expected a number, got %s", got(v)) end
  return range(v, s, c)
end

function T.integer(v, s, c)
  if type(v) ~= "number" or v % 1 ~= 0 then
    fail(c.line, c.key, "expected an integer, got %s", got(v))
  end
  return range(v, s, c)
end

-- true/false, and yes/no like smtp.yaml (any case)
local WORDS = { ["true"] = true, yes = true, ["false"] = false, no = false }

function T.boolean(v, s, c)
  if type(v) == "string" and WORDS[v:lower()] ~= nil then return WORDS[v:lower()] end
  if type(v) ~= "boolean" then fail(c.line, c.key, "expected true or false, got %s", got(v)) end
  return v
end

function T.enum(v, s, c)
  for _, w in ipairs(s.values) do
    if v == w then return v end
  end
  local words = {}
  for i, w in ipairs(s.values) do words[i] = tostring(w) end
  fail(c.line, c.key, "expected one of %s, got %s", table.concat(words, ", "), got(v))
end

function T.ip(v, s, c)
  if type(v) ~= "string" or not netmask.parse(v) then
    fail(c.line, c.key, "expected an IP address, got %s", got(v))
  end
  return v
end

function T.cidr(v, s, c)
  if type(v) ~= "string" or not netmask.cidr(v) then
    fail(c.line, c.key, "expected an address or network (192.0.2.0/24, 2001:db8::/32), got %s",
         got(v))
  end
  return v
end

function T.pattern(v, s, c)
  T.string(v, s, c)
  local ok, err = match.pattern_ok(v)
  if not ok then fail(c.line, c.key, "bad Lua pattern '%s': %s", v, err) end
  return v
end

function T.name(v, s, c)
  T.string(v, s, c)
  if v:sub(1, 1) ~= "~" then return v end
  local ok, err = match.pattern_ok(v:sub(2))
  if not ok then fail(c.line, c.key, "bad pattern '%s': %s", v, err) end
  return v
end

function T.any(v)
  return v
end

function T.file(v, s, c)
  T.string(v, s, c)
  local path = v:sub(1, 1) == "/" and v or (kasi.config_dir or ".") .. "/" .. v
  if not c.read then fail(c.line, c.key, "files are only read when the engine loads a plugin") end
  local text, err = c.read(path)
  if not text then
    fail(c.line, c.key, "cannot read %s: %s%s", path, tostring(err),
         s.hint and " (" .. s.hint .. ")" or "")
  end
  return { path = path, text = text }
end

-- ------------------------------------------------------------ containers

local PLURAL = { string = "strings", number = "numbers", integer = "integers",
                 boolean = "true or false values", enum = "words", ip = "IP addresses",
                 cidr = "addresses or networks", name = "names", pattern = "Lua patterns",
                 list = "lists", map = "maps", reply = "replies", file = "file names" }

function T.list(v, s, c)
  if type(v) ~= "table" or not is_list(v) then
    local of = PLURAL[spec_of(s.of or "any")[1]]
    fail(c.line, c.key, "expected a list%s, got %s", of and " of " .. of or "", got(v))
  end
  if (s.min and #v < s.min) or (s.max and #v > s.max) then
    fail(c.line, c.key, "expected %s items, got %d",
         s.max and format("%d to %d", s.min or 0, s.max) or format("at least %d", s.min), #v)
  end
  local lines, out = c.lines[v] or {}, {}
  local of = spec_of(s.of or "any")
  for i = 1, #v do
    out[i] = check_value(of, v[i], sub(c, child(c.key, i), lines[i]))
  end
  return out
end

-- every key of map: those with a value and those left empty in the YAML
local function keys_of(v, lines)
  local seen, names = {}, {}
  for k in pairs(v) do seen[k] = true; names[#names + 1] = k end
  for k in pairs(lines) do
    if not seen[k] then names[#names + 1] = k end
  end
  table.sort(names, function(a, b)
    local la, lb = lines[a] or 0, lines[b] or 0
    if la ~= lb then return la < lb end
    return tostring(a) < tostring(b)
  end)
  return names
end

local function known(keys)
  local names = {}
  for k in pairs(keys) do names[#names + 1] = k end
  table.sort(names)
  return table.concat(names, ", ")
end

local function map_key(s, v, k, lines, c, out)
  local key, line = child(c.key, k), lines[k] or c.line
  local spec = s.keys and s.keys[k] or (not s.keys and (s.of or "any"))
  if not spec then
    local moved = s.renamed and s.renamed[k]
    if moved then fail(line, "", "unknown key '%s' (now '%s')", key, child(c.key, moved)) end
    if next(s.keys) == nil then fail(line, "", "unknown key '%s' (no settings here)", key) end
    fail(line, "", "unknown key '%s' (known: %s)", key, known(s.keys))
  end
  out[k] = check_value(spec_of(spec), v[k], sub(c, key, line))
end

function T.map(v, s, c)
  if s.scalar and (type(v) == "string" or type(v) == "number") then
    v = { [s.scalar] = v }                  -- a map given by its main key alone
  end
  if type(v) ~= "table" or (next(v) ~= nil and is_list(v)) then
    fail(c.line, c.key, "expected a map, got %s", got(v))
  end
  local lines, out = c.lines[v] or {}, {}
  for _, k in ipairs(keys_of(v, lines)) do map_key(s, v, k, lines, c, out) end
  for k, spec in pairs(s.keys or {}) do
    if out[k] == nil and v[k] == nil and lines[k] == nil then
      out[k] = check_value(spec_of(spec), nil, sub(c, child(c.key, k)))
    end
  end
  return out
end

-- {code, enh, message}: the default fills the gaps; classes must agree
local REPLY = {
  code = { "integer", min = 200, max = 599 },
  enh = { "string" },
  message = { "string" },
}

function T.reply(v, s, c)
  local out = T.map(v, { "map", keys = REPLY }, c)
  local def = s.default or {}
  for k in pairs(REPLY) do
    if out[k] == nil then out[k] = def[k] end
  end
  local lines = c.lines[v] or {}
  local class = def.code and math.floor(def.code / 100)
  if out.code and class and math.floor(out.code / 100) ~= class then
    fail(lines.code or c.line, child(c.key, "code"), "must be %dxx, got '%s'", class, out.code)
  end
  if out.enh then
    local e = out.enh:match("^([245])%.%d%d?%d?%.%d%d?%d?$")
    if not e then
      fail(lines.enh or c.line, child(c.key, "enh"),
           "expected an enhanced status code like 5.7.1, got '%s'", out.enh)
    end
    if out.code and tonumber(e) ~= math.floor(out.code / 100) then
      fail(lines.enh or c.line, child(c.key, "enh"), "class %s does not match code %d",
           e, out.code)
    end
  end
  return out
end

-- ------------------------------------------------------------ one value

function check_value(s, v, c)
  local f = T[s[1]]
  if not f then error("schema: unknown type '" .. tostring(s[1]) .. "'", 0) end
  if v == nil then
    if s.required then fail(c.line, c.key, "required") end
    if s.default == nil then return nil end
    v = copy(s.default)
  end
  local out = f(v, s, c)
  if s.check then
    local ok, why, part = s.check(out)
    if not ok then
      local lines = type(v) == "table" and c.lines[v] or {}
      local key = part and child(c.key, part) or c.key
      fail(part and lines[part] or c.line, key, "%s", why or "bad value")
    end
  end
  return out
end

-- The top: P.schema is a map's keys, or a whole { "map", keys =, ... } spec.
function M.check(spec, cfg, lines, read)
  local top = spec[1] == "map" and spec or { "map", keys = spec }
  local ok, res = pcall(check_value, top, cfg or {},
                        { key = "", line = 0, lines = lines or {}, read = read })
  if ok then return res end
  if getmetatable(res) == Fail then return nil, res.line or 0, res.msg end
  error(res, 0)
end

return M
