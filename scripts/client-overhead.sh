#!/usr/bin/env bash
# The client layer's cost in the load generator's CPU per call: tonic channels calling
# examples/tonic.rs (`demo.Echo`, unary, small bodies: `--load fast`), without and with
# `--client-retry` (every channel behind tower_drain::client::TransparentRetryLayer), in
# alternating rounds in one run. Prints CPU microseconds (user + system) per call for each,
# and the ratio. No restarts: nothing is retried, this is the price of the happy path.
#
#   bash scripts/client-overhead.sh                 # 3 rounds of 5 s each
#   ROUNDS=5 SECS=10 bash scripts/client-overhead.sh
#
# The server shares the machine: with 2 cores the load generator and the server compete, so
# read the ratio, not the absolute figures.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
SECS=${SECS:-5}
command -v /usr/bin/time >/dev/null || (apt-get update && apt-get install -y time)
cargo build --release --quiet --all-features --example tonic
cargo build --release --quiet -p tower-drain-harness --bin loadgen
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
ADDR=127.0.0.1:$port target/release/examples/tonic >/dev/null 2>&1 &
server=$!
work=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done

declare -A cpu_us=() calls=()
for round in $(seq "$ROUNDS"); do
  for variant in bare retry; do
    args=(--target "127.0.0.1:$port" --client grpc --load fast --label "$variant")
    [[ $variant == bare ]] || args+=(--client-retry)
    { sleep "$SECS"; echo stop; } |
      /usr/bin/time -o "$work/cpu" -f 'CPU %U %S' target/release/loadgen "${args[@]}" > "$work/out" 2>/dev/null
    out=$(cat "$work/cpu" "$work/out")
    sent=$(grep -o 'ok=[0-9]*' <<< "$out" | head -1 | cut -d= -f2)
    lost=$(grep -o 'lost=[0-9]*' <<< "$out" | cut -d= -f2)
    used=$(awk '/^CPU/ { printf "%d", ($2 + $3) * 1e6 }' <<< "$out")
    ((lost == 0)) || echo "round $round $variant: $lost calls lost (no restarts: unexpected)" >&2
    cpu_us[$variant]=$(( ${cpu_us[$variant]:-0} + used ))
    calls[$variant]=$(( ${calls[$variant]:-0} + sent ))
    printf 'round %d %-5s %9d calls %8.2f CPU us/call\n' "$round" "$variant" "$sent" \
      "$(awk -v u="$used" -v n="$sent" 'BEGIN { print u / n }')"
  done
done
awk -v bu="${cpu_us[bare]}" -v bn="${calls[bare]}" -v ru="${cpu_us[retry]}" -v rn="${calls[retry]}" 'BEGIN {
  b = bu / bn; r = ru / rn
  printf "bare  %.2f CPU us/call over %d calls\nretry %.2f CPU us/call over %d calls\n", b, bn, r, rn
  printf "retry / bare: %.3f (+%.2f us/call)\n", r / b, r - b
}'
