#!/usr/bin/env bash
# Deploy benchmark (not a test; docs/benchmarks.md "Deploy"). A host stand-in as in
# cli/tests/deploy: a private sshd on loopback whose host is this machine (its Docker Engine),
# a private Nginx, a registry-free stack. Measures, from `fullslack deploy --json`:
#   1. deploy time to healthy with the image already on the host (prebuilt): RUNS switches
#      back and forth between two kept releases, each reported `duration_ms` (lock, bootstrap,
#      start beside the live one, health gate incl. a WebSocket round trip, Nginx reload,
#      old release drained and removed, audit);
#   2. bytes sent over SSH for a registry-free redeploy when only the binary changed (the same
#      server binary with bytes appended, packed as a new tag, streamed with --send-image
#      because the stand-in host shares this machine's engine: the host then gets what a host
#      without that image would get), that deploy's time and the CPU it cost: the `fullslack`
#      process and its children (docker save CLI, ssh), dockerd, and sshd's sessions (the
#      docker load CLI on the "host"). With FULLSLACK_BEFORE set (another build of the CLI,
#      e.g. main's), its own images are built with it too and its redeploys interleave with
#      this one's (before, after, after with --compress-image; RUNS rounds) into one stack.
#
# Needs: the Docker Engine, sshd (openssh-server), nginx, jq, and
#   cargo build -p fullslack-chat -p fullslack --bins   (debug is what the tests deploy)
# Usage: [FULLSLACK_BEFORE=path/to/fullslack] bench/scripts/deploy.sh [RUNS]
#        (default 3; prints every run and the medians)
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS="${1:-3}"
TARGET="${CARGO_TARGET_DIR:-target}"
FULLSLACK="$(realpath "${FULLSLACK:-$TARGET/debug/fullslack}")"
BIN="$(realpath "${BIN:-$TARGET/debug/fullslack-chat}")"
PROBE="$(realpath "$TARGET/debug/fullslack-healthcheck")"
BEFORE="${FULLSLACK_BEFORE:+$(realpath "$FULLSLACK_BEFORE")}"
for f in "$FULLSLACK" "$BIN" "$PROBE" /usr/sbin/sshd /usr/sbin/nginx ${BEFORE:+"$BEFORE"}; do
  [ -x "$f" ] || { echo "missing $f: see the header of $0" >&2; exit 1; }
done
W="$(mktemp -d /tmp/fsdb.XXXXXX)"
NAME="fsbench-$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')"
REPO="$NAME/chat"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  docker ps -aq --filter "label=fullslack.stack=$NAME" | xargs -r docker rm -f >/dev/null
  docker volume ls -q --filter "label=fullslack.stack=$NAME" | xargs -r docker volume rm -f >/dev/null
  docker images --format '{{.Repository}}:{{.Tag}}' "$REPO" | xargs -r docker rmi -f >/dev/null
  rm -rf "$W"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# sshd on loopback, this user, one key.
ssh-keygen -q -t ed25519 -N '' -f "$W/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$W/client_key"
cp "$W/client_key.pub" "$W/authorized_keys"
SSH_PORT="$(free_port)"
mkdir -p /run/sshd
cat >"$W/sshd_config" <<EOF
Port $SSH_PORT
ListenAddress 127.0.0.1
HostKey $W/host_key
PidFile $W/sshd.pid
AuthorizedKeysFile $W/authorized_keys
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
StrictModes no
PermitRootLogin prohibit-password
LogLevel ERROR
EOF
/usr/sbin/sshd -D -e -f "$W/sshd_config" & PIDS+=($!)
SSHD_PID=$!
echo "[127.0.0.1]:$SSH_PORT $(cut -d' ' -f1,2 "$W/host_key.pub")" >"$W/known_hosts"

HTTP_PORT="$(free_port)"
APP_PORT="$(free_port)"
cat >"$W/stack.toml" <<EOF
name = "$NAME"
domains = ["chat.example.test"]
target = "ssh"
[ssh]
user = "$(id -un)"
port = $SSH_PORT
identity_file = "$W/client_key"
known_hosts = "$W/known_hosts"
[[hosts]]
address = "127.0.0.1"
[image]
name = "$REPO"
[app]
host_port = $APP_PORT
[app.env]
FULLSLACK_RATE_LIMIT__AUTH_PER_MIN = "600"
FULLSLACK_RATE_LIMIT__AUTH_BURST = "100"
[tls]
enabled = false
[secrets]
FULLSLACK_AUTH__JWT_SECRET = { env = "BENCH_JWT" }
EOF
export BENCH_JWT="bench-secret-0123456789abcdef0123456789abcdef"
export FULLSLACK_PROBE_PASSWORD="bench probe password"
NGINX="$W/nginx"
mkdir -p "$NGINX/sites"
"$FULLSLACK" nginx render --stack "$W/stack.toml" --output "$NGINX/sites/site.conf" \
  --main-prefix "$NGINX" --http-port "$HTTP_PORT" --listen-v4 127.0.0.1 --no-ipv6 >/dev/null
/usr/sbin/nginx -c "$NGINX/nginx.conf" -p "$NGINX" -e stderr & PIDS+=($!)
until [ -e "$NGINX/nginx.pid" ]; do sleep 0.05; done

