-- kasi/sandbox.lua — the environment each plugin runs in. The engine calls
-- M.setup once per generation (after kasi.lua) and M.env once per plugin.
--
-- A plugin sees its own global table. Reads fall back to a base:
--   * sandboxed (the default): the safe part of the standard library —
--     the base functions without getfenv/setfenv/module, string, table,
--     math, bit, coroutine, os.time/date/clock/getenv/difftime, kasi and
--     the answer constants. No io, os.execute/exit/remove/rename/tmpname,
--     debug, ffi, jit or package. Each plugin gets its own copies of the
--     library tables, so one plugin changing string.format changes nothing
--     elsewhere. load/loadstring take text only and give the chunk the
--     plugin's environment; loadfile/dofile only read files inside the
--     plugin directories; require only finds the kasi library's Lua modules
--     (lua/) and the libraries above.
--   * unsafe (the plugin's line in config/plugins says `unsafe`): every
--     global of the Lua state, as the kasi library itself sees them.
-- The sandbox keeps plugins from reaching the system by accident or habit;
-- it is no boundary against hostile code: run only plugins you trust.

local M = {}

local BASE = { "assert", "error", "ipairs", "next", "pairs", "pcall", "print",
               "rawequal", "rawget", "rawset", "select", "setmetatable",
               "getmetatable", "tonumber", "tostring", "type", "unpack",
               "xpcall", "collectgarbage", "_VERSION" }
local LIBS = { "string", "table", "math", "bit", "coroutine" }
local OS = { "time", "date", "clock", "getenv", "difftime" }
local FORBIDDEN = { io = true, os = true, debug = true, ffi = true, jit = true,
                    package = true }

local G = _G
local real_load, real_loadfile, real_require = load, loadfile, require
local plugin_dirs, realpath = {}, nil

local function readonly(t)
  return setmetatable({}, {
    __index = t,
    __newindex = function() error("the shared globals are read-only", 2) end,
    __metatable = false,
  })
end

local full = readonly(G)

-- dirs: the plugin directories (resolved); resolve: path -> real path | nil
function M.setup(dirs, resolve)
  plugin_dirs, realpath = dirs, resolve
  -- the string metatable holds the real string table: keep it out of reach
  getmetatable("").__metatable = false
end

local function copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

local function not_here(what)
  return what .. " is not available to sandboxed plugins (mark the plugin "
         .. "'unsafe' in config/plugins to allow it)"
end

local function inside_plugin_dirs(path)
  local real = type(path) == "string" and realpath(path)
  if not real then return nil end
  for _, d in ipairs(plugin_dirs) do
    if real:sub(1, #d + 1) == d .. "/" then return real end
  end
  return nil
end

-- load, loadstring, loadfile, dofile and require bound to env
local function loaders(env, libs)
  local function load_text(chunk, name, _, e)
    return real_load(chunk, name, "t", e or env)
  end
  local function loadfile_in(path, _, e)
    local real = inside_plugin_dirs(path)
    if not real then
      return nil, "loadfile " .. tostring(path) .. ": " .. not_here("a file outside the plugin directories")
    end
    return real_loadfile(real, "t", e or env)
  end
  local function require_in(name)
    if type(name) ~= "string" then error("require: expected a module name", 2) end
    if libs[name] then return libs[name] end
    if FORBIDDEN[name:match("^[^.]*")] or name == "kasi.sandbox"
       or not package.searchpath(name, package.path) then
      error("require '" .. name .. "': " .. not_here("a module outside lua/"), 2)
    end
    return real_require(name)
  end
  return {
    load = load_text, loadstring = load_text, loadfile = loadfile_in,
    dofile = function(path)
      local f, err = loadfile_in(path)
      if not f then error(err, 2) end
      return f()
    end,
    require = require_in,
  }
end

local function sandbox_base()
  local b = {}
  for _, name in ipairs(BASE) do b[name] = G[name] end
  for _, name in ipairs(LIBS) do b[name] = copy(G[name]) end
  b.os = {}
  for _, name in ipairs(OS) do b.os[name] = G.os[name] end
  b.kasi = G.kasi
  for rc in pairs(G.kasi.rc_name) do b[G.kasi.rc_name[rc]] = rc end
  return b
end

-- A new environment for plugin `name` (file `path`).
function M.env(name, path, unsafe)
  local base = unsafe and full or sandbox_base()
  local env = setmetatable({}, { __index = base, __metatable = false })
  env._G = env
  env.plugin_name = name
  env.plugin_path = path
  if not unsafe then
    local libs = { os = base.os }
    for _, lib in ipairs(LIBS) do libs[lib] = base[lib] end
    for k, f in pairs(loaders(env, libs)) do base[k] = f end
  end
  return env
end

return M
