#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests need (Debian packages,
# cargo-nextest), then runs every test of the workspace. Tests start their own servers
# (chat server, nginx, sshd, pebble, chromium…) on loopback ports they pick themselves and
# stop them when done; this script only makes sure the programs are installed.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests run for real. Keep this list in one place.
APT_PACKAGES=(
  nginx            # cli: rendered configs pass `nginx -t`, proxy in front of a real chat server
  openssh-server   # cli: commands run through a real sshd on loopback
  openssh-client
  pebble           # cli: pebble-challtestsrv is the DNS server for `doctor` tests; pebble the ACME CA of `certs` tests
  openssl          # cli: tests make a CA and server certificates, run `openssl s_server`
  chromium         # web client: browser tests
  chromium-driver
  fonts-noto-color-emoji  # web client: emoji render in screenshots
  redis-server     # chat-server: Redis fan-out/presence/rate-limit tests (tests/redis_bus.rs, tests/cluster/); cli: the managed Redis accessory is its binary packed offline
  redis-tools      # cli: redis-cli reads and writes the managed Redis accessory's data (tests/deploy/accessory.rs)
  iproute2         # cli: `ip addr` finds the Docker bridge's address, where the two-host test's SecantusDB listens
  docker-registry  # cli: image push/pull tests against a real registry on loopback
  apache2-utils    # cli: htpasswd (bcrypt) for the registry's auth
  shellcheck       # workflows: actionlint checks every `run:` script with it
  nodejs           # bench: tests/node_relay.rs runs the comparison mode's Node.js relay (bench/relay/relay.js)
  node-ws          # bench: the relay's WebSocket library (/usr/share/nodejs/ws)
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "==> installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "==> installing cargo-nextest"
  cargo install --locked cargo-nextest
fi

# Servers and temporary files the tests create live under here (never the system's).
export FULLSLACK_TEST_RUNTIME="${FULLSLACK_TEST_RUNTIME:-$PWD/.test-runtime}"
mkdir -p "$FULLSLACK_TEST_RUNTIME"

# Formatting and lints are part of the tests: CI fails on either.
echo "==> cargo fmt --check"
cargo fmt --all --check
# The project's GitHub Actions workflows: actionlint and zizmor (venv from PyPI).
echo "==> workflows (actionlint, zizmor)"
scripts/lint-workflows.sh
echo "==> cargo clippy -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings

echo "==> building"
cargo build --workspace --all-targets
# The MongoDB store driver passes the same store contract as the embedded one: run it against
# SecantusDB (a MongoDB wire-compatible test server, installed into a venv under
# $FULLSLACK_TEST_RUNTIME by scripts/secantus.sh) and stop the server whatever happens.
echo "==> store contract on MongoDB (SecantusDB)"
trap 'scripts/secantus.sh stop' EXIT
MONGO_URL="$(scripts/secantus.sh start)"
# (A workspace run with a filter, not `-p`: `-p` resolves features anew and rebuilds dependencies.)
FULLSLACK_TEST_STORE_URL="$MONGO_URL" cargo nextest run --workspace -E 'binary(store_contract)'
scripts/secantus.sh stop
# The venv stays installed: the workspace run's two-node tests (chat-server/tests/cluster/)
# start a SecantusDB of their own per test from $FULLSLACK_TEST_RUNTIME/venv-secantus.

# The AWS tests (cli/tests/aws/) each start their own moto server (an AWS API emulator) on a
# free loopback port; install it once here, into a venv under $FULLSLACK_TEST_RUNTIME.
echo "==> installing moto for the AWS tests"
scripts/moto.sh install

echo "==> testing"
cargo nextest run --workspace --no-fail-fast "$@"
