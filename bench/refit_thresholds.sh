#!/usr/bin/env bash
# What refit does to the thresholds: they are chosen on the validated trees' predictions, the refit
# trees are served. For each simulated dataset (seeds × fraud levels, as bench/refit.sh), train on
# 28 days with an analyst capacity (CAPACITY reviews a day), refit off and on, then score the week
# after a 7-day label-delay gap and count what the served model really sends: reviews a day and
# their precision, declines a day and their precision (asked: train.decline_precision, 0.95).
#   bench/refit_thresholds.sh        # SEEDS="1 2 3" LEVELS="base high" CAPACITY=30
# env: BIN (default: a release build of this checkout), CUSTOMERS=2000 TERMINALS=4000
set -euo pipefail
source "$(dirname "$0")/sim.sh"   # cd to the checkout, cache, BIN, CUSTOMERS, TERMINALS, level_rates, day
SEEDS="${SEEDS:-1 2 3}"; LEVELS="${LEVELS:-base high}"; CAPACITY="${CAPACITY:-30}"
work="$cache/bench-refit-thresholds"; mkdir -p "$work"
results="$work/results-$$.tsv"; : > "$results"
# train on days 14-42, the gap is days 42-49, the test week days 49-56
from="$(day 14)"; to="$(day 42)"; test_from="$(day 49)"; test_to="$(day 56)"

for seed in $SEEDS; do
  for level in $LEVELS; do
    level_rates "$level"
    data="$work/tx-$seed-$level.csv"
    [ -s "$data" ] || "$BIN" simulate --customers "$CUSTOMERS" --terminals "$TERMINALS" --days 56 \
      --seed "$seed" "${rates[@]}" --out "$data" 2> /dev/null
    for refit in false true; do
      model="$work/model-$seed-$level-$refit"
      FRAUDLENS_TRAIN__REFIT=$refit "$BIN" train --data "$data" --train-from "$from" --train-to "$to" \
        --review-capacity "$CAPACITY" --out "$model" 2> "$model.log"
      "$BIN" score --model "$model" --input "$data" --from "$test_from" --output "$model.csv" 2> /dev/null
      python3 - "$model.csv" "$model/model.json" "$test_to" "$seed" "$level" "$refit" >> "$results" <<'PY'
import csv, json, sys
path, manifest, test_to = sys.argv[1:4]
rows = [r for r in csv.DictReader(open(path)) if r["timestamp"] < test_to]
days = len({r["timestamp"][:10] for r in rows})
band = json.load(open(manifest))["threshold_choice"]
valid = (band["at_review"]["flagged"] - band["at_decline"]["flagged"]) / band["valid_days"]
def share(decision):
    picked = [r for r in rows if r["decision"] == decision]
    return len(picked) / days, sum(r["label"] == "1" for r in picked) / max(1, len(picked))
(reviews, review_precision), (declines, decline_precision) = share("review"), share("decline")
print("\t".join(sys.argv[4:7] + [f"{valid:.1f}", f"{reviews:.1f}", f"{review_precision:.3f}", f"{declines:.1f}", f"{decline_precision:.3f}"]))
PY
    done
  done
done

python3 - "$results" "$CAPACITY" <<'PY'
import collections, statistics, sys
rows = [line.split("\t") for line in open(sys.argv[1]).read().splitlines()]
print(f"| seed | fraud | refit | band a day on validation (capacity {sys.argv[2]}) | reviews a day, test week | review precision | declines a day | decline precision |")
print("|---|---|---|---:|---:|---:|---:|---:|")
agg = collections.defaultdict(list)
for seed, level, refit, valid, reviews, rp, declines, dp in rows:
    print(f"| {seed} | {level} | {refit} | {valid} | {reviews} | {rp} | {declines} | {dp} |")
    agg[refit].append(tuple(map(float, (valid, reviews, rp, declines, dp))))
for refit, values in sorted(agg.items()):
    mean = [statistics.mean(column) for column in zip(*values)]
    print(f"| mean | | {refit} | {mean[0]:.1f} | {mean[1]:.1f} | {mean[2]:.3f} | {mean[3]:.1f} | {mean[4]:.3f} |")
PY
echo "(results: $results)"
