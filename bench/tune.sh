#!/usr/bin/env bash
# Plain `fraudlens train` against `train --tune` on held-out later data: for each simulated dataset
# (seeds × fraud levels) and training window, both train on the same window (ending TEST_DAY days
# before the data ends), and `evaluate` tests both on the days after a 7-day label-delay gap.
# Prints test average precision, card precision@100 and ROC AUC side by side, the tuning time,
# and the mean difference (goal of issue 15: default within 0.005 AP of --tune on windows ≥ 7 days).
#   bench/tune.sh        # SEEDS="1 2" LEVELS="base high" WINDOWS="7 28" BUDGET=2m
# env: BIN (default: a release build of this checkout), CUSTOMERS=2000 TERMINALS=4000
set -euo pipefail
source "$(dirname "$0")/sim.sh"   # cd to the checkout, cache, BIN, CUSTOMERS, TERMINALS, level_rates, day
SEEDS="${SEEDS:-1 2}"; LEVELS="${LEVELS:-base high}"; WINDOWS="${WINDOWS:-7 28}"; BUDGET="${BUDGET:-2m}"
work="$cache/bench-tune"; mkdir -p "$work"
results="$work/results-$$.tsv"; : > "$results"
days=60   # training windows end on day 46; the test is days 53-60 (after the 7-day gap)
train_to="$(day 46)"; test_from="$(day 53)"

for seed in $SEEDS; do
  for level in $LEVELS; do
    level_rates "$level"
    data="$work/tx-$seed-$level.csv"
    [ -s "$data" ] || "$BIN" simulate --customers "$CUSTOMERS" --terminals "$TERMINALS" --days "$days" \
      --seed "$seed" "${rates[@]}" --out "$data" 2> /dev/null
    for window in $WINDOWS; do
      from="$(day $(( 46 - window )))"
      for mode in default tune; do
        model="$work/model-$seed-$level-$window-$mode"
        flags=(); [ "$mode" = tune ] && flags=(--tune --budget "$BUDGET")
        start=$EPOCHREALTIME
        "$BIN" train --data "$data" --train-from "$from" --train-to "$train_to" "${flags[@]}" --out "$model" 2> "$model.log"
        seconds=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
        "$BIN" evaluate --model "$model" --data "$data" --test-from "$test_from" --json "$model.eval.json" > /dev/null 2>&1
        python3 - "$model.eval.json" "$seed" "$level" "$window" "$mode" "$seconds" >> "$results" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))["windows"][0]["metrics"]
print("\t".join(sys.argv[2:7] + [f"{m['average_precision']:.5f}", f"{m['card_precision_at_k']['mean']:.5f}", f"{m['roc_auc']:.5f}"]))
PY
      done
    done
  done
done

python3 - "$results" <<'PY'
import collections, statistics, sys
rows = [line.split("\t") for line in open(sys.argv[1]).read().splitlines()]
by = collections.defaultdict(dict)
for seed, level, window, mode, seconds, ap, cp, auc in rows:
    by[(seed, level, int(window))][mode] = (float(ap), float(cp), float(auc), float(seconds))
print("| seed | fraud | window (days) | AP default / tuned | CP@100 default / tuned | ROC AUC default / tuned | train s default / tuned |")
print("|---|---|---:|---|---|---|---|")
gaps = []
for key in sorted(by):
    d, t = by[key]["default"], by[key]["tune"]
    print(f"| {key[0]} | {key[1]} | {key[2]} | {d[0]:.4f} / {t[0]:.4f} | {d[1]:.4f} / {t[1]:.4f} | {d[2]:.4f} / {t[2]:.4f} | {d[3]:.0f} / {t[3]:.0f} |")
    gaps.append(t[0] - d[0])
sd = statistics.stdev(gaps) if len(gaps) > 1 else 0.0
print(f"\ntuned − default, test AP: mean {statistics.mean(gaps):+.4f} (sd {sd:.4f}), max {max(gaps):+.4f}; "
      f"tuned better on {sum(g > 0 for g in gaps)}/{len(gaps)}")
PY
echo "(results: $results)"
