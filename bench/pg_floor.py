#!/usr/bin/env python3
"""PostgreSQL write-cost floor for fraudlens-shaped decision rows.

Measures, per write method, the PostgreSQL server CPU per stored row (all
processes owned by the postgres user: backend, walwriter, checkpointer,
background writer, ... read from /proc/<pid>/stat), the client's own CPU per
row, wall rows/s, WAL bytes per row and table+index bytes per row.

Standalone: creates a scratch database floor_<random>, drops it at the end.

    /tmp/peer-kafka-venv/bin/python bench/pg_floor.py   (the venv of ../shared/peers/kafka-python-detector/setup.sh) \
        [--dsn postgres://postgres@127.0.0.1:5432] [--rows 300000] [--batch 1000] \
        [--reps 2] [--only m1_unnest,m2_copy,...] [--json out.json]

CPU accounting: for every process owned by the postgres uid, utime+stime
(fields 14+15) plus cutime+cstime (16+17, so a child that exits inside the
window -- e.g. an autovacuum worker -- is still counted through the
postmaster).  Window = from the first batch to the last commit.  Then a
CHECKPOINT is issued and its cost (flushing the dirty pages the run left in
shared buffers) is measured separately; "pg incl. ckpt" adds the two.
Row generation happens before the window and is not counted.
"""

import argparse
import gc
import json
import os
import pwd
import random
import secrets
import sys
import time

import numpy as np
import psycopg
from psycopg import sql

DDL_FULL = """
CREATE TABLE transactions (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    transaction_id TEXT NOT NULL UNIQUE, fingerprint TEXT NOT NULL, event_time BIGINT NOT NULL, received_at BIGINT NOT NULL,
    entity TEXT, amount_minor BIGINT NOT NULL, currency TEXT NOT NULL, body TEXT NOT NULL, score DOUBLE PRECISION NOT NULL,
    probability DOUBLE PRECISION, raw_score DOUBLE PRECISION, anomaly_score DOUBLE PRECISION,
    decision TEXT NOT NULL CHECK (decision IN ('approve', 'review', 'decline')), reasons TEXT NOT NULL, features BYTEA NOT NULL,
    model_version TEXT NOT NULL, latency_us BIGINT NOT NULL,
    review_status TEXT CHECK (review_status IN ('pending_review', 'confirmed_fraud', 'false_positive', 'escalated')),
    review_updated_at BIGINT, label TEXT CHECK (label IN ('fraud', 'legit')), shard TEXT);
CREATE INDEX transactions_queue_score ON transactions (review_status, score DESC, seq DESC) WHERE review_status IS NOT NULL;
CREATE INDEX transactions_queue_time ON transactions (review_status, event_time, seq) WHERE review_status IS NOT NULL;
CREATE INDEX transactions_queue_entity ON transactions (entity, event_time) WHERE review_status IS NOT NULL;
CREATE INDEX transactions_shard ON transactions (shard, seq);
CREATE INDEX transactions_event_time ON transactions (event_time);
"""
# Same table, only the PK and the UNIQUE(transaction_id) index.
DDL_LEAN = DDL_FULL.split(";")[0] + ";"

# fraudlens's insert_columns!() order (crates/fraudlens-store/src/sql/mod.rs).
COLS = ["transaction_id", "fingerprint", "event_time", "received_at", "entity", "amount_minor",
        "currency", "body", "score", "probability", "raw_score", "anomaly_score", "decision",
        "reasons", "features", "model_version", "latency_us", "review_status", "shard"]
TYPES = ["text", "text", "int8", "int8", "text", "int8", "text", "text", "float8", "float8",
         "float8", "float8", "text", "text", "bytea", "text", "int8", "text", "text"]
COLLIST = ", ".join(COLS)

# Method 1: fraudlens's INSERT_UNNEST (crates/fraudlens-store/src/sql/postgres.rs), binary params.
INSERT_UNNEST = (f"INSERT INTO transactions ({COLLIST}) SELECT * FROM UNNEST("
                 + ", ".join(f"%b::{t}[]" for t in TYPES)
                 + ") ON CONFLICT (transaction_id) DO NOTHING RETURNING transaction_id")
