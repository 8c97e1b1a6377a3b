-- kasi/throttle.lua — at most one of a repeated event per period, for the
-- log lines that every call would write while a service is down (Redis:
-- every connection, every RCPT). The first passes at once, then one per
-- period, each with the number kept quiet since the last.
--
--   local throttle = require "kasi.throttle"
--   local outage = throttle.new(10)            -- seconds
--   local n = outage:ready()                   -- nil: keep quiet
--   if n then conn:logwarn("redis: %s%s", err, throttle.more(n)) end
--
-- The state lives in the plugin's module: each worker process logs its
-- own view once per period. ready(now) takes the time from tests
-- (default os.time()).

local M = {}
local T = {}
T.__index = T

function M.new(period)
  return setmetatable({ period = period, last = nil, quiet = 0 }, T)
end

-- nil while quiet; else the number of events kept quiet before this one
function T:ready(now)
  now = now or os.time()
  if self.last and now - self.last < self.period then
    self.quiet = self.quiet + 1
    return nil
  end
  local n = self.quiet
  self.last, self.quiet = now, 0
  return n
end

-- "" or " (N more since the last line)", to end the message with
function M.more(n)
  if not n or n == 0 then return "" end
  return string.format(" (%d more since the last line)", n)
end

return M
