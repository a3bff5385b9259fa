#!/usr/bin/env bash
# The zero-downtime matrix: scripts/rolling-restart.sh --mode compare for every load balancer,
# client and load. Each cell runs three servers, one after the other, same settings, same
# load, same restarts: `serve` (tower-drain's own server with the layer, the examples'
# default), `framework` (the layer on axum::serve or tonic's Server) and the plain control.
# One table of lost/sent and refused streams for the three, then one of GOAWAY timing for the
# HTTP/2 clients.
#
#   bash scripts/matrix.sh                          # 24 cells, 2 restarts each (~17 min)
#   bash scripts/matrix.sh --restarts 6             # more restarts per cell
#   bash scripts/matrix.sh --lb haproxy-tcp --client h2,grpc --load fast --restarts 1
#   bash scripts/matrix.sh --servers framework      # one tower-drain server (and the control)
#   bash scripts/matrix.sh --cells haproxy-tcp:h2:fast,nginx:grpc:mixed   # just these cells
#   bash scripts/matrix.sh --cells haproxy-tcp:h2:fast --restarts 6 --notice-ms 1000  # issue 14's
#   bash scripts/matrix.sh --cells nginx-unix:h1:fast,nginx-unix:h2:fast  # nginx to Unix sockets
#   bash scripts/matrix.sh --lb haproxy-tls --client h1,h2,grpc,grpc-retry  # every TLS cell
#
# Cells: load balancers haproxy-http (HAProxy `mode http`, keep-alive; HTTP/1.1 to the axum
# servers, `proto h2` to the gRPC servers), haproxy-tcp (HAProxy `mode tcp`), haproxy-tls
# (HAProxy `mode tcp` passing TLS through: every server serves TLS, HAProxy checks readiness
# over TLS, the clients speak HTTPS/1.1, HTTP/2 over TLS and gRPC over TLS; rolling-restart.sh
# --tls), nginx (its
# default `proxy_next_upstream`/`grpc_next_upstream error timeout`) and nginx-unix (the same
# nginx reaching the servers over Unix domain sockets, `server unix:PATH;`: h1 and h2 clients
# only, not in the default --lb list); clients h1, h2 and grpc
# (see harness/src/bin/loadgen.rs), and grpc-retry, the grpc client with its channels behind
# tower_drain::client::TransparentRetryLayer (loadgen --client-retry; not in the default
# --client list); loads mixed and fast. The servers: examples/axum.rs (h1, h2) or
# examples/tonic.rs (grpc) with SERVER=serve and with SERVER=framework, and the plain control,
# harness/src/bin/naive.rs or naive_tonic.rs (the framework's own graceful shutdown alone).
#
# "lost" is what the load generator counted as failed: a non-2xx status, a connection error,
# a truncated body or stream, a timeout, a gRPC status other than OK. Requests a client resent
# because the protocol proved them unprocessed are not lost (shown in the logs as retried).
#
# Refused streams (h2 and grpc cells): streams the other side refused, counted on the wire by
# the load generator whether the client then retried them or not: reset with REFUSED_STREAM,
# or opened above a GOAWAY's last-stream-id. The h2 client retries a refused stream once, on a
# new connection (a stream refused twice is lost); tonic's client does not retry. Behind
# HAProxy `mode tcp` they are the servers' refusals; behind HAProxy `mode http` and nginx, the
# balancer's.
#
# GOAWAY timing (h2 and grpc cells): for the client connections open at SIGTERM, how many got
# a GOAWAY before the next restart ("told") and how long after SIGTERM: median (min..max), in
# ms, over all restarts of the cell (each cell's log has them per restart). Behind HAProxy
# `mode tcp` (haproxy-tcp, haproxy-tls) these are the servers' GOAWAYs, passed through to the pinned clients: `serve`
# should tell them within a round trip of SIGTERM, `framework` only at the drain (the notice
# period later, 600 ms). Behind HAProxy `mode http` and nginx the client's connection ends at
# the balancer, which does not pass a server's GOAWAY on.
#
# --servers serve,framework picks the tower-drain servers to run (default both; the plain
# control always runs); --drain-server NAME is --servers NAME (`axum` and `tonic` mean
# framework).
#
# Exit status: 0 when the goal holds in every cell: serve and framework each lost 0 wherever
# the plain server lost 0 and never more than the plain server, every one of their restarts
# exited 0, in the h2 and grpc cells serve refused no more streams than framework (below), and,
# in the HAProxy
# `mode tcp` h2 and grpc cells (haproxy-tcp, haproxy-tls), serve told connections to go away with a median delay below
# --goaway-limit-ms (default 100; 0 turns the check off); 1 when a cell misses it; 2 when a
# cell could not be run.
#
# Which refusals are compared (--refused-goal): every server here ends HTTP/2 connections with
# hyper's graceful GOAWAY (last-stream-id 2^31-1 and a PING, the final last-stream-id once the
# PING is acknowledged), and the h2 crate's client (tonic's too) writes that acknowledgement
# before the HEADERS of streams it has already opened: those streams reach the server after its
# final GOAWAY and are refused, whatever the server. The load generator tells them apart (the
# refused streams written after the client's acknowledgement). Their number varies from run to
# run for every server (41 to 199 in six-restart runs of the same cell), so:
#   server (default): serve refuses no more of the other streams (those the server could have
#                     taken) than framework, no tolerance: both are 0 in every run so far;
#   total:            serve's total at most framework's + --refused-tolerance % (default 25) +
#                     one connection's streams (16 fast, 4 mixed): noisy, see docs;
#   off:              no comparison.
# The table shows the total and, in brackets, how many of them the client wrote after its
# acknowledgement. Each cell's full output stays in the log
# directory printed at the end.
set -euo pipefail

