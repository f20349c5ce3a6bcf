#!/usr/bin/env bash
# Runs one scenario against two server binaries, interleaved (A, B, A, B, A, B) so both see
# the same machine load, and prints the median of 3 of each figure side by side with B/A.
# On a shared machine only these ratios and the CPU-per-unit rows are worth quoting.
# Usage: bench/scripts/compare.sh OUT_PREFIX BENCH SERVER_A SERVER_B SCENARIO ARGS...
# e.g.   bench/scripts/compare.sh /tmp/ingest target/release/bench /tmp/before-server \
#            target/release/fullslack-chat ingest --senders 64 --duration 10s
set -euo pipefail
out=$1 bench=$2 a=$3 b=$4
shift 4
for i in 1 2 3; do
  for side in a b; do
    server=$a
    [ "$side" = b ] && server=$b
    "$bench" "$@" --spawn "$server" --json > "$out.$side.$i.json" 2> "$out.$side.$i.log"
  done
done
python3 - "$out" "$a" "$b" <<'PY'
import json, statistics, sys
out, a, b = sys.argv[1:4]
runs = {s: [json.load(open(f"{out}.{s}.{i}.json")) for i in (1, 2, 3)] for s in "ab"}
def per(cores, rate):
    return cores / rate * 1e6 if cores is not None and rate else None
s0 = lambda r: r["servers"][0] if r["servers"] else {}
rows = {
    "acks/s": lambda r: r["acks_per_sec"],
    "deliveries/s": lambda r: r["deliveries_per_sec"],
    "missing after drain": lambda r: r["missing_deliveries"],
    "ack p50 ms": lambda r: r["latency_ack"]["p50_ms"],
    "ack p99 ms": lambda r: r["latency_ack"]["p99_ms"],
    "deliver p50 ms": lambda r: r["latency_deliver"]["p50_ms"],
    "deliver p99 ms": lambda r: r["latency_deliver"]["p99_ms"],
    "error frames": lambda r: r["error_frames"],
    "server CPU cores": lambda r: s0(r).get("cpu_cores"),
    "server CPU us/ack": lambda r: per(s0(r).get("cpu_cores"), r["acks_per_sec"]),
    "server CPU us/delivery": lambda r: per(s0(r).get("cpu_cores"), r["deliveries_per_sec"]),
    "bench CPU cores": lambda r: r["bench_cpu_cores"],
}
fmt = lambda v: "n/a" if v is None else (f"{v:.2f}" if isinstance(v, float) else str(v))
def med(side, f):
    vals = [v for v in (f(r) for r in runs[side]) if v is not None]
    return statistics.median(vals) if vals else None
print("command:", runs["a"][0]["command"])
print(f"A = {a}\nB = {b}")
print(f"{'':24}{'A median':>12}{'B median':>12}{'B/A':>8}   A runs | B runs")
for k, f in rows.items():
    ma, mb = med("a", f), med("b", f)
    ratio = f"{mb / ma:.2f}" if ma and mb is not None else "n/a"
    ra = ", ".join(fmt(f(r)) for r in runs["a"])
    rb = ", ".join(fmt(f(r)) for r in runs["b"])
    print(f"{k:24}{fmt(ma):>12}{fmt(mb):>12}{ratio:>8}   {ra} | {rb}")
PY
