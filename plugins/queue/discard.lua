-- queue/discard — accepts every message and stores nothing (for tests and
-- benchmarks). Never use it on a real server: the mail is lost.

schema = {}   -- no settings

function hook_queue(conn, txn)
  conn:loginfo("discarded %s (%d bytes)", txn.id, txn.size)
  return OK
end
