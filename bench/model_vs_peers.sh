#!/usr/bin/env bash
# fraudlens' GBDT trainer and inference vs LightGBM and XGBoost, in one run.
#
# 1. Simulates transactions and builds their default features with fraudlens
#    (cached: done once per CUSTOMERS/DAYS), then bench/peers/prepare_matrix.py
#    writes ONE feature matrix and ONE time-ordered split (train / valid for
#    early stopping / test = last 14 days) that every library reads unchanged.
# 2. Training, same data, 2 threads, same parameters (bench/README.md lists
#    them): fraudlens leaf-wise vs LightGBM, fraudlens depth-wise vs XGBoost
#    hist; 300 trees without early stopping (speed), then early stopping after
#    50 rounds without improvement of the validation log loss (AP). Timed:
#    binning + boosting, median of RUNS runs; peak RSS of training.
# 3. Batch scoring, one thread: an XGBoost model (200 trees, depth 6) imported
#    into fraudlens vs XGBoost inplace_predict, same rows; predictions compared.
# 4. Single-row latency percentiles of predict_raw and TreeSHAP (fraudlens
#    model, depth-wise, depth 6, 200 trees, no early stopping).
#
# usage: bench/model_vs_peers.sh [CUSTOMERS] [DAYS]     (default 5000 105: ~1.05M transactions)
# env:   RUNS (3), THREADS (2), IDLE_WAIT (120), BENCH_WORK (keep outputs there),
#        SECTIONS ("training scoring latency": which parts run), FRAUDLENS_CACHE_DIR, CARGO_TARGET_DIR
set -euo pipefail
cd "$(dirname "$0")/.."

customers="${1:-5000}"
days="${2:-105}"
runs="${RUNS:-3}"
sections="${SECTIONS:-training scoring latency}"
section() { [[ " $sections " == *" $1 "* ]]; }
threads="${THREADS:-2}"
cache="${FRAUDLENS_CACHE_DIR:-$HOME/.cache/fraudlens}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"
venv="$cache/bench-venv"
data="$cache/bench-model/c${customers}-d${days}-s42"
if [ -n "${BENCH_WORK:-}" ]; then
    work="$BENCH_WORK" # kept: models, predictions and results of this run
    mkdir -p "$work"
    rm -f "$work/results.jsonl"
else
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
fi

# Pinned Python packages (xgboost-cpu: the `xgboost` wheel also pulls a 200 MB
# NCCL wheel). pandas 2.2.3 is features_vs_pandas.sh's; numpy < 2.3 for it.
pins=(pandas==2.2.3 numpy==2.2.6 scipy==1.15.3 scikit-learn==1.7.2 lightgbm==4.6.0 xgboost-cpu==3.2.0)
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
installed="$("$venv/bin/pip" freeze 2> /dev/null)"
for pin in "${pins[@]}"; do
    if ! grep -qix "$pin" <<< "$installed"; then
        "$venv/bin/pip" install --quiet "${pins[@]}"
        break
    fi
done
python="$venv/bin/python"
peers=bench/peers/gbdt_peers.py

cargo build --release --locked --quiet -p fraudlens
cargo build --release --locked --quiet -p fraudlens-model --examples
fraudlens="$CARGO_TARGET_DIR/release/fraudlens"
examples="$CARGO_TARGET_DIR/release/examples"

if [ ! -f "$data/matrix/meta.json" ]; then
    mkdir -p "$data"
    "$fraudlens" simulate --customers "$customers" --terminals $((customers * 2)) --days "$days" --seed 42 --out "$data/tx.csv"
    "$fraudlens" features --data "$data/tx.csv" --out "$data/features.csv"
    "$python" bench/peers/prepare_matrix.py "$data/features.csv" "$data/matrix" >&2
fi
matrix="$data/matrix"

# This machine may be shared: before each timed run wait (up to IDLE_WAIT
# seconds, default 120) until the CPUs have been at least 90 % idle for 3 s,
# and say so if they never were.
wait_for_idle() {
    local deadline=$((SECONDS + ${IDLE_WAIT:-120})) a b c d e f g h t1 i1 t2 i2
    [ "${IDLE_WAIT:-120}" -gt 0 ] || return 0
    while [ "$SECONDS" -lt "$deadline" ]; do
        read -r _ a b c d e f g h _ < /proc/stat; t1=$((a + b + c + d + e + f + g + h)); i1=$((d + e))
        sleep 3
        read -r _ a b c d e f g h _ < /proc/stat; t2=$((a + b + c + d + e + f + g + h)); i2=$((d + e))
        if [ $((100 * (i2 - i1))) -ge $((90 * (t2 - t1))) ]; then return 0; fi
    done
    echo "warning: the CPUs were busy with other work; timings below may be inflated" >&2
}

