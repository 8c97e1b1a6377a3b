#!/usr/bin/env python3
"""queue/smtp_forward throughput into Postfix's smtp-sink: smtp-source with
20 parallel sessions of 5 KB messages through kasi, with the connection
pool and without it (pool_max 0, pool_idle 0). Bounded count; checks that
every message was accepted and reports messages/s as diagnostics.
KASI_BENCH_N sets the count (default 1000)."""
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "lib"))
from kasitest import *  # noqa: E402,F401,F403
import postfix  # noqa: E402

SOURCE = "/usr/sbin/smtp-source"
why = postfix.available() or (None if os.access(SOURCE, os.X_OK) else "no smtp-source")
if why:
    print("1..0 # SKIP %s" % why)
    sys.exit(0)

N = int(os.environ.get("KASI_BENCH_N", "1000"))
rates = {}
with postfix.smtp_sink() as sink:
    for name, extra in (("pool", "pool_max: 20\npool_idle: 30\n"),
                        ("no pool", "pool_max: 0\npool_idle: 0\n")):
        with Kasi(config={"log": {"level": "info"}},
                  files={"config/plugins": "queue/smtp_forward\n",
                         "config/queue/smtp_forward.yaml": "port: %d\n%s" % (sink.port, extra)}) as k:
            t0 = time.time()
            p = subprocess.run([SOURCE, "-s", "20", "-m", str(N), "-l", "5120",
                                "-f", "alice@client.test", "-t", "bob@test.example",
                                "127.0.0.1:%d" % k.port],
                               capture_output=True, text=True, timeout=scaled(300))
            dt = time.time() - t0
            is_(p.returncode, 0, "%s: smtp-source finished" % name)
            accepted = k.log().count(" accepted: from=")
            is_(accepted, N, "%s: all %d accepted" % (name, N))
            rates[name] = N / dt
for name, r in rates.items():
    diag("%-8s %d x 5 KB, 20 sessions: %.0f msg/s" % (name, N, r))
done()
