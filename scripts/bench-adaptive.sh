#!/usr/bin/env bash
# The adaptive crawl against the issue's cases: 100 ms per call (near the
# real API), uniform and 80%-in-one-hour months, an empty account, at several
# concurrencies. Prints calls, the share of full pages, throttles, most
# requests in flight, wall time, and the ratio to the ideal
# min(C / latency, rate) x 200 sessions/s. PROFILE=debug reuses the debug
# build (call counts do not depend on it; wall times do, a little).
set -euo pipefail
cd "$(dirname "$0")/.."
PROFILE=${PROFILE:-release}
SESSIONS=${SESSIONS:-20000}
if [ "$PROFILE" = release ]; then cargo build --release --quiet; else cargo build --quiet; fi
BIN=${CARGO_TARGET_DIR:-target}/$PROFILE
# shellcheck source=scripts/sim-lib.sh
. scripts/sim-lib.sh

run_case() { # name concurrency sessions skew [rate]
  local name=$1 concurrency=$2 sessions=$3 skew=$4 rate=${5:-}
  local limit=()
  [ -n "$rate" ] && limit=(--rate-limit "$rate" --burst 1)
  start_sim --sessions "$sessions" --seed 5 --skew-share "$skew" --bursts 0 --latency 100ms "${limit[@]}"
  local start end
  start=$(date +%s.%N)
  "$BIN/ssm-audit" export --output "$work/out-$name-$concurrency" --endpoint-url "$endpoint" \
    --concurrency "$concurrency" 2>/dev/null
  end=$(date +%s.%N)
  python3 - "$(curl -s "$endpoint/_stats")" "$start" "$end" "$name" "$concurrency" "$sessions" "$rate" <<'PY'
import json, math, sys
stats = json.loads(sys.argv[1])
seconds = float(sys.argv[3]) - float(sys.argv[2])
name, concurrency, sessions = sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
rate = float(sys.argv[7]) if sys.argv[7] else math.inf
calls = stats["describe_calls"]
ok = max(1, stats["describe_ok"])
ideal = min(concurrency / 0.1, rate) * 200
budget = math.floor(1.15 * math.ceil(sessions / 200)) + 8
print(f"| {name} | {concurrency} | {calls} (budget {budget}) | {stats['full_pages'] / ok:.0%} | "
      f"{stats['throttled']} | {stats['max_in_flight']} | {seconds:.1f} s | "
      f"{(sessions / seconds) / ideal if sessions else 0:.2f} |")
PY
  kill "$sim_pid"; wait "$sim_pid" 2>/dev/null || true; sim_pid=
  rm -f "$work/endpoint"
}

echo "| case | concurrency | calls | full pages | throttled | max in flight | wall | of ideal |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
run_case empty 16 0 0
for c in 4 16; do run_case uniform "$c" "$SESSIONS" 0; done
for c in 4 16; do run_case skewed "$c" "$SESSIONS" 0.8; done