usage() {
  cat <<'EOF2'
usage: matrix.sh [--restarts N] [--lb haproxy-http,haproxy-tcp,haproxy-tls,nginx,nginx-unix]
                 [--client h1,h2,grpc,grpc-retry] [--load mixed,fast] [--profile release|dev]
                 [--restart-gap-ms MS] [--notice-ms MS] [--cells LB:CLIENT:LOAD,..]
                 [--servers serve,framework] [--goaway-limit-ms MS]
                 [--refused-goal server|total|off] [--refused-tolerance PCT]
                 [--log-dir DIR]
EOF2
}

RESTARTS=2
LBS=haproxy-http,haproxy-tcp,haproxy-tls,nginx
CLIENTS=h1,h2,grpc
LOADS=mixed,fast
CELLS=""           # LB:CLIENT:LOAD,..; default: every --lb x --client x --load
PROFILE=release
EXTRA=()
LOG_DIR=""
GOAWAY_LIMIT_MS=100
REFUSED_TOLERANCE=25
REFUSED_GOAL=server
DRAINED=serve,framework
while (($#)); do
  case "$1" in
    --restarts) RESTARTS=$2; shift 2 ;;
    --lb) LBS=$2; shift 2 ;;
    --client) CLIENTS=$2; shift 2 ;;
    --load) LOADS=$2; shift 2 ;;
    --cells) CELLS=$2; shift 2 ;;
    --profile) PROFILE=$2; shift 2 ;;
    --restart-gap-ms) EXTRA+=(--restart-gap-ms "$2"); shift 2 ;;
    --goaway-limit-ms) GOAWAY_LIMIT_MS=$2; shift 2 ;;
    --notice-ms) EXTRA+=(--notice-ms "$2"); shift 2 ;;
    --refused-tolerance) REFUSED_TOLERANCE=$2; shift 2 ;;
    --refused-goal) REFUSED_GOAL=$2; shift 2 ;;
    --log-dir) LOG_DIR=$2; shift 2 ;;
    --servers) DRAINED=$2; shift 2 ;;
    --drain-server) DRAINED=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done
