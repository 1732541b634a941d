"""The table of bench/tune_vs_peers.sh: every contender's test scores through one evaluator.

Each line of RESULTS.jsonl names a contender's scores of one window's test rows (transaction_id and
probability; or fraudlens score's row and raw_score, the trees' score before calibration); the labels and times come from that window's
test.csv, the cards from the dataset's tx.csv. Average precision and ROC AUC (scikit-learn), card precision@100 per day as the Fraud
Detection Handbook (and `fraudlens evaluate`) define it: each day, the cards not detected on an
earlier day ranked by their highest score of the day, the share of the top 100 with a fraud that
day (÷ 100 even on days with fewer cards), the fraudulent ones among them detected from then on;
the mean over the test days.

    python tune_report.py RESULTS.jsonl
"""

import collections
import json
import os
import statistics
import sys

import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

K = 100
WHO = ["fraudlens default", "fraudlens tuned", "lightgbm tuned", "xgboost tuned"]


def card_precision_at_k(frame):
    detected, per_day = set(), []
    for _, day in frame.groupby("day", sort=True):
        day = day[~day["customer_id"].isin(detected)]
        cards = day.groupby("customer_id").agg(score=("probability", "max"), fraud=("is_fraud", "max"))
        top = cards.sort_values("score", ascending=False, kind="stable").head(K)
        frauds = top[top["fraud"] > 0]
        per_day.append(len(frauds) / K)
        detected.update(frauds.index)
    return statistics.mean(per_day)


def evaluate(scores_path, cache={}):
    window = os.path.dirname(scores_path)
    dataset = os.path.dirname(window)
    if dataset not in cache:
        cache[dataset] = pd.read_csv(f"{dataset}/tx.csv", usecols=["transaction_id", "customer_id"], dtype=str)
    test = pd.read_csv(f"{window}/test.csv", usecols=["transaction_id", "timestamp", "is_fraud"], dtype={"transaction_id": str})
    scores = pd.read_csv(scores_path, dtype={"transaction_id": str})
    if "raw_score" in scores:
        # `fraudlens score`: rank on the trees' raw score, as the peers' scores are ranked (isotonic
        # calibration, from 1,000 validation frauds, would tie probabilities in steps)
        scores["probability"] = scores["raw_score"]
    if "transaction_id" not in scores:  # a tabular file's rows, numbered from 1 in file order
        assert len(scores) == len(test), f"{scores_path}: a row was refused, the row numbers do not line up"
        scores["transaction_id"] = test["transaction_id"].to_numpy()[scores["row"].to_numpy() - 1]
        assert (scores["label"].to_numpy() == test["is_fraud"].to_numpy()).all(), f"{scores_path}: labels differ"
    scores = scores[["transaction_id", "probability"]]
    frame = test.merge(scores, on="transaction_id", validate="one_to_one").merge(cache[dataset], on="transaction_id")
    assert len(frame) == len(test), f"{scores_path}: {len(frame)} scored rows of {len(test)}"
    frame["day"] = frame["timestamp"].str[:10]
    return {
        "ap": average_precision_score(frame["is_fraud"], frame["probability"]),
        "auc": roc_auc_score(frame["is_fraud"], frame["probability"]),
        "cp": card_precision_at_k(frame),
    }


def main():
    rows = [json.loads(line) for line in open(sys.argv[1])]
    by = collections.defaultdict(dict)
    for r in rows:
        r.update(evaluate(r["scores"]))
        by[(r["seed"], r["level"], r["end"])][r["who"]] = r
    present = {r["who"] for r in rows}
    WHO[:] = [w for w in WHO if w in present] + sorted(present - set(WHO))  # MODES=default has no tuned; CONFIGS add contenders
    keys = sorted(k for k in by if all(w in by[k] for w in WHO))
    print("| seed | fraud | window ends | " + " | ".join(f"{w}: AP / ROC AUC / CP@100 / s" for w in WHO) + " |")
    print("|---|---|---:|" + "---|" * len(WHO))
    for key in keys:
        cells = [f"{by[key][w]['ap']:.4f} / {by[key][w]['auc']:.4f} / {by[key][w]['cp']:.4f} / {by[key][w]['seconds']:.0f}" for w in WHO]
        print(f"| {key[0]} | {key[1]} | day {key[2]} | " + " | ".join(cells) + " |")
    mean = lambda w, m: statistics.mean(by[k][w][m] for k in keys)
    print("| mean | | | " + " | ".join(f"{mean(w, 'ap'):.4f} / {mean(w, 'auc'):.4f} / {mean(w, 'cp'):.4f} / {mean(w, 'seconds'):.0f}" for w in WHO) + " |")
    print()
    for other in WHO[1:]:
        for metric, name in [("ap", "AP"), ("cp", "CP@100")]:
            diffs = [by[k][WHO[0]][metric] - by[k][other][metric] for k in keys]  # WHO[0]: fraudlens default unless MODES left it out
            se = statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else float("nan")
            print(f"{WHO[0]} − {other}, {name}: mean {statistics.mean(diffs):+.4f} (se {se:.4f}), "
                  f"ahead on {sum(d > 0 for d in diffs)}, equal on {sum(d == 0 for d in diffs)} of {len(diffs)}")
    for r in rows:
        if "trials" in r:
            print(f"  {r['who']} seed {r['seed']} {r['level']} day {r['end']}: {r['trials']} trials, chosen {r['chosen']} ({r['folds']} folds), {r['rounds']} rounds")


if __name__ == "__main__":
    main()
