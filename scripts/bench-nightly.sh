#!/usr/bin/env bash
# The first night and the second: two exports into one output against the
# same simulator data, minutes apart, at 100 ms per call. The first night's
# crawl finds where the sessions are; the second cuts History where the
# first counted them (the checkpoint's counts). Prints, per case and night,
# the wall time of each run, History's calls against its budget, and the
# wall time as a multiple of the boto3 paginator script's on the same data.
#
# RUNS (default 3), SESSIONS (default "20000 100000"), SKEW (default "0.8
# 0"), ORDERS (default "newest-first oldest-first"), CONCURRENCY (default
# "16"), RATE (a rate limit in calls/s, default none; with it, 50 ms a call
# and a burst of 1, as bench-pace.sh's limited cases). PY: a Python with
# boto3 and pyarrow (default .venv/bin/python; BOTO3=0 skips the script).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
BIN=${CARGO_TARGET_DIR:-target}/release
# shellcheck source=scripts/sim-lib.sh
. scripts/sim-lib.sh
RUNS=${RUNS:-3}
PY=${PY:-.venv/bin/python}
# boto3 reads the region from here, not from AWS_REGION.
export AWS_DEFAULT_REGION=$AWS_REGION

# wall_of COMMAND...: runs it, sets $wall (seconds, 2 decimals).
wall_of() {
  local start end
  start=$(date +%s.%N)
  "$@" >/dev/null 2>"$work/run.log" || { tail -5 "$work/run.log" >&2; exit 1; }
  end=$(date +%s.%N)
  wall=$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$start" "$end")
}

history_calls() {
  curl -fsS "$endpoint/_stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["calls_by_state"]["History"])'
}

echo "| sessions | skew | order | concurrency | rate | night | wall (s), each run | History's calls, each run (budget) | vs boto3, each run |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
for sessions in ${SESSIONS:-20000 100000}; do
  for skew in ${SKEW:-0.8 0}; do
    for order in ${ORDERS:-newest-first oldest-first}; do
      for concurrency in ${CONCURRENCY:-16}; do
        declare -A walls=() calls=() vs=()
        budget=""
        for _ in $(seq "$RUNS"); do
          limit=(--latency 100ms)
          [ -n "${RATE:-}" ] && limit=(--latency 50ms --rate-limit "$RATE" --burst 1)
          start_sim --sessions "$sessions" --seed 5 --skew-share "$skew" --bursts 0 \
            --active-share 0.002 --order "$order" "${limit[@]}"
          boto=""
          if [ "${BOTO3:-1}" != 0 ]; then
            wall_of "$PY" scripts/boto3_export.py --endpoint-url "$endpoint" --out "$work/boto3.parquet"
            boto=$wall
            rm -f "$work/boto3.parquet"
          fi
          # The same output both nights: the second plans from the first.
          for night in first second; do
            before=$(history_calls)
            wall_of "$BIN/ssm-audit" export --output "$work/out" --endpoint-url "$endpoint" \
              --concurrency "$concurrency" --progress off
            walls[$night]+="$wall, " calls[$night]+="$(( $(history_calls) - before )), "
            [ -n "$boto" ] && vs[$night]+="$(python3 -c "import sys; print(f'{float(sys.argv[1]) / float(sys.argv[2]):.1f}x')" "$boto" "$wall"), "
          done
          budget=$(history_budget | sed 's/.* of //')
          stop_sim
          rm -rf "$work/out"
        done
        for night in first second; do
          ratios=${vs[$night]:-}
          echo "| $sessions | $skew | $order | $concurrency | ${RATE:--} | $night | ${walls[$night]%, } | ${calls[$night]%, } ($budget) | ${ratios%, } |"
        done
        unset walls calls vs
      done
    done
  done
done
