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
#      because the stand-in host shares this machine's engine), and that deploy's time.
#
# Needs: the Docker Engine, sshd (openssh-server), nginx, jq, and
#   cargo build -p fullslack-chat -p fullslack --bins   (debug is what the tests deploy)
# Usage: bench/scripts/deploy.sh [RUNS]     (default 3; prints every run and the median)
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS="${1:-3}"
TARGET="${CARGO_TARGET_DIR:-target}"
FULLSLACK="$(realpath "${FULLSLACK:-$TARGET/debug/fullslack}")"
BIN="$(realpath "${BIN:-$TARGET/debug/fullslack-chat}")"
PROBE="$(realpath "$TARGET/debug/fullslack-healthcheck")"
for f in "$FULLSLACK" "$BIN" "$PROBE" /usr/sbin/sshd /usr/sbin/nginx; do
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

build() { # TAG BINARY
  "$FULLSLACK" build --offline --binary "$2" --healthcheck-binary "$PROBE" \
    --image "$REPO" --tag "$1" >/dev/null 2>&1
}
deploy() { # TAG [FLAGS...] -> one JSON line: version, duration_ms, bytes_sent, image_was_there
  local tag=$1; shift
  "$FULLSLACK" deploy --json --stack "$W/stack.toml" --version "$tag" --state-dir "$W/state" \
    --nginx-site "$NGINX/sites/site.conf" --nginx-conf "$NGINX/nginx.conf" \
    --nginx-prefix "$NGINX" --http-port "$HTTP_PORT" --listen-v4 127.0.0.1 --no-ipv6 \
    --register-probe "$@" |
    jq -c '.hosts[0] | {version, duration_ms, bytes_sent, image_was_there}'
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

build v1 "$BIN"
build v2 "$BIN"
cp "$BIN" "$W/chat-changed"
printf 'only the binary changed %s' "$NAME" >>"$W/chat-changed"
build v3 "$W/chat-changed"
echo "== images (docker image size)"
docker images --format '{{.Tag}} {{.Size}}' "$REPO"

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

echo "== registry-free redeploy, only the binary changed (v3), streamed, $RUNS runs"
: >"$W/times"
for i in $(seq "$RUNS"); do
  line="$(deploy v3 --send-image)"
  echo "$line"
  jq -r .duration_ms <<<"$line" >>"$W/times"
done
echo "median duration_ms: $(median <"$W/times")"
echo "== engine and commit"
docker version --format '{{.Server.Version}}'
git rev-parse --short HEAD
