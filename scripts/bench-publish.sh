#!/usr/bin/env bash
# How long publishing takes on a skewed first night: from the first
# partition's merge to the run manifest, read from the publish trace, so
# that the crawl's run-to-run spread does not hide it. Release binaries,
# the simulator on loopback with no latency, one fresh simulator per run.
# Prints, per run, the wall time, the publishing time and the busiest day's.
# BIN=DIR runs the binaries in DIR as they are (another commit's build, to
# compare); BINS="DIR1 DIR2" runs each in turn on the same fresh simulator
# data, round after round. BENCHMARKS.md records results with the command
# that produced them.
set -euo pipefail
cd "$(dirname "$0")/.."
SESSIONS=${SESSIONS:-100000}
SKEW=${SKEW:-0.8}
RUNS=${RUNS:-4}
CONCURRENCY=${CONCURRENCY:-16}
# shellcheck source=scripts/sim-lib.sh
. scripts/sim-lib.sh
pick_binaries

# S3=1: the output (and so the staged parts publishing reads back) in
# moto_server on loopback, as a scheduled task writing to S3 has it.
if [ "${S3:-0}" = 1 ]; then
  start_moto bench-publish
  # S3_LATENCY=MS: each request to it a round trip of MS more.
  if [ -n "${S3_LATENCY:-}" ]; then delay_s3 "$S3_LATENCY"; fi
  export AWS_ENDPOINT_URL_S3=$s3 SSM_AUDIT_S3_FORCE_PATH_STYLE=true
fi

NIGHTS=${NIGHTS:-1}
echo "== $SESSIONS sessions, $SKEW of them in one hour, $NIGHTS night(s) into one output at concurrency $CONCURRENCY${S3:+, output on S3 (moto)}${S3_LATENCY:+, $S3_LATENCY ms a request}"
for run in $(seq "$RUNS"); do
  start_sim --sessions "$SESSIONS" --seed 5 --skew-share "$SKEW" --bursts 0 --active-share 0.002
  for bin in $BINS; do
    rm -rf "$work/out"
    exports=$((${exports:-0} + 1))
    # --endpoint-url would send S3's requests to the simulator too.
    where=(--output "$work/out" --endpoint-url "$endpoint")
    [ "${S3:-0}" = 1 ] && where=(--output "s3://bench-publish/export$exports")
    # NIGHTS=2: the next night into the same output (each day merged with
    # the night before's file), timed alike.
    for night in $(seq "$NIGHTS"); do
      start=$(date +%s.%N)
      AWS_ENDPOINT_URL_SSM=$endpoint AWS_ENDPOINT_URL_STS=$endpoint \
        SSM_AUDIT_LOG=ssm_audit=info,ssm_audit::export::publish=trace \
        "$bin/ssm-audit" export "${where[@]}" \
        --concurrency "$CONCURRENCY" --progress off >/dev/null 2>"$work/run.log" \
        || { tail -3 "$work/run.log" >&2; exit 1; }
      end=$(date +%s.%N)
      python3 - "$run night $night $bin" "$start" "$end" "$work/run.log" <<'PY'
import datetime, re, sys
run, start, end, log = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
first = manifest = None
busiest = (0, None, None)
merging = {}
for line in open(log):
    m = re.match(r'(\S+)Z\s+\w+\s+(.*)', line)
    if not m:
        continue
    t = datetime.datetime.fromisoformat(m.group(1)).replace(tzinfo=datetime.timezone.utc).timestamp() - start
    text = re.sub(r'\x1b\[[0-9;]*m', '', m.group(2))
    part = re.search(r'partition=(\S+)', text)
    rows = re.search(r'rows=(\d+)', text)
    if 'merging a partition' in text and part and rows:
        first = t if first is None else first
        merging[part.group(1)] = (t, int(rows.group(1)))
    elif 'partition written' in text and part and part.group(1) in merging:
        began, count = merging[part.group(1)]
        if count > busiest[0]:
            busiest = (count, began, t)
    elif 'manifest written' in text:
        manifest = t
if first is None or manifest is None:
    sys.exit(f"run {run}: no publish trace in {log}")
count, began, ended = busiest
print(f"run {run}: wall {end - start:.2f} s; publishing {manifest - first:.3f} s "
      f"({first:.2f} to {manifest:.2f}); busiest day {count:,} rows in {ended - began:.3f} s")
PY
    done
  done
  stop_sim
done
