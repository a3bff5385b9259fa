#!/usr/bin/env bash
# Zero-downtime proof: rolling restarts of two backends behind HAProxy, under steady load.
#
#   bash scripts/rolling-restart.sh --mode drain --restarts 3        # what CI runs
#   bash scripts/rolling-restart.sh --mode all --restarts 10         # the README's table
#   bash scripts/rolling-restart.sh --mode compare --client h2 --load fast --lb-mode tcp
#   bash scripts/matrix.sh                                           # every cell, one table
#
# For each mode it starts two instances of a server on loopback, HAProxy in front of them
# (active health checks on /readyz, keep-alive to the backends), the harness's `loadgen`
# driving fast, slow and streaming requests through HAProxy on keep-alive connections, and
# then restarts the instances one at a time: SIGTERM, wait for exit, start again on the same
# port, wait until its /readyz answers 200 and HAProxy reports it UP. The load generator
# prints one row per restart: requests sent, 2xx, non-2xx, connection errors.
#
# Modes:  drain           examples/axum.rs: tower-drain's DrainLayer + notice period
#                         (examples/tonic.rs with --client grpc), its default server (`serve`)
#                         or the one --drain-server names
#         serve           the same with SERVER=serve: tower-drain's own server, which tells
#                         every connection to leave at the start of the notice period
#         framework       the same with SERVER=framework: the layer on axum::serve / tonic's
#                         Server, which say goodbye to their connections at the drain only
#         naive-graceful  harness/src/bin/naive.rs, NAIVE=graceful: axum's with_graceful_shutdown alone
#                         (harness/src/bin/naive_tonic.rs: tonic's serve_with_incoming_shutdown alone)
#         naive-abrupt    harness/src/bin/naive.rs (naive_tonic.rs), NAIVE=abrupt: exits on SIGTERM at once
#         all             drain, naive-graceful, naive-abrupt, one after the other, same settings
#         compare         serve, framework, then naive-graceful (the control), same settings
#         A,B,..          the modes listed, in that order (for example serve,naive-graceful)
#
# Clients (--client, the harness's `loadgen`): h1 (HTTP/1.1 keep-alive, the default), h2 (HTTP/2
# prior knowledge, several streams per connection, retries only what the protocol proves
# unprocessed: REFUSED_STREAM, or above GOAWAY's last-stream-id, once, on a new connection),
# grpc (tonic channels, no retry policy). h1 and h2 drive the axum servers (examples/axum.rs,
# harness/src/bin/naive.rs); grpc drives the gRPC servers (examples/tonic.rs, harness/src/bin/naive_tonic.rs: `demo.Echo`, HTTP/2
# only). Loads (--load): mixed (fast, slow and streaming requests) or fast (only fast requests,
# back to back, over 20 times the rate). HAProxy checks the gRPC servers' /readyz over HTTP/2
# (a hand-written tcp-check, see scripts/haproxy/haproxy.cfg.in) and speaks HTTP/2 to them in
# HTTP mode (`proto h2`); nginx takes h2 and grpc clients on an `http2` listener and passes gRPC
# with `grpc_pass`. docs/zero-downtime.md has the settings, the reasons and the measured table.
#
# Exit status: non-zero if a tower-drain mode (drain, serve, framework) lost any request (a
# non-2xx answer or a connection error, a truncated stream included) or exited non-zero. The
# naive modes only report.
#
# GOAWAY timing (h2 and grpc clients): the script writes `signal EPOCH_US` to the load
# generator as it sends SIGTERM, and the load generator, which times every GOAWAY frame its
# connections read, prints per restart how many connections were told to go away and how long
# after SIGTERM (harness/src/load/goaway.rs). Behind HAProxy `mode tcp` those are the
# server's own GOAWAYs; behind HAProxy `mode http` or nginx, the balancer's.
#
# --lb nginx puts nginx in front instead (passive health checks only, proxy_next_upstream
# retries; --lb-retries on, its default there, adds http_503 to nginx's `error timeout`),
# configured from scripts/nginx/nginx.conf.in; see run_mode's nginx branches.
#
# --backend-socket unix (with --lb nginx, clients h1 and h2) has the servers listen on Unix
# domain sockets in the run's temporary directory (ADDR=unix:PATH; they print `listening on
# unix:PATH`) and nginx reach them with `server unix:PATH;` upstreams, HTTP/1.1 keep-alive as
# over TCP. Readiness is asked over the socket (`curl --unix-socket PATH`). nginx passes HTTP/2
# upstream only with grpc_pass, and the gRPC servers listen on TCP only: no grpc client here.
#
# --tls (with --lb haproxy --lb-mode tcp) runs every hop over TLS: the harness's `certs` writes
# a self-signed certificate for localhost into the run's temporary directory, every server
# gets it as TLS_CERT/TLS_KEY (serve: tower-drain's TLS; framework: axum-server's rustls or
# tonic's ServerTlsConfig, from the examples; the plain controls likewise), HAProxy `mode tcp`
# passes TLS through and checks readiness over TLS (`check-ssl verify none`, ALPN http/1.1 for
# the axum servers' GET /readyz, h2 for the gRPC servers' hand-written HTTP/2 check), and the
# load generator trusts the certificate (`loadgen --ca`): HTTPS/1.1, HTTP/2 over TLS (ALPN
# h2), gRPC over TLS. GOAWAY timing and refused streams are read from the decrypted HTTP/2
# (harness/src/load/tls.rs), as over cleartext.
#
# --notice-ms MS sets the drain servers' NOTICE_MS (default: the timing rule below).
#
# Refused streams (h2 and grpc clients): the load generator counts on the wire every stream
# the other side refused, retried or not: reset with REFUSED_STREAM, or opened above a GOAWAY's
# last-stream-id (harness/src/load/goaway.rs). The h2 client retries a refused stream once, on a
# new connection; refused twice, it is lost ("refused twice").
#
# --result-file FILE appends one line per mode, for scripts/matrix.sh:
#   MODE sent=.. ok=.. non2xx=.. errors=.. unsent=.. retried=.. lost=.. secs=.. rate=..
#        [goaway_told=.. goaway_min_ms=.. goaway_median_ms=.. goaway_max_ms=..
#        goaway_final_median_ms=.. goaway_untold=.. goaway_later=..
#        refused=.. refused_reset=.. refused_goaway=.. refused_goaway_after_pong=..]
#        bad_exits=.. detail=..
#
# --drain-server NAME passes SERVER=NAME to the server of --mode drain (and all): `serve`
# (tower-drain's own server, the examples' default) or `framework` (axum::serve, or tonic's
# Server, with the layer; both examples take `framework`, each its own name too: `axum`,
# `tonic`). Without the option the example's default runs. --mode compare runs both anyway.
#
# Environment: DRAIN_SERVER_BIN overrides the binary used for the drain mode (it must have
# the interface of examples/axum.rs, or of examples/tonic.rs with --client grpc); KEEP_LOGS=1
# keeps the temporary directory.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: rolling-restart.sh [--mode drain|serve|framework|naive-graceful|naive-abrupt|all|compare]
                          [--restarts N]
                          [--lb haproxy|nginx] [--lb-mode http-keep-alive|http-server-close|h2|tcp]
                          [--lb-retries off|on] [--backend-socket tcp|unix]
                          [--client h1|h2|grpc] [--load mixed|fast]
                          [--connections N] [--streams N] [--pause-ms MS] [--inter-ms MS]
                          [--notice-ms MS] [--restart-gap-ms MS] [--profile release|dev]
                          [--drain-server NAME] [--result-file FILE] [--client-retry] [--tls]