IFS=, read -r -a LB_LIST <<< "$LBS"
IFS=, read -r -a CLIENT_LIST <<< "$CLIENTS"
IFS=, read -r -a LOAD_LIST <<< "$LOADS"
CELL_LIST=()
if [[ -n "$CELLS" ]]; then
  IFS=, read -r -a CELL_LIST <<< "$CELLS"
else
  for lb in "${LB_LIST[@]}"; do
    for client in "${CLIENT_LIST[@]}"; do
      for load in "${LOAD_LIST[@]}"; do CELL_LIST+=("$lb:$client:$load"); done
    done
  done
fi
for c in "${CELL_LIST[@]}"; do
  IFS=: read -r lb client load <<< "$c"
  case "$lb" in haproxy-http|haproxy-tcp|haproxy-tls|nginx|nginx-unix) ;; *) echo "unknown load balancer $lb in $c" >&2; exit 2 ;; esac
  case "$client" in h1|h2|grpc|grpc-retry) ;; *) echo "unknown client $client in $c" >&2; exit 2 ;; esac
  if [[ "$lb" == nginx-unix && "$client" == grpc* ]]; then
    echo "$c: the gRPC servers listen on TCP only (nginx-unix takes h1 and h2)" >&2; exit 2
  fi
  case "$load" in mixed|fast) ;; *) echo "unknown load $load in $c" >&2; exit 2 ;; esac
done
[[ "$GOAWAY_LIMIT_MS" =~ ^[0-9]+$ ]] || { echo "--goaway-limit-ms takes whole milliseconds" >&2; exit 2; }
[[ "$REFUSED_TOLERANCE" =~ ^[0-9]+$ ]] || { echo "--refused-tolerance takes a whole percentage" >&2; exit 2; }
case "$REFUSED_GOAL" in server|total|off) ;; *) echo "--refused-goal takes server, total or off" >&2; exit 2 ;; esac
IFS=, read -r -a DRAINED_LIST <<< "$DRAINED"
SERVERS=()
for s in "${DRAINED_LIST[@]}"; do
  case "$s" in
    serve) ;;
    framework|axum|tonic) s=framework ;;
    *) echo "--servers takes serve and framework (axum, tonic: framework), got $s" >&2; exit 2 ;;
  esac
  [[ " ${SERVERS[*]} " == *" $s "* ]] || SERVERS+=("$s")
done
SERVERS+=(naive-graceful)
MODES=$(IFS=,; echo "${SERVERS[*]}")

ROOT=$(cd "$(dirname "$0")/.." && pwd)
LOG_DIR=${LOG_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/matrix.XXXXXX")}
mkdir -p "$LOG_DIR"
RESULTS=$LOG_DIR/results.txt
: > "$RESULTS"

CHILD=""
trap '[[ -z "$CHILD" ]] || kill -TERM "$CHILD" 2>/dev/null; echo "interrupted" >&2; exit 130' INT TERM

lb_args() {
  case "$1" in
    haproxy-http) echo "--lb haproxy --lb-mode http-keep-alive" ;;
    haproxy-tcp) echo "--lb haproxy --lb-mode tcp" ;;
    haproxy-tls) echo "--lb haproxy --lb-mode tcp --tls" ;;
    nginx) echo "--lb nginx --lb-retries off" ;;
    nginx-unix) echo "--lb nginx --lb-retries off --backend-socket unix" ;;
  esac
}

# field NAME LINE: the value of NAME=.. in a result line (detail= is the rest of the line),
# empty when the line has none.
field() {
  if [[ "$1" == detail ]]; then sed -E 's/.* detail=//' <<< "$2"
  else { grep -oE "(^| )$1=[^ ]*" <<< "$2" || true; } | cut -d= -f2; fi
}

# failures LINE: the failures of a result line by kind, retries left out; "none" if none.
failures() {
  local d
  d=$(field detail "$1" | sed -E 's/(, )?retried [^,]*//g; s/^, //')
  echo "${d:-none}"
}

