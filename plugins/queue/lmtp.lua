-- queue/lmtp — deliver every accepted message over LMTP (RFC 2033), e.g.
-- straight into Dovecot or Postfix's LMTP server, with one reply per
-- recipient. The logic is queue/smtp_forward's (kasi.forwarder) with LMTP
-- forced on and port 24 as the default. A mixed
-- outcome (some recipients 2xx, others refused) answers 250 and logs every
-- refused recipient; see docs/queue.md for why.
local forwarder = require "kasi.forwarder"

local P = { schema = forwarder.schema }
local st

function P.register(c)
  st = forwarder.configure(c, true)
end

function P.hook_queue(conn, txn)
  return forwarder.deliver(st, conn, txn)
end

return P
