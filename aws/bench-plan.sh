#!/usr/bin/env bash
# Benchmark (not a test): `fullslack plan` of an unchanged EC2 stack against a moto server.
# Starts moto (scripts/moto.sh), applies a one-instance stack once, then times repeated plans
# with hyperfine (Debian package `hyperfine`). Prints hyperfine's summary and writes its JSON
# to $FULLSLACK_TEST_RUNTIME/bench-plan.json.
#
#   aws/bench-plan.sh [RUNS]      (default 15 runs after 2 warm-ups)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-15}"
export FULLSLACK_TEST_RUNTIME="${FULLSLACK_TEST_RUNTIME:-$PWD/.test-runtime}"
command -v hyperfine >/dev/null || { echo "hyperfine is missing: apt-get install hyperfine" >&2; exit 1; }
cargo build -q -p fullslack --bin fullslack
BIN="$PWD/target/debug/fullslack"
WORK="$(mktemp -d "$FULLSLACK_TEST_RUNTIME/bench-plan-XXXXXX")"
trap 'scripts/moto.sh stop; rm -rf "$WORK"' EXIT
URL="$(scripts/moto.sh start)"
export AWS_ENDPOINT_URL="$URL" AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
  AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
ssh-keygen -q -t ed25519 -N "" -f "$WORK/id" -C bench
cat >"$WORK/stack.toml" <<TOML
name = "bench"
domains = ["chat.example.com"]
target = "ec2"

[ec2]
region = "us-east-1"
instance_type = "t3.small"
key_name = "bench-key"
public_key_file = "$WORK/id.pub"
ssh_cidr = "203.0.113.7/32"

[image]
name = "bench/chat"
registry = "ecr"

[tls]
acme_email = "ops@example.com"
TOML
"$BIN" apply --stack "$WORK/stack.toml" --yes >/dev/null
# Exit 0 means "no changes": any other code fails the benchmark.
hyperfine --warmup 2 --runs "$RUNS" --export-json "$FULLSLACK_TEST_RUNTIME/bench-plan.json" \
  "$BIN plan --stack $WORK/stack.toml"
python3 - "$FULLSLACK_TEST_RUNTIME/bench-plan.json" <<'PY'
import json, statistics, sys
r = json.load(open(sys.argv[1]))["results"][0]
t = sorted(r["times"])
print(f"median {statistics.median(t)*1000:.0f} ms, min {t[0]*1000:.0f} ms, max {t[-1]*1000:.0f} ms over {len(t)} runs")
PY
