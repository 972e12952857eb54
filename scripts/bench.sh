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
SLICE=${SLICE:-1m}
SIM_ARGS=${SIM_ARGS:-}
# shellcheck source=scripts/sim-lib.sh
. scripts/sim-lib.sh
pick_binaries

echo "== $SESSIONS sessions (30% in one hour, 5 bursts of 2000 sharing a StartDate), concurrency $CONCURRENCY, slice $SLICE"
# shellcheck disable=SC2086
start_sim --sessions "$SESSIONS" --seed 7 --skew-share 0.3 --bursts 5 --burst-size 2000 $SIM_ARGS
echo "simulator ready: $(curl -s "$endpoint/_stats")"
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
      f"most calls the simulator was handling at once {stats['max_in_flight']}")
PY
du -sh "$work/out/sessions" | sed 's/^/data set size: /'
grep VmHWM "/proc/$sim_pid/status" | sed 's/^VmHWM:/ssm-sim peak RSS:/' 
