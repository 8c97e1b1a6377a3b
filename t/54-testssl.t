#!/usr/bin/env python3
"""testssl.sh against a STARTTLS listener on loopback: no protocol below
TLS 1.2, no NULL/anonymous/export/LOW/3DES/obsolete-CBC cipher, and no
known vulnerability (Heartbleed, ROBOT, POODLE, SWEET32, ...). Skipped
when the testssl command is not installed (contrib/deps.sh installs it)."""
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kasitest import *  # noqa: E402,F401,F403
from tlstest import make_pki, skip, start, tls_yaml  # noqa: E402

NOT_OFFERED = ["SSLv2", "SSLv3", "TLS1", "TLS1_1", "cipherlist_NULL", "cipherlist_aNULL",
               "cipherlist_EXPORT", "cipherlist_LOW", "cipherlist_3DES_IDEA",
               "cipherlist_AVERAGE"]
VULNS = ["heartbleed", "CCS", "ROBOT", "secure_client_renego", "CRIME_TLS", "POODLE_SSL",
         "fallback_SCSV", "SWEET32", "FREAK", "DROWN", "LOGJAM", "BEAST", "LUCKY13", "RC4"]

tool = shutil.which("testssl") or shutil.which("testssl.sh")
if not tool:
    skip("testssl is not installed")
    done()

import tempfile  # noqa: E402
d = tempfile.mkdtemp(prefix="kasi-testssl-")
pki = make_pki(d, {"a": ["mail.a.test"]})
with start(tls_yaml("../spool", [{"tls": "starttls"}], [pki["a"]]), 1) as k:
    out = os.path.join(d, "testssl.json")
    res = subprocess.run([tool, "--starttls", "smtp", "--quiet", "--color", "0",
                          "--warnings", "off", "-p", "-s", "-U", "--ip", "one",
                          "--jsonfile", out, "127.0.0.1:%d" % k.port],
                         stdin=subprocess.DEVNULL, capture_output=True, text=True,
                         timeout=scaled(240))
    try:
        with open(out) as f:
            found = {e["id"]: e for e in json.load(f)}
    except (OSError, ValueError) as e:
        found = {}
        ok(False, "testssl wrote its JSON report", repr(e), res.stdout[-2000:])
    for key in ("TLS1_2", "TLS1_3"):
        like(found.get(key, {}).get("finding", ""), r"^offered", key + " offered")
    for key in NOT_OFFERED:
        is_(found.get(key, {}).get("finding"), "not offered", key + " not offered")
    like(found.get("cipherlist_STRONG", {}).get("finding", ""), r"^offered",
         "strong (AEAD) ciphers offered")
    for key in VULNS:
        is_(found.get(key, {}).get("severity"), "OK", "%s: %s" % (
            key, found.get(key, {}).get("finding", "(not reported)")))
    bad = [e for e in found.values() if e.get("severity") in ("MEDIUM", "HIGH", "CRITICAL")]
    is_(bad, [], "no MEDIUM, HIGH or CRITICAL finding")

done()
