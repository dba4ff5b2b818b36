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
# difference divided by N removes what a run pays once. It also counts the atomic
# read-modify-write instructions executed (x86-64 only: `lock`-prefixed ones and `xchg` with
# memory, found with objdump), which cost far more time than other instructions. Not part of CI.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v valgrind >/dev/null || { echo "valgrind is needed" >&2; exit 1; }
command -v objdump >/dev/null || { echo "objdump (binutils) is needed" >&2; exit 1; }

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

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The addresses of the atomic read-modify-write instructions of an object file (x86-64: a `lock`
# prefix, or an `xchg` with a memory operand, which is locked without one), one per line.
atomic_addresses() {
    local list="$work/atomics.$(printf '%s' "$1" | md5sum | cut -c1-16)"
    if [ ! -e "$list" ]; then
        objdump -d --no-show-raw-insn "$1" |
            awk '/^ *[0-9a-f]+:\t(lock |xchg +.*\()/ { sub(/:.*/, ""); sub(/^ */, ""); print "0x" $0 }' \
            >"$list"
    fi
    printf '%s\n' "$list"
}

# "instructions atomics" counted inside the measured calls of one run: instructions as
# callgrind collected them; atomics as the executions of the instructions `atomic_addresses`
# lists, read from the per-instruction counts (a `calls=` line's next line is the callee's
# inclusive cost, not an instruction of the caller, and is skipped).
count() {
    local out="$work/callgrind.out"
    valgrind --tool=callgrind --dump-instr=yes --compress-pos=no --compress-strings=no \
        --callgrind-out-file="$out" --collect-atstart=no \
        --toggle-collect='*measured_*' "$bin" "$@" >/dev/null 2>&1
    local objects lists=()
    objects=$(sed -n 's/^ob=//p' "$out" | sort -u)
    while IFS= read -r object; do
        [ -n "$object" ] && [ -e "$object" ] && lists+=("$object=$(atomic_addresses "$object")")
    done <<<"$objects"
    awk -v lists="${lists[*]}" '
        BEGIN {
            n = split(lists, pairs, " ")
            for (i = 1; i <= n; i++) {
                split(pairs[i], kv, "=")
                while ((getline addr < kv[2]) > 0) atomic[kv[1], addr] = 1
            }
        }
        /^summary:/ { total = $2 }
        /^ob=/ { object = substr($0, 4) }
        /^calls=/ { skip = 1; next }
        /^0x/ {
            if (skip) { skip = 0; next }
            if ((object, $1) in atomic) atomics += $3
        }
        END { printf "%d %d\n", total, atomics }
    ' "$out"
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

printf '%-20s %12s %12s %8s %10s %10s\n' operation ours peer ours/peer 'ours atom' 'peer atom'
for op in "$@"; do
    n=$(runs_for "$op")
    [ -n "$n" ] || { echo "unknown operation $op" >&2; exit 1; }
    # "instructions atomics" per operation.
    per_op() {
        local one two
        one=$(count "$1" "$op" "$n")
        two=$(count "$1" "$op" $((2 * n)))
        [ -n "$one" ] && [ -n "$two" ] || { echo "callgrind gave no count for $1 $op" >&2; exit 1; }
        awk -v a="$one" -v b="$two" -v n="$n" 'BEGIN {
            split(a, x, " "); split(b, y, " ")
            printf "%.1f %.1f", (y[1] - x[1]) / n, (y[2] - x[2]) / n }'
    }
    read -r ours ours_atomics <<<"$(per_op ours)"
    read -r peer peer_atomics <<<"$(per_op peer)"
    ratio=$(awk -v a="$ours" -v b="$peer" 'BEGIN { printf "%.2f", a / b }')
    printf '%-20s %12s %12s %8s %10s %10s\n' "$op" "$ours" "$peer" "$ratio" "$ours_atomics" \
        "$peer_atomics"
    case $op in
        wide:* | chain:*)
            k=${op#*:}
            awk -v a="$ours" -v b="$peer" -v c="$ours_atomics" -v d="$peer_atomics" -v k="$k" \
                'BEGIN { printf "%-20s %12.1f %12.1f %8s %10.2f %10.2f\n", "  per child", a / k, b / k, "", c / k, d / k }' ;;
    esac
done
