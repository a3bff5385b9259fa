#!/usr/bin/env bash
# Runs the socket- and timing-sensitive test suites many times, in the conditions that differ
# from one Linux machine to the next, and prints a pass count per suite and condition:
#
#   large   TCP buffer maxima raised to 32 MiB (net.ipv4.tcp_rmem/tcp_wmem), as cloud images
#           often ship them
#   small   the maxima many distributions ship (6 MiB to receive, 4 MiB to send)
#   default the machine's own settings (the sysctl settings are restored after each condition,
#           whatever happens)
#   busy    another process keeps one core busy (`yes >/dev/null`)
#
#   bash scripts/repeat-tests.sh                         # 20 runs, every suite, every condition
#   RUNS=5 bash scripts/repeat-tests.sh last_byte serve  # some suites
#   CONDITIONS="default busy" bash scripts/repeat-tests.sh
#
# The `large` and `small` conditions need root (sysctl -w); without it, it is skipped with a message.
# Exits 1 if any run failed; the output of failed runs is kept in $LOG_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-20}
CONDITIONS=${CONDITIONS:-large small default busy}
LOG_DIR=${LOG_DIR:-$(mktemp -d -t repeat-tests.XXXXXX)}
mkdir -p "$LOG_DIR"
suites=("$@")
((${#suites[@]})) || suites=(last_byte shutdown_process serve handoff)

echo "building the test binaries (cargo test --all-features --no-run)"
cargo test --all-features --no-run --quiet "${suites[@]/#/--test=}"

saved_rmem=$(sysctl -n net.ipv4.tcp_rmem)
saved_wmem=$(sysctl -n net.ipv4.tcp_wmem)
busy_pid=
restore() {
  [[ -n $busy_pid ]] && kill "$busy_pid" 2>/dev/null || true
  sysctl -qw net.ipv4.tcp_rmem="$saved_rmem" net.ipv4.tcp_wmem="$saved_wmem" 2>/dev/null || true
}
trap restore EXIT
# Sets the TCP buffers' maxima (receive, send), keeping the minima and defaults.
maxima() {
  sysctl -qw net.ipv4.tcp_rmem="4096 131072 $1" net.ipv4.tcp_wmem="4096 16384 $2" 2>/dev/null
}

failed=0
for condition in $CONDITIONS; do
  case $condition in
    large) maxima 33554432 33554432 || { echo "large: skipped (sysctl -w needs root)"; continue; } ;;
    small) maxima 6291456 4194304 || { echo "small: skipped (sysctl -w needs root)"; continue; } ;;
    default) restore; busy_pid= ;;
    busy) restore; yes >/dev/null & busy_pid=$! ;;
    *) echo "unknown condition $condition (large, small, default, busy)" >&2; exit 2 ;;
  esac
  for suite in "${suites[@]}"; do
    passed=0
    for ((run = 1; run <= RUNS; run++)); do
      log="$LOG_DIR/$condition-$suite-$run.log"
      if cargo test --all-features --quiet --test "$suite" >"$log" 2>&1; then
        passed=$((passed + 1))
        rm -f "$log"
      else
        failed=1
      fi
    done
    printf '%-8s %-18s %2d/%d passed\n' "$condition" "$suite" "$passed" "$RUNS"
  done
  restore
  busy_pid=
done
[[ $failed == 0 ]] || echo "failed runs' output: $LOG_DIR"
exit $failed
