# Sourced by scripts/demo.sh and the benchmarks (scripts/bench*.sh): starts ssm-sim in the
# background and waits (polling its address file) until it serves, and sets
# an AWS environment that reaches only the simulator.
# Needs: $BIN (folder of the binaries), or pick_binaries. Sets: $work,
# $sim_pid, $endpoint. stop_sim stops it, so that a script can start one
# per case.

work=$(mktemp -d)
sim_pid=
moto_pid=
cleanup() {
  [ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null || true
  [ -n "$moto_pid" ] && kill "$moto_pid" 2>/dev/null || true
  for pid in ${proxy_pids:-}; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# pick_binaries: the binaries a benchmark runs. BIN=DIR runs those in DIR
# as they are (another commit's build); BINS="DIR1 DIR2" runs each in turn
# where a script compares builds; neither: a release build of this
# checkout. The simulator comes from BIN, or the first of BINS.
pick_binaries() {
  if [ -z "${BIN:-}${BINS:-}" ]; then
    cargo build --release --quiet
    BIN=${CARGO_TARGET_DIR:-target}/release
  fi
  BINS=${BINS:-$BIN}
  BIN=${BIN:-${BINS%% *}}
}

# start_sim [ssm-sim serve flags...]; the simulator's stderr goes to $work/sim.log.
start_sim() {
  "$BIN/ssm-sim" serve --addr-file "$work/endpoint" "$@" >/dev/null 2>"$work/sim.log" &
  sim_pid=$!
  for _ in $(seq 1 6000); do
    [ -s "$work/endpoint" ] && break
    kill -0 "$sim_pid" 2>/dev/null || { cat "$work/sim.log"; exit 1; }
    sleep 0.01
  done
  endpoint=$(cat "$work/endpoint")
}

# start_moto BUCKET: moto_server (from the venv: `make venv`) on a free port
# of loopback, serving S3 with BUCKET made; sets $s3 (its URL) and $moto_port.
start_moto() {
  local py=${PY:-.venv/bin/python}
  moto_port=$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  .venv/bin/moto_server -H 127.0.0.1 -p "$moto_port" >/dev/null 2>&1 &
  moto_pid=$!
  s3="http://127.0.0.1:$moto_port"
  for _ in $(seq 1 600); do curl -fs "$s3/" >/dev/null && break; sleep 0.05; done
  "$py" -c "import boto3, sys; boto3.client('s3', endpoint_url=sys.argv[1], region_name='eu-west-1').create_bucket(Bucket=sys.argv[2], CreateBucketConfiguration={'LocationConstraint': 'eu-west-1'})" "$s3" "$1"
}

# delay_s3 MS: each request to moto a round trip of MS more, through
# scripts/delay-proxy.py (S3 answers in tens of milliseconds, moto in a
# few); sets $s3 to the proxy. After start_moto.
delay_s3() {
  local addr=$work/proxy-$1
  "${PY:-.venv/bin/python}" scripts/delay-proxy.py "$moto_port" "$1" "$addr" &
  proxy_pids="${proxy_pids:-} $!"
  for _ in $(seq 1 600); do [ -s "$addr" ] && break; sleep 0.05; done
  s3="http://127.0.0.1:$(cat "$addr")"
}

# stop_sim: stops the simulator start_sim started and forgets its address,
# so that the next start_sim waits for a new one.
stop_sim() {
  kill "$sim_pid" 2>/dev/null || true
  wait "$sim_pid" 2>/dev/null || true
  sim_pid=
  rm -f "$work/endpoint"
}

# history_budget: History's DescribeSessions calls on the running simulator
# against the issue's call budget for that state, 1.15 x ceil(History's
# sessions / 200) + 4, as "N of B".
history_budget() {
  curl -fsS "$endpoint/_stats" | python3 -c '
import json, math, sys
s = json.load(sys.stdin)
calls = s["calls_by_state"]["History"]
budget = 115 * math.ceil(s["sessions_by_state"]["History"] / 200) // 100 + 4
print(f"{calls} of {budget}")'
}

# Test credentials: the simulator does not check signatures, and nothing here
# may fall back to a real AWS profile or instance metadata.
export AWS_ACCESS_KEY_ID=ssm-sim AWS_SECRET_ACCESS_KEY=ssm-sim AWS_REGION=eu-west-1 \
  AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
unset AWS_PROFILE AWS_ENDPOINT_URL AWS_ENDPOINT_URL_SSM AWS_ENDPOINT_URL_STS
