#!/usr/bin/env bash
# `make bench`: how fast and how lean an export of a million sessions is.
# Release binaries, the simulator on loopback with no injected latency, so
# the figures measure ssm-audit (and the simulator), not a network.
# Prints wall time, peak RSS of each process and the simulator's counters;
# BENCHMARKS.md records results with the command that produced them.
set -euo pipefail
cd "$(dirname "$0")/.."
SESSIONS=${SESSIONS:-1000000}
CONCURRENCY=${CONCURRENCY:-8}
SLICE=${SLICE:-6h}
SIM_ARGS=${SIM_ARGS:-}
cargo build --release --quiet
BIN=${CARGO_TARGET_DIR:-target}/release
work=$(mktemp -d)
sim_pid=
cleanup() {
  [ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "== $SESSIONS sessions (30% in one hour, 5 bursts of 2000 sharing a StartDate), concurrency $CONCURRENCY, slice $SLICE"
# shellcheck disable=SC2086
/usr/bin/time -f "ssm-sim peak RSS: %M KiB" "$BIN/ssm-sim" serve --sessions "$SESSIONS" --seed 7 \
  --skew-share 0.3 --bursts 5 --burst-size 2000 --addr-file "$work/endpoint" $SIM_ARGS \
  >/dev/null 2>"$work/sim.log" &
sim_pid=$!
for _ in $(seq 1 6000); do [ -s "$work/endpoint" ] && break; sleep 0.01; done
endpoint=$(cat "$work/endpoint")
echo "simulator ready: $(curl -s "$endpoint/_stats")"

export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_REGION=eu-west-1 \
  AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
start=$(date +%s.%N)
/usr/bin/time -f "ssm-audit wall: %e s, peak RSS: %M KiB, user %U s, sys %S s" \
  "$BIN/ssm-audit" export --output "$work/out" --endpoint-url "$endpoint" \
  --concurrency "$CONCURRENCY" --slice "$SLICE"
end=$(date +%s.%N)
stats=$(curl -s "$endpoint/_stats")
echo "simulator after: $stats"
python3 - "$stats" "$start" "$end" "$SESSIONS" <<'PY'
import json, sys
stats = json.loads(sys.argv[1])
seconds = float(sys.argv[3]) - float(sys.argv[2])
sessions = int(sys.argv[4])
print(f"throughput: {sessions / seconds:,.0f} sessions/s; {stats['describe_calls'] / seconds:,.0f} calls/s; "
      f"{stats['describe_calls']} calls for {stats['items_served']} items "
      f"({stats['items_served'] / max(1, stats['describe_calls']):.1f} per call, {stats['empty_pages']} empty pages); "
      f"max in flight {stats['max_in_flight']}")
PY
du -sh "$work/out/sessions" | sed 's/^/data set size: /'
kill "$sim_pid"; wait "$sim_pid" 2>/dev/null || true; sim_pid=
grep "peak RSS" "$work/sim.log" || true
