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

RUNTIME="${FULLSLACK_TEST_RUNTIME:-$PWD/.test-runtime}"
VENV="$RUNTIME/venv-secantus"
STATE="$RUNTIME/secantus"
PIDFILE="$STATE/secantusd.pid"

stop() {
  [ -f "$PIDFILE" ] || return 0
  local pid
  pid="$(cat "$PIDFILE")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    # It needs a few seconds to shut WiredTiger down cleanly.
    for _ in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$PIDFILE"
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
  port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
  data="$STATE/data-$port-$$"
  rm -rf "$data"
  mkdir -p "$data"
  "$VENV/bin/secantusd-py" --host 127.0.0.1 --port "$port" --storage-path "$data" \
    >"$STATE/secantusd-$port.log" 2>&1 &
  echo $! >"$PIDFILE"
  for _ in $(seq 1 300); do
    if python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.2).close()' "$port" 2>/dev/null; then
      echo "mongodb://127.0.0.1:$port/fullslack_test"
      return 0
    fi
    if ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
      echo "secantusd exited; log:" >&2
      cat "$STATE/secantusd-$port.log" >&2
      rm -f "$PIDFILE"
      return 1
    fi
    sleep 0.1
  done
  echo "secantusd did not accept connections on port $port within 30 s" >&2
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
