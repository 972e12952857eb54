#!/usr/bin/env bash
# `make bench` (part): an organization of mostly empty accounts. ACCOUNTS
# accounts x 3 regions, one busy pair, each call LATENCY late, through
# assumed roles: wall time per pair, calls per pair, STS calls, peak RSS.
# Local output (on S3 an empty pair makes 13 or 14 requests of it:
# ARCHITECTURE.md). Release build, or BIN=DIR (another commit's).
set -euo pipefail
cd "$(dirname "$0")/.."
ACCOUNTS=${ACCOUNTS:-1000}
LATENCY=${LATENCY:-100ms}
CONCURRENCY=${CONCURRENCY:-64}
PAIRS_AT_ONCE=${PAIRS_AT_ONCE:-64}
# shellcheck source=scripts/sim-lib.sh
. scripts/sim-lib.sh
pick_binaries

python3 - "$ACCOUNTS" "$work" <<'PY'
import json, sys
count, work = int(sys.argv[1]), sys.argv[2]
ids = [f"{100000000000 + i:012d}" for i in range(1, count + 1)]
accounts = [{"account_id": a, "enabled_regions": ["eu-west-1", "us-east-1", "ap-south-1"]} for a in ids]
accounts[0]["regions"] = {"us-east-1": {"sessions": 5000, "seed": 3}}
json.dump({"role_name": "ssm-audit", "accounts": accounts}, open(f"{work}/accounts.json", "w"))
open(f"{work}/accounts.txt", "w").write("\n".join(ids) + "\n")
PY
start_sim --accounts-file "$work/accounts.json" --sessions 0 --latency "$LATENCY"
echo "== $ACCOUNTS accounts x 3 regions, latency $LATENCY, --concurrency $CONCURRENCY --pairs-at-once $PAIRS_AT_ONCE"
start=$(date +%s.%N)
/usr/bin/time -f "ssm-audit wall: %e s, peak RSS: %M KiB, user %U s, sys %S s" \
  "$BIN/ssm-audit" export --output "$work/out" --endpoint-url "$endpoint" \
  --accounts-file "$work/accounts.txt" --regions eu-west-1,us-east-1,ap-south-1 \
  --role-name ssm-audit --concurrency "$CONCURRENCY" --pairs-at-once "$PAIRS_AT_ONCE" \
  2> >(grep -E "wall:|error" >&2)
end=$(date +%s.%N)
python3 - "$(curl -s "$endpoint/_stats")" "$start" "$end" "$ACCOUNTS" <<'PY'
import json, sys
stats = json.loads(sys.argv[1])
seconds = float(sys.argv[3]) - float(sys.argv[2])
pairs = int(sys.argv[4]) * 3
by_pair = stats["calls_by_pair"]
empty = [n for p, n in by_pair.items() if not p.endswith("/us-east-1") or not p.startswith("100000000001")]
print(f"{pairs} pairs in {seconds:.1f} s ({seconds / pairs * 1000:.1f} ms a pair); "
      f"{stats['describe_calls']} DescribeSessions calls, at most {max(empty)} for an empty pair; "
      f"{stats['assume_role_calls']} AssumeRole, {stats['identity_calls']} GetCallerIdentity; "
      f"most calls the simulator was handling at once {stats['max_in_flight']}")
PY
