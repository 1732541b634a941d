"""LightGBM and XGBoost on the matrix of prepare_matrix.py, for bench/model_vs_peers.sh.

    gbdt_peers.py train --lib lightgbm|xgboost --dir MATRIX [--trees 300] [--early-stopping 0]
                  [--threads 2] [--no-categorical] [--predictions OUT.f64] [--label NAME]
        Trains with the parameters of fraudlens' run it is compared with (below),
        prints one JSON line: training seconds, peak RSS, trees kept.
    gbdt_peers.py xgb-model --dir MATRIX --model OUT.json [--trees 200] [--depth 6]
        Trains the XGBoost model that fraudlens imports for the scoring benchmark.
    gbdt_peers.py xgb-score --dir MATRIX --model M.json --rust-raw RAW.f64 [--repeats 5]
        Times XGBoost inplace_predict (nthread=1) on the test rows and checks
        fraudlens' raw scores of the same model and rows (RAW.f64) against it.
    gbdt_peers.py report RESULTS.jsonl --dir MATRIX
        Average precision of every run's test predictions, and the table.

What is timed, for every library: building the training (and validation)
dataset — binning — and boosting; not reading the matrix. Peak RSS: the
high-water mark is reset just before that and read just after, so it is the
peak of training with the matrix already in memory (as for fraudlens).
"""

import argparse
import json
import math
import os
import sys
import time
from importlib.metadata import version

import numpy as np

# shared by every leaf-wise (LightGBM) and depth-wise (XGBoost) run; fraudlens
# gets the same through train_matrix's flags (bench/model_vs_peers.sh)
LEARNING_RATE = 0.1
NUM_LEAVES = 31
MIN_DATA_IN_LEAF = 20
MIN_SUM_HESSIAN = 1e-3
LAMBDA_L2 = 1.0
MAX_BIN = 255
MAX_DEPTH = 6
XGB_MIN_CHILD_WEIGHT = 1.0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    train_parser = commands.add_parser("train")
    train_parser.add_argument("--lib", choices=["lightgbm", "xgboost"], required=True)
    train_parser.add_argument("--dir", required=True)
    train_parser.add_argument("--trees", type=int, default=300)
    train_parser.add_argument("--early-stopping", type=int, default=0)
    train_parser.add_argument("--threads", type=int, default=2)
    train_parser.add_argument("--no-categorical", action="store_true")
    train_parser.add_argument("--predictions")
    train_parser.add_argument("--label")
    model_parser = commands.add_parser("xgb-model")
    model_parser.add_argument("--dir", required=True)
    model_parser.add_argument("--model", required=True)
    model_parser.add_argument("--trees", type=int, default=200)
    model_parser.add_argument("--depth", type=int, default=6)
    model_parser.add_argument("--threads", type=int, default=2)
    score_parser = commands.add_parser("xgb-score")
    score_parser.add_argument("--dir", required=True)
    score_parser.add_argument("--model", required=True)
    score_parser.add_argument("--rust-raw", required=True)
    score_parser.add_argument("--repeats", type=int, default=5)
    score_parser.add_argument("--shap-rows", type=int, default=2000)
    score_parser.add_argument("--rust-contributions")
    report_parser = commands.add_parser("report")
    report_parser.add_argument("results")
    report_parser.add_argument("--dir", required=True)
    report_parser.add_argument("--scoring", nargs=2, metavar=("FRAUDLENS_JSON", "XGBOOST_JSON"))
    report_parser.add_argument("--xgb-model")
    report_parser.add_argument("--latency")
    args = parser.parse_args()
    {"train": train, "xgb-model": xgb_model, "xgb-score": xgb_score, "report": report}[args.command](args)


def load(directory, part):
    with open(os.path.join(directory, "meta.json")) as meta_file:
        meta = json.load(meta_file)
    n_features = len(meta["features"])
    values = np.fromfile(os.path.join(directory, f"{part}.x.f64"), dtype="<f8").reshape(-1, n_features)
    labels = np.fromfile(os.path.join(directory, f"{part}.y.u8"), dtype=np.uint8).astype(np.float64)
    return meta, values, labels


def status_mib(field):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def reset_peak_rss():
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        pass


