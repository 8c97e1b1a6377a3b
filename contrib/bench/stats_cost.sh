#!/bin/sh
# stats_cost.sh — messages per second with the statistics on (build/kasi)
# and compiled out (a second build with -DKASI_STATS_OFF), behind a chain
# of four rcpt plugins and queue/discard, smtp-source as the client.
# Alternates the two binaries RUNS times; loopback only, bounded. A
# quicker check than make bench, whose "statistics off" row measures the
# same with the chain scenario.
#   make kasi nostats
#   contrib/bench/stats_cost.sh [ON_BIN] [OFF_BIN]
set -e
ON=${1:-build/kasi}; OFF=${2:-build-nostats/kasi}
RUNS=${RUNS:-3}; MSGS=${MSGS:-5000}; SESS=${SESS:-20}
dir=$(mktemp -d /tmp/kasi-stats-cost-XXXXXX)
trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir/config" "$dir/plugins" "$dir/spool"
for n in a b c d; do
    printf 'local P = {}\nfunction P.hook_rcpt(conn, txn, rcpt)\n  if rcpt.user == "nobody%s" then return DENY end\nend\nreturn P\n' $n > "$dir/plugins/$n.lua"
done
printf 'a\nb\nc\nd\nqueue/discard\n' > "$dir/config/plugins"
printf 'listen: ["127.0.0.1:0"]\nspool_dir: %s/spool\nlog: {level: info}\nhttp:\n  listen: 127.0.0.1:0\n' "$dir" > "$dir/config/smtp.yaml"
n=0
run() {   # binary -> msg/s
    n=$((n + 1))
    log="$dir/log.$n"
    "$1" -c "$dir/config" > "$log" 2>&1 &
    pid=$!
    i=0
    while ! grep -q "ready, host name" "$log" && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
    port=$(sed -n 's/.*listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$log" | head -1)
    t0=$(date +%s.%N)
    timeout 300 smtp-source -c -l 5120 -m "$MSGS" -s "$SESS" -f a@client.test \
        -t someone@example.test "127.0.0.1:$port" > /dev/null
    t1=$(date +%s.%N)
    kill "$pid"; wait "$pid" 2>/dev/null || true
    echo "$t0 $t1" | awk -v m="$MSGS" '{ printf "%.0f\n", m / ($2 - $1) }'
}
for r in $(seq "$RUNS"); do
    echo "run $r: stats on $(run "$ON") msg/s, stats off $(run "$OFF") msg/s"
done
