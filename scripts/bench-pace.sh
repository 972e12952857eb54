#!/usr/bin/env bash
# The pacer against rate limits: 20,000 sessions (0.2% open; 100,000 in the
# rows that show the settled pace over a longer crawl) exported by
# ssm-audit against the simulator limited to RATE calls/s with a token
# bucket of BURST calls, at LATENCY per call and CONCURRENCY workers, one
# fresh simulator per row. Prints one Markdown table row per run: calls,
# throttled calls and their share, wall time, the time the calls that got
# through need at the allowed rate, and the share of the allowed rate the
# whole export achieved (calls that got through / wall time / rate; start-up
# and publishing included, so short runs score lower), and the calls' own
# share (over the simulator's describe_span_ms, from the first call's
# arrival to the last answer: the pacer's, without the process's start or
# its publishing).
# CASES overrides the matrix: "RATE:BURST:LATENCY_MS:CONCURRENCY[:SESSIONS] ...".
# THROTTLE_LATENCY (e.g. 20ms) delays every ThrottlingException by that much
# (the simulator's --throttle-latency; at once by default).
# PROFILE=debug reuses the debug build; BIN=DIR runs the binaries in DIR
# as they are (another commit's build, to compare).
set -euo pipefail
cd "$(dirname "$0")/.."
PROFILE=${PROFILE:-release}
if [ -z "${BIN:-}" ]; then
  if [ "$PROFILE" = release ]; then cargo build --release --quiet; else cargo build --quiet; fi
  BIN=${CARGO_TARGET_DIR:-target}/$PROFILE
fi
# shellcheck source=scripts/sim-lib.sh
. scripts/sim-lib.sh

cases=${CASES:-"10:1:50:4 10:1:50:16 10:1:50:64 10:1:100:16 20:1:100:16 20:1:100:64
  40:1:100:4 40:1:100:16 40:1:100:64 80:1:100:16 10:5:50:16 10:5:100:16 20:5:100:16 40:5:100:16
  40:10:100:16 80:20:100:16
  20:1:100:16:100000 40:1:100:16:100000 80:1:100:16:100000"}

echo "| sessions | limit | burst | latency | concurrency | calls | throttled | wall | calls through / rate | share of the rate | the calls' own |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
for spec in $cases; do
  IFS=: read -r rate burst latency concurrency sessions <<<"$spec"
  sessions=${sessions:-20000}
  start_sim --sessions "$sessions" --seed 5 --skew-share 0 --bursts 0 --active-share 0.002 \
    --latency "${latency}ms" --rate-limit "$rate" --burst "$burst" \
    --throttle-latency "${THROTTLE_LATENCY:-0ms}"
  start=$(date +%s.%N)
  "$BIN/ssm-audit" export --output "$work/out-$RANDOM" --endpoint-url "$endpoint" \
    --concurrency "$concurrency" >/dev/null 2>&1
  end=$(date +%s.%N)
  python3 - "$(curl -s "$endpoint/_stats")" "$start" "$end" "$rate" "$burst" "$latency" \
    "$concurrency" "$sessions" <<'PY'
import json, sys
stats = json.loads(sys.argv[1])
wall = float(sys.argv[3]) - float(sys.argv[2])
rate, burst, latency, concurrency = float(sys.argv[4]), sys.argv[5], sys.argv[6], sys.argv[7]
sessions = int(sys.argv[8])
calls, throttled, through = stats["describe_calls"], stats["throttled"], stats["describe_ok"]
span = stats["describe_span_ms"] / 1000
print(f"| {sessions:,} | {rate:g}/s | {burst} | {latency} ms | {concurrency} | {calls} | "
      f"{throttled} ({throttled / calls:.1%}) | {wall:.2f} s | {through / rate:.2f} s | "
      f"{through / wall / rate:.2f} | {through / span / rate:.2f} |")
PY
  stop_sim
done