def train(args):
    meta, x_train, y_train = load(args.dir, "train")
    _, x_valid, y_valid = load(args.dir, "valid") if args.early_stopping > 0 else (None, None, None)
    _, x_test, _ = load(args.dir, "test")
    categorical = [] if args.no_categorical else [column["index"] for column in meta["categorical"]]
    reset_peak_rss()
    rss_before = status_mib("VmRSS")
    if args.lib == "lightgbm":
        fit = train_lightgbm
    else:
        fit = train_xgboost
    cpu_before = time.process_time()
    started = time.perf_counter()
    booster, trees, params = fit(args, categorical, x_train, y_train, x_valid, y_valid)
    train_seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_before
    peak_rss = status_mib("VmHWM")
    if args.lib == "lightgbm":
        raw = booster.predict(x_test, raw_score=True, num_iteration=trees)
    else:
        import xgboost as xgb

        raw = booster.inplace_predict(x_test, predict_type="margin", iteration_range=(0, trees))
    if args.predictions:
        np.asarray(raw, dtype="<f8").tofile(args.predictions)
    print(
        json.dumps(
            {
                "lib": args.lib,
                "label": args.label or args.lib,
                "version": version("lightgbm" if args.lib == "lightgbm" else "xgboost-cpu"),
                "train_seconds": train_seconds,
                "cpu_seconds": cpu_seconds,
                "trees": trees,
                "rss_before_mib": rss_before,
                "peak_rss_mib": peak_rss,
                "params": params,
            }
        )
    )


def train_lightgbm(args, categorical, x_train, y_train, x_valid, y_valid):
    import lightgbm as lgb

    params = {
        "objective": "binary",
        "learning_rate": LEARNING_RATE,
        "num_leaves": NUM_LEAVES,
        "max_depth": -1,
        "min_data_in_leaf": MIN_DATA_IN_LEAF,
        "min_sum_hessian_in_leaf": MIN_SUM_HESSIAN,
        "lambda_l2": LAMBDA_L2,
        "max_bin": MAX_BIN,
        # fraudlens' categorical settings are LightGBM's defaults
        "max_cat_to_onehot": 4,
        "max_cat_threshold": 32,
        "cat_smooth": 10.0,
        "num_threads": args.threads,
        # what LightGBM picks by itself on this data (it reports so), set here so
        # its timing is not charged with trying both layouts
        "force_row_wise": True,
        "metric": "binary_logloss",
        "verbosity": -1,
        "seed": 0,
    }
    train_set = lgb.Dataset(x_train, label=y_train, categorical_feature=categorical, free_raw_data=False)
    callbacks = []
    valid_sets = []
    if x_valid is not None:
        valid_sets = [lgb.Dataset(x_valid, label=y_valid, reference=train_set, categorical_feature=categorical)]
        callbacks = [lgb.early_stopping(args.early_stopping, first_metric_only=True, verbose=False)]
    booster = lgb.train(params, train_set, num_boost_round=args.trees, valid_sets=valid_sets, callbacks=callbacks)
    trees = booster.best_iteration if x_valid is not None and booster.best_iteration > 0 else booster.current_iteration()
    return booster, trees, params


def train_xgboost(args, categorical, x_train, y_train, x_valid, y_valid):
    import xgboost as xgb

    feature_types = ["c" if idx in categorical else "q" for idx in range(x_train.shape[1])]
    base_score = float(y_train.mean())
    params = {
        "objective": "binary:logistic",
        "tree_method": "hist",
        "grow_policy": "depthwise",
        "max_depth": MAX_DEPTH,
        "eta": LEARNING_RATE,
        "min_child_weight": XGB_MIN_CHILD_WEIGHT,
        "lambda": LAMBDA_L2,
        "alpha": 0.0,
        "max_bin": MAX_BIN,
        # boost from the training fraud rate, as fraudlens does (XGBoost 3 would
        # estimate about the same by itself; set so that it is stated)
        "base_score": base_score,
        "max_cat_to_onehot": 4,
        "max_cat_threshold": 32,
        "nthread": args.threads,
        "eval_metric": "logloss",
        "seed": 0,
    }
    train_matrix = xgb.QuantileDMatrix(
        x_train,
        label=y_train,
        feature_types=feature_types,
        enable_categorical=bool(categorical),
        max_bin=MAX_BIN,
        nthread=args.threads,
    )
    evals = []
    kwargs = {}
    if x_valid is not None:
        valid_matrix = xgb.QuantileDMatrix(
            x_valid,
            label=y_valid,
            feature_types=feature_types,
            enable_categorical=bool(categorical),
            ref=train_matrix,
            max_bin=MAX_BIN,
            nthread=args.threads,
        )
        evals = [(valid_matrix, "valid")]
        kwargs["early_stopping_rounds"] = args.early_stopping
    booster = xgb.train(params, train_matrix, num_boost_round=args.trees, evals=evals, verbose_eval=False, **kwargs)
    trees = booster.best_iteration + 1 if x_valid is not None else booster.num_boosted_rounds()
    return booster, trees, params