COPY_SQL = f"COPY transactions ({COLLIST}) FROM STDIN (FORMAT binary)"
COPY_STAGING = f"COPY staging ({COLLIST}) FROM STDIN (FORMAT binary)"
STAGING_DDL = (f"CREATE TEMP TABLE staging ON COMMIT DELETE ROWS AS "
               f"SELECT {COLLIST} FROM transactions WITH NO DATA")
STAGING_MERGE = (f"INSERT INTO transactions ({COLLIST}) SELECT {COLLIST} FROM staging "
                 f"ON CONFLICT (transaction_id) DO NOTHING RETURNING transaction_id")

REASONS_FLAGGED = json.dumps([
    {"feature": f"f{k:02d}_velocity_entity_24h", "contribution": 0.0123456 * (k + 1),
     "value": 17.0 + k, "direction": "up", "note": "above p99 for segment"} for k in range(5)
], separators=(",", ":"))  # ~600 bytes


# ---------------------------------------------------------------- data -----

def features_matrix(rng, n, width):
    """n x width float64: 1/3 small ints, 1/3 NaN-or-0, 1/3 arbitrary doubles."""
    kind = rng.integers(0, 3, size=(n, width))
    small = rng.integers(0, 25, size=(n, width)).astype(np.float64)
    nanzero = np.where(rng.random((n, width)) < 0.5, np.nan, 0.0)
    arb = rng.standard_normal((n, width)) * rng.choice([1.0, 100.0, 1e4], size=(n, width))
    m = np.where(kind == 0, small, np.where(kind == 1, nanzero, arb))
    return m.astype("<f8")


def make_rows(n, feat_width, seed=42):
    rnd = random.Random(seed)
    rng = np.random.default_rng(seed)
    feats = features_matrix(rng, n, feat_width)
    t0 = 1767229143000
    rows = []
    et = t0
    for i in range(n):
        et += rnd.randint(1, 9)
        tx = f"tx_{i:010d}"
        cust = f"cust_{rnd.randrange(10000):06d}"
        term = f"term_{rnd.randrange(10000):06d}"
        amount = rnd.randint(100, 200000)
        flagged = rnd.random() < 0.01
        label = "fraud" if flagged and rnd.random() < 0.3 else "legit"
        body = (f'{{"id":"{tx}","timestamp":{et},"amount":{{"minor":{amount},"currency":"EUR"}},'
                f'"entities":["{cust}","{term}"],"attributes":[{{"Categorical":"contactless"}},'
                f'{{"Categorical":"LU"}},{{"Categorical":"5411"}}],"label":"{label}"}}')
        p = rnd.random() * (0.9 if flagged else 0.2) + (0.1 if flagged else 0.0)
        rows.append((
            tx,
            "%032x" % rnd.getrandbits(128),
            et,
            et + rnd.randint(0, 40),
            cust,
            amount,
            "EUR",
            body,
            p,                      # score
            p,                      # probability
            rnd.gauss(-3.0, 2.0),   # raw_score
            None,                   # anomaly_score (no anomaly model)
            "review" if flagged else "approve",
            REASONS_FLAGGED if flagged else "[]",
            feats[i].tobytes(),
            "gbdt-f180b423362c",
            rnd.randint(40, 900),
            "pending_review" if flagged else None,
            f"tx-2394129002/{rnd.randrange(4)}",
        ))
    return rows


# --------------------------------------------------------- accounting -----

PG_UID = pwd.getpwnam("postgres").pw_uid


def pg_ticks():
    """Sum of utime+stime+cutime+cstime over all processes of the postgres uid."""
    total = 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            if os.stat(f"/proc/{name}").st_uid != PG_UID:
                continue
            with open(f"/proc/{name}/stat") as f:
                s = f.read()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        fields = s[s.rindex(")") + 2:].split()   # fields[0] is field 3 (state)
        total += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
    return total


