#!/usr/bin/env bash
# Certificate issuance benchmark (not a test; docs/benchmarks.md "Certificate issuance against
# pebble"): wall time of `fullslack certs issue` for a `local` stack, end to end: DNS/CAA
# checks, order, HTTP-01 through a real Nginx, finalize, install, `nginx -t`, reload. Pebble
# (Let's Encrypt's test CA, Debian `pebble`) and pebble-challtestsrv run on loopback, pebble
# validating without its random sleep (PEBBLE_VA_NOSLEEP=1) and reusing no authorization.
# Every run orders a new name (bench-N.example.test), so each is a full validation and no
# duplicate-certificate limit applies; run 0 also creates the ACME account and is reported apart.
#
# Needs: pebble, nginx, openssl, jq, python3, and `cargo build -p fullslack --bins`.
# Usage: bench/scripts/certs.sh [RUNS]     (default 15)
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS="${1:-15}"
TARGET="${CARGO_TARGET_DIR:-target}"
FULLSLACK="$(pwd)/${FULLSLACK:-$TARGET/debug/fullslack}"
[ -x "$FULLSLACK" ] || { echo "missing $FULLSLACK: cargo build -p fullslack --bins" >&2; exit 1; }
W="$(mktemp -d /tmp/certs-bench.XXXXXX)"
chmod 755 "$W" # Nginx's workers (not root) read the ACME webroot under it
PIDS=()
cleanup() {
  nginx -s quit -c "$W/nginx/nginx.conf" -p "$W/nginx/" 2>/dev/null || true
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }

# A CA and a server certificate: pebble's own HTTPS, and Nginx's placeholder.
mkdir -p "$W/tls" "$W/certs" "$W/acme" "$W/nginx"
ossl() { openssl "$@" >/dev/null 2>&1; }
ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$W/tls/ca.key" \
  -out "$W/tls/ca.pem" -days 2 -subj "/CN=bench CA" \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
ossl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$W/tls/key.pem" \
  -out "$W/tls/req.csr" -subj "/CN=localhost"
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' >"$W/tls/ext.cnf"
ossl x509 -req -in "$W/tls/req.csr" -CA "$W/tls/ca.pem" -CAkey "$W/tls/ca.key" -CAcreateserial \
  -out "$W/tls/cert.pem" -days 2 -extfile "$W/tls/ext.cnf"
cp "$W/tls/cert.pem" "$W/certs/fullchain.pem"; cp "$W/tls/key.pem" "$W/certs/privkey.pem"

DNS=$(port); DNSM=$(port); HTTP=$(port); HTTPS=$(port); ACME=$(port); ACMEM=$(port)
pebble-challtestsrv -dns01 "127.0.0.1:$DNS" -http01 "" -https01 "" -tlsalpn01 "" \
  -management "127.0.0.1:$DNSM" -defaultIPv4 127.0.0.1 -defaultIPv6 "" >/dev/null 2>&1 &
PIDS+=($!)
cat >"$W/pebble.json" <<JSON
{"pebble": {"listenAddress": "127.0.0.1:$ACME", "managementListenAddress": "127.0.0.1:$ACMEM",
  "certificate": "$W/tls/cert.pem", "privateKey": "$W/tls/key.pem", "httpPort": $HTTP,
  "tlsPort": $(port), "ocspResponderURL": "", "externalAccountBindingRequired": false}}
JSON
wait_port "$DNS"
PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 PEBBLE_AUTHZREUSE=0 \
  pebble -config "$W/pebble.json" -dnsserver "127.0.0.1:$DNS" >/dev/null 2>&1 &
PIDS+=($!)
wait_port "$ACME"

stack() { # stack NAME -> a stack file for one domain
  cat >"$W/stack.toml" <<TOML
name = "certs-bench"
domains = ["$1"]
target = "local"
[image]
name = "fullslack/chat"
[tls]
enabled = true
acme_email = "ops@example.test"
directory_url = "https://127.0.0.1:$ACME/dir"
directory_ca_file = "$W/tls/ca.pem"
TOML
}
stack bench-0.example.test
# Nginx answers HTTP-01 on the port pebble dials for any name (the only server on that port).
"$FULLSLACK" nginx render --stack "$W/stack.toml" --cert-dir "$W/certs" --acme-root "$W/acme" \
  --http-port "$HTTP" --https-port "$HTTPS" --listen-v4 127.0.0.1 --no-ipv6 \
  --blue 127.0.0.1:9 --main-prefix "$W/nginx" -o "$W/nginx/site.conf"
nginx -c "$W/nginx/nginx.conf" -p "$W/nginx/" -e stderr &
PIDS+=($!)
wait_port "$HTTP"

issue() {
  "$FULLSLACK" --json certs issue --stack "$W/stack.toml" --cert-dir "$W/certs" \
    --acme-root "$W/acme" --nginx-conf "$W/nginx/nginx.conf" --nginx-prefix "$W/nginx/" \
    --dns-server "127.0.0.1:$DNS" >"$W/out.json" || { cat "$W/out.json" >&2; exit 1; }
}
ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
t=$(date +%s%N); issue; first=$(ms "$t")
times=()
for i in $(seq 1 "$RUNS"); do
  stack "bench-$i.example.test"
  t=$(date +%s%N); issue; times+=("$(ms "$t")")
  jq -e '.action == "issued"' "$W/out.json" >/dev/null
done
sorted=$(printf '%s\n' "${times[@]}" | sort -n)
median=$(echo "$sorted" | sed -n "$(( (RUNS + 1) / 2 ))p")
echo "first issue (account created): ${first} ms"
echo "issue, $RUNS runs: median ${median} ms, min $(echo "$sorted" | head -1) ms, max $(echo "$sorted" | tail -1) ms"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); commit $(git rev-parse --short HEAD)"