EOF
}

MODE=drain
RESTARTS=10
LB=haproxy
LB_MODE=http-keep-alive
LB_RETRIES=""      # default: off with HAProxy (its defaults), on with nginx (+ http_503)
BACKEND_SOCKET=tcp # how the balancer reaches the servers: tcp, or unix (nginx only)
CLIENT=h1
LOAD=mixed
CONNECTIONS=""      # default: the load generator's for the client and load
STREAMS=""          # concurrent streams per connection (h2, grpc); default: the load generator's
PAUSE_MS=""         # pause of each worker between two requests; default: 2 (mixed), 0 (fast)
CLIENT_RETRY=""     # --client-retry: gRPC channels behind tower_drain::client::TransparentRetryLayer
TLS=""              # --tls: TLS end to end, passed through by HAProxy mode tcp
RESULT_FILE=""
DRAIN_SERVER=""     # SERVER for --mode drain; default: the example's own
INTER_MS=100        # health-check interval
FALL=1              # failed checks before DOWN
RISE=2              # good checks before UP
CHECK_TIMEOUT_MS=200
NOTICE_MS=""        # default: computed from the rule below
DRAIN_TIMEOUT_MS=10000
WARMUP_S=1
SETTLE_S=0.5        # traffic on both servers between two restarts
# Time the port stays closed between the old process's exit and the new one's start. It must
# outlast HAProxy's connect retries (retries 3, each after a turn-around of min(timeout
# connect, 1 s)); otherwise a retry reaches the replacement on the same port and hides the
# refused connection, which a real deploy (replacement elsewhere, or seconds to boot) never
# does. --restart-gap-ms 0 shows the in-place restart.
RESTART_GAP_MS=3500
PROFILE=release     # cargo profile of the examples; CI uses dev to share the test build

while (($#)); do
  case "$1" in
    --mode) MODE=$2; shift 2 ;;
    --restarts) RESTARTS=$2; shift 2 ;;
    --lb) LB=$2; shift 2 ;;
    --lb-mode) LB_MODE=$2; shift 2 ;;
    --lb-retries) LB_RETRIES=$2; shift 2 ;;
    --backend-socket) BACKEND_SOCKET=$2; shift 2 ;;
    --client) CLIENT=$2; shift 2 ;;
    --load) LOAD=$2; shift 2 ;;
    --connections) CONNECTIONS=$2; shift 2 ;;
    --streams) STREAMS=$2; shift 2 ;;
    --result-file) RESULT_FILE=$2; shift 2 ;;
    --drain-server) DRAIN_SERVER=$2; shift 2 ;;
    --inter-ms) INTER_MS=$2; shift 2 ;;
    --notice-ms) NOTICE_MS=$2; shift 2 ;;
    --restart-gap-ms) RESTART_GAP_MS=$2; shift 2 ;;
    --profile) PROFILE=$2; shift 2 ;;
    --pause-ms) PAUSE_MS=$2; shift 2 ;;
    --client-retry) CLIENT_RETRY=1; shift ;;
    --tls) TLS=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done

case "$MODE" in
  all) MODES=(drain naive-graceful naive-abrupt) ;;
  compare) MODES=(serve framework naive-graceful) ;;
  *) IFS=, read -r -a MODES <<< "$MODE" ;;
esac
for m in "${MODES[@]}"; do
  case "$m" in drain|serve|framework|naive-graceful|naive-abrupt) ;; *)
    echo "--mode must be drain, serve, framework, naive-graceful, naive-abrupt, all, compare or a comma-separated list of the first five" >&2
    exit 2 ;;
  esac
done
if [[ -n "$DRAIN_SERVER" && " ${MODES[*]} " != *" drain "* ]]; then
  echo "--drain-server is for --mode drain or all (--mode $MODE runs: ${MODES[*]})" >&2; exit 2