def xgb_model(args):
    import xgboost as xgb

    meta, x_train, y_train = load(args.dir, "train")
    params = {
        "objective": "binary:logistic",
        "tree_method": "hist",
        "max_depth": args.depth,
        "eta": LEARNING_RATE,
        "lambda": LAMBDA_L2,
        "max_bin": MAX_BIN,
        "base_score": float(y_train.mean()),
        "nthread": args.threads,
        "seed": 0,
    }
    # numeric features only: the scoring benchmark is about tree traversal
    booster = xgb.train(params, xgb.DMatrix(x_train, label=y_train, nthread=args.threads), num_boost_round=args.trees)
    booster.save_model(args.model)
    dump = booster.get_dump()
    leaves = sum(tree.count("leaf=") for tree in dump)
    print(json.dumps({"trees": len(dump), "leaves": leaves, "version": version("xgboost-cpu"), "params": params}))


def xgb_score(args):
    import xgboost as xgb

    _, x_test, _ = load(args.dir, "test")
    booster = xgb.Booster(model_file=args.model)
    booster.set_param({"nthread": 1})
    rust_raw = np.fromfile(args.rust_raw, dtype="<f8")
    times = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        margin = booster.inplace_predict(x_test, predict_type="margin")
        times.append(time.perf_counter() - started)
    proba = booster.inplace_predict(x_test)
    shap_rows = x_test[: args.shap_rows]
    shap_matrix = xgb.DMatrix(shap_rows, nthread=1)
    started = time.perf_counter()
    contributions = booster.predict(shap_matrix, pred_contribs=True)
    shap_seconds = time.perf_counter() - started
    shap_diff = None
    if args.rust_contributions:
        rust_contributions = np.fromfile(args.rust_contributions, dtype="<f8").reshape(contributions.shape)
        shap_diff = float(np.max(np.abs(contributions.astype(np.float64) - rust_contributions)))
    rust_proba = 1.0 / (1.0 + np.exp(-rust_raw))
    rows = x_test.shape[0]
    print(
        json.dumps(
            {
                "lib": "xgboost",
                "rows": rows,
                "seconds_median": float(np.median(times)),
                "rows_per_second": rows / float(np.median(times)),
                "max_abs_raw_diff": float(np.max(np.abs(margin.astype(np.float64) - rust_raw))),
                "max_abs_proba_diff": float(np.max(np.abs(proba.astype(np.float64) - rust_proba))),
                "shap_rows": len(shap_rows),
                "shap_us_per_row": shap_seconds / len(shap_rows) * 1e6,
                "max_abs_contribution_diff": shap_diff,
            }
        )
    )


def average_precision(raw, labels):
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(labels, raw))


