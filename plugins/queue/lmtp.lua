-- queue/lmtp — deliver every accepted message over LMTP (RFC 2033), e.g.
-- straight into Dovecot or Postfix's LMTP server, with one reply per
-- recipient. The logic is queue/smtp_forward's (loaded from the file next
-- to this one) with LMTP forced on and port 24 as the default. A mixed
-- outcome (some recipients 2xx, others refused) answers 250 and logs every
-- refused recipient; see docs/queue.md for why.
local here = plugin_path:match("^(.*/)") or "./"
local F = assert(loadfile(here .. "smtp_forward.lua", "t", _G))()

local P = { schema = F.schema }

function P.register(c)
  F.configure(c, true)
end

P.hook_queue = F.hook_queue

return P
