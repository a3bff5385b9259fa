#!/usr/bin/env bash
# serve against axum::serve in instructions per request, counted by callgrind: repeatable on a
# noisy machine, where CPU time per request (scripts/bench-serve.sh) scatters by ±20 %.
#
# For each server (examples/axum.rs, SERVER=serve and SERVER=axum) and protocol, runs the
# example under `valgrind --tool=callgrind` twice: once with no request, once with N requests
# from h2load (4 connections; HTTP/2 with 4 streams each). Instructions per request =
# (total - total without requests) / N, every thread counted. Prints them and the ratio.
#
# Not quite deterministic with two worker threads and h2load's batching (the same binary
# varies by about 0.3 % between runs): ROUNDS alternates the servers that many times and
# prints each round, then the median ratio and its range.
#
# With --tls, the same over TLS: serve with `Serve::tls` against axum-server with rustls (the
# example's `SERVER=axum` with TLS_CERT and TLS_KEY), h2load over https with ALPN (http/1.1 for
# --h1, h2 otherwise), a P-256 certificate made by openssl; the 4 connections' handshakes are in
# the count (about 1 % at N=4000 on either server).
#
#   bash scripts/callgrind-serve.sh              # N=4000, HTTP/1.1 and HTTP/2, release build
#   ROUNDS=3 bash scripts/callgrind-serve.sh     # three alternating rounds, median ratio
#   N=2000 PROTOCOLS=h1 bash scripts/callgrind-serve.sh
#   ROUNDS=3 bash scripts/callgrind-serve.sh --tls
#   N=1000 PROTOCOLS=new bash scripts/callgrind-serve.sh --tls   # a connection per request
#                                             # (h2load --h1 -c50 -n50, N/50 times): full handshakes
set -euo pipefail
cd "$(dirname "$0")/.."
TLS=0
case ${1:-} in
  --tls) TLS=1 ;;
  "") ;;
  *) echo "callgrind-serve: unknown argument $1 (only --tls)" >&2; exit 2 ;;
esac
N=${N:-4000}
ROUNDS=${ROUNDS:-1}
PROTOCOLS=${PROTOCOLS:-h1 h2}
BIN=${BIN:-}
if [[ -z $BIN ]]; then
  cargo build --release --quiet --all-features --example axum
  BIN=target/release/examples/axum
fi
command -v valgrind >/dev/null || { echo "callgrind-serve: valgrind is needed" >&2; exit 2; }
if ! command -v h2load >/dev/null; then
  sudo_=""; [[ $(id -u) == 0 ]] || sudo_=sudo
  $sudo_ apt-get install -y -qq nghttp2-client >/dev/null
fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
SCHEME=http
tls_env=()
if ((TLS)); then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
  SCHEME=https
  tls_env=(TLS_CERT="$WORK/cert.pem" TLS_KEY="$WORK/key.pem")
fi

# instructions SERVER N PROTOCOL: the server's total instructions, N requests served.
instructions() {
  local out=$WORK/$1.$2.$3 pid addr
  env "${tls_env[@]}" ADDR=127.0.0.1:0 NOTICE_MS=0 SERVER="$1" RUST_LOG=warn \
    valgrind --tool=callgrind --callgrind-out-file="$out.cg" "$BIN" > "$out.stdout" 2> "$out.stderr" &
  pid=$!
  for _ in $(seq 300); do grep -q '^listening on' "$out.stdout" 2>/dev/null && break; sleep 0.2; done
  addr=$(sed -n 's/^listening on //p' "$out.stdout")
  [[ -n $addr ]] || { echo "callgrind-serve: $1 did not start" >&2; kill "$pid"; exit 2; }
  if (($2 > 0)) && [[ $3 == new ]]; then
    # A new connection per request, HTTP/1.1: 50 clients at a time, one request each.
    local batch
    for batch in $(seq $(($2 / 50))); do
      h2load --h1 -n 50 -c 50 "$SCHEME://$addr/" > "$out.load"
      grep -q "50 succeeded" "$out.load" || { echo "callgrind-serve: not every request succeeded" >&2; cat "$out.load" >&2; exit 2; }
    done
  elif (($2 > 0)); then
    if [[ $3 == h1 ]]; then h2load --h1 -n "$2" -c 4 "$SCHEME://$addr/" > "$out.load"
    else h2load -n "$2" -c 4 -m 4 "$SCHEME://$addr/" > "$out.load"; fi
    grep -q "$2 succeeded" "$out.load" || { echo "callgrind-serve: not every request succeeded" >&2; cat "$out.load" >&2; exit 2; }
  fi
  kill -TERM "$pid"
  wait "$pid" || true
  sed -n 's/^summary: //p;s/^totals: //p' "$out.cg" | head -1
}

printf '%-8s %-6s %-7s %14s\n' protocol round server "instr/request"
for proto in $PROTOCOLS; do
  ratios=()
  for round in $(seq "$ROUNDS"); do
    declare -A per=()
    for server in serve axum; do
      base=$(instructions "$server" 0 "$proto")
      total=$(instructions "$server" "$N" "$proto")
      per[$server]=$(( (total - base) / N ))
      printf '%-8s %-6s %-7s %14d\n' "$proto" "$round" "$server" "${per[$server]}"
    done
    ratios+=("$(awk -v s="${per[serve]}" -v a="${per[axum]}" 'BEGIN { printf "%.4f", s / a }')")
  done
  printf '%s\n' "${ratios[@]}" | sort -n | awk -v p="$proto" -v control="$( ((TLS)) && echo axum-server || echo axum::serve)" '
    { r[NR] = $1 }
    END { printf "%-8s serve/%s: %.3f (median of %d; %.3f to %.3f)\n", p, control, r[int((NR + 1) / 2)], NR, r[1], r[NR] }'
done
