#!/usr/bin/env bash
# Restarts on one host with no load balancer: one listening socket kept across generations.
#
#   bash scripts/single-host-restart.sh                  # 6 restarts, serve and the control
#   bash scripts/single-host-restart.sh --short          # what CI runs: 2 restarts, a few seconds
#   bash scripts/single-host-restart.sh --servers serve --restarts 20
#
# The harness's `supervisor` (harness/src/bin/supervisor.rs) binds one TCP socket (backlog
# 1024) and hands it to each generation of examples/axum.rs on fd 3 (LISTEN_FDS=1, LISTEN_PID,
# O_NONBLOCK set: as systemd's socket activation does with NonBlocking=yes, which
# docs/single-host.md says why to set). Each restart: start generation k+1 on the socket, wait
# for its `listening on`, SIGTERM generation k, record its exit code and its time from SIGTERM
# to exit; the next restart comes once generation k has exited and k+1 has served alone for
# --interval-ms. Throughout, the harness's `loadgen` (--client h1 --load mixed) sends
# keep-alive HTTP/1.1 load straight to the socket: fast requests, slow ones (/slow?ms=200..500)
# and streams (/stream?chunks=3..8&ms=50..100), and checks every answer to the last byte.
#
# Servers (--servers, comma-separated, each run in turn under the same load and settings):
#   serve             SERVER=serve: tower-drain's serve, given the inherited socket
#   axum              SERVER=axum: the control, axum::serve(..).with_graceful_shutdown(..) with
#                     the same layer and the same inherited socket
#   serve-stop-first  SERVER=serve, but each restart stops generation k before it starts k+1
#                     (the supervisor's --stop-first), as `systemctl restart` of one service
#                     does: nothing refused, but what arrives waits in the queue meanwhile
#                     (the max ms column)
# Default: all three; with --short: serve,axum.
#
# It prints per server the load generator's table (one row per restart), each generation's
# exit, and then one summary row per server: requests sent, answered, refused connections
# (connect errors), lost requests (non-2xx or no complete answer), resent (hyper handed them
# back unsent: the connection was already closing; not lost), the slowest request, non-zero
# exits, the slowest stop. Goal, for serve: 0 refused, 0 lost, every exit 0. The control's figures are printed
# beside; they do not decide the exit status.
#
# Environment: SERVER_BIN runs that binary instead of examples/axum.rs (it must have the
# example's interface, LISTEN_FDS included); KEEP_LOGS=1 keeps the temporary directory.
# docs/single-host.md has the systemd units this stands for, the timings and the figures.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: single-host-restart.sh [--short] [--restarts N] [--servers serve,axum] [--notice-ms MS]
                              [--drain-timeout-ms MS] [--interval-ms MS] [--connections N]
                              [--profile release|dev]
EOF
}

RESTARTS=6
SERVERS=""          # default: serve,axum,serve-stop-first; with --short: serve,axum
NOTICE_MS=500
DRAIN_TIMEOUT_MS=10000
INTERVAL_MS=2000    # the newest generation serves alone this long before the next restart
CONNECTIONS=""      # loadgen's default for h1 mixed: 12
PROFILE=release

while (($#)); do
  case "$1" in
    --short) RESTARTS=2; INTERVAL_MS=1000; SERVERS=${SERVERS:-serve,axum} ;;
    --restarts) RESTARTS=$2; shift ;;
    --servers) SERVERS=$2; shift ;;
    --notice-ms) NOTICE_MS=$2; shift ;;
    --drain-timeout-ms) DRAIN_TIMEOUT_MS=$2; shift ;;
    --interval-ms) INTERVAL_MS=$2; shift ;;
    --connections) CONNECTIONS=$2; shift ;;
    --profile) PROFILE=$2; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
for n in "$RESTARTS" "$NOTICE_MS" "$DRAIN_TIMEOUT_MS" "$INTERVAL_MS" "${CONNECTIONS:-1}"; do
  [[ "$n" =~ ^[0-9]+$ ]] || { echo "numeric options take whole numbers, got '$n'" >&2; exit 2; }
done
((DRAIN_TIMEOUT_MS > 0)) || { echo "--drain-timeout-ms must be at least 1" >&2; exit 2; }
IFS=, read -r -a SERVER_LIST <<< "${SERVERS:-serve,axum,serve-stop-first}"
for s in "${SERVER_LIST[@]}"; do
  case "$s" in serve|axum|serve-stop-first|axum-stop-first) ;; *)
    echo "--servers takes serve, axum, serve-stop-first and axum-stop-first, got '$s'" >&2; exit 2 ;;
  esac
done
case "$PROFILE" in release) PROFILE_DIR=release ;; dev) PROFILE_DIR=debug ;; *)
  echo "--profile must be release or dev" >&2; exit 2 ;;
esac

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

