-- kasi/match.lua — lists of names matched exactly or by pattern, for
-- plugins that take allow/deny lists of host names, HELO names, domains and
-- addresses from their YAML config.
--
--   local match = require "kasi.match"
--   local l = match.list { "mail.example.com", "*.example.net", "~^dsl%d+%." }
--   l:match("a.b.example.net")  -> "*.example.net" | nil
--
-- Every comparison ignores case. An entry is
--   * exact text:          "mail.example.com"
--   * a glob, when it has * or ?: "*" is any run of characters (dots
--     included), "?" one character; anchored at both ends. "*.example.com"
--     matches "a.example.com" and "a.b.example.com", not "example.com".
--   * a Lua pattern, when it starts with "~": "~^dsl%d+%.example%.net$".
--     Not anchored unless it says so (^ $); matched against the lower-cased
--     text, so write it in lower case.

local M = {}

-- glob -> anchored Lua pattern
function M.glob(g)
  local out = { "^" }
  for c in g:lower():gmatch(".") do
    if c == "*" then out[#out + 1] = ".*"
    elseif c == "?" then out[#out + 1] = "."
    elseif c:match("%p") then out[#out + 1] = "%" .. c
    else out[#out + 1] = c end
  end
  out[#out + 1] = "$"
  return table.concat(out)
end

-- a set "[...]" starting at i (after "%f" too); the index after it, or nil
local function set_end(p, i)
  i = i + 1
  if p:sub(i, i) == "^" then i = i + 1 end
  local first = true
  while i <= #p do
    local c = p:sub(i, i)
    if c == "%" then i = i + 1
    elseif c == "]" and not first then return i + 1 end
    first = false
    i = i + 1
  end
  return nil
end

-- Is p a well-formed Lua pattern? true, or nil and why. (Lua finds some
-- mistakes only when a match gets that far; this finds them all at once.)
function M.pattern_ok(p)
  local i, depth = 1, 0
  while i <= #p do
    local c = p:sub(i, i)
    if c == "%" then
      local n = p:sub(i + 1, i + 1)
      if n == "" then return nil, "malformed pattern (ends with '%')" end
      if n == "b" then
        if #p < i + 3 then return nil, "missing arguments to '%b'" end
        i = i + 4
      elseif n == "f" then
        if p:sub(i + 2, i + 2) ~= "[" then return nil, "missing '[' after '%f' in pattern" end
        i = set_end(p, i + 2)
        if not i then return nil, "malformed pattern (missing ']')" end
      else
        i = i + 2
      end
    elseif c == "[" then
      i = set_end(p, i)
      if not i then return nil, "malformed pattern (missing ']')" end
    else
      if c == "(" then depth = depth + 1
      elseif c == ")" then
        depth = depth - 1
        if depth < 0 then return nil, "invalid pattern capture" end
      end
      i = i + 1
    end
  end
  if depth > 0 then return nil, "unfinished capture" end
  local ok, err = pcall(string.find, "", p)
  if not ok then return nil, (tostring(err):gsub("^.-:%d+: ", "")) end
  return true
end

local List = {}
List.__index = List

-- the entry that matches s (as configured), or nil
function List:match(s)
  if s == nil then return nil end
  s = tostring(s):lower()
  local e = self.exact[s]
  if e then return e end
  for _, p in ipairs(self.patterns) do
    if s:find(p.pat) then return p.text end
  end
  return nil
end

function List:empty()
  return next(self.exact) == nil and #self.patterns == 0
end

-- add one entry; raises on a bad Lua pattern
function List:add(entry)
  local text = tostring(entry)
  if text:sub(1, 1) == "~" then
    local pat = text:sub(2)
    local ok, err = M.pattern_ok(pat)
    if not ok then error("bad pattern '" .. text .. "': " .. err, 3) end
    self.patterns[#self.patterns + 1] = { pat = pat, text = text }
  elseif text:find("[%*%?]") then
    self.patterns[#self.patterns + 1] = { pat = M.glob(text), text = text }
  else
    self.exact[text:lower()] = text
  end
end

-- a list from a YAML sequence (or a single string, or nil)
function M.list(entries)
  local self = setmetatable({ exact = {}, patterns = {} }, List)
  if type(entries) ~= "table" then entries = { entries } end
  for _, e in ipairs(entries) do self:add(e) end
  return self
end

-- a list of Lua patterns only (every entry is a pattern, no "~" needed)
function M.patterns(entries)
  local self = setmetatable({ exact = {}, patterns = {} }, List)
  if type(entries) ~= "table" then entries = { entries } end
  for _, e in ipairs(entries) do self:add("~" .. tostring(e)) end
  return self
end

return M
