#!/usr/bin/env python3
"""Smoke test of the benchmark scripts (contrib/bench/run.sh) with a tiny
load (BENCH_QUICK=1): the run finishes by itself, prints every row of the
result table, and measures the scenarios that can run here. Haraka rows are
only checked when Haraka is already in the bench cache (the quick run never
installs it). No performance figure is asserted."""
import os
import re
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN = os.path.join(REPO, "contrib", "bench", "run.sh")
KASI_BIN = os.environ.get("KASI_BIN") or os.path.join(REPO, "build", "kasi")
LIMIT = 90          # seconds for the whole run
count = failed = 0


def tap(good, name, why=""):
    global count, failed
    count += 1
    failed += 0 if good else 1
    print(("ok %d - %s" if good else "not ok %d - %s") % (count, name))
    if not good and why:
        print("\n".join("# " + ln for ln in why.splitlines()))
    sys.stdout.flush()


def skip(name, reason):
    global count
    count += 1
    print("ok %d - %s # skip %s" % (count, name, reason))


def row(text, label):
    """The table line that starts with label, or None."""
    m = re.search(r"^  %s  .*$" % re.escape(label), text, re.M)
    return m.group(0) if m else None


def measured(line):
    """A throughput/idle/large row carries a number in its first column."""
    return bool(line) and re.match(r"\s+[\d.,]+\s", line[28:]) is not None


def haraka_cached():
    base = os.environ.get("BENCH_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "kasi-bench")
    return os.access(os.path.join(base, "haraka", "node_modules", ".bin", "haraka"), os.X_OK)


def main():
    for tool in ("/usr/sbin/smtp-source", "/usr/sbin/smtp-sink"):
        if not os.access(tool, os.X_OK):
            print("1..0 # SKIP %s not installed (package postfix)" % tool)
            return 0
    if not os.access(KASI_BIN, os.X_OK):
        print("1..0 # SKIP kasi binary not built: %s" % KASI_BIN)
        return 0
    results = os.path.join(REPO, "bench", "RESULTS.md")
    mtime = os.path.getmtime(results) if os.path.exists(results) else None
    env = dict(os.environ, BENCH_QUICK="1", KASI_BIN=KASI_BIN)
    for k in ("BENCH_RESULTS", "BENCH_HARAKA", "BENCH_RUNS", "BENCH_MSGS", "BENCH_IDLE"):
        env.pop(k, None)
    t0 = time.monotonic()
    try:
        r = subprocess.run([RUN], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           env=env, timeout=LIMIT, cwd=REPO)
        text, rc = r.stdout.decode("utf-8", "replace"), r.returncode
    except subprocess.TimeoutExpired as e:
        text, rc = (e.stdout or b"").decode("utf-8", "replace"), None
    tap(rc == 0, "run.sh exits 0 within %d s (took %.1f s)" % (LIMIT, time.monotonic() - t0),
        text[-3000:])
    tap("throughput, 20 sessions x 5 KB" in text, "20-session table printed")
    tap("throughput, 1 session x 5 KB" in text, "1-session table printed")
    for label in ("smtp-sink direct", "kasi spool (fsync)", "handshake kasi RSA",
                  "handshake kasi ECDSA", "handshake s_server RSA", "kasi STARTTLS",
                  "kasi plain (same client)"):
        tap(measured(row(text, label)), "measured: " + label, str(row(text, label)))
    tap(row(text, "Postfix queue (fsync)") is not None, "row present: Postfix queue (fsync)")
    tap(row(text, "kasi smtp_forward, workers: 2") is not None, "row present: workers: 2")
    for label in ("kasi smtp_forward", "kasi chain + forward", "statistics off",
                  "Haraka smtp_forward", "Haraka chain + forward", "hook cost"):
        tap(row(text, label) is not None, "row present: " + label)
    for label in ("idle kasi (", "idle kasi STARTTLS", "large kasi", "large smtp-sink direct"):
        line = next((ln for ln in text.splitlines() if ln.startswith("  " + label)), None)
        tap(measured(line), "measured: " + label, str(line))
    if haraka_cached():
        line = row(text, "Haraka smtp_forward")
        tap(measured(line), "measured: Haraka smtp_forward", str(line))
    else:
        skip("measured: Haraka smtp_forward", "Haraka not in the bench cache")
    now = os.path.getmtime(results) if os.path.exists(results) else None
    tap(now == mtime, "quick run leaves bench/RESULTS.md alone")
    print("1..%d" % count)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
