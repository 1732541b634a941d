"""The search of `fraudlens train --tune`, run over LightGBM and XGBoost on the same rows.

Same folds (three prequential folds cut from the training share: the rows before the latest 20 %;
fold f validates on the 15 % of that share before fold f-1's and trains on everything before the
15 % before that, the label-delay gap),
same search space and draws' distributions, same successive halving (rung 0 draws trials until 60 %
of the budget, the best third goes on to one more fold, then the best third of those), trial 0 =
fraudlens' default values mapped to the library, carried through every rung and replaced only by a
trial that beats it by more than one standard error of the paired fold differences. Then, as fraudlens does: early stopping
on the latest 20 % chooses the rounds, and the trees are refit on every row with the rounds × 1.25.

    python tune_peers.py LIBRARY TRAIN.csv TEST.csv BUDGET_SECONDS [SCORES.csv]   # prints one JSON line;
    # SCORES.csv gets transaction_id,probability of every test row
"""

import json
import math
import random
import sys
import time

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

EXCLUDED = {"transaction_id", "timestamp", "is_fraud", "fraud_scenario"}
CATEGORICAL = ["channel", "country", "mcc"]
FOLDS, FOLD_SHARE, VALID_FRACTION, RUNG0_SHARE, ETA = 3, 0.15, 0.2, 0.6, 3


def load(path, categories=None):
    frame = pd.read_csv(path, dtype={name: "string" for name in CATEGORICAL})
    columns = [c for c in frame.columns if c not in EXCLUDED]
    x = frame[columns].copy()
    for name in CATEGORICAL:
        levels = categories[name] if categories else sorted(x[name].dropna().unique())
        x[name] = pd.Categorical(x[name], categories=levels)
    return x, frame["is_fraud"].to_numpy().astype(int), frame["transaction_id"]


def draw(rng):
    log_uniform = lambda low, high: math.exp(rng.uniform(math.log(low), math.log(high)))
    return {
        "learning_rate": round(log_uniform(0.02, 0.3), 3),
        "num_leaves": round(log_uniform(7, 255)),
        "max_depth": rng.choice([0, 0, 6, 8, 12]),
        "min_data_in_leaf": round(log_uniform(5, 500)),
        "lambda_l2": round(log_uniform(1, 101) - 1, 2),
        "subsample": round(rng.uniform(0.5, 1.0) / 0.05) * 0.05,
        "colsample_bytree": round(rng.uniform(0.4, 1.0) / 0.05) * 0.05,
        "scale_pos_weight": round(log_uniform(1, 20), 1),
    }


DEFAULTS = {  # trial 0: fraudlens' default values, mapped as in fit()
    "learning_rate": 0.1, "num_leaves": 31, "max_depth": 0, "min_data_in_leaf": 20, "lambda_l2": 1.0,
    "subsample": 1.0, "colsample_bytree": 1.0, "scale_pos_weight": 1.0,
}


def fit(library, params, x, y, valid=None, rounds=300, early=50):
    """Trains; returns (model, best rounds)."""
    if library == "lightgbm":
        import lightgbm as lgb
        lgb_params = {
            "objective": "binary", "verbosity": -1, "num_threads": 2, "max_bin": 255, "seed": 1,
            "learning_rate": params["learning_rate"], "num_leaves": params["num_leaves"],
            "max_depth": params["max_depth"] or -1, "min_child_samples": params["min_data_in_leaf"],
            "lambda_l2": params["lambda_l2"], "bagging_fraction": params["subsample"],
            "bagging_freq": 1 if params["subsample"] < 1 else 0, "feature_fraction": params["colsample_bytree"],
            "scale_pos_weight": params["scale_pos_weight"],
        }
        train = lgb.Dataset(x, y, categorical_feature=CATEGORICAL)
        sets, callbacks = [], []
        if valid is not None:
            sets = [lgb.Dataset(valid[0], valid[1], reference=train)]
            callbacks = [lgb.early_stopping(early, verbose=False)]
        model = lgb.train(lgb_params, train, rounds, valid_sets=sets, callbacks=callbacks)
        return model, (model.best_iteration or rounds)
    import xgboost as xgb
    xgb_params = {
        "objective": "binary:logistic", "eval_metric": "logloss", "nthread": 2, "max_bin": 255, "seed": 1,
        "tree_method": "hist", "grow_policy": "lossguide", "eta": params["learning_rate"],
        "max_leaves": params["num_leaves"], "max_depth": params["max_depth"],
        # XGBoost has no row minimum per leaf: its hessian minimum at the training fraud rate
        "min_child_weight": params["min_data_in_leaf"] * y.mean() * (1 - y.mean()),
        "lambda": params["lambda_l2"], "subsample": params["subsample"],
        "colsample_bytree": params["colsample_bytree"], "scale_pos_weight": params["scale_pos_weight"],
        "base_score": float(y.mean()),
    }
    train = xgb.DMatrix(x, y, enable_categorical=True)
    evals = [(xgb.DMatrix(valid[0], valid[1], enable_categorical=True), "valid")] if valid is not None else []
    model = xgb.train(xgb_params, train, rounds, evals=evals,
                      early_stopping_rounds=early if evals else None, verbose_eval=False)
    best = (model.best_iteration + 1) if evals else rounds
    return model, best


