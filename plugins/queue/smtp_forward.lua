-- queue/smtp_forward — hand every accepted message to a downstream SMTP
-- server (by default Postfix on 127.0.0.1:10025) and answer the client's
-- DATA with what the downstream said: 250 only once the downstream has the
-- message. Recipients are grouped by route (per recipient domain); each
-- route gets one transaction with its own recipients, and the client hears
-- 250 only when every route accepted. The work is in kasi.forwarder
-- (lua/kasi/forwarder.lua), shared with queue/lmtp. See docs/queue.md.
local forwarder = require "kasi.forwarder"

local P = { schema = forwarder.schema }
local st

function P.register(c)
  st = forwarder.configure(c, false)
end

function P.hook_queue(conn, txn)
  return forwarder.deliver(st, conn, txn)
end

return P
