#!/usr/bin/env bash
# Chooses the default tree parameters by the search of `train --tune`, over many simulated datasets
# (issue 15, item 3). Every run is `fraudlens train --tune --trials TRIALS` on one dataset (seed ×
# fraud level) and one training window (WINDOWS days ending on the last simulated day): the same
# seed draws the same parameter sets everywhere, so each set has its first-fold average precision
# on every run (the halving's survivors have more folds). Stage 1 ranks the sets by their mean gain
# over trial 0 (the current defaults) on that fold across all runs; stage 2 scores the best FINALISTS
# of them and the defaults on all three folds of every run (`--trials 1` with the set as the
# configuration: trial 0 goes through every rung). The winner is the set with the best mean over
# runs and folds; it is worth changing the defaults only if it beats them clearly (the printed
# paired standard error) — and then it is checked on later weeks of other seeds by bench/tune.sh
# and bench/tune_vs_peers.sh, which this search never sees.
#   bench/defaults_search.sh   # SEEDS="11 12" LEVELS="base high" WINDOWS="7 28 60" TRIALS=30 FINALISTS=3
# env: BIN (default: a release build of this checkout), CUSTOMERS=2000 (terminals: twice as many),
# RUNS (instead of the product: one "seed level customers window" per line)
set -euo pipefail
source "$(dirname "$0")/sim.sh"   # cd to the checkout, cache, BIN, CUSTOMERS, TERMINALS, level_rates, day
SEEDS="${SEEDS:-11 12}"; LEVELS="${LEVELS:-base high}"; WINDOWS="${WINDOWS:-7 28 60}"
TRIALS="${TRIALS:-30}"; FINALISTS="${FINALISTS:-3}"
days=67   # the windows end on the last day; the longest starts after a week of warm-up
work="$cache/bench-defaults"; mkdir -p "$work"
out="$work/run-$$"; mkdir -p "$out"
end="$(day "$days")"

# RUNS: one "seed level customers window" per line; by default every seed × level × window
if [ -z "${RUNS:-}" ]; then
  RUNS="$(for seed in $SEEDS; do for level in $LEVELS; do for window in $WINDOWS; do
    echo "$seed $level $CUSTOMERS $window"; done; done; done)"
fi
mapfile -t runs < <(grep -v '^[[:space:]]*$' <<< "$RUNS")
dataset() { echo "$work/tx-$1-$2-$3.csv"; }   # seed level customers
for run in "${runs[@]}"; do
  read -r seed level customers window <<< "$run"
  level_rates "$level"
  data="$(dataset "$seed" "$level" "$customers")"
  [ -s "$data" ] || "$BIN" simulate --customers "$customers" --terminals $(( 2 * customers )) --days "$days" \
    --seed "$seed" "${rates[@]}" --out "$data"
done

# stage 1: the search on every run (kept in the cache: a rerun resumes)
for run in "${runs[@]}"; do
  read -r seed level customers window <<< "$run"
  search="$work/search-$TRIALS-$seed-$level-$customers-$window"
  if [ ! -s "$search/model.json" ]; then
    "$BIN" train --data "$(dataset "$seed" "$level" "$customers")" --train-from "$(day $(( days - window )))" \
      --train-to "$end" --tune --trials "$TRIALS" --budget 10h --out "$search" 2> "$search.log"
  fi
  ln -sfn "$search" "$out/search-$seed-$level-$customers-$window"
  echo "searched seed $seed $level, $customers customers, ${window}d: $(grep -m1 '^tuning:' "$search.log")" >&2
done

python3 - "$out" "$FINALISTS" <<'PYTHON'
import glob, json, os, statistics, sys
out, finalists = sys.argv[1], int(sys.argv[2])
runs = {os.path.basename(d)[len("search-"):]: json.load(open(f"{d}/model.json"))["tuning"]
        for d in sorted(glob.glob(f"{out}/search-*[0-9]"))}
params = [t["params"] for t in next(iter(runs.values()))["trials"]]
for run, tuning in runs.items():
    assert [t["params"] for t in tuning["trials"]] == params, f"{run}: the runs drew different parameter sets"
    # a search cached by an older binary (no gap, other defaults) is not comparable: remove it
    assert tuning.get("gap_share") == tuning["fold_share"], f"{run}: tuned without the gap; delete its cached search"
