#!/usr/bin/env bash
# fraudlens tuned against LightGBM and XGBoost tuned the same way: one feature matrix per simulated
# dataset (`fraudlens features`: the 57 engine features and the attributes), a training window of
# WINDOW days ending on day 46 and the test week after a 7-day label-delay gap. fraudlens trains in
# tabular mode on that matrix, plain and with `--tune --budget BUDGET`; bench/peers/tune_peers.py
# runs the same folds, search space and successive halving over each library within the same budget,
# then early-stops and refits as fraudlens does. Test average precision and ROC AUC, wall time.
#   bench/tune_vs_peers.sh        # SEEDS="1 2" LEVELS="base high" WINDOW=28 BUDGET=90s
# env: BIN (default: a release build of this checkout), CUSTOMERS=2000 TERMINALS=4000
set -euo pipefail
source "$(dirname "$0")/sim.sh"   # cd to the checkout, cache, BIN, CUSTOMERS, TERMINALS, level_rates, day
root="$PWD"
SEEDS="${SEEDS:-1 2}"; LEVELS="${LEVELS:-base high}"; WINDOW="${WINDOW:-28}"; BUDGET="${BUDGET:-90s}"
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
from="$(day $(( 46 - WINDOW )))"; to="$(day 46)"; test_from="$(day 53)"

for seed in $SEEDS; do
  for level in $LEVELS; do
    level_rates "$level"
    dir="$work/$seed-$level-$WINDOW-$CUSTOMERS"; mkdir -p "$dir"
    [ -s "$dir/tx.csv" ] || "$BIN" simulate --customers "$CUSTOMERS" --terminals "$TERMINALS" --days 60 \
      --seed "$seed" "${rates[@]}" --out "$dir/tx.csv" 2> /dev/null
    [ -s "$dir/features.csv" ] || "$BIN" features --data "$dir/tx.csv" --out "$dir/features.csv" 2> /dev/null
    python3 - "$dir" "$from" "$to" "$test_from" <<'PY'
import csv, sys
d, start, end, test_from = sys.argv[1:5]
with open(f"{d}/features.csv") as src, open(f"{d}/train.csv", "w", newline="") as train, open(f"{d}/test.csv", "w", newline="") as test:
    rows = csv.reader(src); header = next(rows)
    at = header.index("timestamp")
    out_train, out_test = csv.writer(train), csv.writer(test)
    out_train.writerow(header); out_test.writerow(header)
    for row in rows:
        if start <= row[at] < end: out_train.writerow(row)
        elif row[at] >= test_from: out_test.writerow(row)
PY
    for mode in default tuned; do
      flags=(); [ "$mode" = tuned ] && flags=(--tune --budget "$BUDGET")
      start=$EPOCHREALTIME
      "$BIN" train --mode tabular --data "$dir/train.csv" --label is_fraud --exclude timestamp --exclude fraud_scenario \
        "${flags[@]}" --out "$dir/model-$mode" 2> "$dir/train-$mode.log"
      seconds=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
      "$BIN" score --model "$dir/model-$mode" --input "$dir/test.csv" --output "$dir/pred-$mode.csv" --stats "$dir/stats-$mode.json" 2> /dev/null
      python3 - "$dir/stats-$mode.json" "$seed" "$level" "fraudlens $mode" "$seconds" >> "$results" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print(json.dumps({"seed": sys.argv[2], "level": sys.argv[3], "who": sys.argv[4], "seconds": float(sys.argv[5]),
                  "test_ap": s["average_precision"], "test_roc_auc": s["roc_auc"]}))
PY
    done
    for library in lightgbm xgboost; do
      start=$EPOCHREALTIME
      line="$("$venv/bin/python" "$root/bench/peers/tune_peers.py" "$library" "$dir/train.csv" "$dir/test.csv" "$budget_seconds")"
      seconds=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
      python3 -c 'import json, sys; r = json.loads(sys.argv[1]); r.update(seed=sys.argv[2], level=sys.argv[3], who=sys.argv[4] + " tuned", seconds=float(sys.argv[5])); print(json.dumps(r))' \
        "$line" "$seed" "$level" "$library" "$seconds" >> "$results"
    done
  done
done

python3 - "$results" <<'PY'
import collections, json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
who = ["fraudlens default", "fraudlens tuned", "lightgbm tuned", "xgboost tuned"]
by = collections.defaultdict(dict)
for r in rows:
    by[(r["seed"], r["level"])][r["who"]] = r
print("| seed | fraud | " + " | ".join(f"{w}: test AP / ROC AUC / s" for w in who) + " |")
print("|---|---|" + "---|" * len(who))
for key in sorted(by):
    cells = [f"{by[key][w]['test_ap']:.4f} / {by[key][w]['test_roc_auc']:.4f} / {by[key][w]['seconds']:.0f}" for w in who]
    print(f"| {key[0]} | {key[1]} | " + " | ".join(cells) + " |")
print("| mean | | " + " | ".join(f"{statistics.mean(by[k][w]['test_ap'] for k in by):.4f} / {statistics.mean(by[k][w]['test_roc_auc'] for k in by):.4f} / {statistics.mean(by[k][w]['seconds'] for k in by):.0f}" for w in who) + " |")
for r in rows:
    if "trials" in r:
        print(f"  {r['who']} seed {r['seed']} {r['level']}: {r['trials']} trials, chosen {r['chosen']} ({r['folds']} folds), {r['rounds']} rounds")
PY
echo "(results: $results)"
