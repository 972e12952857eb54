#!/usr/bin/env bash
# How long an export to S3 takes to clear its staged parts once its manifest
# is written: the time from "run manifest written" to the summary line, with
# the output (and so the checkpoint and its parts) in moto_server on
# loopback. SESSIONS (default 20000, 80% in one hour), RUNS (default 2);
# BASELINE=<folder with another build's ssm-audit> alternates its runs with
# this build's. Needs the venv (`make venv`).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
BIN=${CARGO_TARGET_DIR:-target}/release
PY=${PY:-.venv/bin/python}
# shellcheck source=scripts/sim-lib.sh
. scripts/sim-lib.sh
builds=("$BIN")
[ -n "${BASELINE:-}" ] && builds=("$BASELINE" "$BIN")

start_moto bench-clear
start_sim --sessions "${SESSIONS:-20000}" --seed 5 --skew-share 0.8 --bursts 0 --active-share 0.002

run=0
for _ in $(seq "${RUNS:-2}"); do
  for build in "${builds[@]}"; do
    run=$((run + 1))
    AWS_ENDPOINT_URL_S3=$s3 AWS_ENDPOINT_URL_SSM=$endpoint AWS_ENDPOINT_URL_STS=$endpoint \
      SSM_AUDIT_S3_FORCE_PATH_STYLE=true SSM_AUDIT_LOG=ssm_audit=info \
      "$build/ssm-audit" --log-format json export --output "s3://bench-clear/run$run" \
      --concurrency 16 --progress off >/dev/null 2>"$work/export.log" \
      || { tail -3 "$work/export.log" >&2; exit 1; }
    "$PY" - "$work/export.log" "$build" <<'PY'
import json, sys
from datetime import datetime
written = done = None
for line in open(sys.argv[1]):
    event = json.loads(line)
    at = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()
    if event["message"].startswith("run manifest written"):
        written = at
    elif event["message"].startswith("exported"):
        done = at
print(f"{sys.argv[2]}: staged parts cleared in {done - written:.2f} s")
PY
  done
done
