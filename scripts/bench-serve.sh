#!/usr/bin/env bash
# serve against axum::serve: the server's CPU time per request, same app, same layer.
#
# Starts `examples/axum.rs` twice, `SERVER=serve` and `SERVER=axum`, on 127.0.0.1, and loads one
# at a time in alternating rounds (serve then axum, then axum then serve, ...) so that drift of
# the machine hits both alike:
#   HTTP/1.1  wrk, 64 connections, `GET /`, for DURATION;
#   HTTP/2    h2load (h2c prior knowledge), 16 connections x 16 streams, `GET /`, for DURATION.
# Around each load it reads the server process's utime and stime from /proc/<pid>/stat (clock
# ticks, `getconf CLK_TCK`) and takes the request count from the load tool. It prints, per
# protocol: CPU µs per request (user, system, total), the ratio serve/axum per round with its
# median and range, req/s and p50/p99 latency (wrk --latency; h2load --log-file). The whole
# set runs with TCP_NODELAY=1 and again with TCP_NODELAY=0 (the example's setting; SERVER=axum
# applies the same socket options through axum's `tap_io`).
# Then idle memory: per server, N idle HTTP/1.1 keep-alive connections, each after one answered
# request; the server's RSS delta / N.
#
# With --tls, the same over TLS (rustls on `ring` in both servers, a P-256 certificate made by
# openssl for the run): `SERVER=serve` with `Serve::tls` against `SERVER=axum`, which then is
# axum-server with rustls (`examples/support/axum_server_tls.rs`; axum::serve has no TLS). wrk
# over https (no ALPN), h2load over TLS (ALPN h2), idle connections each after its handshake and
# one request; then new TLS connections: `openssl s_time` clients, each a new connection per
# `GET /` (HTTP/1.0, closed by the server), with full handshakes (`-new`) and resumed ones
# (`-reuse`, TLS 1.3 tickets), per second and in server CPU per connection. TCP_NODELAY=1 only,
# unless NODELAY says otherwise.
#
# The load tool and the server share the machine: on 2 cores the figures are noisy, so read the
# medians and ranges, not one round. Only ratios measured side by side in one run mean anything.
#
# Settings (environment):
#   ROUNDS=5          alternating rounds per protocol and TCP_NODELAY setting
#   DURATION=5        seconds of each load (wrk -d, h2load -D)
#   WARMUP=1          whole seconds of load on each server before the first round (0: none)
#   NODELAY="1 0"     the TCP_NODELAY settings to run, in order
#   PROTOCOLS="h1 h2" which loads to run
#   WRK_THREADS=1 H2LOAD_THREADS=1   load generator threads
#   IDLE_CONNS=2000   idle connections for the memory figure (0 skips it)
#   PIN=0             1: taskset the servers on cpu SERVER_CPU (0), the load on LOAD_CPU (1);
#                     tokio then starts one worker per allowed cpu
#   BIN=              a prebuilt example binary to use instead of building it
#   KEEP=             a directory to keep the raw outputs in
#   HANDSHAKES="full resumed"   with --tls: which new-connection loads to run
#   S_TIME_CLIENTS=2  with --tls: openssl s_time clients run at once
# Flags: --short  a few seconds for CI: ROUNDS=1 DURATION=1 WARMUP=0 IDLE_CONNS=200 (an
#                 explicitly set variable still wins).
#        --tls    over TLS, against axum-server (see above).
#
# Exits non-zero only when it cannot run (a tool missing, a server not starting, a load tool
# failing); the ratios never fail it. The `goal:` line says whether serve/axum <= 1.00 held
# (CPU per request), and with --tls whether serve/axum-server >= 0.95 held (new connections per
# second).
#
#   bash scripts/bench-serve.sh
#   ROUNDS=3 NODELAY=1 PIN=1 bash scripts/bench-serve.sh
#   bash scripts/bench-serve.sh --short
#   ROUNDS=3 bash scripts/bench-serve.sh --tls
#   BIN=target/debug/examples/axum bash scripts/bench-serve.sh --tls --short
set -euo pipefail
cd "$(dirname "$0")/.."