fi
# The modes that run tower-drain (the drain server example), and the SERVER each one sets.
drained() { [[ "$1" == drain || "$1" == serve || "$1" == framework ]]; }
case "$CLIENT" in h1|h2|grpc) ;; *) echo "--client must be h1, h2 or grpc" >&2; exit 2 ;; esac
case "$LOAD" in mixed|fast) ;; *) echo "--load must be mixed or fast" >&2; exit 2 ;; esac
if [[ "$CLIENT" == grpc && "$LB_MODE" == http-server-close ]]; then
  echo "--client grpc needs HTTP/2 to the backends: --lb-mode http-keep-alive (proto h2), h2 or tcp" >&2; exit 2
fi
if [[ "$CLIENT" == h1 && -n "$STREAMS" ]]; then echo "--streams is for --client h2 or grpc" >&2; exit 2; fi
case "$LB_MODE" in http-keep-alive|http-server-close|h2|tcp) ;; *)
  echo "--lb-mode must be http-keep-alive, http-server-close, h2 or tcp" >&2; exit 2 ;;
esac
case "$LB" in haproxy) ;; nginx)
  [[ "$LB_MODE" == http-keep-alive ]] || { echo "--lb nginx supports only --lb-mode http-keep-alive" >&2; exit 2; } ;;
  *) echo "--lb must be haproxy or nginx" >&2; exit 2 ;;
esac
[[ -n "$LB_RETRIES" ]] || LB_RETRIES=$([[ "$LB" == nginx ]] && echo on || echo off)
case "$LB_RETRIES" in on|off) ;; *) echo "--lb-retries must be on or off" >&2; exit 2 ;; esac
case "$BACKEND_SOCKET" in tcp) ;; unix)
  [[ "$LB" == nginx ]] || { echo "--backend-socket unix needs --lb nginx" >&2; exit 2; }
  [[ "$CLIENT" != grpc ]] || { echo "--backend-socket unix: the gRPC servers listen on TCP only" >&2; exit 2; } ;;
  *) echo "--backend-socket must be tcp or unix" >&2; exit 2 ;;
esac
if [[ -n "$TLS" && ( "$LB" != haproxy || "$LB_MODE" != tcp ) ]]; then
  echo "--tls needs --lb haproxy --lb-mode tcp (HAProxy passes TLS through to the servers)" >&2; exit 2
fi
case "$PROFILE" in release) PROFILE_DIR=release ;; dev) PROFILE_DIR=debug ;; *)
  echo "--profile must be release or dev" >&2; exit 2 ;;
esac
for n in "$RESTARTS" "${CONNECTIONS:-1}" "${STREAMS:-1}" "$INTER_MS" "$RESTART_GAP_MS" "${NOTICE_MS:-0}" "${PAUSE_MS:-0}"; do
  [[ "$n" =~ ^[0-9]+$ ]] || { echo "numeric options take whole numbers, got '$n'" >&2; exit 2; }
done

# The timing rule: the server keeps serving normally (readiness already failing) until the
# load balancer has had time to see a failed check and mark it DOWN:
#   NOTICE_MS >= FALL * INTER_MS + CHECK_TIMEOUT_MS + margin   (margin: scheduling, 300 ms)
MIN_NOTICE_MS=$((FALL * INTER_MS + CHECK_TIMEOUT_MS))
if [[ -z "$NOTICE_MS" ]]; then
  NOTICE_MS=$((MIN_NOTICE_MS + 300))
elif [[ "$LB" == haproxy ]] && ((NOTICE_MS < MIN_NOTICE_MS)); then
  echo "warning: --notice-ms $NOTICE_MS is below FALL*INTER_MS+CHECK_TIMEOUT_MS = $MIN_NOTICE_MS ms:" \
       "expect failures in the drain mode" >&2
fi

LOADGEN_ARGS=(--client "$CLIENT" --load "$LOAD")
LOAD_DESC="client $CLIENT, load $LOAD"
[[ -z "$CONNECTIONS" ]] || { LOADGEN_ARGS+=(--connections "$CONNECTIONS"); LOAD_DESC+=", $CONNECTIONS connections"; }
[[ -z "$STREAMS" ]] || { LOADGEN_ARGS+=(--streams "$STREAMS"); LOAD_DESC+=" x $STREAMS streams"; }
[[ -z "$PAUSE_MS" ]] || { LOADGEN_ARGS+=(--pause-ms "$PAUSE_MS"); LOAD_DESC+=", ${PAUSE_MS}ms apart"; }
[[ -z "$CLIENT_RETRY" ]] || { LOADGEN_ARGS+=(--client-retry); LOAD_DESC+=", client behind TransparentRetryLayer"; }
[[ -z "$TLS" ]] || LOAD_DESC+=", over TLS"

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

# --- prerequisites -----------------------------------------------------------------------
if [[ "$LB" == haproxy ]]; then
  if ! command -v haproxy >/dev/null; then
    SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO="sudo"
    echo "==> installing haproxy with apt-get"
    $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >/dev/null
  fi
  command -v haproxy >/dev/null || { echo "haproxy is not available" >&2; exit 1; }
else
  PATH=$PATH:/usr/sbin # Debian's nginx lives there
  if ! command -v nginx >/dev/null; then
    SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO="sudo"
    echo "==> installing nginx with apt-get"
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null \
      || $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null
  fi
  command -v nginx >/dev/null || { echo "nginx is not available" >&2; exit 1; }
  if [[ "$BACKEND_SOCKET" == unix ]] && ! command -v curl >/dev/null; then # readiness over the socket
    SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO="sudo"
    echo "==> installing curl with apt-get"
    $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl >/dev/null
  fi
  [[ "$BACKEND_SOCKET" != unix ]] || command -v curl >/dev/null || { echo "curl is not available" >&2; exit 1; }
