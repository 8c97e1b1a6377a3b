#!/usr/bin/env bash
# run.sh — entry point of `make bench`: kasi against Haraka and Postfix's
# smtp-sink on loopback. Checks the tools, raises the open-file limit for
# the idle-connection test, and runs bench.py (settings: BENCH_* variables,
# see contrib/bench/README.md). BENCH_QUICK=1 is the tiny smoke run.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

for tool in /usr/sbin/smtp-source /usr/sbin/smtp-sink; do
    if [ ! -x "$tool" ]; then
        echo "run.sh: $tool not found (Debian package postfix)" >&2
        exit 1
    fi
done
command -v python3 >/dev/null || { echo "run.sh: python3 not found" >&2; exit 1; }

# 10,000 idle connections need as many descriptors in the client and in
# the server under test (both inherit this limit).
hard="$(ulimit -Hn)"
want=30000
if [ "$hard" != unlimited ] && [ "$hard" -lt "$want" ]; then want="$hard"; fi
ulimit -n "$want" 2>/dev/null || true

export BENCH_COMMAND="${BENCH_COMMAND:-make bench${BENCH_QUICK:+ (BENCH_QUICK=$BENCH_QUICK)}}"
exec python3 "$here/bench.py" "$@"
