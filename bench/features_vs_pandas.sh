#!/usr/bin/env bash
# fraudlens vs pandas on the same entity features, in one run.
#
# Simulates a dataset with fraudlens, computes the Fraud Detection Handbook
# features (customer count/mean over 1/7/30 days, terminal risk over 1/7/30
# days ending 7 days ago) with fraudlens (bench/handbook_spec.toml) and with
# idiomatic pandas (bench/peers/pandas_features.py), checks that both give the
# same values, and reports wall time and peak memory of each (median of RUNS).
# fraudlens' full default feature set (57 features) is timed too.
#
# usage: bench/features_vs_pandas.sh [CUSTOMERS] [DAYS]     (default 5000 100: ~1M transactions)
set -euo pipefail
cd "$(dirname "$0")/.."

customers="${1:-5000}"
days="${2:-100}"
runs="${RUNS:-3}"
cache="${FRAUDLENS_CACHE_DIR:-$HOME/.cache/fraudlens}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"
venv="$cache/bench-venv"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cargo build --release --locked --quiet -p fraudlens
fraudlens="$CARGO_TARGET_DIR/release/fraudlens"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet "pandas==2.2.3" "numpy<2.3"
fi

"$fraudlens" simulate --customers "$customers" --terminals $((customers * 2)) --days "$days" --out "$work/tx.csv"
rows=$(($(wc -l < "$work/tx.csv") - 1))

# median wall seconds and median peak RSS (MiB) of RUNS runs of a command
measure() {
    local label="$1"; shift
    local times=() rss=()
    for _ in $(seq "$runs"); do
        /usr/bin/time -f "%e %M" -o "$work/time" "$@" > /dev/null 2>&1
        read -r t m < "$work/time"
        times+=("$t"); rss+=("$m")
    done
    local t m
    t=$(printf '%s\n' "${times[@]}" | sort -n | sed -n "$(( (runs + 1) / 2 ))p")
    m=$(printf '%s\n' "${rss[@]}" | sort -n | sed -n "$(( (runs + 1) / 2 ))p")
    printf '%-44s %8.2f s %10.0f rows/s %8.0f MiB\n' "$label" "$t" "$(echo "$rows / $t" | bc -l)" "$(echo "$m / 1024" | bc -l)"
}

echo "dataset: $rows transactions ($customers customers, $((customers * 2)) terminals, $days days); median of $runs runs"
measure "pandas 2.2.3 (13 features)" "$venv/bin/python" bench/peers/pandas_features.py "$work/tx.csv" "$work/pandas.csv"
measure "fraudlens features, same 13 features" "$fraudlens" features --data "$work/tx.csv" --out "$work/ours.csv" --schema bench/handbook_spec.toml
measure "fraudlens features, default 57 features" "$fraudlens" features --data "$work/tx.csv" --out "$work/all.csv"
"$fraudlens" features --data "$work/tx.csv" --out "$work/ours.csv" --schema bench/handbook_spec.toml 2> /dev/null
"$venv/bin/python" bench/peers/pandas_features.py "$work/tx.csv" "$work/pandas.csv"
"$venv/bin/python" bench/peers/compare.py "$work/pandas.csv" "$work/ours.csv"
