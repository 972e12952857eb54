#!/usr/bin/env bash
# Builds deploy/Dockerfile with podman on a machine that reaches no container
# registry (this project's: crates.io, PyPI, npm and Debian only), then runs
# the image against the simulator as its non-root user.
#
# Neither the build stage's image (rust:1.95-slim-bookworm) nor the runtime's
# (distroless cc-debian12:nonroot) can be pulled here, so:
# - the build stage's command runs on this machine (same toolchain, same
#   Cargo.lock) and its output is handed to the Dockerfile as the `build`
#   stage (`--build-context build=DIR`: podman then skips that stage);
# - the runtime stage runs for real, on a stand-in for distroless made from
#   this Debian 12 machine: the libraries the binary links, the CA
#   certificates, and the nonroot user (65532), nothing else.
# Usage: bash scripts/container.sh        (IMAGE=... to name the image)
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE=${IMAGE:-localhost/ssm-audit:local}
BASE=localhost/ssm-audit-runtime-base:debian12
command -v podman >/dev/null || { echo "podman is missing: apt-get install podman" >&2; exit 1; }
work=$(mktemp -d)
sim_pid=
cleanup() {
  [ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

echo "== the build stage's command: cargo build --release, stripped"
cargo build --release --locked --bin ssm-audit --bin ssm-sim
mkdir -p "$work/build/out"
strip --strip-all -o "$work/build/out/ssm-audit" target/release/ssm-audit
echo "binary: $(stat -c %s target/release/ssm-audit) bytes with line tables, $(stat -c %s "$work/build/out/ssm-audit") bytes stripped"

echo "== a stand-in for distroless cc-debian12:nonroot"
root="$work/base"
mkdir -p "$root/etc/ssl/certs" "$root/tmp" "$root/home/nonroot"
for lib in $(ldd target/release/ssm-audit | awk '/=>/ { print $3 } /ld-linux/ { print $1 }'); do
  cp --parents -L "$lib" "$root"
done
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$root/etc/group"
chmod 1777 "$root/tmp"
chown 65532:65532 "$root/home/nonroot"
printf 'FROM scratch\nCOPY . /\nENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt\n' >"$work/Containerfile.base"
podman build -q -f "$work/Containerfile.base" -t "$BASE" "$root" >/dev/null

echo "== deploy/Dockerfile"
podman build --pull=never -f deploy/Dockerfile \
  --build-context "build=$work/build" \
  --build-arg "RUNTIME_IMAGE=$BASE" \
  -t "$IMAGE" .
echo "image: $IMAGE, $(podman image inspect --format '{{.Size}}' "$IMAGE") bytes"
echo "user: $(podman image inspect --format '{{.Config.User}}' "$IMAGE")"

# Some sandboxed VMs refuse crun's rlimits and cgroups; runc with the
# engine's default ulimits dropped works there.
run() { podman run --rm --network host "$@"; }
if ! run "$IMAGE" --version >/dev/null 2>&1; then
  echo "(podman run with its defaults failed here: using runc without default ulimits)"
  printf '[containers]\ndefault_ulimits = []\n' >"$work/containers.conf"
  export CONTAINERS_CONF="$work/containers.conf"
  run() { podman --runtime runc run --rm --network host "$@"; }
fi
run "$IMAGE" --version

echo "== the image's export against the simulator, as 65532, on a read-only root (as the task definition runs it)"
target/release/ssm-sim serve --addr-file "$work/endpoint" --sessions 500 >/dev/null 2>&1 &
sim_pid=$!
for _ in $(seq 200); do [ -s "$work/endpoint" ] && break; sleep 0.05; done
mkdir -p "$work/out" && chown 65532:65532 "$work/out"
run --read-only -v "$work/out:/out" \
  -e AWS_ACCESS_KEY_ID=demo -e AWS_SECRET_ACCESS_KEY=demo -e AWS_REGION=eu-west-1 \
  "$IMAGE" export --output /out --endpoint-url "$(cat "$work/endpoint")" \
  | grep -c '"_aws"' | sed 's/^/EMF metric lines: /'
owners=$(find "$work/out" -type f -printf '%u\n' | sort -u | tr '\n' ' ')
files=$(find "$work/out" -name '*.parquet' | wc -l)
echo "written: $files Parquet files, owned by: $owners"
[ "$files" -gt 0 ] && [ "$owners" = "65532 " ] || { echo "the container's export did not write as 65532" >&2; exit 1; }
echo "container OK"
