#!/usr/bin/env bash
# Instructions per operation, ours and the peer's (tokio-util's CancellationToken), counted by
# callgrind: they do not drift with the machine's load as wall-clock medians do.
#
#   scripts/instructions.sh                 # every operation of BENCHMARKS.md's table
#   scripts/instructions.sh child:0 wide:1000   # only these (see benches/instructions.rs)
#
# Needs valgrind. Builds `benches/instructions.rs` with the bench (release) profile, or uses the
# binary named by $INSTRUCTIONS_BIN. Each operation runs N and 2N times under
#   valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*measured_*'
# so that only the measured calls count (not building the tree, not dropping it), and the
# difference divided by N removes what a run pays once. Not part of CI.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v valgrind >/dev/null || { echo "valgrind is needed" >&2; exit 1; }

bin=${INSTRUCTIONS_BIN:-}
if [ -z "$bin" ]; then
    bin=$(cargo bench --bench instructions --no-run --message-format=json 2>/dev/null |
        sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)
fi
[ -x "$bin" ] || { echo "no instructions binary (cargo bench --bench instructions --no-run)" >&2; exit 1; }

if [ $# -eq 0 ]; then
    set -- check child:0 create-drop:0 child:1000 create-drop:1000 child:100000 \
        create-drop:100000 wide:1000 wide:10000 wide:100000 chain:1000
fi

# Instructions counted inside the measured calls of one run.
count() {
    valgrind --tool=callgrind --callgrind-out-file=/dev/null --collect-atstart=no \
        --toggle-collect='*measured_*' "$bin" "$@" 2>&1 |
        sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}

# How many operations a run does: enough to dwarf the noise, few enough for valgrind.
runs_for() {
    case $1 in
        check) echo 100000 ;;
        child:* | create-drop:*) echo 10000 ;;
        wide:* | chain:*)
            local k=${1#*:}
            echo $(( k >= 100000 ? 2 : (k >= 10000 ? 4 : 10) )) ;;
    esac
}

printf '%-20s %14s %14s %8s\n' operation ours peer ours/peer
for op in "$@"; do
    n=$(runs_for "$op")
    [ -n "$n" ] || { echo "unknown operation $op" >&2; exit 1; }
    per_op() {
        local one two
        one=$(count "$1" "$op" "$n")
        two=$(count "$1" "$op" $((2 * n)))
        [ -n "$one" ] && [ -n "$two" ] || { echo "callgrind gave no count for $1 $op" >&2; exit 1; }
        awk -v a="$one" -v b="$two" -v n="$n" 'BEGIN { printf "%.1f", (b - a) / n }'
    }
    ours=$(per_op ours)
    peer=$(per_op peer)
    ratio=$(awk -v a="$ours" -v b="$peer" 'BEGIN { printf "%.2f", a / b }')
    printf '%-20s %14s %14s %8s\n' "$op" "$ours" "$peer" "$ratio"
    case $op in
        wide:* | chain:*)
            k=${op#*:}
            awk -v a="$ours" -v b="$peer" -v k="$k" -v op="$op" \
                'BEGIN { printf "%-20s %14.1f %14.1f\n", "  per child", a / k, b / k }' ;;
    esac
done
