"""Turn `fraudlens features` output into one feature matrix for every trainer.

usage: prepare_matrix.py FEATURES_CSV OUT_DIR [--test-days 14] [--train-share 0.8]

Rows are in time order. The last TEST_DAYS days are the test part; of the
rows before that cut, the first TRAIN_SHARE are the training part and the
rest the validation part (for early stopping). So every part is later in
time than the one before it, as in production.

Columns: every engine feature, plus the attributes channel, country and mcc
as integer category codes, numbered by frequency in the training part (ties
by value); a value never seen in training is missing. transaction_id,
timestamp, fraud_scenario and the label are not inputs.

Written to OUT_DIR, read unchanged by fraudlens (examples/train_matrix.rs),
LightGBM and XGBoost (gbdt_peers.py), so all see bit-identical inputs:
- {train,valid,test}.x.f64: row-major little-endian float64, NaN = missing;
- {train,valid,test}.y.u8: labels, one byte per row;
- meta.json: feature names, categorical features with their code counts,
  row and fraud counts, the cut times.
"""

import argparse
import json
import os

import numpy as np
import pandas as pd

CATEGORICAL = ["channel", "country", "mcc"]
NOT_INPUTS = ["transaction_id", "timestamp", "fraud_scenario", "is_fraud"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("features_csv")
    parser.add_argument("out_dir")
    parser.add_argument("--test-days", type=float, default=14)
    parser.add_argument("--train-share", type=float, default=0.8)
    args = parser.parse_args()

    frame = pd.read_csv(
        args.features_csv,
        dtype={name: str for name in CATEGORICAL + ["transaction_id", "timestamp", "fraud_scenario"]},
        float_precision="round_trip",
    )
    times = pd.to_datetime(frame["timestamp"], utc=True)
    if not times.is_monotonic_increasing:
        raise SystemExit("rows are not in time order")
    test_cut = times.iloc[-1].normalize() - pd.Timedelta(days=args.test_days) + pd.Timedelta(days=1)
    n_before = int((times < test_cut).sum())
    n_train = int(round(n_before * args.train_share))
    parts = {"train": slice(0, n_train), "valid": slice(n_train, n_before), "test": slice(n_before, len(frame))}

    features = [name for name in frame.columns if name not in NOT_INPUTS]
    matrix = pd.DataFrame(index=frame.index)
    categorical = []
    for name in features:
        if name in CATEGORICAL:
            train_values = frame[name].iloc[parts["train"]].dropna()
            counts = train_values.value_counts()
            order = sorted(counts.index, key=lambda value: (-counts[value], value))
            codes = {value: float(code) for code, value in enumerate(order)}
            matrix[name] = frame[name].map(codes).astype("float64")
            categorical.append({"name": name, "index": features.index(name), "n_codes": len(order)})
        else:
            matrix[name] = frame[name].astype("float64")
    values = np.ascontiguousarray(matrix.to_numpy(dtype=np.float64))
    labels = frame["is_fraud"].to_numpy(dtype=np.uint8)

    os.makedirs(args.out_dir, exist_ok=True)
    meta = {"features": features, "categorical": categorical, "parts": {}}
    for part, rows in parts.items():
        values[rows].astype("<f8").tofile(os.path.join(args.out_dir, f"{part}.x.f64"))
        labels[rows].tofile(os.path.join(args.out_dir, f"{part}.y.u8"))
        meta["parts"][part] = {
            "rows": int(labels[rows].shape[0]),
            "frauds": int(labels[rows].sum()),
            "from": str(times.iloc[rows.start]),
            "to": str(times.iloc[rows.stop - 1]),
        }
    with open(os.path.join(args.out_dir, "meta.json"), "w") as out:
        json.dump(meta, out, indent=1)
    for part, info in meta["parts"].items():
        print(f"{part:5} {info['rows']:8} rows {info['frauds']:6} fraud  {info['from']} .. {info['to']}")


if __name__ == "__main__":
    main()
