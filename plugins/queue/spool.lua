-- queue/spool — the embedded default queue: writes each accepted message
-- into the local spool directory (smtp.yaml spool_dir) with fsync before
-- the client hears 250. A write error is a 451, so the sender retries.
local P = { schema = {} }   -- no settings

function P.hook_queue(conn, txn)
  local ok, err = kasi.spool.write(txn)
  if not ok then
    conn:logerror("spool write failed: %s", err)
    return DENYSOFT, { code = 451, enh = "4.3.0",
                       msg = "Error: local error writing the queue file" }
  end
  return OK
end

return P