fi

# The servers: HTTP clients drive the axum pair, gRPC clients the tonic pair. The drain servers
# are the crate's examples; the load generator and the plain servers are harness binaries.
if [[ "$CLIENT" == grpc ]]; then DRAIN_EXAMPLE=tonic; NAIVE_BIN=naive_tonic
else DRAIN_EXAMPLE=axum; NAIVE_BIN=naive; fi
EXAMPLES=()
HARNESS=(--bin loadgen)
[[ -z "$TLS" ]] || HARNESS+=(--bin certs)
for m in "${MODES[@]}"; do
  case "$m" in
    drain|serve|framework) [[ -n "${DRAIN_SERVER_BIN:-}" || " ${EXAMPLES[*]} " == *" $DRAIN_EXAMPLE "* ]] \
      || EXAMPLES+=(--example "$DRAIN_EXAMPLE") ;;
    naive-*) [[ " ${HARNESS[*]} " == *" $NAIVE_BIN "* ]] || HARNESS+=(--bin "$NAIVE_BIN") ;;
  esac
done
# --all-features: the examples require optional features, and it is the feature set CI's tests
# build, so a dev-profile run shares their build.
if ((${#EXAMPLES[@]})); then
  echo "==> cargo build --profile $PROFILE --all-features ${EXAMPLES[*]}"
  cargo build --profile "$PROFILE" --quiet --all-features "${EXAMPLES[@]}"
fi
echo "==> cargo build --profile $PROFILE -p tower-drain-harness ${HARNESS[*]}"
cargo build --profile "$PROFILE" --quiet -p tower-drain-harness "${HARNESS[@]}"
# Where cargo put them (honours CARGO_TARGET_DIR and build.target-dir).
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | grep -o '"target_directory":"[^"]*"' | cut -d'"' -f4)
[[ -n "$TARGET_DIR" ]] || TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
EXAMPLE_DIR=$TARGET_DIR/$PROFILE_DIR/examples
HARNESS_DIR=$TARGET_DIR/$PROFILE_DIR
LOADGEN=$HARNESS_DIR/loadgen

# --- process bookkeeping: everything started here is killed on exit ------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/rolling-restart.XXXXXX")
PIDS=()
STARTS=0
WATCHDOG=""
NGINX_PID=""
cleanup() {
  local pid
  exec 3>&- 2>/dev/null || true
  [[ -z "$NGINX_PID" ]] || nginx_stop
  kill -TERM "$WATCHDOG" 2>/dev/null || true # its trap ends its sleep too
  for pid in "${PIDS[@]}"; do [[ "$pid" == "$WATCHDOG" ]] || kill -KILL "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [[ -n "${KEEP_LOGS:-}" ]]; then echo "logs kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'echo "interrupted" >&2; exit 130' INT TERM

# Whole-run watchdog: every wait below is bounded, this bounds the sum.
BUDGET_S=$((120 + ${#MODES[@]} * (30 + RESTARTS * (30 + RESTART_GAP_MS / 1000))))
( trap 'kill "$nap" 2>/dev/null; exit 0' TERM
  sleep "$BUDGET_S" </dev/null >/dev/null 2>&1 & nap=$!
  wait "$nap" && { echo "rolling-restart: over budget (${BUDGET_S}s), aborting" >&2; kill -TERM $$; } ) &
WATCHDOG=$!
PIDS+=("$WATCHDOG")

# --tls: one self-signed certificate for the run, for every server; the load generator trusts it.
TLS_ENV=()
if [[ -n "$TLS" ]]; then
  "$HARNESS_DIR/certs" "$WORK" > /dev/null || { echo "certs failed" >&2; exit 1; }
  TLS_ENV=(TLS_CERT="$WORK/cert.pem" TLS_KEY="$WORK/key.pem")
  LOADGEN_ARGS+=(--ca "$WORK/cert.pem")
fi

# field_of NAME LINE: the value of NAME=.. in LINE, or nothing.
field_of() { { grep -oE "(^| )$1=[^ ]*" <<< "$2" || true; } | cut -d= -f2; }

now_ms() { local t=${EPOCHREALTIME/./}; echo $((t / 1000)); }

alive() { # a child is gone once bash reaped it or it is a zombie
  local state=""
  kill -0 "$1" 2>/dev/null || return 1
  read -r _ _ state _ < "/proc/$1/stat" 2>/dev/null || return 1
  [[ "$state" != Z ]]
}

# A free port below the kernel's ephemeral range (32768-60999 by default): under the fast
# loads the balancers open thousands of outgoing connections, and a port in that range can be
# taken as a connection's local port while a server is down for its restart.
free_port() {
  local p i low=10000 high=30000 eph_low eph_high
  if read -r eph_low eph_high < /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null; then
    if ((eph_low > low + 1000)); then high=$((eph_low - 1)); else low=$((eph_high + 1)); high=65535; fi
  fi
  for ((i = 0; i < 100; i++)); do
    p=$((low + RANDOM % (high - low + 1)))
    if ! (exec 9<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
  done
  echo "no free port found" >&2; return 1
}

# Status code of GET $2 on server address $1 (127.0.0.1:PORT, or unix:PATH), or nothing.
server_status() {
  if [[ "$1" == unix:* ]]; then
    curl -s -o /dev/null -m 2 -w '%{http_code}' --unix-socket "${1#unix:}" "http://localhost$2" 2>/dev/null || true
  else http_status "${1##*:}" "$2"; fi
}

# Status code of GET $2 on 127.0.0.1:$1, or nothing.
http_status() {
  ( exec 9<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf 'GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n' "$2" >&9
    IFS=' ' read -r -t 2 _ code _ <&9 && echo "$code" ) 2>/dev/null || true
}

# One command on HAProxy's admin CLI.
hap() {
  ( exec 9<>"/dev/tcp/127.0.0.1/$CLI_PORT" || exit 1
    printf '%s\n' "$1" >&9
    timeout 2 cat <&9 ) 2>/dev/null || true
}

# srv_op_state of server $1 in backend be: 0 stopped, 1 starting, 2 running (UP), 3 stopping.
hap_state() { hap "show servers state be" | awk -v s="$1" '$4 == s { print $6 }'; }

wait_until() { # wait_until SECONDS COMMAND...: polls every 20 ms
  local deadline=$(($(now_ms) + $1 * 1000)); shift
  until "$@"; do
    (($(now_ms) < deadline)) || return 1
    sleep 0.02
  done
}

start_server() { # start_server NAME MODE -> sets SERVER_PID[NAME]; listens on SERVER_ADDR[NAME]
  local name=$1 mode=$2 addr=${SERVER_ADDR[$1]} bin env=() log
  STARTS=$((STARTS + 1))
  log=$WORK/server-$mode-$name-$STARTS.log
  case "$mode" in
    drain|serve|framework) bin=${DRAIN_SERVER_BIN:-$EXAMPLE_DIR/$DRAIN_EXAMPLE}; env=(NOTICE_MS="$NOTICE_MS" DRAIN_TIMEOUT_MS="$DRAIN_TIMEOUT_MS")
      if [[ "$mode" != drain ]]; then env+=(SERVER="$mode")
      elif [[ -n "$DRAIN_SERVER" ]]; then env+=(SERVER="$DRAIN_SERVER"); fi ;;
    naive-graceful) bin=$HARNESS_DIR/$NAIVE_BIN; env=(NAIVE=graceful) ;;
    naive-abrupt) bin=$HARNESS_DIR/$NAIVE_BIN; env=(NAIVE=abrupt) ;;
  esac
  env "${env[@]}" "${TLS_ENV[@]}" ADDR="$addr" "$bin" > "$log" 2>&1 3>&- &
  SERVER_PID[$name]=$!
  PIDS+=("$!")
  wait_until 10 grep -qsF "listening on $addr" "$log" \
    || { echo "server $name did not start on $addr; log:" >&2; tail -n 20 "$log" >&2; return 1; }
}

# The gRPC servers speak HTTP/2 only, and with --tls every server speaks TLS, which bash cannot:
# for them "listening on" is the sign (HAProxy's check of /readyz, or nginx's access log, then
# confirms it in use).
ready_direct() { [[ -n "$TLS" || "$CLIENT" == grpc || "$(server_status "${SERVER_ADDR[$1]}" /readyz)" == 200 ]]; }
accepts() { (exec 9<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
up_in_haproxy() { [[ "$(hap_state "$1")" == 2 ]]; }

# --- nginx (--lb nginx) ----------------------------------------------------------------------
# nginx runs in the foreground from its own directory under $WORK (pid file, logs, temp paths).
# It has no stats socket and never calls /readyz: the access log (upstream tried, upstream
# status, client status) is both its counters and the sign that it uses a server again.

nginx_start() { # nginx_start MODE: config from the template, then start and wait until it answers
  local mode=$1 next
  NGINX_DIR=$WORK/nginx-$mode
  mkdir -p "$NGINX_DIR"
  if [[ "$LB_RETRIES" == on ]]; then next="error timeout http_503"; else next="error timeout"; fi
  NGINX_NEXT_UPSTREAM=$next
  # Lines tagged `# client:http` or `# client:grpc` are kept for that client only; h2 and grpc
  # clients get an HTTP/2 (cleartext, prior knowledge) listener.
  local keep=http drop=grpc listen=""
  [[ "$CLIENT" != grpc ]] || { keep=grpc; drop=http; }
  [[ "$CLIENT" == h1 ]] || listen=" http2"
  sed -e "s|@DIR@|$NGINX_DIR|g" -e "s/@FE_PORT@/$FE_PORT/" -e "s/@NEXT_UPSTREAM@/$next/" -e "s/@USER@/$(id -un)/" \
      -e "s|@UPSTREAM_A@|${SERVER_ADDR[a]}|" -e "s|@UPSTREAM_B@|${SERVER_ADDR[b]}|" -e "s/@LISTEN_OPTIONS@/$listen/" \
      -e "/# client:$drop\$/d" -e "s/ *# client:$keep\$//" \
      scripts/nginx/nginx.conf.in > "$NGINX_DIR/nginx.conf"
  local args=(-p "$NGINX_DIR/" -e "$NGINX_DIR/error.log" -c "$NGINX_DIR/nginx.conf")
  nginx -t -q "${args[@]}" 2> "$NGINX_DIR/check.log" \
    || { echo "invalid nginx config:" >&2; cat "$NGINX_DIR/check.log" >&2; return 1; }
  nginx "${args[@]}" -g 'daemon off;' > "$NGINX_DIR/nginx.out" 2>&1 3>&- &
  NGINX_PID=$!
  PIDS+=("$!")
  local answers='[[ "$(http_status "$FE_PORT" /)" == 200 ]]'
  [[ "$CLIENT" == h1 ]] || answers='accepts "$FE_PORT"' # HTTP/2 only: bash cannot ask
  wait_until 10 eval "$answers" \
    || { echo "nginx did not answer on port $FE_PORT" >&2; cat "$NGINX_DIR/error.log" >&2; return 1; }
}

nginx_stop() { # SIGTERM (fast shutdown) to the master; SIGKILL to it and its workers if it hangs
  local pid=$NGINX_PID workers
  NGINX_PID=""
  [[ -n "$pid" ]] || return 0
  workers=$(ps -o pid= --ppid "$pid" 2>/dev/null || true)
  kill -TERM "$pid" 2>/dev/null || true
  # shellcheck disable=SC2086 # one pid a word
  wait_until 5 eval '! alive '"$pid" || kill -KILL "$pid" $workers 2>/dev/null || true
}

access_log_size() { stat -c %s "$NGINX_DIR/access.log" 2>/dev/null || echo 0; }

# True once the access log, from byte $2 on, shows a 2xx that nginx got from server address $1
# (127.0.0.1:PORT or unix:PATH, as the last upstream tried): nginx has put the restarted server
# back in rotation.
# (grep -q stops at the first match; with pipefail, tail's SIGPIPE must not turn that into a
# failure when the log grows faster than the pipe drains, as it does under the fast loads.)
used_by_nginx() {
  { tail -c +"$(($2 + 1))" "$NGINX_DIR/access.log" 2>/dev/null || true; } \
    | grep -Eq "(^up=|, )$(sed 's/[][\.*^$+?(){}|]/\\&/g' <<< "$1") ust=([0-9]+, )*2[0-9][0-9] status="
}

nginx_counters() {
  echo "nginx counters (access log: requests, sent to a next upstream, upstream answers by status" \
       "(502 = connection error), client-facing non-2xx; error log: messages by kind):"
  awk '{
      n++; up = $0; sub(/^up=/, "", up); sub(/ ust=.*/, "", up)
      if (up ~ /, /) retried++
      ust = $0; sub(/.* ust=/, "", ust); sub(/ status=.*/, "", ust)
      k = split(ust, s, /, /); for (i = 1; i <= k; i++) by[s[i]]++
      st = $0; sub(/.* status=/, "", st); sub(/ .*/, "", st)
      if (st !~ /^2/) bad[st]++
    }
    END {
      printf "    requests=%d retried=%d upstream:", n, retried
      for (c in by) printf " %s=%d", c, by[c]
      printf " client-non-2xx:"; m = 0
      for (c in bad) { printf " %s=%d", c, bad[c]; m++ }
      if (!m) printf " none"
      print ""
    }' "$NGINX_DIR/access.log"
  local kind count
  for kind in "connect() failed" "upstream prematurely closed" "while reading response header" \
              "while reading upstream" "upstream server temporarily disabled" "no live upstreams"; do
    count=$(grep -c "$kind" "$NGINX_DIR/error.log" || true)
    printf '    %-40s %s\n' "\"$kind\"" "$count"
  done
}

# The notice period and server of a mode, for the headings.
notice_desc() {
  case "$1" in
    drain) echo "$NOTICE_MS${DRAIN_SERVER:+ SERVER=$DRAIN_SERVER}" ;;
    serve|framework) echo "$NOTICE_MS SERVER=$1" ;;
    *) echo "n/a" ;;
  esac
}

run_mode() {
  local mode=$1 i name pid code t0 t_exit t_up note signal_us
  declare -gA SERVER_PID=() SERVER_PORT=() SERVER_ADDR=()
  # Four distinct ports: all four are picked again on a collision (re-picking only some of
  # them looped forever when the others were the pair that collided).
  while
    FE_PORT=$(free_port); CLI_PORT=$(free_port)
    SERVER_PORT[a]=$(free_port); SERVER_PORT[b]=$(free_port)
    [[ $(printf '%s\n' "$FE_PORT" "$CLI_PORT" "${SERVER_PORT[a]}" "${SERVER_PORT[b]}" | sort -u | wc -l) != 4 ]]
  do :; done
  for name in a b; do
    if [[ "$BACKEND_SOCKET" == unix ]]; then SERVER_ADDR[$name]=unix:$WORK/$mode-$name.sock
    else SERVER_ADDR[$name]=127.0.0.1:${SERVER_PORT[$name]}; fi
  done

  if [[ "$LB" == nginx ]]; then
    echo
    echo "==> mode $mode: lb nginx (proxy_next_upstream $([[ $LB_RETRIES == on ]] && echo "error timeout http_503" || echo "error timeout")," \
         "keepalive 512, passive checks only, upstreams over $BACKEND_SOCKET), NOTICE_MS=$(notice_desc "$mode")," \
         "$RESTARTS restarts, gap ${RESTART_GAP_MS}ms, $LOAD_DESC"
    start_server a "$mode"
    start_server b "$mode"
    nginx_start "$mode"
  else
    local mode_line conn_line reuse_line retry_line redispatch_line server_line="# HTTP\/1.1 to the backends"
    case "$LB_MODE" in
      http-keep-alive) mode_line=http; conn_line="option http-keep-alive"; reuse_line="http-reuse safe" ;;
      # HTTP/2 (cleartext, prior knowledge) to the backends: no Connection: close there; a
      # draining backend's connections end with GOAWAY from the server's graceful shutdown.
      h2) mode_line=http; conn_line="option http-keep-alive"; reuse_line="http-reuse safe"; server_line="proto h2" ;;
      http-server-close) mode_line=http; conn_line="option http-server-close"; reuse_line="# http-reuse: no server-side reuse with http-server-close" ;;
      tcp) mode_line=tcp; conn_line="# tcp mode: one backend connection per client connection"; reuse_line="# tcp mode: no connection reuse" ;;
    esac
    # The gRPC servers speak HTTP/2 only: HTTP/2 to them in HTTP mode, and checks over HTTP/2.
    [[ "$CLIENT" != grpc || "$mode_line" != http ]] || server_line="proto h2"
    local check_keep=h1 check_drop=h2
    [[ "$CLIENT" != grpc ]] || { check_keep=h2; check_drop=h1; }
    # --tls: HAProxy passes TLS through (mode tcp) and checks over TLS, with the ALPN of the
    # check (tonic's TLS server offers h2 only).
    if [[ -n "$TLS" ]]; then
      server_line="check-ssl verify none check-alpn $([[ "$CLIENT" == grpc ]] && echo h2 || echo 'http\/1.1')"
    fi
    if [[ "$LB_RETRIES" == on ]]; then
      redispatch_line="option redispatch 1"
      if [[ "$LB_MODE" == tcp ]]; then retry_line="# retry-on needs mode http"
      else retry_line="retry-on conn-failure empty-response response-timeout"; fi
    else
      retry_line="# retry-on: default (conn-failure)"; redispatch_line="# no option redispatch"
    fi
    sed -e "s/@MODE@/$mode_line/" -e "s/@CONNECTION_OPTION@/$conn_line/" -e "s/@REUSE_OPTION@/$reuse_line/" \
        -e "s/@RETRY_OPTION@/$retry_line/" -e "s/@REDISPATCH_OPTION@/$redispatch_line/" \
        -e "s/@FE_PORT@/$FE_PORT/" -e "s/@CLI_PORT@/$CLI_PORT/" \
        -e "s/@PORT_A@/${SERVER_PORT[a]}/" -e "s/@PORT_B@/${SERVER_PORT[b]}/" -e "s/@SERVER_OPTION@/$server_line/" \
        -e "s/@INTER_MS@/$INTER_MS/g" -e "s/@FALL@/$FALL/" -e "s/@RISE@/$RISE/" \
        -e "s/@CHECK_TIMEOUT_MS@/$CHECK_TIMEOUT_MS/" \
        -e "/# check:$check_drop\$/d" -e "s/ *# check:$check_keep\$//" \
        scripts/haproxy/haproxy.cfg.in > "$WORK/haproxy-$mode.cfg"
    haproxy -c -q -f "$WORK/haproxy-$mode.cfg" || { echo "invalid HAProxy config" >&2; return 1; }

    echo
    echo "==> mode $mode: lb-mode $LB_MODE, lb-retries $LB_RETRIES, inter ${INTER_MS}ms fall $FALL rise $RISE," \
         "NOTICE_MS=$(notice_desc "$mode"), $RESTARTS restarts," \
         "gap ${RESTART_GAP_MS}ms, $LOAD_DESC"
    start_server a "$mode"
    start_server b "$mode"
    haproxy -db -f "$WORK/haproxy-$mode.cfg" > "$WORK/haproxy-$mode.log" 2>&1 &
    PIDS+=("$!")
    wait_until 10 up_in_haproxy a && wait_until 10 up_in_haproxy b \
      || { echo "HAProxy did not report both servers UP" >&2; cat "$WORK/haproxy-$mode.log" >&2; return 1; }
  fi

  mkfifo "$WORK/control-$mode"
  "$LOADGEN" --target "127.0.0.1:$FE_PORT" "${LOADGEN_ARGS[@]}" --label "$mode" \
    < "$WORK/control-$mode" > "$WORK/loadgen-$mode.out" 2> "$WORK/loadgen-$mode.err" &
  local loadgen=$!
  PIDS+=("$loadgen")
  exec 3> "$WORK/control-$mode"
  sleep "$WARMUP_S"

  for ((i = 1; i <= RESTARTS; i++)); do
    name=$([[ $((i % 2)) == 1 ]] && echo a || echo b)
    pid=${SERVER_PID[$name]}
    echo "phase restart $i ($name)" >&3
    sleep 0.05 # let the load generator open the phase before the signal
    t0=$(now_ms)
    signal_us=${EPOCHREALTIME/./}
    kill -TERM "$pid"
    echo "signal $signal_us" >&3 # the load generator times GOAWAYs from this instant
    if ! wait_until $(((NOTICE_MS + DRAIN_TIMEOUT_MS) / 1000 + 5)) eval '! alive '"$pid"; then
      echo "server $name did not exit after SIGTERM, killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
    code=0; wait "$pid" 2>/dev/null || code=$?
    t_exit=$(($(now_ms) - t0))
    sleep "$(printf '%d.%03d' $((RESTART_GAP_MS / 1000)) $((RESTART_GAP_MS % 1000)))"
    start_server "$name" "$mode"
    if [[ "$LB" == nginx ]]; then
      # Ready by its own /readyz, then in use: nginx got a 2xx from it (it skips a server for
      # fail_timeout after a failed attempt, so this can take up to 2 s after ready).
      local log_at
      log_at=$(access_log_size)
      wait_until 10 ready_direct "$name" \
        || { echo "server $name did not answer /readyz" >&2; return 1; }
      wait_until 10 used_by_nginx "${SERVER_ADDR[$name]}" "$log_at" \
        || { echo "server $name did not come back into use by nginx (access log from byte $log_at" \
                  "to $(access_log_size))" >&2; return 1; }
    else
      wait_until 10 ready_direct "$name" \
        || { echo "server $name did not answer /readyz" >&2; return 1; }
      wait_until 10 up_in_haproxy "$name" || { echo "server $name did not come back UP" >&2; return 1; }
    fi
    t_up=$(($(now_ms) - t0))
    note="exit $code after ${t_exit} ms, UP again after ${t_up} ms"
    if drained "$mode" && [[ "$code" != 0 ]]; then
      BAD_EXITS[$mode]=$((${BAD_EXITS[$mode]:-0} + 1)); note+=" (a drained server must exit 0)"
    fi
    echo "    restart $i: server $name $note"
    sleep "$SETTLE_S"
  done
  echo "phase after last restart" >&3
  sleep "$SETTLE_S"
  exec 3>&-
  if ! wait_until 30 eval '! alive '"$loadgen"; then
    echo "loadgen did not finish" >&2; return 1
  fi
  wait "$loadgen" || { echo "loadgen failed:" >&2; cat "$WORK/loadgen-$mode.err" >&2; return 1; }

  echo
  grep -v '^TOTAL\|^GOAWAY signals=\|^REFUSED ' "$WORK/loadgen-$mode.out"
  if [[ -s "$WORK/loadgen-$mode.err" ]]; then
    echo "first failures recorded (time since load start, request, outcome):"
    head -n 12 "$WORK/loadgen-$mode.err" | sed 's/^/    /'
  fi
  if [[ "$LB" == nginx ]]; then nginx_counters; else
    # HAProxy's own counters: connection errors, response errors, retries, redispatches, 5xx.
    echo "HAProxy counters (econ = connect errors, eresp = response errors, wretr = retries," \
         "wredis = redispatches, connect/reuse = new/reused backend connections):"
    hap "show stat" | awk -F, '
      NR == 1 { sub(/^# /, ""); for (i = 1; i <= NF; i++) col[$i] = i; next }
      $1 == "be" { printf "    %-8s econ=%s eresp=%s wretr=%s wredis=%s hrsp_5xx=%s connect=%s reuse=%s\n", $2,
                   $col["econ"], $col["eresp"], $col["wretr"], $col["wredis"], $col["hrsp_5xx"],
                   $col["connect"], $col["reuse"] }'
  fi
  local total detail goaway refused
  total=$(grep '^TOTAL' "$WORK/loadgen-$mode.out")
  # The refused streams (h2, grpc): refused=.. refused_reset=.. refused_goaway=..
  refused=$(grep '^REFUSED ' "$WORK/loadgen-$mode.out" | sed -E 's/^REFUSED streams=/refused=/; s/ (reset|goaway|goaway_after_pong)=/ refused_\1=/g' || true)
  SUMMARY+=("$mode $total refused=$(field_of refused "$refused")")
  GOAWAY_SUMMARY+=("$mode $(grep '^GOAWAY signals=' "$WORK/loadgen-$mode.out" || true)")
  # The GOAWAY summary (h2, grpc): goaway_told=.. goaway_median_ms=.. and so on.
  goaway=$(grep '^GOAWAY signals=' "$WORK/loadgen-$mode.out" | sed -E 's/^GOAWAY //; s/signals=[^ ]* //; s/(^| )([a-z_]+=)/\1goaway_\2/g' || true)
  if [[ -n "$RESULT_FILE" ]]; then
    # The failures of the total row, by kind: the loadgen table's detail column.
    detail=$(grep -E '^total ' "$WORK/loadgen-$mode.out" | sed -E 's/^total +([0-9]+ +){7} *//')
    echo "$mode ${total#TOTAL }${goaway:+ $goaway}${refused:+ $refused} bad_exits=${BAD_EXITS[$mode]:-0} detail=${detail:-none}" >> "$RESULT_FILE"
  fi

  [[ -z "$NGINX_PID" ]] || nginx_stop
  for name in a b; do kill -TERM "${SERVER_PID[$name]}" 2>/dev/null || true; done
  for name in a b; do
    wait_until 15 eval '! alive '"${SERVER_PID[$name]}" || kill -KILL "${SERVER_PID[$name]}" 2>/dev/null || true
  done
  local p; for p in "${PIDS[@]}"; do [[ "$p" == "$WATCHDOG" ]] || kill -TERM "$p" 2>/dev/null || true; done
  PIDS=("$WATCHDOG")
}

SUMMARY=()
GOAWAY_SUMMARY=()
declare -A BAD_EXITS=()
for m in "${MODES[@]}"; do run_mode "$m"; done

echo
if [[ "$LB" == nginx ]]; then
  echo "==> summary: lb nginx, proxy_next_upstream $NGINX_NEXT_UPSTREAM, $LOAD_DESC, $RESTARTS restarts"
else
  echo "==> summary: lb-mode $LB_MODE, lb-retries $LB_RETRIES, $LOAD_DESC, $RESTARTS restarts"
fi
printf '%-16s %8s %8s %8s %8s %8s %8s %8s %8s\n' mode sent ok non-2xx errors lost retried refused req/s
status=0
for line in "${SUMMARY[@]}"; do
  read -r m _ sent ok non2xx errors _ retried lost _ rate refused <<< "$line"
  sent=${sent#sent=}; ok=${ok#ok=}; non2xx=${non2xx#non2xx=}; errors=${errors#errors=}
  retried=${retried#retried=}; lost=${lost#lost=}; rate=${rate#rate=}; refused=${refused#refused=}
  printf '%-16s %8s %8s %8s %8s %8s %8s %8s %8s\n' "$m" "$sent" "$ok" "$non2xx" "$errors" "$lost" "$retried" "${refused:--}" "$rate"
  if drained "$m" && ((lost > 0 || sent == 0)); then status=1; fi
done
if [[ "$CLIENT" != h1 ]]; then
  echo "GOAWAY after SIGTERM, over all restarts (told: connections open at SIGTERM that got one;" \
       "final: the last GOAWAY; untold: closed without one; later: connections opened after SIGTERM that got one):"
  for line in "${GOAWAY_SUMMARY[@]}"; do
    read -r m rest <<< "$line"
    rest=${rest#GOAWAY }
    printf '%-16s %s\n' "$m" "${rest#signals=* }"
  done
fi
for m in "${!BAD_EXITS[@]}"; do echo "$m mode: ${BAD_EXITS[$m]} restarts exited non-zero"; status=1; done
if ((status)); then echo "FAIL: a tower-drain mode lost requests or exited non-zero"; else echo "ok"; fi
exit "$status"