build() { # TAG BINARY [CLI]
  "${3:-$FULLSLACK}" build --offline --binary "$2" --healthcheck-binary "$PROBE" \
    --image "$REPO" --tag "$1" >/dev/null 2>&1
}
deploy() { # TAG [FLAGS...] -> one JSON line: version, duration_ms, bytes_sent, image_was_there, transfer
  local tag=$1; shift
  "${CLI:-$FULLSLACK}" deploy --json --stack "$W/stack.toml" --version "$tag" --state-dir "$W/state" \
    --nginx-site "$NGINX/sites/site.conf" --nginx-conf "$NGINX/nginx.conf" \
    --nginx-prefix "$NGINX" --http-port "$HTTP_PORT" --listen-v4 127.0.0.1 --no-ipv6 \
    --register-probe "$@" |
    jq -c '.hosts[0] | {version, duration_ms, bytes_sent, image_was_there, transfer}'
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# CPU seconds (user + system) a process used, and its reaped children (sshd's sessions).
ticks() { awk '{print $14 + $15 + $16 + $17}' "/proc/$1/stat"; }
HZ="$(getconf CLK_TCK)"
DOCKERD="$(pgrep -xo dockerd)"
# One measured redeploy: LABEL TAG CLI [FLAGS...] -> a JSON line with the CPU figures added.
measured() {
  local label=$1 tag=$2 cli=$3; shift 3
  local d0 s0 line d1 s1
  d0=$(ticks "$DOCKERD"); s0=$(ticks "$SSHD_PID")
  local TIMEFORMAT='%U %S'  # bash's `time`: this process tree's user and system seconds
  { time CLI="$cli" deploy "$tag" "$@" >"$W/line" 2>"$W/err"; } 2>"$W/cpu" ||
    { cat "$W/err" >&2; return 1; }
  line="$(cat "$W/line")"
  # sshd reaps the session once the client closed it: wait for that, not for a fixed time.
  while pgrep -P "$SSHD_PID" >/dev/null; do sleep 0.05; done
  d1=$(ticks "$DOCKERD"); s1=$(ticks "$SSHD_PID")
  jq -c --arg lbl "$label" --argjson cli "$(awk '{print $1 + $2}' "$W/cpu")" \
    --argjson dockerd "$(awk -v a="$d0" -v b="$d1" -v hz="$HZ" 'BEGIN {print (b - a) / hz}')" \
    --argjson sshd "$(awk -v a="$s0" -v b="$s1" -v hz="$HZ" 'BEGIN {print (b - a) / hz}')" \
    '{"label": $lbl} + . + {cpu_s: {fullslack: $cli, dockerd: $dockerd, sshd_sessions: $sshd}}' <<<"$line"
}

build v1 "$BIN"
build v2 "$BIN"
cp "$BIN" "$W/chat-changed"
printf 'only the binary changed %s' "$NAME" >>"$W/chat-changed"
build v3 "$W/chat-changed"
if [ -n "$BEFORE" ]; then
  # The before CLI packs its own images (its layer layout) from the same binaries.
  build b1 "$BIN" "$BEFORE"
  build b3 "$W/chat-changed" "$BEFORE"
fi
echo "== images (docker image size, layers)"
for t in $(docker images --format '{{.Tag}}' "$REPO" | sort); do
  echo "$t $(docker image inspect --format '{{.Size}} bytes, {{len .RootFS.Layers}} layers' "$REPO:$t")"
done

# The stand-in host is this machine: its engine already has every image built here, so a
# plain deploy sends nothing ("image_was_there"). --send-image streams the image as a separate
# host without it would receive it.
echo "== first deploy (the host shares the engine: nothing to send)"
deploy v1
deploy v2 >/dev/null  # both releases kept on the host

echo "== deploy time to healthy, image already on the host, $RUNS runs"
: >"$W/times"
for i in $(seq "$RUNS"); do
  tag=$([ $((i % 2)) -eq 1 ] && echo v1 || echo v2)
  line="$(deploy "$tag")"
  echo "$line"
  jq -r .duration_ms <<<"$line" >>"$W/times"
done
echo "median duration_ms: $(median <"$W/times")"

echo "== registry-free redeploy, only the binary changed, streamed, $RUNS rounds"
: >"$W/redeploys"
for i in $(seq "$RUNS"); do
  if [ -n "$BEFORE" ]; then
    measured before b3 "$BEFORE" --send-image | tee -a "$W/redeploys"
  fi
  measured after v3 "$FULLSLACK" --send-image | tee -a "$W/redeploys"
  measured after-gzip v3 "$FULLSLACK" --send-image --compress-image | tee -a "$W/redeploys"
done
echo "== medians of $RUNS (each label)"
for label in $(jq -r .label "$W/redeploys" | awk '!seen[$0]++'); do
  sel() { jq -r --arg l "$label" "select(.label == \$l) | $1" "$W/redeploys" | median; }
  echo "$label: bytes_sent $(sel .bytes_sent), duration_ms $(sel .duration_ms)," \
    "transfer ms $(sel '.transfer.ms // "n/a"')," \
    "CPU s: fullslack $(sel .cpu_s.fullslack), dockerd $(sel .cpu_s.dockerd)," \
    "sshd sessions $(sel .cpu_s.sshd_sessions)"
done
echo "== engine and commit"
docker version --format '{{.Server.Version}}'
git rev-parse --short HEAD
