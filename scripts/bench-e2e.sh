#!/usr/bin/env bash
# End to end: axum bare vs axum + DrainLayer over loopback HTTP/1.1, loaded with wrk.
#
# Starts both variants of harness/src/bin/bench_server.rs (DRAIN=0 and DRAIN=1) on 127.0.0.1, then
# alternates wrk runs against `GET /` (bare, layered, bare, layered, ...) so that drift of the
# machine (other load, thermal, frequency) hits both alike, and prints per-run figures, the
# throughput ratio layered/bare (target >= 0.98) and the p50/p99 latencies.
#
# Pinning: on a machine with at least 2 CPUs both servers run on SERVER_CPUS and wrk on
# CLIENT_CPUS (taskset), so the load generator does not steal the server's core. Only the
# server being measured is busy; the other one sits idle in accept.
#
# Knobs (environment): PAIRS (default 5), DURATION per run (default 5s), WARMUP (default 2s),
# CONNECTIONS (default 32), THREADS of wrk (default 1), SERVER_CPUS (default 0), CLIENT_CPUS
# (default 1), PIN=0 to disable taskset.
#
#   bash scripts/bench-e2e.sh
set -euo pipefail
cd "$(dirname "$0")/.."

PAIRS=${PAIRS:-5}
DURATION=${DURATION:-5s}
WARMUP=${WARMUP:-2s}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-1}
SERVER_CPUS=${SERVER_CPUS:-0}
CLIENT_CPUS=${CLIENT_CPUS:-1}
PIN=${PIN:-1}

command -v wrk >/dev/null || (apt-get update && apt-get install -y wrk)
command -v wrk >/dev/null || { echo "bench-e2e: wrk is not installed" >&2; exit 1; }

cargo build --release -p tower-drain-harness --bin bench_server
SERVER=target/release/bench_server

server_pin=()
client_pin=()
if [[ $PIN == 1 ]] && command -v taskset >/dev/null && (($(nproc) >= 2)); then
  server_pin=(taskset -c "$SERVER_CPUS")
  client_pin=(taskset -c "$CLIENT_CPUS")
  echo "pinning: servers on CPU $SERVER_CPUS, wrk on CPU $CLIENT_CPUS"
else
  echo "pinning: off"
fi

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# start NAME DRAIN: starts a server on a free port; sets PORT_<NAME>.
start() {
  local name=$1 drain=$2 out="$work/$1.out"
  DRAIN=$drain ADDR=127.0.0.1:0 "${server_pin[@]}" "$SERVER" >"$out" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do
    if grep -q '^listening on ' "$out"; then
      printf -v "PORT_$name" '%s' "$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$out" | head -1)"
      return
    fi
    sleep 0.1
  done
  echo "bench-e2e: $name server did not start:" >&2
  cat "$out" >&2
  exit 1
}
start bare 0
start drain 1
echo "bare on 127.0.0.1:$PORT_bare, drain on 127.0.0.1:$PORT_drain"

# wrk latencies come as 123.45us, 1.23ms or 1.02s: convert to microseconds.
to_us() {
  awk -v v="$1" 'BEGIN {
    n = v + 0
    if (v ~ /us$/) print n; else if (v ~ /ms$/) print n * 1000;
    else if (v ~ /m$/) print n * 60e6; else if (v ~ /s$/) print n * 1e6; else print n }'
}

# run NAME PORT DURATION: one wrk run; appends "name rps p50_us p99_us" to $work/results.
run() {
  local name=$1 port=$2 duration=$3 out="$work/wrk.out"
  "${client_pin[@]}" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$duration" --latency \
    "http://127.0.0.1:$port/" >"$out"
  if grep -qE 'Non-2xx|Socket errors' "$out"; then
    echo "bench-e2e: errors during the $name run:" >&2
    cat "$out" >&2
    exit 1
  fi
  local rps p50 p99
  rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
  p50=$(to_us "$(awk '$1 == "50%" {print $2}' "$out")")
  p99=$(to_us "$(awk '$1 == "99%" {print $2}' "$out")")
  [[ -n $rps && -n $p50 && -n $p99 ]] || { cat "$out" >&2; exit 1; }
  echo "$name $rps $p50 $p99"
}

echo "warm-up ($WARMUP each)"
run bare "$PORT_bare" "$WARMUP" >/dev/null
run drain "$PORT_drain" "$WARMUP" >/dev/null

printf '%-5s %-6s %12s %10s %10s\n' pair server 'req/s' 'p50 us' 'p99 us'
: >"$work/results"
for pair in $(seq "$PAIRS"); do
  for name in bare drain; do
    port_var="PORT_$name"
    line=$(run "$name" "${!port_var}" "$DURATION")
    echo "$pair $line" >>"$work/results"
    read -r n rps p50 p99 <<<"$line"
    printf '%-5s %-6s %12.0f %10.0f %10.0f\n' "$pair" "$n" "$rps" "$p50" "$p99"
  done
done

awk '
  function median(a, n,    i, j, t) {
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  {
    pair = $1; name = $2
    rps[name, pair] = $3; sum[name] += $3; count[name]++
    if (name == "bare") { nb++; p50b[nb] = $4; p99b[nb] = $5 } else { nd++; p50d[nd] = $4; p99d[nd] = $5 }
    if (pair > pairs) pairs = pair
  }
  END {
    for (p = 1; p <= pairs; p++) ratios[p] = rps["drain", p] / rps["bare", p]
    printf "\nthroughput, mean of %d runs: bare %.0f req/s, drain %.0f req/s\n", pairs, sum["bare"] / count["bare"], sum["drain"] / count["drain"]
    printf "throughput ratio drain/bare: %.3f (ratio of means); per-pair median %.3f (target >= 0.98)\n", sum["drain"] / sum["bare"], median(ratios, pairs)
    printf "latency, median over runs: bare p50 %.0f us p99 %.0f us; drain p50 %.0f us p99 %.0f us\n", median(p50b, nb), median(p99b, nb), median(p50d, nd), median(p99d, nd)
  }' "$work/results"
