#!/usr/bin/env bash
# Two-node benchmarks (issue 5): starts a Redis and a SecantusDB (MongoDB wire) on loopback,
# runs the load tool with --spawn --nodes 2 against them (median of 3 via median3.sh), then
# stops both. Results go to target/bench-cluster/*.json|log; copy the medians into
# docs/benchmarks.md.
#
#   bench/scripts/cluster.sh [latency|ingest|all]
#
# Needs: redis-server (apt), the SecantusDB venv (scripts/secantus.sh installs it), and release
# builds: cargo build --release -p fullslack-chat -p bench
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
what="${1:-all}"
out=target/bench-cluster
mkdir -p "$out"
export FULLSLACK_TEST_RUNTIME="${FULLSLACK_TEST_RUNTIME:-$PWD/.test-runtime}"

port="$(free_port)"
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
  --daemonize yes --pidfile "$PWD/$out/redis.pid" --logfile "$PWD/$out/redis.log"
cleanup() {
  [ -f "$out/redis.pid" ] && kill "$(cat "$out/redis.pid")" 2>/dev/null || true
  scripts/secantus.sh stop || true
}
trap cleanup EXIT
mongo="$(scripts/secantus.sh start)"
mongo="${mongo%/*}/fullslack_bench"
redis="redis://127.0.0.1:$port/"
echo "redis $redis, mongo $mongo" >&2

bench=(target/release/bench --spawn target/release/fullslack-chat --data-dir "$out/data"
       --store-url "$mongo" --redis-url "$redis")
if [[ $what == latency || $what == all ]]; then
  # Cross-node send→deliver: 200 clients in 100 two-member channels, the two members of each
  # channel on different nodes. RATES (default "50 10000"): aggregate msgs/s per run; the
  # store (SecantusDB, one Python process) caps what is acknowledged, see docs/benchmarks.md.
  for rate in ${RATES:-50 10000}; do
    bench/scripts/median3.sh "$out/latency-2n-$rate" "${bench[@]}" --nodes 2 latency \
      --clients 200 --channels 100 --rate "$rate" --duration 10s
  done
fi
if [[ $what == ingest || $what == all ]]; then
  # Persisted sends/s on the MongoDB-wire store: one node, then two nodes.
  bench/scripts/median3.sh "$out/ingest-1n" "${bench[@]}" --nodes 1 ingest \
    --senders 64 --inflight 8 --duration 10s
  bench/scripts/median3.sh "$out/ingest-2n" "${bench[@]}" --nodes 2 ingest \
    --senders 64 --inflight 8 --duration 10s
fi
