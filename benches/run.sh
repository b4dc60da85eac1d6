#!/usr/bin/env bash
# Runs the baseline, aiolite and every peer on every workload of
# benches/WORKLOADS.md, then writes BENCHMARKS.md and benchmarks.svg.
#
#   bash benches/run.sh                     # half the row counts, median of 3
#   AIOLITE_BENCH_SCALE=1 bash benches/run.sh
#   AIOLITE_BENCH_REPLAY=run.log bash benches/run.sh   # rewrite the report
#                                  # (say, after editing HOW.md) from the
#                                  # RESULT lines of an earlier run's output
#
# The peers are separate crates (benches/peers/*, each its own workspace and
# lockfile): each links its own libsqlite3-sys, which cannot share a build
# with aiolite's or with each other's.
set -euo pipefail
cd "$(dirname "$0")/.."

export AIOLITE_BENCH_SCALE="${AIOLITE_BENCH_SCALE:-0.5}"
export AIOLITE_BENCH_RUNS="${AIOLITE_BENCH_RUNS:-3}"

# The version a lockfile pins for a package.
locked() {
    awk -v n="$2" '$0 == "name = \"" n "\"" { getline; gsub(/version = |"/, ""); print; exit }' "$1"
}

peers=()
versions=("aiolite $(locked Cargo.lock aiolite) on rusqlite $(locked Cargo.lock rusqlite), tokio $(locked Cargo.lock tokio)")
for peer in tokio-rusqlite async-sqlite sqlx; do
    dir="benches/peers/$peer"
    cargo build --release --locked --manifest-path "$dir/Cargo.toml"
    peers+=("$peer=$PWD/$dir/target/release/peer-$peer")
    case "$peer" in
        sqlx) linked="sqlx-sqlite $(locked "$dir/Cargo.lock" sqlx-sqlite)" ;;
        *) linked="rusqlite $(locked "$dir/Cargo.lock" rusqlite)" ;;
    esac
    versions+=("$peer $(locked "$dir/Cargo.lock" "$peer") on $linked, tokio $(locked "$dir/Cargo.lock" tokio)")
done

export AIOLITE_BENCH_PEERS="$(IFS=,; echo "${peers[*]}")"
export AIOLITE_BENCH_VERSIONS="$(printf '%s; ' "${versions[@]}" | sed 's/; $//')"
export AIOLITE_BENCH_REPORT="$PWD/BENCHMARKS.md"
cargo bench --locked --bench workloads
