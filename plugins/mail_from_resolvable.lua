-- mail_from_resolvable.lua — the sender's domain must be able to receive
-- mail: it has MX records (not a null MX), or A/AAAA records when it has no
-- MX at all (RFC 5321 5.1). A domain that does not exist is a 550 5.1.8 at
-- MAIL; a DNS failure or timeout is a 450 4.1.8 (try again later).
-- See config/mail_from_resolvable.yaml.

local P = {}
local cfg

P.schema = {
  timeout = { "number", min = 0, max = 60, default = 0 },
  reject = { "boolean", default = true },
}

function P.register(c)
  cfg = c
end

local function opts()
  return cfg.timeout > 0 and { timeout = cfg.timeout } or nil
end

local function temporary(err)
  return err ~= "NXDOMAIN" and err ~= "NODATA"
end

-- true | false, why, temp
local function resolvable(domain)
  local mx, err = kasi.dns.query(domain, "MX", opts())
  if mx then
    if #mx == 1 and (mx[1].exchange == "" or mx[1].exchange == ".") then
      return false, "domain does not accept mail (null MX)"
    end
    return true
  end
  if err == "NXDOMAIN" then return false, "domain not found" end
  if temporary(err) then return false, "DNS " .. err, true end
  local res = kasi.dns.query_many({ { domain, "A" }, { domain, "AAAA" } }, opts())
  if res[1].answers or res[2].answers then return true end
  for _, r in ipairs(res) do
    if temporary(r.err) then return false, "DNS " .. r.err, true end
  end
  return false, "domain has no MX or address records"
end

function P.hook_mail(conn, txn, from)
  if from.is_null then return NEXT end
  local domain = from.host
  if not domain or domain == "" or domain:sub(1, 1) == "[" then return NEXT end
  local ok, why, temp = resolvable(domain)
  if ok then return NEXT end
  txn:result { fail = why }
  txn:loginfo("mail_from_resolvable: %s: %s", domain, why)
  if not cfg.reject then return NEXT end
  if temp then
    return DENYSOFT, { code = 450, enh = "4.1.8",
                       msg = "Sender domain " .. domain .. ": " .. why .. ", try again later" }
  end
  return DENY, { code = 550, enh = "5.1.8",
                 msg = "Sender domain " .. domain .. ": " .. why }
end

return P
