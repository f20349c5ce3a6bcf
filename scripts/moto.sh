#!/usr/bin/env bash
# moto (an AWS API emulator, test-only, Apache-2.0) for the `fullslack plan/apply/destroy` and
# `secrets` tests: EC2, ECR, ECS, SSM and ELBv2 answer over real HTTP on loopback.
#
#   scripts/moto.sh start   installs moto into .test-runtime/venv-moto if missing, starts one
#                           server on a free 127.0.0.1 port with MOTO_ECS_SERVICE_RUNNING=1
#                           (ECS services report one running task, so "wait until stable"
#                           can succeed), waits until it answers and prints its URL
#                           (http://127.0.0.1:PORT)
#   scripts/moto.sh stop    stops the server started by `start` (pid in the runtime dir)
#   scripts/moto.sh install only installs (the tests start extra servers of their own)
#
# Environment: FULLSLACK_TEST_RUNTIME (default .test-runtime) holds the venv, the log and the
# pid file; MOTO_ECS_SERVICE_RUNNING overrides the running-task count (0 disables it).
set -euo pipefail
cd "$(dirname "$0")/.."

# Pinned: the tests rely on what this release answers (see shared TESTBED notes).
MOTO_VERSION="5.2.5"
RUNTIME="${FULLSLACK_TEST_RUNTIME:-$PWD/.test-runtime}"
VENV="$RUNTIME/venv-moto"
STATE="$RUNTIME/moto"
PIDFILE="$STATE/moto.pid"

install() {
  mkdir -p "$RUNTIME" "$STATE"
  if [ ! -x "$VENV/bin/moto_server" ] || ! "$VENV/bin/python" -c "import moto,sys; sys.exit(moto.__version__ != '$MOTO_VERSION')" 2>/dev/null; then
    echo "==> installing moto $MOTO_VERSION into $VENV" >&2
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check "moto[server]==$MOTO_VERSION" >&2
  fi
}

stop() {
  [ -f "$PIDFILE" ] || return 0
  local pid
  pid="$(cat "$PIDFILE")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$PIDFILE"
}

start() {
  install
  stop
  local port
  port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
  MOTO_ECS_SERVICE_RUNNING="${MOTO_ECS_SERVICE_RUNNING:-1}" \
    "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port" >"$STATE/moto-$port.log" 2>&1 &
  echo $! >"$PIDFILE"
  for _ in $(seq 1 300); do
    if python3 -c 'import sys,urllib.request; urllib.request.urlopen("http://127.0.0.1:%s/moto-api/" % sys.argv[1], timeout=0.5)' "$port" 2>/dev/null; then
      echo "http://127.0.0.1:$port"
      return 0
    fi
    if ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
      echo "moto_server exited; log:" >&2
      cat "$STATE/moto-$port.log" >&2
      rm -f "$PIDFILE"
      return 1
    fi
    sleep 0.1
  done
  echo "moto_server did not answer on port $port within 30 s" >&2
  stop
  return 1
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  install) install ;;
  *)
    echo "usage: $0 [start|stop|install]" >&2
    exit 2
    ;;
esac
