"""The peer: entity features the way a Python fraud team computes them.

The customer spending and terminal risk features of the Fraud Detection
Handbook (Le Borgne et al.), written with pandas' vectorised time-based
groupby-rolling rather than the Handbook's per-group apply, so the peer is as
fast as idiomatic pandas gets. Reads the simulator's CSV, writes a CSV.

usage: pandas_features.py IN.csv OUT.csv
"""
import sys

import pandas as pd

DELAY_DAYS = 7
WINDOWS = (1, 7, 30)


def main(src: str, dst: str) -> None:
    df = pd.read_csv(src, usecols=["transaction_id", "timestamp", "customer_id", "terminal_id", "amount", "is_fraud"])
    df["timestamp"] = pd.to_datetime(df["timestamp"], utc=True)
    df = df.sort_values("timestamp", kind="stable").reset_index(drop=True)
    df["row"] = df.index
    out = df[["transaction_id", "amount"]].copy()

    # windows (t - w, t], this transaction included
    by_customer = df.sort_values(["customer_id", "row"], kind="stable")
    for days in WINDOWS:
        rolled = by_customer.groupby("customer_id").rolling(f"{days}D", on="timestamp")["amount"]
        count = rolled.count().to_numpy()
        mean = rolled.mean().to_numpy()
        out.loc[by_customer["row"].to_numpy(), f"customer_count_{days}d"] = count
        out.loc[by_customer["row"].to_numpy(), f"customer_mean_{days}d"] = mean

    # terminal risk: frauds / transactions in (t - delay - w, t - delay]
    by_terminal = df.sort_values(["terminal_id", "row"], kind="stable")
    grouped = by_terminal.groupby("terminal_id")
    delay_count = grouped.rolling(f"{DELAY_DAYS}D", on="timestamp")["is_fraud"].count().to_numpy()
    delay_frauds = grouped.rolling(f"{DELAY_DAYS}D", on="timestamp")["is_fraud"].sum().to_numpy()
    rows = by_terminal["row"].to_numpy()
    for days in WINDOWS:
        rolled = grouped.rolling(f"{DELAY_DAYS + days}D", on="timestamp")["is_fraud"]
        count = rolled.count().to_numpy() - delay_count
        frauds = rolled.sum().to_numpy() - delay_frauds
        out.loc[rows, f"terminal_risk_{days}d"] = frauds / count  # 0/0 is NaN: no history
        out.loc[rows, f"terminal_risk_count_{days}d"] = count

    out.to_csv(dst, index=False)


if __name__ == "__main__":
    import numpy as np

    np.seterr(divide="ignore", invalid="ignore")
    main(sys.argv[1], sys.argv[2])
