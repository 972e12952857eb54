#!/usr/bin/env bash
# How long an auditor's report takes from a data set on S3: PAIRS
# (account, region) pairs, each a month of SESSIONS sessions, exported into
# moto_server on loopback; then `ssm-audit report` of the whole month as CSV,
# with each S3 request a round trip of S3_LATENCY ms more (through
# scripts/delay-proxy.py: S3 answers in tens of milliseconds, moto in a
# few). Prints the wall time of each report. BIN=DIR runs the binaries in
# DIR (another commit's build); BINS="DIR1 DIR2" runs each in turn, round
# after round, on the same data set. BENCHMARKS.md records results with
# the command that produced them.
set -euo pipefail
cd "$(dirname "$0")/.."
SESSIONS=${SESSIONS:-20000}
PAIRS=${PAIRS:-8}
RUNS=${RUNS:-3}
S3_LATENCY=${S3_LATENCY:-20}
# shellcheck source=scripts/sim-lib.sh
. scripts/sim-lib.sh
pick_binaries

start_moto bench-report
export SSM_AUDIT_S3_FORCE_PATH_STYLE=true
start_sim --sessions "$SESSIONS" --seed 5 --bursts 0 --active-share 0.002
for pair in $(seq "$PAIRS"); do
  AWS_ENDPOINT_URL_SSM=$endpoint AWS_ENDPOINT_URL_S3=$s3 \
    "$BIN/ssm-audit" export --output s3://bench-report/data \
    --account-id "$(printf '1000000000%02d' "$pair")" \
    --concurrency 16 --progress off >/dev/null 2>"$work/export.log" \
    || { tail -3 "$work/export.log" >&2; exit 1; }
done
stop_sim
delay_s3 "$S3_LATENCY"
export AWS_ENDPOINT_URL_S3=$s3
from=$(date -u -d '30 days ago' +%F)
to=$(date -u +%F)
files=$("${PY:-.venv/bin/python}" -c "import boto3, sys; print(sum(1 for p in boto3.client('s3', endpoint_url=sys.argv[1], region_name='eu-west-1').get_paginator('list_objects_v2').paginate(Bucket='bench-report', Prefix='data/sessions/') for _ in p.get('Contents', [])))" "http://127.0.0.1:$moto_port")
echo "== report of $from to $to: $PAIRS pairs, $files partition files, $SESSIONS sessions each, S3 at $S3_LATENCY ms a request"
for run in $(seq "$RUNS"); do
  for bin in $BINS; do
    start=$(date +%s.%N)
    "$bin/ssm-audit" report --input s3://bench-report/data --from "$from" --to "$to" \
      --format csv --out "$work/report.csv" >/dev/null 2>"$work/report.log" \
      || { tail -3 "$work/report.log" >&2; exit 1; }
    end=$(date +%s.%N)
    echo "run $run $bin: $(python3 -c "print(f'{$end - $start:.2f}')") s, $(($(wc -l <"$work/report.csv") - 1)) sessions"
  done
done
