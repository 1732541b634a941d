"""Parity of fraudlens-model's LightGBM/XGBoost interop against the libraries.

Run by scripts/parity inside its pinned virtualenv:

    parity.py generate DIR [--small]   train models, write them with rows and the libraries' outputs
    parity.py verify DIR               score the Rust exports (DIR/exports.json) with LightGBM

`generate --small` makes the fixtures committed under
crates/fraudlens-model/tests/fixtures/interop/ (scripts/parity --regenerate-fixtures).

Layout of DIR: manifest.json lists the models; for each NAME there is the
model file, NAME_rows.csv (a header of feature names, then one row per line,
NaN as `nan`) and NAME_expected.csv (raw, proba, one contribution per
feature, bias), all floats written with repr() so they read back exactly.
"""

import argparse
import csv
import json
import math
import os
import sys
from importlib.metadata import version

import lightgbm as lgb
import numpy as np
import pandas as pd
import xgboost as xgb

PROBA_TOLERANCE = 1e-6
RAW_TOLERANCE = 1e-6
CONTRIB_TOLERANCE = 1e-5


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    generate_parser = commands.add_parser("generate")
    generate_parser.add_argument("dir")
    generate_parser.add_argument("--small", action="store_true", help="small models, for the committed fixtures")
    verify_parser = commands.add_parser("verify")
    verify_parser.add_argument("dir")
    args = parser.parse_args()
    if args.command == "generate":
        generate(args.dir, args.small)
    else:
        sys.exit(0 if verify(args.dir) else 1)


# ---------------------------------------------------------------------- data

N_CATEGORIES = 12


def training_frame(rng, n_rows):
    """Features with NaNs, exact zeros, a low-cardinality integer column and a category column."""
    amount = rng.lognormal(3.0, 1.2, n_rows)
    amount[rng.random(n_rows) < 0.08] = np.nan
    ratio = rng.normal(0.0, 1.0, n_rows)
    ratio[rng.random(n_rows) < 0.25] = 0.0
    hour = rng.integers(0, 24, n_rows).astype(float)
    count_1d = rng.poisson(2.0, n_rows).astype(float)
    count_1d[rng.random(n_rows) < 0.1] = np.nan
    merchant = rng.integers(0, N_CATEGORIES, n_rows).astype(float)
    merchant[rng.random(n_rows) < 0.05] = np.nan
    risk = rng.uniform(-2.0, 2.0, n_rows)
    logit = (
        0.8 * np.nan_to_num(np.log(amount) - 3.0, nan=1.5)
        + 0.9 * ratio
        + 0.7 * ((hour < 6) | (hour > 22))
        + 0.5 * np.nan_to_num(count_1d, nan=4.0) / 2.0
        + np.where(np.isin(merchant, [1, 4, 7, 10]), 1.5, np.where(np.isnan(merchant), 0.8, -0.5))
        + 0.6 * risk * (ratio == 0.0)
        - 1.2
    )
    label = (rng.random(n_rows) < 1.0 / (1.0 + np.exp(-logit))).astype(int)
    frame = pd.DataFrame(
        {
            "amount": amount,
            "amount_ratio": ratio,
            "hour": hour,
            "count_1d": count_1d,
            "merchant_category": merchant,
            "risk": risk,
        }
    )
    return frame, label


