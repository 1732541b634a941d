#!/usr/bin/env bash
# Simulator speed, and whether memory grows with input size.
#
# 1. `fraudlens simulate` of ~1,000,000 transactions (5,000 customers, 100 days):
#    median wall time of RUNS runs and peak RSS.
# 2. `fraudlens features` (default 57 features) on 100 and 300 days of the same
#    5,000 customers (~1M and ~3M rows): reading is streamed and engine state is
#    bounded by the entities and the 37-day horizon, so peak RSS should not triple.
#
# usage: bench/simulate_and_memory.sh
set -euo pipefail
cd "$(dirname "$0")/.."

runs="${RUNS:-3}"
cache="${FRAUDLENS_CACHE_DIR:-$HOME/.cache/fraudlens}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cargo build --release --locked --quiet -p fraudlens
fraudlens="$CARGO_TARGET_DIR/release/fraudlens"

median() { sort -n | sed -n "$(( (runs + 1) / 2 ))p"; }

for _ in $(seq "$runs"); do
    /usr/bin/time -f "%e %M" -o "$work/time" "$fraudlens" simulate --customers 5000 --terminals 10000 --days 100 --out "$work/tx.csv" 2> /dev/null
    cat "$work/time"
done > "$work/sim"
rows=$(($(wc -l < "$work/tx.csv") - 1))
t=$(cut -d' ' -f1 < "$work/sim" | median)
m=$(cut -d' ' -f2 < "$work/sim" | median)
printf 'simulate %d rows: %.2f s (%.0f rows/s), peak RSS %.0f MiB\n' "$rows" "$t" "$(echo "$rows / $t" | bc -l)" "$(echo "$m / 1024" | bc -l)"

for days in 100 300; do
    "$fraudlens" simulate --customers 5000 --terminals 10000 --days "$days" --out "$work/d.csv" 2> /dev/null
    rows=$(($(wc -l < "$work/d.csv") - 1))
    /usr/bin/time -f "%e %M" -o "$work/time" "$fraudlens" features --data "$work/d.csv" --out /dev/null 2> /dev/null
    read -r t m < "$work/time"
    printf 'features %d days, %d rows: %.2f s (%.0f rows/s), peak RSS %.0f MiB\n' "$days" "$rows" "$t" "$(echo "$rows / $t" | bc -l)" "$(echo "$m / 1024" | bc -l)"
done
