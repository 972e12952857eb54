#!/usr/bin/env bash
# The adaptive crawl against the cases of the adaptive-crawl issue, on one
# simulator data set per case: the AWS CLI (paginating itself, both states),
# a boto3 paginator script (scripts/boto3_export.py), and ssm-audit at
# several concurrencies. 100 ms per call (near the real API), uniform and
# 80%-in-one-hour months, an empty account, and the API limited to 10
# calls/s (50 ms per call), and 40 calls/s (100 ms). Prints one Markdown
# table row per run: calls, History's calls against the issue's budget for
# that state (1.15 x ceil(sessions / 200) + 4), the share of full pages,
# throttled calls, wall time, sessions/s, the ratio to the ideal
# min(C / latency, rate) x 200 sessions/s and to the boto3 script, and
# ssm-audit's peak RSS and CPU time (user + sys) per session. PROFILE=debug
# reuses the debug build; QUICK=1 skips the 100,000-session cases and the
# AWS CLI.
set -euo pipefail
cd "$(dirname "$0")/.."
PROFILE=${PROFILE:-release}
PY=${PY:-.venv/bin/python}
if [ "$PROFILE" = release ]; then cargo build --release --quiet; else cargo build --quiet; fi
BIN=${CARGO_TARGET_DIR:-target}/$PROFILE
# shellcheck source=scripts/sim-lib.sh
. scripts/sim-lib.sh
export AWS_DEFAULT_REGION=$AWS_REGION AWS_PAGER=
boto3_seconds=

# run TOOL CASE CONCURRENCY SESSIONS LATENCY_MS RATE: one export against the
# running simulator, then one table row.
run() {
  local tool=$1 case=$2 concurrency=$3 sessions=$4 latency_ms=$5 rate=$6 rss= cpu=-
  local out="$work/out-$RANDOM" start end
  start=$(date +%s.%N)
  case $tool in
    aws-cli)
      for state in Active History; do
        "$(dirname "$PY")/aws" ssm describe-sessions --state "$state" --endpoint-url "$endpoint" \
          --page-size 200 --output json > "$out-$state.json"
      done ;;
    boto3) "$PY" scripts/boto3_export.py --endpoint-url "$endpoint" --out "$out.parquet" >/dev/null ;;
    ssm-audit)
      /usr/bin/time -f "%M %U %S" -o "$work/rss" "$BIN/ssm-audit" export --output "$out" \
        --endpoint-url "$endpoint" --concurrency "$concurrency" >/dev/null 2>&1 ;;
  esac
  # The clock stops when the tool exits: what follows (a Python start-up
  # among it) is the benchmark's own cost, about 0.15 s.
  end=$(date +%s.%N)
  if [ "$tool" = ssm-audit ]; then
    read -r kib user sys < "$work/rss"
    rss="$((kib / 1024)) MiB"
    [ "$sessions" -gt 0 ] && cpu=$(python3 -c "print(f'{($user + $sys) * 1e6 / $sessions:.0f}')")
  fi
  local seconds
  seconds=$(python3 -c "print($end - $start)")
  [ "$tool" = boto3 ] && boto3_seconds=$seconds
  python3 - "$(curl -s "$endpoint/_stats")" "$seconds" "$tool" "$case" "$concurrency" \
    "$sessions" "$latency_ms" "$rate" "${boto3_seconds:-0}" "$rss" "$cpu" "$(history_budget)" <<'PY'
import json, math, sys
stats = json.loads(sys.argv[1])
seconds = float(sys.argv[2])
tool, case, concurrency, sessions = sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
latency = float(sys.argv[7]) / 1000
rate = float(sys.argv[8]) if sys.argv[8] != "-" else math.inf
boto3 = float(sys.argv[9])
ok = max(1, stats["describe_ok"])
ideal = min(concurrency / latency if latency else math.inf, rate) * 200
speed = sessions / seconds
print(f"| {case} | {tool} | {concurrency} | {stats['describe_calls']} | {sys.argv[12]} | {stats['full_pages'] / ok:.0%} | "
      f"{stats['throttled']} | {seconds:.2f} s | {speed:,.0f} | "
      f"{f'{speed / ideal:.2f}' if sessions and ideal != math.inf else '-'} | "
      f"{f'{boto3 / seconds:.1f}x' if boto3 and tool != 'boto3' else '-'} | {sys.argv[10] or '-'} | {sys.argv[11]} |")
PY
}

# case NAME SESSIONS SKEW LATENCY_MS RATE TOOLS...: a fresh simulator per run.
bench_case() {
  local name=$1 sessions=$2 skew=$3 latency_ms=$4 rate=$5
  shift 5
  local limit=()
  [ "$rate" != - ] && limit=(--rate-limit "$rate" --burst 1)
  boto3_seconds=
  for spec in "$@"; do
    local tool=${spec%%:*} concurrency=${spec#*:}
    start_sim --sessions "$sessions" --seed 5 --skew-share "$skew" --bursts 0 \
      --active-share "$active_share" --latency "${latency_ms}ms" "${limit[@]}"
    run "$tool" "$name" "$concurrency" "$sessions" "$latency_ms" "$rate"
    stop_sim
  done
}

# Sessions still open when the crawl runs. Session Manager ends idle
# sessions after 20 minutes by default and caps a session at 24 hours, so
# at any moment a month's sessions are mostly closed: 0.2% open (40 of
# 20,000, a session lasting about an hour and a half on average) is a busy
# account. One case keeps the simulator's default of 3% (600 open, each
# lasting about 22 hours), where Active's serial pages show.
active_share=${ACTIVE_SHARE:-0.002}

echo "| case | tool | concurrency | calls | History's, of its budget | full pages | throttled | wall | sessions/s | of ideal | vs boto3 | peak RSS | CPU µs/session |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
audit=(ssm-audit:1 ssm-audit:4 ssm-audit:16 ssm-audit:64)
cli=()
[ -z "${QUICK:-}" ] && cli=(aws-cli:1)
bench_case "empty" 0 0 100 - boto3:1 ssm-audit:16
# CPU per session with no latency at all: what ssm-audit itself costs.
bench_case "20k uniform, no latency" 20000 0 0 - ssm-audit:16
bench_case "20k uniform" 20000 0 100 - boto3:1 "${cli[@]}" "${audit[@]}"
bench_case "20k skewed" 20000 0.8 100 - boto3:1 "${audit[@]}"
bench_case "20k uniform, 10/s" 20000 0 50 10 boto3:1 ssm-audit:4 ssm-audit:16 ssm-audit:64
# A looser limit, where one window paging alone uses a quarter of it (other
# limits, concurrencies and burst allowances: scripts/bench-pace.sh).
bench_case "20k uniform, 40/s" 20000 0 100 40 boto3:1 ssm-audit:16
default_share=$active_share
active_share=0.03
bench_case "20k uniform, 3% open" 20000 0 100 - boto3:1 ssm-audit:16
active_share=$default_share
if [ -z "${QUICK:-}" ]; then
  bench_case "100k uniform" 100000 0 100 - boto3:1 ssm-audit:16 ssm-audit:64
  bench_case "100k skewed" 100000 0.8 100 - boto3:1 ssm-audit:16 ssm-audit:64
fi
