-- kasi/rates.lua — events counted in sliding windows, for plugins that
-- limit rates (plugins/limit.lua). Two backends with the same answers:
--
--   local   kasi.counter: shared by the workers of this host, no I/O
--   redis   Redis (config/redis.yaml): shared by every node using it; one
--           round trip for all the windows of a call, counted by a script
--           on the server's clock (nodes need not agree on the time)
--
--   local rates = require "kasi.rates"
--   local w = rates.new("redis", "kasi:limit:")
--   local counts, err = w:add { { key = "ip:192.0.2.7", window = 60 }, ... }
--   -- counts[i]: events in key's last `window` seconds, this one included
--
-- A window is counted in 16 steps of window/15 seconds (as kasi.counter
-- does): an event leaves the count between window and 16/15 window after
-- it happened. Every call counts, refused attempts too. Failures (Redis
-- down or slow: nil, err) are the caller's to judge; add() never raises
-- for them. Keys longer than 70 bytes are shortened with a hash (local
-- keys are bounded).

local M = {}
local B = {}
B.__index = B

local STEPS = 16

local WINDOWS = [[
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for i, key in ipairs(KEYS) do
  local win, n = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])
  local step = math.max(1, math.ceil(win / 15))
  local cur = math.floor(now / step)
  local sum = 0
  local h = redis.call('HGETALL', key)
  for j = 1, #h, 2 do
    if tonumber(h[j]) <= cur - 16 then
      redis.call('HDEL', key, h[j])
    else
      sum = sum + tonumber(h[j + 1])
    end
  end
  if n > 0 then
    redis.call('HINCRBY', key, cur, n)
    redis.call('PEXPIRE', key, win + step)
    sum = sum + n
  end
  out[i] = sum
end
return out
]]

local script = kasi.redis and kasi.redis.script(WINDOWS)

-- FNV-1a of s as 8 hex digits: a short stand-in for a long key
local function fnv(s)
  local h = 2166136261
  for i = 1, #s do
    h = bit.bxor(h, s:byte(i))
    h = bit.tobit(bit.lshift(h, 24) + h * 403)   -- h * 16777619, mod 2^32
  end
  return bit.tohex(h)
end

function M.short(key)
  if #key <= 70 then return key end
  return key:sub(1, 60) .. "#" .. fnv(key)
end

-- kind: "local" or "redis"; prefix: the plugin's key namespace
function M.new(kind, prefix)
  assert(kind == "local" or kind == "redis", "kasi.rates: kind is local or redis")
  return setmetatable({ kind = kind, prefix = prefix or "" }, B)
end

function B:add_local(items)
  local out = {}
  for i, it in ipairs(items) do
    local c, err = kasi.counter.incr(M.short(self.prefix .. it.key), it.n or 1, it.window)
    if not c then return nil, err end
    out[i] = c
  end
  return out
end

function B:add_redis(items)
  local keys, args = {}, {}
  for i, it in ipairs(items) do
    keys[i] = self.prefix .. it.key
    args[2 * i - 1] = math.floor(it.window * 1000)
    args[2 * i] = it.n or 1
  end
  local r, err = script:eval(keys, args)
  if not r then return nil, err end
  if type(r) ~= "table" or #r ~= #items then return nil, "unexpected reply" end
  return r
end

-- Count one event (it.n events) in each window; the counts after it.
function B:add(items)
  if #items == 0 then return {} end
  if self.kind == "local" then return self:add_local(items) end
  return self:add_redis(items)
end

M.STEPS = STEPS
return M
