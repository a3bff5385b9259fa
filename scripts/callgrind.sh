#!/usr/bin/env bash
# Instructions per request, counted by callgrind: repeatable where wall-clock benchmarks on a
# shared machine are not. For each path of benches/instructions.rs, runs SMALL and LARGE
# requests and reports (Ir(LARGE) - Ir(SMALL)) / (LARGE - SMALL), which cancels start-up,
# then what each path adds over `bare` and, when both ran, drain's addition over
# concurrency_limit's (issue 9's target: at most 0.6). docs/performance.md reads the output.
#
#   bash scripts/callgrind.sh                    # every path
#   bash scripts/callgrind.sh bare drain         # some paths
#   BENCH=client_instructions bash scripts/callgrind.sh retry tonic tonic_retry
#                                                # the client layer (benches/client_instructions.rs)
#
# Instruction counts do not show what an instruction costs: a `lock`-prefixed atomic is one
# instruction but tens of cycles (more under contention). Read them with the criterion figures.
set -euo pipefail
cd "$(dirname "$0")/.."

SMALL=${SMALL:-1000}
LARGE=${LARGE:-11000}
BENCH=${BENCH:-instructions}
paths=("$@")
((${#paths[@]})) || paths=(bare drain drain_refused concurrency_limit in_flight)
FEATURES=()
[[ $BENCH != client_instructions ]] || FEATURES=(--features client)

command -v valgrind >/dev/null || (apt-get update && apt-get install -y valgrind)
# One codegen unit: with the default 16, how the compiler splits the driver into units moves
# every path's count (bare included) by tens of instructions from one build to the next, which
# would swamp the differences measured here. Its own target directory keeps the normal build.
export CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 CARGO_PROFILE_BENCH_CODEGEN_UNITS=1
TARGET_DIR=${CALLGRIND_TARGET_DIR:-target/callgrind}
# A bench target, built with the bench profile (release settings); cargo names the executable.
BIN=$(CARGO_TARGET_DIR=$TARGET_DIR cargo bench --no-run --bench "$BENCH" "${FEATURES[@]}" --message-format=json |
  grep -o '"executable":"[^"]*"' | cut -d'"' -f4 | tail -n 1)
[[ -x "$BIN" ]] || { echo "callgrind.sh: no benches/$BENCH executable" >&2; exit 1; }

instructions() {
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$BIN" "$1" "$2" 2>&1 >/dev/null |
    sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}

printf '%-18s %14s %14s\n' path 'Ir/request' 'vs bare'
bare=
declare -A added
for path in bare "${paths[@]}"; do
  [[ $path == bare && -n $bare ]] && continue
  small=$(instructions "$path" "$SMALL")
  large=$(instructions "$path" "$LARGE")
  per=$(((large - small) / (LARGE - SMALL)))
  [[ -n $bare ]] || bare=$per
  added[$path]=$((per - bare))
  printf '%-18s %14d %+14d\n' "$path" "$per" "$((per - bare))"
done
# The layer's own cost next to tower's semaphore-based limit, measured in this same run.
if [[ -n ${added[drain]:-} && -n ${added[concurrency_limit]:-} && ${added[concurrency_limit]} -gt 0 ]]; then
  awk -v d="${added[drain]}" -v c="${added[concurrency_limit]}" \
    'BEGIN { printf "drain / concurrency_limit (added Ir): %.2f\n", d / c }'
fi