def predict(library, model, x, rounds):
    if library == "lightgbm":
        return model.predict(x, num_iteration=rounds)
    import xgboost as xgb
    return model.predict(xgb.DMatrix(x, enable_categorical=True), iteration_range=(0, rounds))


def main():
    library, train_path, test_path, budget = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    x, y, _ = load(train_path)
    categories = {name: list(x[name].cat.categories) for name in CATEGORICAL}
    x_test, y_test, test_ids = load(test_path, categories)
    n = len(y)
    n_train = n - round(n * VALID_FRACTION)
    block = int(n_train * FOLD_SHARE)
    cuts = [n_train - f * block for f in range(1, FOLDS + 1)]
    started = time.monotonic()

    def score_fold(trial, fold):
        cut = cuts[fold]
        train, valid = slice(0, cut - block), slice(cut, cut + block)
        model, best = fit(library, trial["params"], x.iloc[train], y[train], (x.iloc[valid], y[valid]))
        trial["fold_ap"].append(average_precision_score(y[valid], predict(library, model, x.iloc[valid], best)))
        trial["rounds"].append(best)

    rng = random.Random(1)
    trials, mean_fold = [], 0.0
    while True:
        if trials and time.monotonic() - started + mean_fold > RUNG0_SHARE * budget:
            break
        trial = {"id": len(trials), "params": dict(DEFAULTS) if not trials else draw(rng), "fold_ap": [], "rounds": []}
        score_fold(trial, 0)
        trials.append(trial)
        mean_fold = (time.monotonic() - started) / len(trials)
    mean = lambda t: sum(t["fold_ap"]) / len(t["fold_ap"])
    alive = list(range(len(trials)))
    for rung in range(FOLDS):
        stop = False
        for idx in alive:
            for fold in range(len(trials[idx]["fold_ap"]), rung + 1):
                if time.monotonic() - started + mean_fold > budget:
                    stop = True
                    break
                score_fold(trials[idx], fold)
            if stop:
                break
        if stop or rung + 1 == FOLDS:
            break
        alive.sort(key=lambda i: (-mean(trials[i]), i))
        alive = [0] + [i for i in alive[: math.ceil(len(alive) / ETA)] if i != 0]  # trial 0 goes on, first
    most = max(len(t["fold_ap"]) for t in trials)
    best = max((t for t in trials if len(t["fold_ap"]) == most), key=lambda t: (mean(t), -t["id"]))
    # kept only beyond one standard error of the paired fold differences against trial 0
    diffs = [b - a for a, b in zip(trials[0]["fold_ap"], best["fold_ap"])]
    gain = sum(diffs) / len(diffs)
    se = (sum((d - gain) ** 2 for d in diffs) / (len(diffs) - 1)) ** 0.5 / len(diffs) ** 0.5 if len(diffs) > 1 else None
    chosen = best if best["id"] != 0 and se is not None and gain > se else trials[0]
    tune_seconds = time.monotonic() - started

    # as fraudlens trains: early stopping on the latest 20 %, then refit on every row
    fit_started = time.monotonic()
    _, best = fit(library, chosen["params"], x.iloc[:n_train], y[:n_train], (x.iloc[n_train:], y[n_train:]))
    rounds = max(1, round(best * n / n_train))
    model, _ = fit(library, chosen["params"], x, y, rounds=rounds)
    scores = predict(library, model, x_test, rounds)
    if len(sys.argv) > 5:
        pd.DataFrame({"transaction_id": test_ids, "probability": scores}).to_csv(sys.argv[5], index=False)
    print(json.dumps({
        "library": library, "trials": len(trials), "chosen": chosen["id"], "folds": most,
        "mean_fold_ap": mean(chosen), "params": chosen["params"], "rounds": rounds,
        "tune_seconds": round(tune_seconds, 1), "fit_seconds": round(time.monotonic() - fit_started, 1),
        "test_ap": average_precision_score(y_test, scores), "test_roc_auc": roc_auc_score(y_test, scores),
    }))


if __name__ == "__main__":
    main()
