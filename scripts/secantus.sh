#!/usr/bin/env bash
# SecantusDB (a MongoDB wire-compatible server, test-only, GPL-2.0, never linked or shipped) for
# the store contract tests of the MongoDB driver.
#
#   scripts/secantus.sh start   installs it into .test-runtime/venv-secantus if missing, starts
#                               one server on a free loopback port with its own data directory,
#                               waits until it accepts connections and prints its URL
#                               (mongodb://127.0.0.1:PORT/fullslack_test)
#   scripts/secantus.sh stop    stops the server started by `start` (pid in the runtime dir)
#
# FULLSLACK_TEST_RUNTIME (default .test-runtime) holds the venv, the data dir and the pid file.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

RUNTIME="${FULLSLACK_TEST_RUNTIME:-$PWD/.test-runtime}"
VENV="$RUNTIME/venv-secantus"
STATE="$RUNTIME/secantus"
PIDFILE="$STATE/secantusd.pid"

stop() {
  # It needs a few seconds to shut WiredTiger down cleanly.
  stop_pidfile "$PIDFILE" 100
}

start() {
  mkdir -p "$RUNTIME" "$STATE"
  if [ ! -x "$VENV/bin/secantusd-py" ]; then
    echo "==> installing SecantusDB into $VENV" >&2
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check --pre 'SecantusDB==0.7.0b3' >&2
  fi
  stop
  local port data
  port="$(free_port)"
  data="$STATE/data-$port-$$"
  rm -rf "$data"
  mkdir -p "$data"
  "$VENV/bin/secantusd-py" --host 127.0.0.1 --port "$port" --storage-path "$data" \
    >"$STATE/secantusd-$port.log" 2>&1 &
  echo $! >"$PIDFILE"
  if wait_ready "secantusd on port $port" "$PIDFILE" "$STATE/secantusd-$port.log" \
    python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.2).close()' "$port"; then
    echo "mongodb://127.0.0.1:$port/fullslack_test"
    return 0
  fi
  stop
  return 1
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  *)
    echo "usage: $0 [start|stop]" >&2
    exit 2
    ;;
esac
