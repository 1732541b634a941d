"""Parity of two feature CSVs: every column of the peer's file against the
column of the same name in fraudlens' file, rows matched by transaction_id.

usage: compare.py PEER.csv FRAUDLENS.csv
Exits 1 if any value differs by more than 1e-9 (relative) or in missingness.
"""
import sys

import numpy as np
import pandas as pd


def main(peer_path: str, ours_path: str) -> int:
    peer = pd.read_csv(peer_path).set_index("transaction_id")
    ours = pd.read_csv(ours_path).set_index("transaction_id").loc[peer.index]
    worst = 0
    for column in peer.columns:
        a = peer[column].to_numpy(dtype=float)
        b = ours[column].to_numpy(dtype=float)
        missing_differs = np.isnan(a) != np.isnan(b)
        both = ~np.isnan(a) & ~np.isnan(b)
        diff = np.abs(a[both] - b[both]) / np.maximum(1.0, np.abs(a[both]))
        bad = int(missing_differs.sum() + (diff > 1e-9).sum())
        worst = max(worst, bad)
        print(f"{column:28s} rows {len(a):>9}  max rel diff {diff.max() if diff.size else 0:.2e}  mismatches {bad}")
    print("parity: identical" if worst == 0 else "parity: MISMATCH")
    return 0 if worst == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
