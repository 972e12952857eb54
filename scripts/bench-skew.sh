#!/usr/bin/env bash
# Skewed months (80% of the sessions in one hour) listed newest first and
# oldest first, at several concurrencies, several runs each: the wall time
# of each `ssm-audit export` and the DescribeSessions calls it made, at 100
# ms per call. A run's wall time and calls depend on when each page comes
# back, so one run says little; this prints every run.
#
# To measure a change to the crawl plan, give the build before it:
# BASELINE=<folder with that build's ssm-audit>; its runs alternate with this
# build's, on the same data. Several folders, separated by spaces, compare
# several builds in turn (each row then names its folder). RUNS (default 4),
# SESSIONS (default
# "20000 100000"), CONCURRENCY (default "4 16 64"), ORDERS (default
# "newest-first oldest-first"). Prints one Markdown table row per case and
# build.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
BIN=${CARGO_TARGET_DIR:-target}/release
# shellcheck source=scripts/sim-lib.sh
. scripts/sim-lib.sh
RUNS=${RUNS:-4}
builds=()
read -r -a baselines <<< "${BASELINE:-}"
for baseline in "${baselines[@]}"; do
  [ "$(realpath "$baseline")" != "$(realpath "$BIN")" ] \
    || { echo "BASELINE $baseline is this build's folder ($BIN): copy the baseline's binaries elsewhere" >&2; exit 2; }
  builds+=("$baseline")
done
builds+=("$BIN")

# one AUDIT_BIN SESSIONS ORDER CONCURRENCY: one export against a fresh
# simulator; sets $run_wall and $run_calls.
one() {
  local audit=$1 sessions=$2 order=$3 concurrency=$4 start end out="$work/out"
  start_sim --sessions "$sessions" --seed 5 --skew-share 0.8 --bursts 0 \
    --active-share 0.002 --latency 100ms --order "$order"
  start=$(date +%s.%N)
  "$audit/ssm-audit" export --output "$out" --endpoint-url "$endpoint" \
    --concurrency "$concurrency" --progress off >/dev/null 2>"$work/export.log" \
    || { tail -5 "$work/export.log" >&2; exit 1; }
  end=$(date +%s.%N)
  # All calls, then History's against its budget (the issue's is per state).
  run_calls="$(curl -fsS "$endpoint/_stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["describe_calls"])') ($(history_budget))"
  stop_sim
  # 96 exports of up to 100,000 sessions: each one's output goes when it ends.
  rm -rf "$out"
  run_wall=$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$start" "$end")
}

echo "| sessions | order | concurrency | build | wall (s), each run | calls (History's, of its budget), each run |"
echo "| --- | --- | --- | --- | --- | --- |"
for sessions in ${SESSIONS:-20000 100000}; do
  for order in ${ORDERS:-newest-first oldest-first}; do
    for concurrency in ${CONCURRENCY:-4 16 64}; do
      declare -A walls=() calls=()
      for _ in $(seq "$RUNS"); do
        for build in "${builds[@]}"; do
          one "$build" "$sessions" "$order" "$concurrency"
          walls[$build]+="$run_wall, "
          calls[$build]+="$run_calls, "
        done
      done
      for build in "${builds[@]}"; do
        name=this
        if [ "$build" != "$BIN" ]; then
          name=baseline
          [ ${#baselines[@]} -gt 1 ] && name="baseline $build"
        fi
        echo "| $sessions | $order | $concurrency | $name | ${walls[$build]%, } | ${calls[$build]%, } |"
      done
      unset walls calls
    done
  done
done
