#!/usr/bin/env bash
# `make demo`: the main job end to end with no AWS account. Starts ssm-sim with
# 30 days of generated sessions, exports them into ./demo-output, and shows
# what was written: counts per day, and a query over the Parquet with DuckDB.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
BIN=${CARGO_TARGET_DIR:-target}/debug
OUT=demo-output
# shellcheck source=scripts/sim-lib.sh
. scripts/sim-lib.sh
# The simulator generates its data relative to its own clock, so each demo
# starts from an empty output rather than merging into a previous demo's.
rm -rf "$OUT" demo-keys
mkdir -p demo-keys
# A signing key for the demo (on a real host: openssl genpkey -algorithm
# ed25519, or --sign-kms-key with an asymmetric KMS key).
"$PY" - demo-keys <<'PY'
import sys
from cryptography.hazmat.primitives import serialization as s
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
key = Ed25519PrivateKey.generate()
folder = sys.argv[1]
open(f"{folder}/sign.pem", "wb").write(key.private_bytes(s.Encoding.PEM, s.PrivateFormat.PKCS8, s.NoEncryption()))
open(f"{folder}/sign.pub.pem", "wb").write(key.public_key().public_bytes(s.Encoding.PEM, s.PublicFormat.SubjectPublicKeyInfo))
PY

start_sim --sessions 5000 --seed 42 --skew-share 0.2 --bursts 3 --burst-size 80 --latency 2ms --jitter 3ms
echo "ssm-sim is serving 5000 sessions at $endpoint"

echo "\$ ssm-audit export --output $OUT --endpoint-url $endpoint --sign-key-file demo-keys/sign.pem --chain-head-out demo-keys/chain-head.txt"
"$BIN/ssm-audit" export --output "$OUT" --endpoint-url "$endpoint" \
  --sign-key-file demo-keys/sign.pem --chain-head-out demo-keys/chain-head.txt

echo
echo "Files written (the run manifest lists them with SHA-256; it is signed, and chained to the one before):"
find "$OUT/_runs" "$OUT/_chain" -type f | sort | sed 's/^/  /'
find "$OUT/sessions" -name '*.parquet' | sort | head -n 3 | sed 's/^/  /'
echo "  ... $(find "$OUT/sessions" -name '*.parquet' | wc -l) partition files in all"

echo
echo "\$ ssm-audit verify --output $OUT --public-key demo-keys/sign.pub.pem --expect-head \"\$(cat demo-keys/chain-head.txt)\""
"$BIN/ssm-audit" verify --output "$OUT" --public-key demo-keys/sign.pub.pem --expect-head "$(cat demo-keys/chain-head.txt)"
echo
echo "\$ ssm-audit coverage --output $OUT"
"$BIN/ssm-audit" coverage --output "$OUT"
echo
echo "\$ ssm-audit report --input $OUT --format html --out $OUT/_reports/last-30-days.html --public-key demo-keys/sign.pub.pem"
mkdir -p "$OUT/_reports"
"$BIN/ssm-audit" report --input "$OUT" --format html --out "$OUT/_reports/last-30-days.html" --public-key demo-keys/sign.pub.pem

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
