#!/usr/bin/env bash
# fraudlens, plain and tuned, against LightGBM and XGBoost tuned the same way, on the prequential
# protocol: one feature matrix per simulated dataset (`fraudlens features`: the 57 engine features
# and the attributes); for every training window of WINDOW days ending on a day of ENDS, the test
# is the week after a 7-day label-delay gap (window ending day 46: test days 53-59, the last simulated
# ones; ENDS from WINDOW to 46). fraudlens trains
# in tabular mode on that matrix, plain and with `--tune --budget BUDGET`; bench/peers/tune_peers.py
# runs the same folds, search space and successive halving over each library within the same
# budget, then early-stops and refits as fraudlens does. Every contender's test scores go through
# one evaluator: average precision, ROC AUC, card precision@100 per day (the handbook's, cards
# detected on an earlier day left out) and wall time.
#   bench/tune_vs_peers.sh        # SEEDS="1 2" LEVELS="base high" ENDS="39 46" WINDOW=28 BUDGET=90s
# env: BIN (default: a release build of this checkout), CUSTOMERS=2000 TERMINALS=4000,
# MODES="default tuned" (the fraudlens contenders; MODES=default leaves out the fraudlens search),
# CONFIGS="label=file.toml …": more plain fraudlens contenders, trained with those configs (paths from
# the checkout; labels other than default and tuned)
set -euo pipefail
source "$(dirname "$0")/sim.sh"   # cd to the checkout, cache, BIN, CUSTOMERS, TERMINALS, level_rates, day
root="$PWD"
SEEDS="${SEEDS:-1 2}"; LEVELS="${LEVELS:-base high}"; ENDS="${ENDS:-39 46}"; WINDOW="${WINDOW:-28}"; BUDGET="${BUDGET:-90s}"
CONFIGS="${CONFIGS:-}"; MODES="${MODES:-default tuned}"
for mode in $MODES; do
  case "$mode" in default|tuned) ;; *) echo "MODES: $mode is not default or tuned" >&2; exit 2 ;; esac
done
for end in $ENDS; do
  (( end >= WINDOW && end <= 46 )) || { echo "ENDS: $end must be between WINDOW ($WINDOW) and 46" >&2; exit 2; }
done
for labelled in $CONFIGS; do
  case "${labelled%%=*}" in default|tuned) echo "CONFIGS: the label ${labelled%%=*} is taken" >&2; exit 2 ;; esac
done
budget_seconds="$(python3 -c "import sys; v=sys.argv[1]; print(int(v[:-1]) * {'s': 1, 'm': 60, 'h': 3600}[v[-1]])" "$BUDGET")"

# the bench venv (pins as bench/model_vs_peers.sh)
venv="$cache/bench-venv"
pins=(pandas==2.2.3 numpy==2.2.6 scipy==1.15.3 scikit-learn==1.7.2 lightgbm==4.6.0 xgboost-cpu==3.2.0)
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
installed="$("$venv/bin/pip" freeze 2> /dev/null)"
for pin in "${pins[@]}"; do
  grep -qix "$pin" <<< "$installed" || { "$venv/bin/pip" install --quiet "${pins[@]}"; break; }
done

work="$cache/bench-tune-peers"; mkdir -p "$work"
results="$work/results-$$.jsonl"; : > "$results"
seconds_since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

for seed in $SEEDS; do
  for level in $LEVELS; do
    level_rates "$level"
    data="$work/$seed-$level-$CUSTOMERS"; mkdir -p "$data"
    [ -s "$data/tx.csv" ] || "$BIN" simulate --customers "$CUSTOMERS" --terminals "$TERMINALS" --days 60 \
      --seed "$seed" "${rates[@]}" --out "$data/tx.csv" 2> /dev/null
    [ -s "$data/features.csv" ] || "$BIN" features --data "$data/tx.csv" --out "$data/features.csv" 2> /dev/null
    for end in $ENDS; do
      dir="$data/window-$WINDOW-$end"; mkdir -p "$dir"
      python3 - "$data/features.csv" "$dir" "$(day $(( end - WINDOW )))" "$(day "$end")" "$(day $(( end + 7 )))" "$(day $(( end + 14 )))" <<'PY'
import csv, sys
features, d, start, end, test_from, test_to = sys.argv[1:7]
with open(features) as src, open(f"{d}/train.csv", "w", newline="") as train, open(f"{d}/test.csv", "w", newline="") as test:
    rows = csv.reader(src); header = next(rows)
    at = header.index("timestamp")
    out_train, out_test = csv.writer(train), csv.writer(test)
    out_train.writerow(header); out_test.writerow(header)
    for row in rows:
        if start <= row[at] < end: out_train.writerow(row)
        elif test_from <= row[at] < test_to: out_test.writerow(row)
PY
      for mode in $MODES; do
        flags=(); [ "$mode" = tuned ] && flags=(--tune --budget "$BUDGET")
        start=$EPOCHREALTIME
        "$BIN" train --mode tabular --data "$dir/train.csv" --label is_fraud --exclude timestamp --exclude fraud_scenario \
          "${flags[@]}" --out "$dir/model-$mode" 2> "$dir/train-$mode.log"
        seconds="$(seconds_since "$start")"
        "$BIN" score --model "$dir/model-$mode" --input "$dir/test.csv" --output "$dir/scores-fraudlens-$mode.csv" 2> /dev/null
        printf '{"seed": "%s", "level": "%s", "end": %s, "who": "fraudlens %s", "seconds": %s, "scores": "%s"}\n' \
          "$seed" "$level" "$end" "$mode" "$seconds" "$dir/scores-fraudlens-$mode.csv" >> "$results"
      done
      for labelled in $CONFIGS; do
        label="${labelled%%=*}"; config="$(realpath "${labelled#*=}")"
        start=$EPOCHREALTIME
        "$BIN" --config "$config" train --mode tabular --data "$dir/train.csv" --label is_fraud --exclude timestamp \
          --exclude fraud_scenario --out "$dir/model-$label" 2> "$dir/train-$label.log"
        seconds="$(seconds_since "$start")"
        "$BIN" score --model "$dir/model-$label" --input "$dir/test.csv" --output "$dir/scores-fraudlens-$label.csv" 2> /dev/null
        printf '{"seed": "%s", "level": "%s", "end": %s, "who": "fraudlens %s", "seconds": %s, "scores": "%s"}\n' \
          "$seed" "$level" "$end" "$label" "$seconds" "$dir/scores-fraudlens-$label.csv" >> "$results"
      done
      for library in lightgbm xgboost; do
        start=$EPOCHREALTIME
        line="$("$venv/bin/python" "$root/bench/peers/tune_peers.py" "$library" "$dir/train.csv" "$dir/test.csv" "$budget_seconds" "$dir/scores-$library.csv")"
        seconds="$(seconds_since "$start")"
        python3 -c 'import json, sys; r = json.loads(sys.argv[1]); r.update(seed=sys.argv[2], level=sys.argv[3], end=int(sys.argv[4]), who=sys.argv[5] + " tuned", seconds=float(sys.argv[6]), scores=sys.argv[7]); print(json.dumps(r))' \
          "$line" "$seed" "$level" "$end" "$library" "$seconds" "$dir/scores-$library.csv" >> "$results"
      done
      echo "seed $seed $level window ending day $end: done" >&2
    done
  done
done

"$venv/bin/python" "$root/bench/peers/tune_report.py" "$results"
echo "(results: $results)"
