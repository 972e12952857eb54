#!/usr/bin/env bash
# How ssm-audit behaves at the API's rate limit: the simulator throttles
# above RATE requests per second; the export runs once per retry mode.
# Prints calls, retries, throttles and wall time for each.
set -euo pipefail
cd "$(dirname "$0")/.."
SESSIONS=${SESSIONS:-3000}
RATE=${RATE:-20}
CONCURRENCY=${CONCURRENCY:-8}
cargo build --quiet
BIN=${CARGO_TARGET_DIR:-target}/debug
# shellcheck source=scripts/sim-lib.sh
. scripts/sim-lib.sh
start_sim --sessions "$SESSIONS" --seed 5 --rate-limit "$RATE" --burst 5
echo "== $SESSIONS sessions, simulator limit $RATE requests/s (burst 5), concurrency $CONCURRENCY, slice 1d"
for mode in standard adaptive; do
  start=$(date +%s.%N)
  summary=$(AWS_RETRY_MODE=$mode "$BIN/ssm-audit" export --output "$work/out-$mode" --endpoint-url "$endpoint" \
    --concurrency "$CONCURRENCY" --slice 1d 2>&1 | grep -o "[0-9]* API calls, [0-9]* retries, [0-9]* throttled")
  end=$(date +%s.%N)
  printf 'AWS_RETRY_MODE=%-8s %s in %.1f s\n' "$mode" "$summary" "$(python3 -c "print($end - $start)")"
done