# --all-features: the example requires optional features, and it is the feature set CI's tests
# build, so a dev-profile run shares their build.
if [[ -z "${SERVER_BIN:-}" ]]; then
  echo "==> cargo build --profile $PROFILE --all-features --example axum"
  cargo build --profile "$PROFILE" --quiet --all-features --example axum
fi
echo "==> cargo build --profile $PROFILE -p tower-drain-harness --bin loadgen --bin supervisor"
cargo build --profile "$PROFILE" --quiet -p tower-drain-harness --bin loadgen --bin supervisor
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | grep -o '"target_directory":"[^"]*"' | cut -d'"' -f4)
[[ -n "$TARGET_DIR" ]] || TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
SERVER_BIN=${SERVER_BIN:-$TARGET_DIR/$PROFILE_DIR/examples/axum}
LOADGEN=$TARGET_DIR/$PROFILE_DIR/loadgen
SUPERVISOR=$TARGET_DIR/$PROFILE_DIR/supervisor

# --- process bookkeeping: everything started here is stopped on exit ------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/single-host-restart.XXXXXX")
SUP_PID=""
LOAD_PID=""
cleanup() {
  # SIGTERM makes the supervisor stop its generations; the load generator has nothing to save.
  [[ -z "$LOAD_PID" ]] || kill -KILL "$LOAD_PID" 2>/dev/null || true
  [[ -z "$SUP_PID" ]] || kill -TERM "$SUP_PID" 2>/dev/null || true
  wait 2>/dev/null || true
  if [[ -n "${KEEP_LOGS:-}" ]]; then echo "logs kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'echo "interrupted" >&2; exit 130' INT TERM

# Every event must come within this: a start (the supervisor's ready timeout is 30 s) or a
# stop (the notice, the drain deadline, the tasks' 2 s and the example's margin of 5 s).
EVENT_TIMEOUT_S=$(((NOTICE_MS + DRAIN_TIMEOUT_MS) / 1000 + 40))

next_event() { # next_event SERVER: the supervisor's next line into EVENT, logged
  IFS= read -r -t "$EVENT_TIMEOUT_S" -u "$SUP_OUT" EVENT \
    || { echo "supervisor ($1): no event within ${EVENT_TIMEOUT_S}s (or it ended); its log:" >&2
         tail -n 30 "$WORK/supervisor-$1.err" >&2; return 1; }
  echo "$EVENT" >> "$WORK/supervisor-$1.out"
}

field() { # field NAME LINE: the value of NAME=value in LINE, or `-`
  local word words
  read -r -a words <<< "$2"
  for word in "${words[@]}"; do [[ "$word" != "$1="* ]] || { echo "${word#"$1"=}"; return 0; }; done
  echo -
}

run_server() {
  local server=$1 target load_ctl sup_in supervisor_status=0 order=() how="start k+1, then SIGTERM k"
  [[ "$server" != *-stop-first ]] || { order=(--stop-first); how="SIGTERM k, exit, then start k+1"; }
  echo
  echo "==> SERVER=${server%-stop-first}: $RESTARTS restarts on one kept socket ($how)," \
       "NOTICE_MS=$NOTICE_MS, DRAIN_TIMEOUT_MS=$DRAIN_TIMEOUT_MS, interval ${INTERVAL_MS}ms," \
       "loadgen h1 mixed${CONNECTIONS:+ ($CONNECTIONS connections)}"
  mkfifo "$WORK/supervisor-$server.in" "$WORK/loadgen-$server.in"
  exec {SUP_OUT}< <(exec env NOTICE_MS="$NOTICE_MS" DRAIN_TIMEOUT_MS="$DRAIN_TIMEOUT_MS" SERVER="${server%-stop-first}" \
    "$SUPERVISOR" --restarts "$RESTARTS" --interval-ms "$INTERVAL_MS" --nonblocking "${order[@]}" -- "$SERVER_BIN" \
    < "$WORK/supervisor-$server.in" 2> "$WORK/supervisor-$server.err")
  SUP_PID=$!
  exec {sup_in}> "$WORK/supervisor-$server.in"

  next_event "$server"
  [[ "$EVENT" == "socket "* ]] || { echo "supervisor: expected \`socket ADDR\`, got: $EVENT" >&2; return 1; }
  target=${EVENT#socket }
  # The socket listens from now on: connections queue in its backlog until generation 0 accepts.
  local args=(--target "$target" --client h1 --load mixed --label "$server")
  [[ -z "$CONNECTIONS" ]] || args+=(--connections "$CONNECTIONS")
  "$LOADGEN" "${args[@]}" < "$WORK/loadgen-$server.in" \
    > "$WORK/loadgen-$server.out" 2> "$WORK/loadgen-$server.err" &
  LOAD_PID=$!
  exec {load_ctl}> "$WORK/loadgen-$server.in"

  local gen
  while next_event "$server"; do
    case "$EVENT" in
      "ready gen=0 "*) echo "    gen 0 ready: $(field addr "$EVENT"), pid $(field pid "$EVENT")" ;;
      "ready gen="*)
        echo "    gen $(field gen "$EVENT") ready after $(field ms "$EVENT") ms" ;;
      "stopping gen="*)
        gen=$(field gen "$EVENT")
        echo "phase restart $((gen + 1))" >&"$load_ctl"
        echo "    restart $((gen + 1)): SIGTERM to gen $gen" ;;
      "exit gen="*)
        echo "    gen $(field gen "$EVENT") exited: ${EVENT#exit gen=* pid=* }" ;;
      "restarts done") break ;;
      SUPERVISOR*) echo "supervisor ended early: $EVENT" >&2; tail -n 30 "$WORK/supervisor-$server.err" >&2; break ;;
    esac
  done

  # The last generation serves alone for a moment, then the load stops before it does: with no
  # successor, what it no longer accepts would wait in the socket's queue until the clients
  # time out.
  echo "phase after the last restart" >&"$load_ctl"
  sleep 0.5
  echo stop >&"$load_ctl"
  exec {load_ctl}>&-
  wait "$LOAD_PID" || { echo "loadgen failed:" >&2; cat "$WORK/loadgen-$server.err" >&2; return 1; }
  LOAD_PID=""

  echo stop >&"$sup_in"
  exec {sup_in}>&-
  while IFS= read -r -t "$EVENT_TIMEOUT_S" -u "$SUP_OUT" EVENT; do
    echo "$EVENT" >> "$WORK/supervisor-$server.out"
    case "$EVENT" in "exit gen="*) echo "    gen $(field gen "$EVENT") exited (the last, no load): ${EVENT#exit gen=* pid=* }" ;; esac
  done
  exec {SUP_OUT}<&-
  wait "$SUP_PID" || supervisor_status=$?
  SUP_PID=""

  echo
  grep -v '^TOTAL' "$WORK/loadgen-$server.out"
  if [[ -s "$WORK/loadgen-$server.err" ]]; then
    echo "first failures recorded (time since load start, request, outcome):"
    head -n 12 "$WORK/loadgen-$server.err" | sed 's/^/    /'
  fi

  local total summary detail refused max_ms
  total=$(grep '^TOTAL' "$WORK/loadgen-$server.out")
  max_ms=$(awk '$1 == "total" { print $8 }' "$WORK/loadgen-$server.out")
  summary=$(grep '^SUPERVISOR' "$WORK/supervisor-$server.out" || echo "SUPERVISOR failure=no_summary")
  # Refused connections: the load generator's connect errors (the total row's detail column).
  detail=$(grep -E '^total ' "$WORK/loadgen-$server.out" | sed -E 's/^total +([0-9]+ +){7} *//')
  refused=$(grep -oE '(^|, )connect=[0-9]+' <<< "$detail" | grep -oE '[0-9]+$' || true)
  RESULT[$server]="$(field restarts "$summary") $(field sent "$total") $(field ok "$total") ${refused:-0}"
  RESULT[$server]+=" $(field lost "$total") $(field unsent "$total") ${max_ms:--} $(field nonzero_exits "$summary")"
  RESULT[$server]+=" $(field max_stop_ms "$summary") $(field failure "$summary") $supervisor_status"
  DETAIL[$server]=${detail:-none}
}

