#!/usr/bin/env bash
# Image benchmark (not a test; docs/benchmarks.md "Container image"): the size of the offline
# image of the RELEASE server binary, and the wall time of `fullslack build --offline` once the
# binary exists, warm (the engine's layer cache answers) and cold (--no-cache), with hyperfine.
#
# Needs: the Docker Engine, hyperfine (Debian `hyperfine`), jq, and
#   cargo build --release -p fullslack-chat     (the binary packed; ~10 min on 2 cores)
#   cargo build -p fullslack --bins             (the build tool; debug is fine, it only streams)
# Usage: bench/scripts/image.sh [RUNS]     (default 10 runs each)
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS="${1:-10}"
TARGET="${CARGO_TARGET_DIR:-target}"
BIN="${BIN:-$TARGET/release/fullslack-chat}"
FULLSLACK="${FULLSLACK:-$TARGET/debug/fullslack}"
IMAGE="fullslack-bench/chat"
for f in "$BIN" "$FULLSLACK"; do
  [ -x "$f" ] || { echo "missing $f: see the header of $0" >&2; exit 1; }
done
command -v hyperfine >/dev/null || { echo "install hyperfine (apt-get install hyperfine)" >&2; exit 1; }
WORK="$(mktemp -d)"
SOURCE="bench://image.sh"
SOCK=/var/run/docker.sock; case "${DOCKER_HOST:-}" in unix://*) SOCK="${DOCKER_HOST#unix://}" ;; esac
# Every run retags the same name and leaves the previous image dangling: remove all images
# this script built (found by their source label) at the end.
cleanup() {
  rm -rf "$WORK"
  curl -s --unix-socket "$SOCK" -G http://localhost/images/json --data-urlencode all=1 \
    --data-urlencode "filters={\"label\":[\"org.opencontainers.image.source=$SOURCE\"]}" |
    jq -r '.[].Id' | while read -r id; do
      curl -s -o /dev/null -X DELETE --unix-socket "$SOCK" "http://localhost/images/$id?force=1"
    done
}
trap cleanup EXIT
# The probe compiled as the multi-stage Dockerfile does (std only, plain rustc, optimised).
rustc --edition 2021 -C opt-level=2 -C strip=symbols -o "$WORK/fullslack-healthcheck" \
  cli/src/image/healthcheck.rs
BUILD=("$FULLSLACK" --json build --offline --binary "$BIN" \
  --healthcheck-binary "$WORK/fullslack-healthcheck" --image "$IMAGE" --tag bench --source "$SOURCE")

echo "== inputs"
ls -l "$BIN" "$WORK/fullslack-healthcheck" | awk '{print $5, $9}'
ldd "$BIN"
echo "== image size: as built, and with --strip (symbol table dropped)"
"${BUILD[@]}" --no-cache | jq -c 'select(.event == "built") | {id, size, size_mb: (.size / 1e6), steps, seconds}'
"${BUILD[@]}" --strip --no-cache | jq -c 'select(.event == "built") | {id, size, size_mb: (.size / 1e6), steps, seconds}'

echo "== offline build time, warm cache and cold (--no-cache), $RUNS runs each"
hyperfine --warmup 1 --runs "$RUNS" --export-json "$WORK/hf.json" \
  -n warm "${BUILD[*]} >/dev/null" \
  -n cold "${BUILD[*]} --no-cache >/dev/null"
jq -r '.results[] | "\(.command): mean \(.mean*1000|floor) ms, median \(.median*1000|floor) ms, min \(.min*1000|floor) ms, max \(.max*1000|floor) ms"' "$WORK/hf.json"
echo "== engine"
curl -s --unix-socket "$SOCK" http://localhost/version | jq -c '{Version, ApiVersion}' || true
