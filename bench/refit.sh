#!/usr/bin/env bash
# Refit or not, on the simulator's prequential protocol: for each simulated dataset (seeds × fraud
# levels) and each training window, `fraudlens evaluate --prequential` retrains the default
# parameters on FOLDS successive weeks (a label-delay gap before each), once with train.refit off
# and once on, and prints average precision, card precision@100, ROC AUC and Brier (mean over the
# folds) side by side, then the mean difference.
#   bench/refit.sh                      # SEEDS="1 2 3" LEVELS="base high" WINDOWS="7 21 56" FOLDS=3
# env: BIN (default: a release build of this checkout), CUSTOMERS=2000 TERMINALS=4000
set -euo pipefail
source "$(dirname "$0")/sim.sh"   # cd to the checkout, cache, BIN, CUSTOMERS, TERMINALS, level_rates, day
SEEDS="${SEEDS:-1 2 3}"; LEVELS="${LEVELS:-base high}"; WINDOWS="${WINDOWS:-7 21 56}"; FOLDS="${FOLDS:-3}"
work="$cache/bench-refit"; mkdir -p "$work"
results="$work/results-$$.tsv"; : > "$results"
longest=0; for w in $WINDOWS; do [ "$w" -gt "$longest" ] && longest=$w; done
days=$(( longest + 7 + FOLDS * 7 + 2 ))   # the longest window, the label-delay gap, the folds, a margin

for seed in $SEEDS; do
  for level in $LEVELS; do
    # base: the simulator's default rates (~0.3 % fraud); high: every scenario three times as often
    level_rates "$level"
    data="$work/tx-$seed-$level-$days.csv"
    [ -s "$data" ] || "$BIN" simulate --customers "$CUSTOMERS" --terminals "$TERMINALS" --days "$days" \
      --seed "$seed" "${rates[@]}" --out "$data" 2> /dev/null
    model="$work/model-$seed-$level-$days"
    [ -f "$model/model.json" ] || "$BIN" train --data "$data" --out "$model" 2> /dev/null
    for window in $WINDOWS; do
      for refit in false true; do
        json="$work/eval-$seed-$level-$window-$refit.json"
        FRAUDLENS_TRAIN__REFIT=$refit "$BIN" evaluate --model "$model" --data "$data" --prequential "$FOLDS" \
          --train-days "$window" --fold-days 7 --json "$json" > /dev/null 2>&1
        python3 - "$json" "$seed" "$level" "$window" "$refit" >> "$results" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))["summary"]
print("\t".join(sys.argv[2:6] + [f"{s[m]['mean']:.5f}" for m in ("average_precision", "card_precision_at_k", "roc_auc", "brier")]))
PY
      done
    done
  done
done

python3 - "$results" <<'PY'
import collections, statistics, sys
rows = [line.split("\t") for line in open(sys.argv[1]).read().splitlines()]
by = collections.defaultdict(dict)
for seed, level, window, refit, ap, cp, auc, brier in rows:
    by[(seed, level, int(window))][refit] = tuple(map(float, (ap, cp, auc, brier)))
print("| seed | fraud | window (days) | AP off → on | CP@100 off → on | ROC AUC off → on | Brier off → on |")
print("|---|---|---:|---|---|---|---|")
diffs = collections.defaultdict(list)
for key in sorted(by):
    off, on = by[key]["false"], by[key]["true"]
    print(f"| {key[0]} | {key[1]} | {key[2]} | " + " | ".join(f"{a:.4f} → {b:.4f}" for a, b in zip(off, on)) + " |")
    for name, a, b in zip(("AP", "CP@100", "ROC AUC", "Brier"), off, on):
        diffs[(name, key[2])].append(b - a)
        diffs[(name, "all")].append(b - a)
print()
print("| metric | window | mean on − off | sd | datasets where on is better |")
print("|---|---:|---:|---:|---:|")
for (name, window), values in sorted(diffs.items(), key=lambda item: (item[0][0], str(item[0][1]))):
    better = sum(v < 0 for v in values) if name == "Brier" else sum(v > 0 for v in values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    print(f"| {name} | {window} | {statistics.mean(values):+.4f} | {sd:.4f} | {better}/{len(values)} |")
PY
echo "(results: $results)"
