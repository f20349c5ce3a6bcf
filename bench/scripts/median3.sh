#!/usr/bin/env bash
# Run one bench command 3 times with --json and print the median of the headline numbers.
# Usage: bench/scripts/median3.sh OUT_PREFIX target/release/bench SCENARIO ARGS...
set -euo pipefail
out=$1; shift
for i in 1 2 3; do
  "$@" --json > "$out.$i.json" 2> "$out.$i.log"
done
python3 - "$out" <<'PY'
import json, statistics, sys
out = sys.argv[1]
runs = [json.load(open(f"{out}.{i}.json")) for i in (1, 2, 3)]
def med(f):
    vals = [f(r) for r in runs]
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None
def per(cores, rate):
    return cores / rate * 1e6 if cores is not None and rate else None
s0 = lambda r: r["servers"][0] if r["servers"] else {}
rows = {
    "connected": lambda r: r["connected"],
    "sent/s": lambda r: r["sent_per_sec"],
    "acks/s": lambda r: r["acks_per_sec"],
    "deliveries/s": lambda r: r["deliveries_per_sec"],
    "missing": lambda r: r["missing_deliveries"],
    "deliver p50 ms": lambda r: r["latency_deliver"]["p50_ms"],
    "deliver p99 ms": lambda r: r["latency_deliver"]["p99_ms"],
    "deliver p99.9 ms": lambda r: r["latency_deliver"]["p999_ms"],
    "cross-node deliver p50 ms": lambda r: (r.get("latency_deliver_cross_node") or {}).get("p50_ms"),
    "cross-node deliver p99 ms": lambda r: (r.get("latency_deliver_cross_node") or {}).get("p99_ms"),
    "ack p50 ms": lambda r: r["latency_ack"]["p50_ms"],
    "ack p99 ms": lambda r: r["latency_ack"]["p99_ms"],
    "error frames": lambda r: r["error_frames"],
    "receipt frames/message": lambda r: r.get("receipt_frames_per_message"),
    "closed": lambda r: r["closed_unexpectedly"],
    "server RSS/conn KB": lambda r: s0(r).get("rss_per_conn_kib"),
    "server RSS after connect MB": lambda r: (s0(r).get("rss_after_connect_kib") or 0) / 1024,
    "server CPU cores": lambda r: s0(r).get("cpu_cores"),
    "all servers CPU cores": lambda r: sum(s.get("cpu_cores") or 0 for s in r["servers"]) if r["servers"] else None,
    "bench CPU cores": lambda r: r["bench_cpu_cores"],
    # Server CPU per unit of work: comparable across runs on a loaded machine, unlike rates.
    "server CPU us per ack": lambda r: per(s0(r).get("cpu_cores"), r["acks_per_sec"]),
    "server CPU us per delivery": lambda r: per(s0(r).get("cpu_cores"), r["deliveries_per_sec"]),
}
print("command:", runs[0]["command"])
for k, f in rows.items():
    vals = [f(r) for r in runs]
    m = med(f)
    fmt = lambda v: "n/a" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))
    print(f"{k:30} median {fmt(m):>14}   runs: {', '.join(fmt(v) for v in vals)}")
PY