def all_ticks():
    """{pid: (comm, utime+stime+cutime+cstime)} for every process (for the 'other' diagnosis)."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                s = f.read()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        fields = s[s.rindex(")") + 2:].split()
        out[name] = (s[s.index("(") + 1:s.rindex(")")],
                     int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14]))
    return out


def top_others(a, b, exclude_pg=True, n=3):
    me = str(os.getpid())
    d = {}
    for pid, (comm, t) in b.items():
        if pid == me:
            continue
        try:
            if exclude_pg and os.stat(f"/proc/{pid}").st_uid == PG_UID:
                continue
        except FileNotFoundError:
            continue
        dt = t - a.get(pid, (comm, 0))[1]
        if dt > 0:
            d[comm] = d.get(comm, 0) + dt
    return ", ".join(f"{c}:{t / HZ:.2f}s" for c, t in sorted(d.items(), key=lambda x: -x[1])[:n])


def machine_ticks():
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    idle = parts[3] + parts[4]
    return sum(parts[:8]) - idle   # busy ticks (user..steal)


def loadavg():
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


HZ = os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------ methods -----

def write_unnest(conn, rows, batch, stmt_rows=500):
    inserted = 0
    cur = conn.cursor()
    for b in range(0, len(rows), batch):
        for s in range(b, min(b + batch, len(rows)), stmt_rows):
            chunk = rows[s:min(s + stmt_rows, b + batch, len(rows))]
            cols = [list(c) for c in zip(*chunk)]
            cur.execute(INSERT_UNNEST, cols, prepare=True)
            inserted += len(cur.fetchall())
        conn.commit()
    return inserted


def _copy(cur, stmt, chunk):
    with cur.copy(stmt) as cp:
        cp.set_types(TYPES)
        for r in chunk:
            cp.write_row(r)


def write_copy(conn, rows, batch):
    cur = conn.cursor()
    for b in range(0, len(rows), batch):
        _copy(cur, COPY_SQL, rows[b:b + batch])
        conn.commit()
    return len(rows)


def write_staging(conn, rows, batch):
    inserted = 0
    cur = conn.cursor()
    for b in range(0, len(rows), batch):
        _copy(cur, COPY_STAGING, rows[b:b + batch])
        cur.execute(STAGING_MERGE, prepare=True)
        inserted += len(cur.fetchall())
        conn.commit()
    return inserted


METHODS = {
    # name: (description, ddl, writer, row variant)
    "m1_unnest": ("INSERT..UNNEST ON CONFLICT RETURNING (500/stmt), full indexes", DDL_FULL, write_unnest, "wide"),
    "m2_copy": ("binary COPY into table, full indexes", DDL_FULL, write_copy, "wide"),
    "m3_stage": ("binary COPY to TEMP staging + INSERT..SELECT ON CONFLICT RETURNING", DDL_FULL, write_staging, "wide"),
    "m4_copy_lean": ("binary COPY, lean table (PK + UNIQUE tx id only)", DDL_LEAN, write_copy, "wide"),
    "m5a_unnest_compact": ("as m1, 160-byte features", DDL_FULL, write_unnest, "compact"),
    "m5b_copy_compact": ("as m2, 160-byte features", DDL_FULL, write_copy, "compact"),
}


def run_one(dsn, name, rows, batch):
    desc, ddl, writer, _ = METHODS[name]
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute("DROP TABLE IF EXISTS transactions")
        admin.execute(ddl)
        admin.execute("CHECKPOINT")
    time.sleep(1.0)
    conn = psycopg.connect(dsn)
    conn.prepare_threshold = 0
    if writer is write_staging:
        conn.execute(STAGING_DDL)
        conn.commit()
    lsn0 = conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
    conn.commit()
    la = loadavg()
    a0 = all_ticks()
    m0, p0, c0, w0 = machine_ticks(), pg_ticks(), time.process_time(), time.perf_counter()
    inserted = writer(conn, rows, batch)
    w1, c1, p1, m1 = time.perf_counter(), time.process_time(), pg_ticks(), machine_ticks()
    others = top_others(a0, all_ticks())
    stats = conn.execute(
        "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s), pg_total_relation_size('transactions'), "
        "pg_relation_size('transactions'), pg_indexes_size('transactions'), count(*) FROM transactions",
        (lsn0,)).fetchone()
    conn.commit()
    pk0 = pg_ticks()
    conn.execute("CHECKPOINT")
    conn.commit()
    pk1 = pg_ticks()
    conn.close()
    wal, total, heap, idx, count = stats
    assert inserted == len(rows) == count, (inserted, len(rows), count)
    n = len(rows)
    wall = w1 - w0
    pg_us = (p1 - p0) / HZ * 1e6 / n
    ck_us = (pk1 - pk0) / HZ * 1e6 / n
    client_us = (c1 - c0) * 1e6 / n
    other_cpu = (m1 - m0) / HZ - (p1 - p0) / HZ - (c1 - c0)
    return {
        "method": name, "desc": desc, "rows": n, "wall_s": round(wall, 2),
        "rows_per_s": round(n / wall), "pg_us_row": round(pg_us, 1),
        "ckpt_us_row": round(ck_us, 1), "pg_incl_ckpt_us_row": round(pg_us + ck_us, 1),
        "client_us_row": round(client_us, 1), "wal_b_row": round(float(wal) / n),
        "total_b_row": round(total / n), "heap_b_row": round(heap / n), "index_b_row": round(idx / n),
        "load1_before": la[0], "other_cpu_pct_of_2cores": round(100 * max(other_cpu, 0) / wall / os.cpu_count(), 1),
        "top_other_procs": others,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dsn", default="postgres://postgres@127.0.0.1:5432")
    ap.add_argument("--rows", type=int, default=300_000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--only", default=",".join(METHODS))
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    names = a.only.split(",")
    db = f"floor_{secrets.token_hex(4)}"
    base = a.dsn.rstrip("/")
    dsn = f"{base}/{db}"
    t_start = time.time()
    with psycopg.connect(f"{base}/postgres", autocommit=True) as c:
        settings = dict(c.execute(
            "SELECT name, setting FROM pg_settings WHERE name IN ('server_version','shared_buffers',"
            "'synchronous_commit','fsync','full_page_writes','wal_level','autovacuum','max_wal_size',"
            "'wal_compression','checkpoint_timeout')").fetchall())
        c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
    print(f"# scratch db {db}; settings {settings}; load {loadavg()}", flush=True)
    results = []
    try:
        data = {}
        for v in sorted({METHODS[n][3] for n in names}):
            t = time.time()
            data[v] = make_rows(a.rows, 60 if v == "wide" else 20)
            print(f"# generated {a.rows} {v} rows in {time.time() - t:.1f}s", flush=True)
        gc.collect()
        gc.freeze()
        gc.disable()
        for rep in range(1, a.reps + 1):
            for name in names:
                r = run_one(dsn, name, data[METHODS[name][3]], a.batch)
                r["rep"] = rep
                results.append(r)
                print(json.dumps(r), flush=True)
    finally:
        gc.enable()
        with psycopg.connect(f"{base}/postgres", autocommit=True) as c:
            c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))
        print(f"# dropped {db}; total {time.time() - t_start:.0f}s; load {loadavg()}", flush=True)
    hdr = ["method", "rep", "pg µs/row", "ckpt µs/row", "pg+ckpt µs/row", "client µs/row", "rows/s",
           "WAL B/row", "total B/row", "heap B/row", "index B/row", "load1", "other CPU %"]
    keys = ["method", "rep", "pg_us_row", "ckpt_us_row", "pg_incl_ckpt_us_row", "client_us_row",
            "rows_per_s", "wal_b_row", "total_b_row", "heap_b_row", "index_b_row", "load1_before",
            "other_cpu_pct_of_2cores"]
    print()
    print("| " + " | ".join(hdr) + " |")
    print("|" + "---|" * len(hdr))
    for r in sorted(results, key=lambda r: (names.index(r["method"]), r["rep"])):
        print("| " + " | ".join(str(r[k]) for k in keys) + " |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"settings": settings, "results": results}, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
