#!/usr/bin/env bash
# The zero-downtime matrix: scripts/rolling-restart.sh --mode compare for every load balancer,
# client and load, and one table of lost/sent for tower-drain and for the plain control.
#
#   bash scripts/matrix.sh                          # 18 cells, 2 restarts each (~10 min)
#   bash scripts/matrix.sh --restarts 6             # the documented table
#   bash scripts/matrix.sh --lb haproxy-tcp --client h2,grpc --load fast --restarts 1
#
# Cells: load balancers haproxy-http (HAProxy `mode http`, keep-alive; HTTP/1.1 to the axum
# servers, `proto h2` to the gRPC servers), haproxy-tcp (HAProxy `mode tcp`) and nginx (its
# default `proxy_next_upstream`/`grpc_next_upstream error timeout`); clients h1, h2 and grpc
# (see examples/loadgen.rs); loads mixed and fast. In each cell the drain server (tower-drain:
# examples/axum.rs, or examples/tonic.rs for grpc) and the plain control (examples/naive.rs,
# examples/naive_tonic.rs: the server's own graceful shutdown alone) run one after the other
# with the same settings, load and restarts.
#
# "lost" is what the load generator counted as failed: a non-2xx status, a connection error,
# a truncated body or stream, a timeout, a gRPC status other than OK. Requests a client resent
# because the protocol proved them unprocessed are not lost (shown in the logs as retried).
#
# Exit status: 0 when tower-drain lost nothing in every cell where the plain server lost
# nothing and never more than the plain server (the goal of issue 7), and every drained server
# exited 0; 1 when not; 2 when a cell could not be run. Each cell's full output stays in the
# log directory printed at the end.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: matrix.sh [--restarts N] [--lb haproxy-http,haproxy-tcp,nginx] [--client h1,h2,grpc]
                 [--load mixed,fast] [--profile release|dev] [--restart-gap-ms MS]
                 [--drain-server serve|axum] [--log-dir DIR]
EOF
}

RESTARTS=2
LBS=haproxy-http,haproxy-tcp,nginx
CLIENTS=h1,h2,grpc
LOADS=mixed,fast
PROFILE=release
EXTRA=()
LOG_DIR=""
DRAIN_SERVER="(the example's default)"
while (($#)); do
  case "$1" in
    --restarts) RESTARTS=$2; shift 2 ;;
    --lb) LBS=$2; shift 2 ;;
    --client) CLIENTS=$2; shift 2 ;;
    --load) LOADS=$2; shift 2 ;;
    --profile) PROFILE=$2; shift 2 ;;
    --restart-gap-ms) EXTRA+=(--restart-gap-ms "$2"); shift 2 ;;
    --drain-server) EXTRA+=(--drain-server "$2"); DRAIN_SERVER=$2; shift 2 ;;
    --log-dir) LOG_DIR=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done
IFS=, read -r -a LB_LIST <<< "$LBS"
IFS=, read -r -a CLIENT_LIST <<< "$CLIENTS"
IFS=, read -r -a LOAD_LIST <<< "$LOADS"
for lb in "${LB_LIST[@]}"; do
  case "$lb" in haproxy-http|haproxy-tcp|nginx) ;; *) echo "unknown --lb $lb" >&2; exit 2 ;; esac
done

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
    nginx) echo "--lb nginx --lb-retries off" ;;
  esac
}

# field NAME LINE: the value of NAME=.. in a result line (detail= is the rest of the line).
field() {
  if [[ "$1" == detail ]]; then sed -E 's/.* detail=//' <<< "$2"; else grep -oE "(^| )$1=[^ ]*" <<< "$2" | cut -d= -f2; fi
}

ROWS=()
status=0
started=$SECONDS
for lb in "${LB_LIST[@]}"; do
  for client in "${CLIENT_LIST[@]}"; do
    for load in "${LOAD_LIST[@]}"; do
      cell="$lb $client $load"
      log=$LOG_DIR/$lb-$client-$load.log
      echo "==> [$((SECONDS - started))s] $cell: $RESTARTS restarts (log: $log)"
      before=$(wc -l < "$RESULTS")
      # shellcheck disable=SC2046 # lb_args is a list of words
      bash "$ROOT/scripts/rolling-restart.sh" --mode compare --restarts "$RESTARTS" --profile "$PROFILE" \
        $(lb_args "$lb") --client "$client" --load "$load" --result-file "$RESULTS" "${EXTRA[@]}" \
        > "$log" 2>&1 &
      CHILD=$!
      code=0; wait "$CHILD" || code=$?
      CHILD=""
      lines=$(tail -n +"$((before + 1))" "$RESULTS")
      drain=$(grep '^drain ' <<< "$lines" || true)
      plain=$(grep '^naive-graceful ' <<< "$lines" || true)
      if [[ -z "$drain" || -z "$plain" ]] || ((code > 1)); then
        echo "    cell failed to run (exit $code); last lines of its log:" >&2
        tail -n 15 "$log" | sed 's/^/    /' >&2
        ROWS+=("| $lb | $client | $load | not run | not run | exit $code, see $log |")
        status=2
        continue
      fi
      d_lost=$(field lost "$drain"); d_sent=$(field sent "$drain"); d_rate=$(field rate "$drain")
      p_lost=$(field lost "$plain"); p_sent=$(field sent "$plain"); p_rate=$(field rate "$plain")
      verdict=ok
      if ((d_lost > p_lost || (p_lost == 0 && d_lost > 0))); then
        verdict="**goal missed**"
        ((status == 2)) || status=1
      fi
      # A drained server must also exit 0 (rolling-restart.sh counts the restarts that did not).
      if bad=$(grep -oE '^drain mode: [0-9]+ restarts exited non-zero' "$log"); then
        verdict+=", **${bad#drain mode: }**"
        ((status == 2)) || status=1
      fi
      d_detail=$(field detail "$drain" | sed -E 's/(, )?retried [^,]*//g; s/^, //')
      p_detail=$(field detail "$plain" | sed -E 's/(, )?retried [^,]*//g; s/^, //')
      [[ -n "$d_detail" ]] || d_detail=none
      [[ -n "$p_detail" ]] || p_detail=none
      echo "    drain $d_lost/$d_sent ($d_detail), plain $p_lost/$p_sent ($p_detail): $verdict"
      ROWS+=("| $lb | $client | $load | $d_lost / $d_sent | $p_lost / $p_sent | $d_rate / $p_rate | $verdict | drain: $d_detail; plain: $p_detail |")
    done
  done
done

echo
echo "==> zero-downtime matrix: $RESTARTS restarts per cell, profile $PROFILE, drain server $DRAIN_SERVER, $((SECONDS - started)) s," \
     "commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo '+changes')"
echo
echo "| lb | client | load | drain lost / sent | plain lost / sent | req/s drain / plain | verdict | failures |"
echo "|---|---|---|---|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
echo
echo "logs: $LOG_DIR"
case "$status" in
  0) echo "goal met: tower-drain lost 0 wherever the plain server lost 0, and never more" ;;
  1) echo "goal missed in the cells marked above" ;;
  *) echo "some cells could not be run" ;;
esac
exit "$status"