assert "FRAUDLENS_CONFIG" not in os.environ, "unset FRAUDLENS_CONFIG: the search compares against the built-in defaults"
gains = {i: [t["trials"][i]["fold_ap"][0] - t["trials"][0]["fold_ap"][0] for t in runs.values()] for i in range(1, len(params))}
ranked = sorted(gains, key=lambda i: -statistics.mean(gains[i]))
tidy = lambda p: {k: round(v, 4) if isinstance(v, float) else v for k, v in p.items()}
print("stage 1 (first fold, gain over the defaults over", len(runs), "runs):", file=sys.stderr)
for i in ranked[:10]:
    g = gains[i]
    sd = statistics.stdev(g) if len(g) > 1 else 0
    print(f"  trial {i:>3}: mean {statistics.mean(g):+.4f} sd {sd:.4f} better on {sum(x > 0 for x in g)}/{len(g)}  {tidy(params[i])}", file=sys.stderr)
chosen = [0] + ranked[:finalists]
json.dump([tidy(params[i]) for i in chosen], open(f"{out}/finalists.json", "w"))
for n, i in enumerate(chosen):
    with open(f"{out}/finalist-{n}.toml", "w") as f:
        f.write("[train.gbdt]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in tidy(params[i]).items()))
# the folds the search already scored (trial 0 and the halving's survivors have all three)
known = {n: {run: t["trials"][i]["fold_ap"] for run, t in runs.items() if len(t["trials"][i]["fold_ap"]) == 3}
         for n, i in enumerate(chosen)}
json.dump(known, open(f"{out}/known.json", "w"))
with open(f"{out}/todo", "w") as todo:
    for n in range(len(chosen)):
        for run in runs:
            if run not in known[n]:
                print(n, *run.split("-"), file=todo)
PYTHON

# stage 2: the finalists on all three folds of the runs where the halving stopped them earlier
# (`--trials 1` with the set as the configuration: trial 0 goes through every rung)
while read -r n seed level customers window; do
  model="$out/finalist-$n-$seed-$level-$customers-$window"
  "$BIN" --config "$out/finalist-$n.toml" train --data "$(dataset "$seed" "$level" "$customers")" \
    --train-from "$(day $(( days - window )))" --train-to "$end" --tune --trials 1 --budget 10h --out "$model" \
    2> "$model.log" < /dev/null
  echo "scored finalist $n on seed $seed $level, $customers customers, ${window}d" >&2
done < "$out/todo"

python3 - "$out" <<'PYTHON'
import glob, json, os, statistics, sys
out = sys.argv[1]
finalists = json.load(open(f"{out}/finalists.json"))
scores = {int(n): runs for n, runs in json.load(open(f"{out}/known.json")).items()}
for d in glob.glob(f"{out}/finalist-*[0-9]"):
    _, n, run = os.path.basename(d).split("-", 2)
    scores[int(n)][run] = json.load(open(f"{d}/model.json"))["tuning"]["trials"][0]["fold_ap"]
runs = sorted(scores[0])
print("| set | parameters | mean AP (runs × folds) | gain over the defaults | paired se | better on runs |")
print("|---|---|---:|---:|---:|---:|")
for n, p in enumerate(finalists):
    mean = statistics.mean(ap for r in runs for ap in scores[n][r])
    diffs = [statistics.mean(scores[n][r]) - statistics.mean(scores[0][r]) for r in runs]
    se = statistics.stdev(diffs) / len(diffs) ** 0.5 if n and len(diffs) > 1 else 0.0
    label = "defaults" if n == 0 else f"finalist {n}"
    print(f"| {label} | {json.dumps(p)} | {mean:.4f} | {statistics.mean(diffs):+.4f} | {se:.4f} | {sum(d > 0 for d in diffs)}/{len(diffs)} |")
print("\nper run (seed-level-customers-window; mean AP over the three folds):")
print("| run | " + " | ".join("defaults" if n == 0 else f"finalist {n}" for n in range(len(finalists))) + " |")
print("|---|" + "---:|" * len(finalists))
for r in runs:
    print(f"| {r} | " + " | ".join(f"{statistics.mean(scores[n][r]):.4f}" for n in range(len(finalists))) + " |")
PYTHON
echo "(runs: $out)"