TLS=0
for arg in "$@"; do
  case $arg in
    --short) : "${ROUNDS:=1}" "${DURATION:=1}" "${WARMUP:=0}" "${IDLE_CONNS:=200}" ;;
    --tls) TLS=1 ;;
    *)
      echo "bench-serve: unknown argument $arg (--short, --tls)" >&2
      exit 2
      ;;
  esac
done
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
if ((TLS)); then
  NODELAY=${NODELAY:-1}
  SCHEME=https
  CONTROL=axum-server
else
  NODELAY=${NODELAY:-1 0}
  SCHEME=http
  CONTROL=axum::serve
fi
HANDSHAKES=${HANDSHAKES:-full resumed}
S_TIME_CLIENTS=${S_TIME_CLIENTS:-2}
PROTOCOLS=${PROTOCOLS:-h1 h2}
WRK_THREADS=${WRK_THREADS:-1}
H2LOAD_THREADS=${H2LOAD_THREADS:-1}
IDLE_CONNS=${IDLE_CONNS:-2000}
PIN=${PIN:-0}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
BIN=${BIN:-}
KEEP=${KEEP:-}

fail() {
  echo "bench-serve: $*" >&2
  exit 1
}

# The tools, installed once (Debian packages).
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v h2load >/dev/null || missing+=(nghttp2-client)
command -v python3 >/dev/null || missing+=(python3)
if ((TLS)); then command -v openssl >/dev/null || missing+=(openssl); fi
if ((${#missing[@]})); then
  echo "installing ${missing[*]}"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"; } \
    >/dev/null || fail "could not install ${missing[*]}"
fi
tools=(wrk h2load python3 getconf)
((TLS)) && tools+=(openssl)
for tool in "${tools[@]}"; do
  command -v "$tool" >/dev/null || fail "$tool is not installed"
done

if [[ -z $BIN ]]; then
  cargo build --release --all-features --example axum
  BIN=target/release/examples/axum
fi
[[ -x $BIN ]] || fail "$BIN is not an executable"
if ! grep -qs TCP_NODELAY examples/axum.rs examples/support/*.rs; then
  echo "note: this example does not read TCP_NODELAY yet: serve sets it and axum::serve does not, in every pass"
fi

TICK=$(getconf CLK_TCK)
server_pin=()
load_pin=()
if [[ $PIN == 1 ]]; then
  command -v taskset >/dev/null || fail "PIN=1 needs taskset"
  server_pin=(taskset -c "$SERVER_CPU")
  load_pin=(taskset -c "$LOAD_CPU")
  echo "pinning: servers on cpu $SERVER_CPU, load on cpu $LOAD_CPU"
else
  echo "pinning: off (PIN=1 to pin); $(nproc) cpus shared by the servers and the load"
fi

# The idle connections need a file descriptor each, in the client and in the server.
if ((IDLE_CONNS > 0)); then
  want=$((IDLE_CONNS + 256))
  if (($(ulimit -n) < want)); then
    ulimit -n "$want" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
  fi
  (($(ulimit -n) >= want)) || fail "IDLE_CONNS=$IDLE_CONNS needs $want file descriptors (ulimit -n is $(ulimit -n))"
fi

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [[ -n $KEEP ]]; then
    mkdir -p "$KEEP" && cp -r "$work"/. "$KEEP"/
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# --tls: a certificate for the run, P-256 as the tests' (rcgen's default).
tls_env=()
if ((TLS)); then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null \
    || fail "openssl could not make a certificate"
  tls_env=(TLS_CERT="$work/cert.pem" TLS_KEY="$work/key.pem")
fi

# start NAME SERVER NODELAY: starts the example; sets PID_<NAME> and PORT_<NAME>.
start() {
  local name=$1 server=$2 nodelay=$3 out="$work/$1.out"
  env "${tls_env[@]}" SERVER="$server" TCP_NODELAY="$nodelay" ADDR=127.0.0.1:0 NOTICE_MS=0 RUST_LOG=warn \
    "${server_pin[@]}" "$BIN" >"$out" 2>&1 &
  local pid=$!
  pids+=("$pid")
  for _ in $(seq 100); do
    if grep -q '^listening on ' "$out"; then
      printf -v "PID_$name" '%s' "$pid"
      printf -v "PORT_$name" '%s' "$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$out" | head -1)"
      return
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  cat "$out" >&2
  fail "the $name server did not start"
}

stop() {
  local pid=$1
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# cpu PID: "utime stime" in clock ticks (the fields after the command name, which may hold spaces).
cpu() {
  local stat
  stat=$(<"/proc/$1/stat") || fail "server $1 is gone"
  stat=${stat##*) }
  read -r -a f <<<"$stat"
  echo "${f[11]} ${f[12]}"
}

# wrk latencies come as 123.45us, 1.23ms or 1.02s: convert to microseconds.
to_us() {
  awk -v v="$1" 'BEGIN {
    n = v + 0
    if (v ~ /us$/) print n; else if (v ~ /ms$/) print n * 1000;
    else if (v ~ /m$/) print n * 60e6; else if (v ~ /s$/) print n * 1e6; else print n }'
}

# load PROTOCOL PORT SECONDS OUT: one load; prints "requests seconds p50_us p99_us errors".
load() {
  local protocol=$1 port=$2 seconds=$3 out=$4
  if [[ $protocol == h1 ]]; then
    "${load_pin[@]}" wrk -t"$WRK_THREADS" -c64 -d"${seconds}s" --latency \
      "$SCHEME://127.0.0.1:$port/" >"$out" 2>&1 || { cat "$out" >&2; fail "wrk failed"; }
    local requests secs errors
    read -r requests secs < <(awk '/requests in/ {sub(/s,$/, "", $4); print $1, $4}' "$out")
    errors=$(awk '/Non-2xx/ {e += $NF} /Socket errors/ {for (i = 4; i <= NF; i += 2) e += $i} END {print e + 0}' "$out")
    [[ -n $requests ]] || { cat "$out" >&2; fail "no request count from wrk"; }
    echo "$requests $secs $(to_us "$(awk '$1 == "50%" {print $2}' "$out")") $(to_us "$(awk '$1 == "99%" {print $2}' "$out")") $errors"
  else
    # h2c with prior knowledge, or over TLS with ALPN h2.
    "${load_pin[@]}" h2load -c16 -m16 -t"$H2LOAD_THREADS" -D "$seconds" --log-file="$out.log" \
      "$SCHEME://127.0.0.1:$port/" >"$out" 2>&1 || { cat "$out" >&2; fail "h2load failed"; }
    if ((TLS)) && ! grep -q '^Application protocol: h2' "$out"; then
      cat "$out" >&2
      fail "h2load did not negotiate h2"
    fi
    local requests secs errors p50 p99
    requests=$(awk '/^requests:/ {print $8}' "$out") # "succeeded"
    errors=$(awk '/^requests:/ {print $10 + $12 + $14}' "$out")
    secs=$(awk '/^finished in/ {sub(/s,$/, "", $3); print $3}' "$out")
    [[ -n $requests && $requests -gt 0 ]] || { cat "$out" >&2; fail "no request count from h2load"; }
    # The log: start time, status, microseconds to the end of the response, one request a line.
    read -r p50 p99 < <(cut -f3 "$out.log" | sort -n | awk '{v[NR] = $1}
      function at(p,    i) { i = int(NR * p + 0.5); if (i < 1) i = 1; return v[i] }
      END {print at(0.50), at(0.99)}')
    rm -f "$out.log"
    echo "$requests $secs $p50 $p99 $errors"
  fi
}

# handshakes KIND PORT SECONDS OUT: S_TIME_CLIENTS openssl s_time clients at once, each a new
# TLS connection per `GET /` (HTTP/1.0), full handshakes (KIND full) or resumed (resumed);
# prints "connections seconds 0 0 0" (no latency figures) like load.
handshakes() {
  local kind=$1 port=$2 seconds=$3 out=$4 flag=-new start end i failed=0 connections clients=()
  [[ $kind == resumed ]] && flag=-reuse
  start=$(date +%s.%N)
  for i in $(seq "$S_TIME_CLIENTS"); do
    "${load_pin[@]}" openssl s_time -connect "127.0.0.1:$port" "$flag" -time "$seconds" -www / \
      >"$out.$i" 2>&1 &
    clients+=($!)
  done
  for i in "${clients[@]}"; do wait "$i" || failed=1; done
  end=$(date +%s.%N)
  for i in $(seq "$S_TIME_CLIENTS"); do cat "$out.$i" && rm -f "$out.$i"; done >"$out"
  ((failed == 0)) || { cat "$out" >&2; fail "openssl s_time failed"; }
  connections=$(awk '/connections in .* real seconds/ {n += $1} END {print n + 0}' "$out")
  ((connections > 0)) || { cat "$out" >&2; fail "no connection count from openssl s_time"; }
  # Its progress marks: `*` a full handshake, `r` a resumed one.
  if [[ $kind == resumed ]] && ! awk '!/connections/ && /r/ {found = 1} END {exit !found}' "$out"; then
    cat "$out" >&2
    fail "openssl s_time resumed no session"
  fi
  echo "$connections $(awk -v a="$start" -v b="$end" 'BEGIN {printf "%.3f", b - a}') 0 0 0"
}

# measure NAME PROTOCOL ROUND NODELAY: one measured load on server NAME; appends a result line.
measure() {
  local name=$1 protocol=$2 round=$3 nodelay=$4
  local pid_var="PID_$name" port_var="PORT_$name"
  local pid=${!pid_var} port=${!port_var} before after figures u0 s0 u1 s1 requests secs p50 p99 errors
  before=$(cpu "$pid")
  case $protocol in
    full | resumed) figures=$(handshakes "$protocol" "$port" "$DURATION" "$work/$name-$protocol-$nodelay-$round.txt") ;;
    *) figures=$(load "$protocol" "$port" "$DURATION" "$work/$name-$protocol-$nodelay-$round.txt") ;;
  esac
  after=$(cpu "$pid")
  read -r u0 s0 <<<"$before"
  read -r u1 s1 <<<"$after"
  read -r requests secs p50 p99 errors <<<"$figures"
  ((errors == 0)) || echo "warning: $errors failed requests in $name $protocol round $round" >&2
  echo "$nodelay $protocol $round $name $requests $secs $((u1 - u0)) $((s1 - s0)) $p50 $p99" >>"$work/results"
  awk -v n="$name" -v r="$round" -v q="$requests" -v t="$secs" -v u="$((u1 - u0))" -v s="$((s1 - s0))" \
    -v tick="$TICK" -v p50="$p50" -v p99="$p99" 'BEGIN {
      printf "  %-5s %-5s %10d %10.0f %9.2f %9.2f %9.2f %9.0f %9.0f\n", r, n, q, q / t,
        u * 1e6 / tick / q, s * 1e6 / tick / q, (u + s) * 1e6 / tick / q, p50, p99 }'
}

# idle NAME: RSS delta per idle keep-alive connection, each after one answered request.
idle() {
  local name=$1 pid_var="PID_$1" port_var="PORT_$1"
  local pid=${!pid_var} port=${!port_var} before after ready="$work/idle-$1.ready"
  rm -f "$ready" # left by an earlier pass
  before=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")
  python3 - "$port" "$IDLE_CONNS" "$ready" "$TLS" <<'EOF' &
import socket, ssl, sys, time
port, n, ready, tls = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4] == "1"
if tls:  # each connection after its full handshake (ALPN http/1.1) and one request
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["http/1.1"])
conns = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    if tls:
        s = context.wrap_socket(s, server_hostname="localhost")
    s.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
    conns.append(s)
for s in conns:  # each answered: the whole head and body read, the connection kept
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            sys.exit("closed before its response")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:"))
    while len(body) < length:
        body += s.recv(4096)
open(ready, "w").close()
time.sleep(3600)
EOF
  local client=$!
  for _ in $(seq 300); do
    [[ -e $ready ]] && break
    kill -0 "$client" 2>/dev/null || fail "the idle client failed against $name"
    sleep 0.1
  done
  [[ -e $ready ]] || fail "the idle client did not finish against $name"
  sleep 0.5 # let the server's tasks settle on their idle state
  after=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")
  kill "$client" 2>/dev/null || true
  wait "$client" 2>/dev/null || true
  echo "$name $before $after" >>"$work/idle"
  awk -v n="$name" -v b="$before" -v a="$after" -v c="$IDLE_CONNS" 'BEGIN {
    printf "  %-5s RSS %7d KiB -> %7d KiB: %6.1f KB per idle connection\n", n, b, a, (a - b) * 1.024 / c }'
}

header() {
  printf '  %-5s %-5s %10s %10s %9s %9s %9s %9s %9s\n' round server requests 'req/s' 'user µs' 'sys µs' 'cpu µs' 'p50 µs' 'p99 µs'
}

: >"$work/results"
: >"$work/idle"
echo "$ROUNDS rounds of ${DURATION}s per protocol and setting; CPU in µs per request (CLK_TCK $TICK)"
for nodelay in $NODELAY; do
  echo
  echo "== TCP_NODELAY=$nodelay: serve against $CONTROL (\"axum\" below)"
  start serve serve "$nodelay"
  start axum axum "$nodelay"
  if ((IDLE_CONNS > 0)); then
    echo "idle memory, $IDLE_CONNS HTTP/1.1 keep-alive connections ($SCHEME) after one request each:"
    idle serve
    idle axum
  fi
  kinds=$PROTOCOLS
  ((TLS)) && kinds+=" $HANDSHAKES"
  for protocol in $kinds; do
    case $protocol in
      h1) echo "HTTP/1.1 ($SCHEME): wrk -t$WRK_THREADS -c64, ${DURATION}s" ;;
      h2) echo "HTTP/2 ($SCHEME): h2load -c16 -m16 -t$H2LOAD_THREADS, ${DURATION}s" ;;
      full) echo "new TLS connections, full handshakes: $S_TIME_CLIENTS x openssl s_time -new, ${DURATION}s (requests: connections)" ;;
      resumed) echo "new TLS connections, resumed: $S_TIME_CLIENTS x openssl s_time -reuse, ${DURATION}s (requests: connections)" ;;
      *) fail "PROTOCOLS: h1 or h2, HANDSHAKES: full or resumed; got $protocol" ;;
    esac
    if ((WARMUP > 0)); then
      for port in "$PORT_serve" "$PORT_axum"; do
        case $protocol in
          full | resumed) handshakes "$protocol" "$port" "$WARMUP" "$work/warmup.txt" >/dev/null ;;
          *) load "$protocol" "$port" "$WARMUP" "$work/warmup.txt" >/dev/null ;;
        esac
      done
    fi
    header
    for round in $(seq "$ROUNDS"); do
      if ((round % 2)); then order=(serve axum); else order=(axum serve); fi
      for name in "${order[@]}"; do measure "$name" "$protocol" "$round" "$nodelay"; done
    done
  done
  stop "$PID_serve"
  stop "$PID_axum"
done

# The summary: per setting and protocol, the per-round ratios serve/axum (median and range) and
# the medians of req/s and latency; then the goal.
echo
echo "== summary: serve / $CONTROL, median of $ROUNDS rounds [range]"
awk -v tick="$TICK" -v control="$CONTROL" '
  function sort(a, n,    i, j, t) {
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
  }
  function median(a, n) { sort(a, n); return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
  function stat(a, n,    m) { m = median(a, n); return sprintf("%.2f [%.2f-%.2f]", m, a[1], a[n]) }
  function med(key, name, field,    i, a, n) {
    n = 0; for (i = 1; i <= rounds; i++) if ((key, i, name) in q) { a[++n] = field == "rps" ? q[key, i, name] / t[key, i, name] : (field == "p50" ? p50[key, i, name] : p99[key, i, name]) }
    return median(a, n)
  }
  {
    key = $1 SUBSEP $2
    if (!(key in seen)) { seen[key] = 1; keys[++nk] = key }
    q[key, $3, $4] = $5; t[key, $3, $4] = $6; u[key, $3, $4] = $7; s[key, $3, $4] = $8
    p50[key, $3, $4] = $9; p99[key, $3, $4] = $10
    if ($3 > rounds) rounds = $3
  }
  END {
    goal = 1; rate_goal = 1; handshakes = 0
    other = control == "axum::serve" ? "axum" : control
    for (k = 1; k <= nk; k++) {
      key = keys[k]; split(key, kp, SUBSEP)
      n = 0; delete rc; delete ru; delete rs; delete cs; delete ca; delete rr
      for (i = 1; i <= rounds; i++) {
        if (!((key, i, "serve") in q) || !((key, i, "axum") in q)) continue
        n++
        su = u[key, i, "serve"] / q[key, i, "serve"]; ss = s[key, i, "serve"] / q[key, i, "serve"]
        au = u[key, i, "axum"] / q[key, i, "axum"]; as = s[key, i, "axum"] / q[key, i, "axum"]
        rc[n] = (su + ss) / (au + as); ru[n] = au > 0 ? su / au : 0; rs[n] = as > 0 ? ss / as : 0
        cs[n] = (su + ss) * 1e6 / tick; ca[n] = (au + as) * 1e6 / tick
        rr[n] = (q[key, i, "serve"] / t[key, i, "serve"]) / (q[key, i, "axum"] / t[key, i, "axum"])
      }
      if (n == 0) continue
      if (kp[2] == "full" || kp[2] == "resumed") {
        # New connections: their rate (higher is better) and the server CPU each costs.
        handshakes = 1
        name = kp[2] == "full" ? "new TLS, full    " : "new TLS, resumed "
        printf "TCP_NODELAY=%s %s connections/s %s; cpu/connection %s  (user %s, system %s)\n", kp[1], name, stat(rr, n), stat(rc, n), stat(ru, n), stat(rs, n)
        printf "%26s cpu µs/connection: serve %.1f, %s %.1f; connections/s: serve %.0f, %s %.0f\n", "",
          median(cs, n), other, median(ca, n), med(key, "serve", "rps"), other, med(key, "axum", "rps")
        m = median(rr, n)
        rate_verdict = rate_verdict sprintf("%s%s %.2f", rate_verdict == "" ? "" : ", ", kp[2], m)
        if (m < 0.95) rate_goal = 0
        continue
      }
      name = kp[2] == "h1" ? "HTTP/1.1" : "HTTP/2  "
      printf "TCP_NODELAY=%s %s  cpu/request %s  (user %s, system %s)\n", kp[1], name, stat(rc, n), stat(ru, n), stat(rs, n)
      printf "%26s cpu µs/request: serve %.2f, %s %.2f; req/s: serve %.0f, %s %.0f; p50/p99 µs: serve %.0f/%.0f, %s %.0f/%.0f\n", "",
        median(cs, n), other, median(ca, n), med(key, "serve", "rps"), other, med(key, "axum", "rps"),
        med(key, "serve", "p50"), med(key, "serve", "p99"), other, med(key, "axum", "p50"), med(key, "axum", "p99")
      m = median(rc, n)
      verdict = verdict sprintf("%s%s TCP_NODELAY=%s %.2f", verdict == "" ? "" : ", ", kp[2] == "h1" ? "HTTP/1.1" : "HTTP/2", kp[1], m)
      if (m > 1.00) goal = 0
    }
    if (verdict != "")
      printf "goal: serve/%s CPU per request <= 1.00 (median) on every protocol and setting: %s (%s)\n", other, goal ? "held" : "not held", verdict
    if (handshakes)
      printf "goal: serve/%s new TLS connections per second >= 0.95 (median): %s (%s)\n", other, rate_goal ? "held" : "not held", rate_verdict
  }' "$work/results"
if [[ -s $work/idle ]]; then
  awk -v c="$IDLE_CONNS" -v other="$([[ $CONTROL == axum::serve ]] && echo axum || echo "$CONTROL")" -v scheme="$SCHEME" \
    '{ d[$1] += ($3 - $2) * 1.024 / c; n[$1]++ }
    END { if (n["serve"] && n["axum"]) printf "idle HTTP/1.1 connection (%s): serve %.1f KB, %s %.1f KB (mean of %d)\n", scheme, d["serve"] / n["serve"], other, d["axum"] / n["axum"], n["serve"] }' "$work/idle"
fi
