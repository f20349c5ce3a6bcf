#!/usr/bin/env bash
# Runs one scenario against two server binaries, interleaved (A, B, A, B, A, B) so both see
# the same machine load, and prints the median of 3 of each figure side by side with B/A.
# On a shared machine only these ratios and the CPU-per-unit rows are worth quoting.
# Usage: [FRESH_DATA=1] [THREAD=NAME] bench/scripts/compare.sh OUT_PREFIX BENCH SERVER_A SERVER_B SCENARIO ARGS...
# e.g.   bench/scripts/compare.sh /tmp/ingest target/release/bench /tmp/before-server \
#            target/release/fullslack-chat ingest --senders 64 --duration 10s
set -euo pipefail
out=$1 bench=$2 a=$3 b=$4
shift 4
# FRESH_DATA=1: every run gets a fresh data dir of its own (needed when B migrates the schema,
# which A then refuses to open). THREAD=NAME: also sample that server thread's CPU (by its
# comm, e.g. sqlite-writer) from /proc over 5 s in the middle of each run.
for i in 1 2 3; do
  for side in a b; do
    server=$a
    [ "$side" = b ] && server=$b
    data=()
    if [ "${FRESH_DATA:-}" = 1 ]; then
      rm -rf "$out.$side.$i.data"
      data=(--data-dir "$out.$side.$i.data")
    fi
    "$bench" "$@" "${data[@]}" --spawn "$server" --json > "$out.$side.$i.json" 2> "$out.$side.$i.log" &
    bpid=$!
    if [ -n "${THREAD:-}" ]; then
      pid=; tid=
      for _ in $(seq 1 200); do pid=$(pgrep -f "^$server" | head -1 || true); [ -n "$pid" ] && break; sleep 0.1; done
      for _ in $(seq 1 200); do tid=$(grep -l "^$THREAD\$" /proc/"$pid"/task/*/comm 2>/dev/null | head -1 | cut -d/ -f5 || true); [ -n "$tid" ] && break; sleep 0.1; done
      sleep 5
      t0=$(awk '{print $14+$15}' /proc/"$pid"/task/"$tid"/stat); sleep 5; t1=$(awk '{print $14+$15}' /proc/"$pid"/task/"$tid"/stat)
      echo "$t0 $t1" | awk '{print ($2-$1)/100/5}' > "$out.$side.$i.thread"
    fi
    wait "$bpid"
  done
done
python3 - "$out" "$a" "$b" <<'PY'
import json, statistics, sys
out, a, b = sys.argv[1:4]
runs = {s: [json.load(open(f"{out}.{s}.{i}.json")) for i in (1, 2, 3)] for s in "ab"}
import os
for s in "ab":
    for i, r in enumerate(runs[s], 1):
        t = f"{out}.{s}.{i}.thread"
        r["thread"] = float(open(t).read()) if os.path.exists(t) else None
thread = os.environ.get("THREAD") or "thread"
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
    "receipt frames/message": lambda r: r.get("receipt_frames_per_message"),
    "server CPU cores": lambda r: s0(r).get("cpu_cores"),
    "server CPU us/ack": lambda r: per(s0(r).get("cpu_cores"), r["acks_per_sec"]),
    "server CPU us/delivery": lambda r: per(s0(r).get("cpu_cores"), r["deliveries_per_sec"]),
    f"{thread} cores": lambda r: r["thread"],
    f"{thread} us/ack": lambda r: per(r["thread"], r["acks_per_sec"]),
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
