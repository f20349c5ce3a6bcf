#!/usr/bin/env bash
# The comparison mode of issue 15: runs one scenario against fullslack-chat and against the
# minimal Node.js relay (bench/relay/relay.js on Debian's node-ws), interleaved (F, N, F, N, F, N)
# so both see the same machine load, and prints the median of 3 of each figure for both with
# the ratio fullslack/node beside them. Throughput and latency ratios move with the machine's
# load; the CPU-per-unit and memory-per-socket rows are the steadier ones.
# Usage: bench/scripts/compare-node.sh OUT_PREFIX BENCH FULLSLACK_CHAT SCENARIO ARGS...
# e.g.   bench/scripts/compare-node.sh /tmp/cmp-fan3000 target/release/bench \
#            target/release/fullslack-chat fanout --members 3000 --users 300 --rate 100 --duration 5s
# Env: RELAY (default: the relay next to this script), NODE (default: node on PATH). A
# --data-dir in ARGS is used for fullslack-chat only; the relay gets OUT_PREFIX.relay-data, so
# its throwaway in-memory users never replace fullslack's cached ones.
set -euo pipefail
out=$1 bench=$2 server=$3
shift 3
here=$(cd "$(dirname "$0")" && pwd)
relay=${RELAY:-$here/../relay/relay.js}
node=${NODE:-$(command -v node || true)}
[ -x "$node" ] || { echo "compare-node: no node binary (apt-get install nodejs node-ws)" >&2; exit 1; }
"$node" -e "require('ws')" 2>/dev/null || [ -d /usr/share/nodejs/ws ] ||
  { echo "compare-node: node-ws is missing (apt-get install node-ws)" >&2; exit 1; }
# The tool spawns its target as `PATH --listen ADDR --data-dir DIR`: a two-line wrapper makes
# the relay such a program with the chosen node.
wrapper="$out.relay-wrapper.sh"
printf '#!/bin/sh\nexec %q %q "$@"\n' "$node" "$relay" > "$wrapper"
chmod +x "$wrapper"
node_args=()
skip=0
for a in "$@"; do
  if ((skip)); then skip=0; continue; fi
  case $a in
    --data-dir) skip=1 ;;
    --data-dir=*) ;;
    *) node_args+=("$a") ;;
  esac
done
for i in 1 2 3; do
  echo "run $i/3: fullslack-chat" >&2
  "$bench" "$@" --spawn "$server" --json > "$out.fullslack.$i.json" 2> "$out.fullslack.$i.log"
  echo "run $i/3: node relay" >&2
  "$bench" "${node_args[@]}" --spawn "$wrapper" --data-dir "$out.relay-data" --json \
    > "$out.node.$i.json" 2> "$out.node.$i.log"
done
python3 - "$out" "$server" "$relay" "$node" <<'PY'
import json, statistics, subprocess, sys
out, server, relay, node = sys.argv[1:5]
runs = {s: [json.load(open(f"{out}.{s}.{i}.json")) for i in (1, 2, 3)] for s in ("fullslack", "node")}
def per(cores, rate):
    return cores / rate * 1e6 if cores is not None and rate else None
s0 = lambda r: r["servers"][0] if r["servers"] else {}
rows = {
    "connected sockets": lambda r: r["connected"],
    "acks/s": lambda r: r["acks_per_sec"],
    "deliveries/s": lambda r: r["deliveries_per_sec"],
    "missing after drain": lambda r: r["missing_deliveries"],
    "deliver p50 ms": lambda r: r["latency_deliver"]["p50_ms"] if r["latency_deliver"]["count"] else None,
    "deliver p99 ms": lambda r: r["latency_deliver"]["p99_ms"] if r["latency_deliver"]["count"] else None,
    "ack p50 ms": lambda r: r["latency_ack"]["p50_ms"] if r["latency_ack"]["count"] else None,
    "ack p99 ms": lambda r: r["latency_ack"]["p99_ms"] if r["latency_ack"]["count"] else None,
    "error frames": lambda r: r["error_frames"],
    "closed unexpectedly": lambda r: r["closed_unexpectedly"],
    "server CPU cores": lambda r: s0(r).get("cpu_cores"),
    "server CPU us/delivery": lambda r: per(s0(r).get("cpu_cores"), r["deliveries_per_sec"]),
    "server CPU us/ack": lambda r: per(s0(r).get("cpu_cores"), r["acks_per_sec"]),
    "server RSS KB/socket": lambda r: s0(r).get("rss_per_conn_kib"),
    "server RSS after connect MB": lambda r: (s0(r).get("rss_after_connect_kib") or 0) / 1024 or None,
    "bench CPU cores": lambda r: r["bench_cpu_cores"],
    "bench CPU us/frame": lambda r: r.get("bench_cpu_us_per_frame"),
}
fmt = lambda v: "n/a" if v is None else (f"{v:.2f}" if isinstance(v, float) else str(v))
def med(side, f):
    vals = [v for v in (f(r) for r in runs[side]) if v is not None]
    return statistics.median(vals) if vals else None
version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()
print("command:", runs["fullslack"][0]["command"])
print(f"fullslack = {server}\nnode      = {relay} (node {version}, Debian node-ws)")
print(f"{'':28}{'fullslack':>12}{'node':>12}{'f/n':>8}   fullslack runs | node runs")
for k, f in rows.items():
    mf, mn = med("fullslack", f), med("node", f)
    ratio = f"{mf / mn:.2f}" if mf is not None and mn else "n/a"
    rf = ", ".join(fmt(f(r)) for r in runs["fullslack"])
    rn = ", ".join(fmt(f(r)) for r in runs["node"])
    print(f"{k:28}{fmt(mf):>12}{fmt(mn):>12}{ratio:>8}   {rf} | {rn}")
PY