declare -A RESULT=() DETAIL=()
for s in "${SERVER_LIST[@]}"; do run_server "$s"; done

echo
echo "==> summary: $RESTARTS restarts on one kept socket, no balancer, NOTICE_MS=$NOTICE_MS," \
     "loadgen h1 mixed (keep-alive; fast, slow and streaming requests)"
printf '%-16s %8s %8s %8s %8s %6s %7s %7s %9s %12s  %s\n' \
  server restarts sent ok refused lost resent "max ms" "exits!=0" "max stop ms" failures
status=0
for s in "${SERVER_LIST[@]}"; do
  read -r restarts sent ok refused lost unsent max_ms nonzero max_stop failure sup_status <<< "${RESULT[$s]}"
  printf '%-16s %8s %8s %8s %8s %6s %7s %7s %9s %12s  %s\n' \
    "$s" "$restarts" "$sent" "$ok" "$refused" "$lost" "$unsent" "$max_ms" "$nonzero" "$max_stop" "${DETAIL[$s]}"
  [[ "$failure" == none ]] || echo "                 supervisor: ${failure//_/ }"
  if [[ "$s" == serve ]]; then
    if [[ "$restarts" == "$RESTARTS" && "$sent" =~ ^[1-9] && "$refused" == 0 && "$lost" == 0 \
          && "$nonzero" == 0 && "$failure" == none && "$sup_status" == 0 ]]; then
      GOAL="goal met (serve): 0 refused, 0 lost, every exit 0 over $RESTARTS restarts"
    else
      GOAL="FAIL (serve): goal is $RESTARTS restarts, 0 refused, 0 lost, every exit 0"; status=1
    fi
  fi
done
[[ -z "${GOAL:-}" ]] || echo "$GOAL"
exit "$status"
