#!/usr/bin/env bash
# `make demo`: the main job end to end with no AWS account. Starts ssm-sim with
# 30 days of generated sessions, exports them into ./demo-output, and shows
# what was written: counts per day, and a query over the Parquet with DuckDB.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
BIN=${CARGO_TARGET_DIR:-target}/debug
OUT=demo-output
work=$(mktemp -d)
sim_pid=
cleanup() {
  [ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
# The simulator generates its data relative to its own clock, so each demo
# starts from an empty output rather than merging into a previous demo's.
rm -rf "$OUT"

"$BIN/ssm-sim" serve --sessions 5000 --seed 42 --skew-share 0.2 --bursts 3 --burst-size 80 \
  --latency 2ms --jitter 3ms --addr-file "$work/endpoint" >/dev/null 2>"$work/sim.log" &
sim_pid=$!
for _ in $(seq 1 500); do
  [ -s "$work/endpoint" ] && break
  kill -0 "$sim_pid" 2>/dev/null || { cat "$work/sim.log"; exit 1; }
  sleep 0.01
done
endpoint=$(cat "$work/endpoint")
echo "ssm-sim is serving 5000 sessions at $endpoint"

# Test credentials: the simulator does not check signatures, and nothing here
# may fall back to a real AWS profile or instance metadata.
export AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo AWS_REGION=eu-west-1 \
  AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
unset AWS_PROFILE AWS_ENDPOINT_URL AWS_ENDPOINT_URL_SSM AWS_ENDPOINT_URL_STS

echo "\$ ssm-audit export --output $OUT --endpoint-url $endpoint"
"$BIN/ssm-audit" export --output "$OUT" --endpoint-url "$endpoint"

echo
echo "Files written (the newest run manifest lists them with SHA-256):"
ls "$OUT/_runs" | tail -n 1 | sed "s|^|  $OUT/_runs/|"
find "$OUT/sessions" -name '*.parquet' | sort | head -n 3 | sed 's/^/  /'
echo "  ... $(find "$OUT/sessions" -name '*.parquet' | wc -l) partition files in all"

echo
echo "\$ ssm-audit verify --output $OUT"
"$BIN/ssm-audit" verify --output "$OUT"
echo "\$ ssm-audit report --input $OUT --format html --out $OUT/_reports/last-30-days.html"
mkdir -p "$OUT/_reports"
"$BIN/ssm-audit" report --input "$OUT" --format html --out "$OUT/_reports/last-30-days.html"

"$PY" - "$OUT" <<'PY'
import sys
import duckdb

out = sys.argv[1]
con = duckdb.connect()
con.execute("SET TimeZone = 'UTC'")
src = f"read_parquet('{out}/sessions/*/*.parquet', hive_partitioning = true)"
print("\nSessions per day (dt partition):")
for dt, n in con.execute(f"SELECT dt, count(*) FROM {src} GROUP BY dt ORDER BY dt").fetchall():
    print(f"  {dt}  {n:5d}  {'#' * max(1, n // 40)}")
print("\nQuery: the five owners with the most sessions, and on how many targets")
query = f"""
    SELECT owner, count(*) AS sessions, count(DISTINCT target) AS targets,
           sum(CASE WHEN status = 'Failed' THEN 1 ELSE 0 END) AS failed
    FROM {src} GROUP BY owner ORDER BY sessions DESC, owner LIMIT 5"""
print(con.sql(query))
PY