# goaway LINE: "told, median (min..max)" of a result line, or "none told".
goaway() {
  local told
  told=$(field goaway_told "$1")
  if [[ -z "$told" ]]; then echo "n/a"
  elif ((told == 0)); then echo "0 told"
  else echo "$told, $(field goaway_median_ms "$1") ($(field goaway_min_ms "$1")..$(field goaway_max_ms "$1"))"
  fi
}

ran() { [[ " ${SERVERS[*]} " == *" $1 "* ]]; }
# client_args CLIENT: rolling-restart.sh's client options for a cell's client.
client_args() {
  case "$1" in
    grpc-retry) echo "--client grpc --client-retry" ;;
    *) echo "--client $1" ;;
  esac
}
ROWS=()
GOAWAY_ROWS=()
status=0
miss() { ((status == 2)) || status=1; }
started=$SECONDS
for c in "${CELL_LIST[@]}"; do
  IFS=: read -r lb client load <<< "$c"
  cell="$lb $client $load"
  log=$LOG_DIR/$lb-$client-$load.log
  echo "==> [$((SECONDS - started))s] $cell: $RESTARTS restarts (log: $log)"
  before=$(wc -l < "$RESULTS")
  # shellcheck disable=SC2046 # lb_args and client_args are lists of words
  bash "$ROOT/scripts/rolling-restart.sh" --mode "$MODES" --restarts "$RESTARTS" --profile "$PROFILE" \
    $(lb_args "$lb") $(client_args "$client") --load "$load" --result-file "$RESULTS" "${EXTRA[@]}" \
    > "$log" 2>&1 &
  CHILD=$!
  code=0; wait "$CHILD" || code=$?
  CHILD=""
  lines=$(tail -n +"$((before + 1))" "$RESULTS")
  declare -A line=()
  missing=""
  for s in "${SERVERS[@]}"; do
    line[$s]=$(grep "^$s " <<< "$lines" || true)
    [[ -n "${line[$s]}" ]] || missing+=" $s"
  done
  if [[ -n "$missing" ]] || ((code > 1)); then
    echo "    cell failed to run (exit $code${missing:+, no result for$missing}); last lines of its log:" >&2
    tail -n 15 "$log" | sed 's/^/    /' >&2
    ROWS+=("| $lb | $client | $load | not run | not run | not run | | | exit $code, see $log | |")
    status=2
    continue
  fi
  p_lost=$(field lost "${line[naive-graceful]}")
  verdict=""
  for s in serve framework; do
    ran "$s" || continue
    lost=$(field lost "${line[$s]}")
    if ((lost > p_lost || (p_lost == 0 && lost > 0))); then verdict+=", **$s missed**"; miss; fi
    # A drained server must also exit 0.
    bad=$(field bad_exits "${line[$s]}")
    if ((${bad:-0} > 0)); then verdict+=", **$s: $bad restarts exited non-zero**"; miss; fi
  done
  # Refused streams (h2, grpc): serve no more than framework, within the tolerance.
  if [[ "$client" != h1 && "$REFUSED_GOAL" != off ]] && ran serve && ran framework; then
    s_refused=$(field refused "${line[serve]}") f_refused=$(field refused "${line[framework]}")
    if [[ "$REFUSED_GOAL" == server ]]; then
      s_pong=$(field refused_goaway_after_pong "${line[serve]}")
      f_pong=$(field refused_goaway_after_pong "${line[framework]}")
      s_refused=$((${s_refused:-0} - ${s_pong:-0})) allowed=$((${f_refused:-0} - ${f_pong:-0}))
    else
      streams=$([[ "$load" == fast ]] && echo 16 || echo 4) # the load generator's defaults
      allowed=$((${f_refused:-0} * (100 + REFUSED_TOLERANCE) / 100 + streams))
    fi
    if ((${s_refused:-0} > allowed)); then
      verdict+=", **serve refused more ($s_refused > $allowed)**"; miss
    fi
  fi
  cells=() rates=() fails=() refused=()
  for s in serve framework naive-graceful; do
    if ! ran "$s"; then cells+=("not run"); rates+=("-"); refused+=("-"); continue; fi
    cells+=("$(field lost "${line[$s]}") / $(field sent "${line[$s]}")")
    rates+=("$(field rate "${line[$s]}")")
    r=$(field refused "${line[$s]}")
    [[ -z "$r" ]] || r+=" ($(field refused_goaway_after_pong "${line[$s]}"))"
    refused+=("${r:--}")
    f=$(failures "${line[$s]}")
    [[ "$f" == none ]] || fails+=("${s/naive-graceful/plain}: $f")
  done
  if [[ "$client" != h1 ]]; then
    check=""
    if [[ "$lb" == haproxy-tcp || "$lb" == haproxy-tls ]] && ((GOAWAY_LIMIT_MS > 0)) && ran serve; then
      told=$(field goaway_told "${line[serve]}")
      median=$(field goaway_median_ms "${line[serve]}")
      if [[ -z "$told" || "$told" == 0 ]] || ! awk -v m="$median" -v l="$GOAWAY_LIMIT_MS" 'BEGIN { exit !(m < l) }'; then
        check="**serve's median not below $GOAWAY_LIMIT_MS ms**"; verdict+=", **serve told late**"; miss
      else
        check="ok (< $GOAWAY_LIMIT_MS ms)"
      fi
    fi
    GOAWAY_ROWS+=("| $lb | $client | $load | $(goaway "${line[serve]:-}") | $(goaway "${line[framework]:-}") | $(goaway "${line[naive-graceful]}") | $check |")
  fi
  verdict=${verdict#, }
  fail_text=$(IFS=';'; echo "${fails[*]:-}" | sed 's/;/; /g')
  refused_text="${refused[0]} / ${refused[1]} / ${refused[2]}"
  [[ "$client" != h1 ]] || refused_text="n/a"
  echo "    serve ${cells[0]}, framework ${cells[1]}, plain ${cells[2]}, refused $refused_text: ${verdict:-ok}"
  ROWS+=("| $lb | $client | $load | ${cells[0]} | ${cells[1]} | ${cells[2]} | $refused_text | ${rates[0]} / ${rates[1]} / ${rates[2]} | ${verdict:-ok} | $fail_text |")
  unset line
done

echo
echo "==> zero-downtime matrix: $RESTARTS restarts per cell${EXTRA[*]:+ (${EXTRA[*]})}, profile $PROFILE, $((SECONDS - started)) s," \
     "commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo '+changes')"
echo
echo "| lb | client | load | serve lost / sent | framework lost / sent | plain lost / sent | refused (after the client's PING ack) serve / framework / plain | req/s serve / framework / plain | goal | failures |"
echo "|---|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
if ((${#GOAWAY_ROWS[@]})); then
  echo
  echo "GOAWAY after SIGTERM, client connections open at SIGTERM: told, median (min..max) ms"
  echo
  echo "| lb | client | load | serve | framework | plain | check |"
  echo "|---|---|---|---|---|---|---|"
  printf '%s\n' "${GOAWAY_ROWS[@]}"
fi
case "$REFUSED_GOAL" in
  off) refused_goal="refused streams not compared" ;;
  server) refused_goal="serve refused no more streams than framework, leaving out those the client wrote after its PING ack" ;;
  total) refused_goal="serve refused at most framework's count + $REFUSED_TOLERANCE % + one connection's streams" ;;
esac
echo
echo "logs: $LOG_DIR"
case "$status" in
  0) echo "goal met: serve and framework lost 0 wherever the plain server lost 0, and never more;" \
          "$refused_goal" ;;
  1) echo "goal missed in the cells marked above" ;;
  *) echo "some cells could not be run" ;;
esac
exit "$status"
