"""Data, model and request bodies of bench/serve_rows_vs_peer.sh: a
creditcard.csv-style table (Time, V1..V28, Amount; 0.5 % fraud), the peer's
XGBClassifier (n_estimators=200, max_depth=6, learning_rate=0.1, hist)
trained on it and saved twice — pickled for the peer, booster JSON for
`fraudlens import --xgboost` — and request bodies of unseen rows.

usage: rows_model.py OUT_DIR"""
import json
import os
import sys

import joblib
import numpy as np
import pandas as pd
from xgboost import XGBClassifier

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(20261206)
FEATURES = ["Time"] + [f"V{i}" for i in range(1, 29)] + ["Amount"]


def table(n):
    fraud = rng.random(n) < 0.005
    v = rng.normal(size=(n, 28))
    v[:, [0, 3, 13]] += np.where(fraud, 2.5, 0.0)[:, None]
    amount = np.where(fraud, rng.gamma(2.0, 120.0, n), rng.gamma(1.5, 40.0, n))
    time = np.sort(rng.integers(0, 172_800, n)).astype(float)
    frame = pd.DataFrame(np.column_stack([time, v, amount]).round(6), columns=FEATURES)
    return frame, fraud.astype(int)


x, y = table(200_000)
model = XGBClassifier(n_estimators=200, max_depth=6, learning_rate=0.1, tree_method="hist")
model.fit(x, y)
joblib.dump(model, os.path.join(out, "model.pkl"))
model.get_booster().save_model(os.path.join(out, "model.json"))
rows, _ = table(5_000)
with open(os.path.join(out, "rows.jsonl"), "w") as lines:
    for idx, row in enumerate(rows.to_dict(orient="records")):
        lines.write(json.dumps({"transaction_id": f"r{idx}", **row}, separators=(",", ":")) + "\n")
single = {"transaction_id": "r-single", **rows.iloc[0].to_dict()}
json.dump(single, open(os.path.join(out, "single.json"), "w"))
print(f"model and bodies in {out}: peer p(single) = {model.predict_proba(rows.iloc[[0]])[0][1]:.9f}")
