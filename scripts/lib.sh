# Shell helpers shared by the scripts that run test servers (secantus.sh, moto.sh) and the
# cluster benchmark. Source it: `. "$(dirname "$0")/lib.sh"`.

# A free TCP port on 127.0.0.1 (the kernel picks it; the socket is closed again at once).
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# stop_pidfile PIDFILE TENTHS: SIGTERM the process in PIDFILE, give it TENTHS tenths of a
# second to exit, then SIGKILL it; removes PIDFILE. Nothing to do without the file.
stop_pidfile() {
  local pidfile=$1 tenths=$2 pid
  [ -f "$pidfile" ] || return 0
  pid="$(cat "$pidfile")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 "$tenths"); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

# wait_ready NAME PIDFILE LOG PROBE...: runs the PROBE command every 0.1 s until it succeeds
# (return 0), the process in PIDFILE exits (prints LOG, removes PIDFILE, return 1) or 30 s
# pass (return 1; the caller stops the process).
wait_ready() {
  local name=$1 pidfile=$2 log=$3
  shift 3
  for _ in $(seq 1 300); do
    if "$@" 2>/dev/null; then
      return 0
    fi
    if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      echo "$name exited; log:" >&2
      cat "$log" >&2
      rm -f "$pidfile"
      return 1
    fi
    sleep 0.1
  done
  echo "$name did not answer within 30 s" >&2
  return 1
}
