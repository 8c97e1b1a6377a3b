-- kasi.lua — the Lua half of the `kasi` library that plugins use. The C
-- engine has already put its primitives into the global table `kasi`
-- (answers, _log, sleep, spool_write, plugin, memory, hostname, and the method tables
-- of the conn, txn and address objects); this file adds the friendly layer:
-- answer constants as globals, logging with format strings, results.

local kasi = kasi
local format, select, tostring, type, pairs = string.format, select, tostring, type, pairs

-- Answers, also as globals every plugin sees.
kasi.rc_name = {}
for _, name in ipairs { "NEXT", "OK", "DENY", "DENYSOFT", "DENYDISCONNECT", "DISCONNECT" } do
  _G[name] = kasi[name]
  kasi.rc_name[kasi[name]] = name
end

-- Logging. Levels: "error", "warn", "info", "debug". A message with more
-- arguments is a string.format() format.
local levels = { error = 0, warn = 1, warning = 1, info = 2, debug = 3 }

local function level_of(level)
  local n = levels[level]
  if not n then error("unknown log level '" .. tostring(level) .. "'", 3) end
  return n
end

local function text(fmt, ...)
  if select("#", ...) > 0 then return format(fmt, ...) end
  return tostring(fmt)
end

function kasi.log(level, fmt, ...)
  kasi._log(level_of(level), text(fmt, ...))
end

local function add_log_methods(methods, id_of)
  function methods:log(level, fmt, ...)
    kasi._log(level_of(level), text(fmt, ...), id_of(self))
  end
  for name in pairs(levels) do
    methods["log" .. name] = function(self, fmt, ...)
      kasi._log(levels[name], text(fmt, ...), id_of(self))
    end
  end
end

for name in pairs(levels) do
  kasi["log" .. name] = function(fmt, ...) kasi._log(levels[name], text(fmt, ...)) end
end

add_log_methods(kasi._conn_methods, function(c) return c.id end)
add_log_methods(kasi._txn_methods, function(t) return t.id end)

-- Results: every plugin's non-NEXT answer is recorded by the engine in
-- conn.results / txn.results under the plugin's name ({rc=, hook=, msg=});
-- obj:result{...} merges more fields into the calling plugin's entry.
local function result(self, fields)
  local name = kasi.plugin() or "lua"
  local r = self.results[name]
  if not r then r = {}; self.results[name] = r end
  for k, v in pairs(fields) do r[k] = v end
  return r
end
kasi._conn_methods.result = result
kasi._txn_methods.result = result

-- A configured reply { code=, enh=, message= } (the "reply" type of a
-- plugin's schema) as a hook answer; text, when given, replaces the message
-- (e.g. once its {placeholders} are filled in).
function kasi.reply(r, text)
  return { code = r.code, enh = r.enh, msg = text or r.message }
end

-- The local spool (a C primitive): kasi.spool.write(txn) -> true | nil, err
kasi.spool = { write = kasi.spool_write }
kasi.spool_write = nil                  -- one name per thing

return kasi