def report(args):
    meta, _, y_test = load(args.dir, "test")
    runs = []
    with open(args.results) as results:
        for line in results:
            if line.strip():
                runs.append(json.loads(line))
    by_label = {}
    for run in runs:
        run["ap"] = average_precision(np.fromfile(run["predictions"], dtype="<f8"), y_test)
        by_label.setdefault(run["label"], []).append(run)

    parts = meta["parts"]
    n_rows = sum(part["rows"] for part in parts.values())
    print(
        f"dataset: {n_rows:,} simulated transactions, {len(meta['features'])} features "
        f"({len(meta['categorical'])} categorical: {', '.join(meta['features'][c['index']] for c in meta['categorical'])})"
    )
    for name, part in parts.items():
        print(f"  {name:5} {part['rows']:>9,} rows {part['frauds']:>6,} fraud   {part['from'][:16]} .. {part['to'][:16]}")
    print()
    if runs:
        params = runs[0]["params"]
        threads = params.get("threads", params.get("num_threads", params.get("nthread")))
        header = f"{'training (' + str(threads) + ' threads)':44} {'trees':>6} {'train s':>8} {'min s':>7} {'peak RSS MiB':>13} {'(+ over data)':>13} {'test AP':>8}"
        print(header)
    sections = [
        ("leaf300", "leaf-wise, 31 leaves, 300 trees, no early stopping", "lightgbm"),
        ("leaf-es", "leaf-wise, 31 leaves, early stopping (50 rounds, validation log loss)", "lightgbm"),
        ("depth300", "depth-wise, max depth 6, 300 trees, no early stopping", "xgboost"),
        ("depth-es", "depth-wise, max depth 6, early stopping (50 rounds, validation log loss)", "xgboost"),
    ]
    for key, title, peer in sections:
        ours, theirs = by_label.get(f"{key}/fraudlens"), by_label.get(f"{key}/{peer}")
        if not ours or not theirs:
            continue
        print(title)
        rows = {}
        for name, group in (("fraudlens", ours), (peer, theirs)):
            seconds = sorted(run["train_seconds"] for run in group)
            median = seconds[len(seconds) // 2]
            peak = sorted(run["peak_rss_mib"] for run in group)[len(group) // 2]
            before = sorted(run["rss_before_mib"] for run in group)[len(group) // 2]
            aps = {round(run["ap"], 6) for run in group}
            trees = {run["trees"] for run in group}
            first = group[0]
            title = {
                "fraudlens": f"fraudlens {first['version']}",
                "lightgbm": f"LightGBM {first['version']}",
                "xgboost": f"XGBoost {first['version']} hist, base_score {first['params'].get('base_score', 0):.5f}",
            }[name]
            note = "" if len(aps) == 1 and len(trees) == 1 else "  (differs between runs)"
            print(
                f"  {title:42} {'/'.join(map(str, sorted(trees))):>6} {median:8.2f} {seconds[0]:7.2f} "
                f"{peak:13.0f} {peak - before:13.0f} {first['ap']:8.4f}{note}"
            )
            rows[name] = (median, first["ap"])
        ratio = rows["fraudlens"][0] / rows[peer][0]
        delta = rows["fraudlens"][1] - rows[peer][1]
        print(f"  {'time ratio fraudlens / ' + peer + ', AP difference':42} {'':>6} {ratio:8.2f} {'':>7} {'':>13} {'':>13} {delta:+8.4f}")
    if args.scoring:
        ours, theirs = (json.load(open(path)) for path in args.scoring)
        model = json.load(open(args.xgb_model)) if args.xgb_model else {}
        print()
        print(
            f"batch scoring, 1 thread, {ours['rows']:,} test rows, XGBoost model "
            f"({model.get('trees', '?')} trees, depth 6, {model.get('leaves', '?')} leaves, base_score {model.get('params', {}).get('base_score', 0):.5f})"
        )
        print(f"  {'fraudlens predict_raw_batch (import_xgboost_json)':52} {ours['rows_per_second']:>12,.0f} rows/s")
        print(f"  {'XGBoost ' + model.get('version', '') + ' inplace_predict, nthread=1':52} {theirs['rows_per_second']:>12,.0f} rows/s")
        print(f"  {'ratio fraudlens / XGBoost (goal >= 2)':52} {ours['rows_per_second'] / theirs['rows_per_second']:>12.2f}")
        print(
            f"  {'agreement (probabilities; raw scores)':52} {theirs['max_abs_proba_diff']:>12.1e} max |diff|; {theirs['max_abs_raw_diff']:.1e} on raw scores"
        )
        print(f"TreeSHAP contributions, 1 thread, first {ours['shap_rows']:,} test rows, same model")
        print(f"  {'fraudlens Forest::contributions, one row at a time':52} {ours['shap_us_per_row']:>12,.1f} µs/row")
        print(f"  {'XGBoost predict(pred_contribs=True), nthread=1':52} {theirs['shap_us_per_row']:>12,.1f} µs/row")
        if theirs.get("max_abs_contribution_diff") is not None:
            print(f"  {'agreement (contributions incl. bias)':52} {theirs['max_abs_contribution_diff']:>12.1e} max |diff|")
    if args.latency:
        print()
        print("single-row latency, 1 thread, each call timed")
        with open(args.latency) as latency:
            for line in latency:
                if not line.startswith("{"):
                    print("  " + line.rstrip())


if __name__ == "__main__":
    main()
