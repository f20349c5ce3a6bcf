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
. scripts/lib.sh

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
  stop_pidfile "$PIDFILE" 50
}

start() {
  install
  stop
  local port
  port="$(free_port)"
  MOTO_ECS_SERVICE_RUNNING="${MOTO_ECS_SERVICE_RUNNING:-1}" \
    "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port" >"$STATE/moto-$port.log" 2>&1 &
  echo $! >"$PIDFILE"
  if wait_ready "moto_server on port $port" "$PIDFILE" "$STATE/moto-$port.log" \
    python3 -c 'import sys,urllib.request; urllib.request.urlopen("http://127.0.0.1:%s/moto-api/" % sys.argv[1], timeout=0.5)' "$port"; then
    echo "http://127.0.0.1:$port"
    return 0
  fi
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