def scoring_rows(rng, train, n_rows, thresholds):
    """Rows to score: training-like rows plus NaN, zeros, negatives, exact split
    thresholds and their neighbours, and unseen or invalid category codes."""
    rows = train.sample(n_rows, random_state=int(rng.integers(1 << 31))).to_numpy(dtype=float)
    n_features = rows.shape[1]
    category_idx = list(train.columns).index("merchant_category")
    for row in rows[: n_rows // 2]:
        feature = int(rng.integers(n_features))
        if feature == category_idx:
            row[feature] = rng.choice([np.nan, 0.0, -1.0, -3.0, 2.5, float(N_CATEGORIES), 40.0, 1e9])
        else:
            specials = [np.nan, 0.0, -0.0, -1.5, 1e-40, -7.25, 1e12]
            for_feature = thresholds.get(feature, [])
            if for_feature:
                threshold = for_feature[int(rng.integers(len(for_feature)))]
                specials += [threshold, np.nextafter(threshold, np.inf), np.nextafter(threshold, -np.inf)]
            row[feature] = specials[int(rng.integers(len(specials)))]
    return rows


def write_rows(path, names, rows):
    with open(path, "w", newline="") as file:
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(names)
        for row in rows:
            writer.writerow([repr(float(x)) for x in row])


def read_rows(path):
    with open(path, newline="") as file:
        reader = csv.reader(file)
        names = next(reader)
        rows = np.array([[float(x) for x in row] for row in reader], dtype=float)
    return names, rows


def write_expected(path, n_features, raw, proba, contribs):
    with open(path, "w", newline="") as file:
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(["raw", "proba"] + [f"contrib_{idx}" for idx in range(n_features)] + ["bias"])
        for row_raw, row_proba, row_contribs in zip(raw, proba, contribs):
            writer.writerow([repr(float(row_raw)), repr(float(row_proba))] + [repr(float(x)) for x in row_contribs])


# ------------------------------------------------------------------ generate


def lightgbm_thresholds(booster):
    """Numeric split thresholds per feature, to place rows exactly on them."""
    thresholds = {}
    for tree in booster.dump_model()["tree_info"]:
        stack = [tree["tree_structure"]]
        while stack:
            node = stack.pop()
            if "split_feature" in node:
                if node["decision_type"] == "<=":
                    thresholds.setdefault(node["split_feature"], []).append(float(node["threshold"]))
                stack += [node["left_child"], node["right_child"]]
    return thresholds


def xgboost_thresholds(booster, names):
    frame = booster.trees_to_dataframe()
    numeric = frame[frame["Feature"].isin(names) & frame["Split"].notna()]
    thresholds = {}
    for feature, split in zip(numeric["Feature"], numeric["Split"]):
        if isinstance(split, float) and feature != "merchant_category":
            # XGBoost sends x < split left: the split value itself and the f32 below it are the edges
            value = float(np.float32(split))
            thresholds.setdefault(names.index(feature), []).append(value)
    return thresholds


def generate(out_dir, small):
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(20240611 if small else 7)
    n_train = 3000 if small else 8000
    n_rows = 160 if small else 600
    n_trees = 30 if small else 80
    train, label = training_frame(rng, n_train)
    names = list(train.columns)
    n_features = len(names)
    models = []

    # LightGBM: the category column is given as categorical_feature on float codes
    lightgbm_params = {
        "objective": "binary",
        "num_leaves": 24 if small else 48,
        "max_depth": 6,
        "learning_rate": 0.1,
        "min_data_in_leaf": 20,
        "min_data_per_group": 20,
        "cat_smooth": 5.0,
        "max_cat_to_onehot": 4,
        "verbose": -1,
        "seed": 1,
        "deterministic": True,
        "num_threads": 1,
    }
    variants = [
        ("lightgbm", {}, n_trees),
        ("lightgbm_zero", {"zero_as_missing": True, "sigmoid": 1.5}, n_trees // 3),
        ("lightgbm_rf", {"boosting": "rf", "bagging_fraction": 0.7, "bagging_freq": 1, "feature_fraction": 0.8}, 10),
    ]
    for name, extra, rounds in variants:
        dataset = lgb.Dataset(train, label, categorical_feature=["merchant_category"], free_raw_data=False)
        booster = lgb.train({**lightgbm_params, **extra}, dataset, num_boost_round=rounds)
        model_file = f"{name}.txt"
        booster.save_model(os.path.join(out_dir, model_file))
        rows = scoring_rows(rng, train, n_rows, lightgbm_thresholds(booster))
        rows[0, :] = np.nan
        rows[1, :] = 0.0
        raw = booster.predict(rows, raw_score=True)
        proba = booster.predict(rows)
        contribs = booster.predict(rows, pred_contrib=True)
        sigmoid = extra.get("sigmoid", 1.0)
        write_rows(os.path.join(out_dir, f"{name}_rows.csv"), names, rows)
        # our raw score is LightGBM's times the sigmoid scale, and so are contributions
        write_expected(os.path.join(out_dir, f"{name}_expected.csv"), n_features, raw * sigmoid, proba, contribs * sigmoid)
        # LightGBM's raw_score and pred_contrib of a random forest are sums over trees, ours means
        sum_scale = float(rounds) if extra.get("boosting") == "rf" else 1.0
        models.append({"name": name, "format": "lightgbm", "file": model_file, "sum_scale": sum_scale})

    # XGBoost: the category column is a pandas category (codes 0..N_CATEGORIES-1 are its values)
    xgb_train = train.copy()
    xgb_train["merchant_category"] = pd.Categorical(train["merchant_category"], categories=list(range(N_CATEGORIES)))
    dtrain = xgb.DMatrix(xgb_train, label, enable_categorical=True)
    xgboost_variants = [
        ("xgboost", "binary:logistic", n_trees, {}),
        ("xgboost_logitraw", "binary:logitraw", n_trees // 3, {}),
        # a random forest: several parallel trees per round, all summed
        ("xgboost_forest", "binary:logistic", 3, {"num_parallel_tree": 4, "subsample": 0.8, "colsample_bynode": 0.8}),
    ]
    for name, objective, rounds, extra in xgboost_variants:
        params = {
            **extra,
            "objective": objective,
            "tree_method": "hist",
            "max_depth": 6 if not small else 5,
            "eta": 0.15,
            "max_cat_to_onehot": 1,
            "min_child_weight": 1.0,
            "seed": 3,
            "nthread": 1,
        }
        booster = xgb.train(params, dtrain, num_boost_round=rounds)
        model_file = f"{name}.json"
        booster.save_model(os.path.join(out_dir, model_file))
        rows = scoring_rows(rng, train, n_rows, xgboost_thresholds(booster, names))
        rows[0, :] = np.nan
        rows[1, :] = 0.0
        rows[np.isinf(rows)] = 1e30  # XGBoost refuses infinite inputs
        dmatrix = xgb.DMatrix(
            rows, feature_names=names, feature_types=["q", "q", "q", "q", "c", "q"], enable_categorical=True
        )
        raw = booster.predict(dmatrix, output_margin=True)
        proba = booster.predict(dmatrix)
        if objective == "binary:logitraw":
            proba = 1.0 / (1.0 + np.exp(-raw.astype(float)))
        contribs = booster.predict(dmatrix, pred_contribs=True)
        write_rows(os.path.join(out_dir, f"{name}_rows.csv"), names, rows)
        write_expected(os.path.join(out_dir, f"{name}_expected.csv"), n_features, raw, proba, contribs)
        models.append({"name": name, "format": "xgboost", "file": model_file, "sum_scale": 1.0})

    manifest = {
        "generated_by": "crates/fraudlens-model/tests/parity/parity.py",
        "versions": {package: version(package) for package in ["lightgbm", "xgboost-cpu", "numpy", "pandas"]},
        "models": models,
    }
    with open(os.path.join(out_dir, "manifest.json"), "w") as file:
        json.dump(manifest, file, indent=2)
        file.write("\n")
    print(f"generated {len(models)} models in {out_dir}: " + ", ".join(model["name"] for model in models))


# -------------------------------------------------------------------- verify


def verify(out_dir):
    """Scores every model Rust exported with LightGBM and compares with Rust's outputs."""
    exports_path = os.path.join(out_dir, "exports.json")
    if not os.path.exists(exports_path):
        print(f"error: {exports_path} is missing: the Rust parity test did not write its exports", file=sys.stderr)
        return False
    with open(exports_path) as file:
        exports = json.load(file)["exports"]
    if not exports:
        print("error: exports.json lists no exports", file=sys.stderr)
        return False
    ok = True
    for name in exports:
        booster = lgb.Booster(model_file=os.path.join(out_dir, f"{name}.txt"))
        _, rows = read_rows(os.path.join(out_dir, f"{name}_rows.csv"))
        expected = np.loadtxt(os.path.join(out_dir, f"{name}_expected.csv"), delimiter=",", skiprows=1, ndmin=2)
        raw = booster.predict(rows, raw_score=True)
        proba = booster.predict(rows)
        contribs = booster.predict(rows, pred_contrib=True)
        diffs = {
            "raw": (np.max(np.abs(raw - expected[:, 0])), RAW_TOLERANCE),
            "proba": (np.max(np.abs(proba - expected[:, 1])), PROBA_TOLERANCE),
            "contrib": (np.max(np.abs(contribs - expected[:, 2:])), CONTRIB_TOLERANCE),
        }
        line = ", ".join(f"{what} {diff:.3g}" for what, (diff, _) in diffs.items())
        bad = [what for what, (diff, tolerance) in diffs.items() if not diff <= tolerance]
        status = "ok" if not bad else "MISMATCH in " + ", ".join(bad)
        print(f"lightgbm scores fraudlens export {name} ({len(rows)} rows, {booster.num_trees()} trees): max abs diff {line}: {status}")
        ok &= not bad
    return ok


if __name__ == "__main__":
    main()
