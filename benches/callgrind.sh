#!/usr/bin/env bash
# Instructions per operation for W1 and W2 (benches/WORKLOADS.md), aiolite
# against the synchronous rusqlite baseline, counted by valgrind's callgrind:
# deterministic where wall time on a noisy machine is not, so a hot-path
# change can be proven here.
#
#   bash benches/callgrind.sh            # 2,000 and 4,000 operations
#   OPS=5000 bash benches/callgrind.sh   # OPS and 2*OPS
#
# Each contestant runs each workload twice, at OPS and at 2*OPS operations on
# the same 100,000-row table; the difference divided by OPS is the cost of an
# operation, with opening, the runtime's start and the table's setup taken
# out. Instructions spent spinning (`aiolite_conn::spin::poll_for`, bounded
# by wall time, so they grow with valgrind's slowness, not with work) are
# subtracted and shown apart.
set -euo pipefail
cd "$(dirname "$0")/.."
OPS="${OPS:-2000}"

bin=$(cargo bench --locked --bench workloads --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "workloads":
        print(m["executable"])')
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$bin" fill "$dir/point.db"

# The instructions of one run, and those spent spinning, as "total spin".
count() {
    local out="$dir/cg.out"
    AIOLITE_BENCH_OPS="$2" valgrind --tool=callgrind --callgrind-out-file="$out" \
        "$bin" child "$1" "$3" "$dir/point.db" >/dev/null 2>&1
    local total spin
    total=$(callgrind_annotate "$out" | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')
    spin=$(callgrind_annotate --inclusive=yes --threshold=100 "$out" |
        awk '/spin::poll_for/ { gsub(",", "", $1); s += $1 } END { print s + 0 }')
    echo "$total $spin"
}

printf '%-9s %-5s %14s %14s\n' contestant work "instr/op" "spin instr/op"
for workload in W1 W2; do
    for contestant in rusqlite aiolite; do
        read -r t1 s1 < <(count "$contestant" "$OPS" "$workload")
        read -r t2 s2 < <(count "$contestant" $((2 * OPS)) "$workload")
        python3 -c "
t1, s1, t2, s2, n = $t1, $s1, $t2, $s2, $OPS
print('%-9s %-5s %14.0f %14.0f' % ('$contestant', '$workload', ((t2 - s2) - (t1 - s1)) / n, (s2 - s1) / n))"
    done
done