results="$work/results.jsonl"
touch "$results"
# one training run: LABEL LIB CMD... (the command prints one JSON line)
train_run() {
    local label="$1" lib="$2" run="$3"; shift 3
    local predictions="$work/${label//\//-}.$run.f64"
    wait_for_idle
    "$@" --predictions "$predictions" --label "$label" \
        | "$python" -c 'import json,sys; r=json.load(sys.stdin); r.update(predictions=sys.argv[1], run=int(sys.argv[2])); print(json.dumps(r))' \
            "$predictions" "$run" >> "$results"
}
fraudlens_train() { "$examples/train_matrix" --dir "$matrix" --threads "$threads" "$@"; }
peer_train() { "$python" "$peers" train --dir "$matrix" --threads "$threads" "$@"; }

leaf=(--growth leaf --num-leaves 31 --learning-rate 0.1 --min-data-in-leaf 20 --min-child-weight 0.001 --lambda-l2 1 --max-bin 255)
depth=(--growth depth --max-depth 6 --learning-rate 0.1 --min-data-in-leaf 1 --min-child-weight 1 --lambda-l2 1 --max-bin 255)
if section training; then
    echo "training: $runs runs of each, interleaved" >&2
    for run in $(seq "$runs"); do
        train_run leaf300/fraudlens fraudlens "$run" fraudlens_train "${leaf[@]}" --trees 300
        train_run leaf300/lightgbm lightgbm "$run" peer_train --lib lightgbm --trees 300
        train_run depth300/fraudlens fraudlens "$run" fraudlens_train "${depth[@]}" --trees 300
        train_run depth300/xgboost xgboost "$run" peer_train --lib xgboost --trees 300
    done
    # early stopping: the runs are as long as the stopping point, one of each
    train_run leaf-es/fraudlens fraudlens 1 fraudlens_train "${leaf[@]}" --trees 2000 --early-stopping 50
    train_run leaf-es/lightgbm lightgbm 1 peer_train --lib lightgbm --trees 2000 --early-stopping 50
    train_run depth-es/fraudlens fraudlens 1 fraudlens_train "${depth[@]}" --trees 2000 --early-stopping 50
    train_run depth-es/xgboost xgboost 1 peer_train --lib xgboost --trees 2000 --early-stopping 50
fi

if section scoring; then
    echo "scoring: XGBoost model of 200 trees, depth 6" >&2
    "$python" "$peers" xgb-model --dir "$matrix" --model "$work/xgb200.json" --threads "$threads" > "$work/xgb-model.json"
    wait_for_idle
    "$examples/score_xgboost" --model "$work/xgb200.json" --dir "$matrix" --raw "$work/xgb200-rust.f64" \
        --contributions "$work/xgb200-rust-shap.f64" > "$work/score-fraudlens.json"
    wait_for_idle
    "$python" "$peers" xgb-score --dir "$matrix" --model "$work/xgb200.json" --rust-raw "$work/xgb200-rust.f64" \
        --rust-contributions "$work/xgb200-rust-shap.f64" > "$work/score-xgboost.json"
fi

if section latency; then
    echo "latency: fraudlens model, depth-wise, depth 6, 200 trees" >&2
    "$examples/train_matrix" --dir "$matrix" --threads "$threads" "${leaf[@]}" --growth depth --max-depth 6 --trees 200 \
        --model "$work/depth6.json" > /dev/null
    wait_for_idle
    "$examples/latency" --model "$work/depth6.json" --dir "$matrix" > "$work/latency.txt"
fi

report=(--dir "$matrix")
section scoring && report+=(--scoring "$work/score-fraudlens.json" "$work/score-xgboost.json" --xgb-model "$work/xgb-model.json")
section latency && report+=(--latency "$work/latency.txt")
"$python" "$peers" report "$results" "${report[@]}"
