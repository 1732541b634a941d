"""The floor under durable scoring on SQLite: SQLite's own insert speed on this machine.

Rows are generated inside SQLite (a recursive CTE: no Python per row), shaped like
fraudlens' decision rows (a ~190-byte transaction body, 60 features as a 480-byte blob,
the unique transaction id), WAL + synchronous=FULL, 2,000 rows per commit — no parsing,
features, scoring or HTTP. SQLite has one writer at a time, so whatever else the
pipeline does, durable decisions cannot be stored faster than this.

usage: python3 bench/sqlite_floor.py [ROWS] [--small | --compact]
  --small:   8-byte features, empty body (stores less than a decision must)
  --compact: what a compact binary row format could reach while storing everything:
             features as 60 f32 (240 bytes), a 90-byte binary body, a 16-byte binary fingerprint
"""
import os, sqlite3, sys, time
import tempfile
args = [arg for arg in sys.argv[1:] if not arg.startswith("--")]
small = "--small" in sys.argv
compact = "--compact" in sys.argv
path = os.path.join(tempfile.mkdtemp(), "floor.db")
for suffix in ("", "-wal", "-shm"):
    try: os.remove(path + suffix)
    except FileNotFoundError: pass
db = sqlite3.connect(path, isolation_level=None)
db.execute("PRAGMA journal_mode=WAL"); db.execute("PRAGMA synchronous=FULL")
db.execute("""CREATE TABLE transactions (seq INTEGER PRIMARY KEY AUTOINCREMENT, transaction_id TEXT NOT NULL UNIQUE,
  fingerprint TEXT NOT NULL, event_time INTEGER NOT NULL, received_at INTEGER NOT NULL, entity TEXT, amount_minor INTEGER NOT NULL,
  currency TEXT NOT NULL, body TEXT NOT NULL, score REAL NOT NULL, probability REAL, raw_score REAL, anomaly_score REAL,
  decision TEXT NOT NULL, reasons TEXT NOT NULL, features BLOB NOT NULL, model_version TEXT NOT NULL, latency_us INTEGER NOT NULL,
  review_status TEXT, review_updated_at INTEGER, label TEXT, shard TEXT)""")
n, batch = int(args[0]) if args else 400_000, 2_000
sql = """WITH RECURSIVE i(k) AS (SELECT ? UNION ALL SELECT k + 1 FROM i WHERE k + 1 < ?)
INSERT INTO transactions (transaction_id, fingerprint, event_time, received_at, entity, amount_minor, currency, body, score,
  probability, raw_score, anomaly_score, decision, reasons, features, model_version, latency_us, review_status, shard)
SELECT printf('tx_%010d', k), hex(randomblob(16)), 1767225600000 + k, 1767225600000 + k, printf('cust_%06d', k % 5000), 21939, 'EUR',
  printf('{"id":"tx_%010d","timestamp":1767225600000,"amount":{"minor":21939,"currency":"EUR"},"entities":["cust_%06d","term_000001"],"attributes":{"mcc":"4829","channel":"online","country":"DK"}}', k, k % 5000),
  0.01, 0.01, -4.6, NULL, 'approve', '[]', randomblob(480), 'gbdt-0123456789ab', 12, NULL, printf('tx/%d', k % 4)
FROM i WHERE true ON CONFLICT (transaction_id) DO NOTHING"""
if small:
    sql = sql.replace("randomblob(480)", "randomblob(8)")
    sql = sql[: sql.index("printf('{")] + "'{}'," + sql[sql.index("0.01, 0.01"):]
    sql = sql.replace("'{}',0.01", "'{}', 0.01")
if compact:
    sql = sql.replace("randomblob(480)", "randomblob(240)").replace("hex(randomblob(16))", "randomblob(16)")
    sql = sql[: sql.index("printf('{")] + "randomblob(90), " + sql[sql.index("0.01, 0.01"):]
start = time.perf_counter()
for first in range(0, n, batch):
    db.execute("BEGIN IMMEDIATE"); db.execute(sql, (first, first + batch)); db.execute("COMMIT")
elapsed = time.perf_counter() - start
count = db.execute("SELECT COUNT(*) FROM transactions").fetchone()[0]
kind = "minimal rows" if small else "compact complete rows" if compact else "decision-shaped rows"
print(f"sqlite {sqlite3.sqlite_version}, {kind}: {count} rows in {elapsed:.2f} s = {count / elapsed:,.0f} rows/s (one writer, storage only)")
for suffix in ("", "-wal", "-shm"):
    if os.path.exists(path + suffix):
        os.remove(path + suffix)
