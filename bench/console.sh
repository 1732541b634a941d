#!/usr/bin/env bash
# The analyst console's pages at 1,000,000 stored decisions, on SQLite and on PostgreSQL: the
# time `fraudlens serve` (release) takes to answer the review queue, a case page and the
# overview, and the case analysis (similar cases) and search APIs, p50/p95/max over many
# requests. Prints one table; raw numbers go to $OUT.
#
#   bench/console.sh
#
# env: ROWS=1000000 REQUESTS=200 (per page kind) PORT=8098 BACKENDS="sqlite postgres"
#      PG=postgres://postgres@127.0.0.1:5432 BIN=(built from this checkout)
#
# - the data: the simulator's defaults (the demo's customers and terminals) over as many days as
#   ROWS needs, the first ROWS transactions; the model: the demo's (bench/serve/common.sh).
# - loaded through the batch API (1,000 a request, 4 connections) in time order, as live traffic
#   arrives: every decision is stored with its features, reasons and review status.
# - measured from a client on the same machine over one keep-alive connection, one request at a
#   time, signed in as an analyst (the session cookie): the time from sending the request to the
#   last byte of the page. That is the server's time plus a loopback round trip (~0.1 ms).
#   Pages: the queue (pending, worst first), the queue with `status=all&sort=time_desc`, case
#   pages of REQUESTS random flagged transactions and REQUESTS random transactions of any
#   decision, the overview's default range (the 7 days up to the newest decision) and 30 days;
#   then `GET /api/v1/transactions/{id}/analysis` of the same flagged transactions (the exact
#   similar-case search over the flagged decisions before each, and its narrative written) and
#   `GET /api/v1/search` of a few ids and words, with the analyst's API key.
# - PostgreSQL gets `VACUUM (ANALYZE) transactions` after the load (what autovacuum does soon after).
set -euo pipefail
source "$(dirname "$0")/serve/common.sh"   # cd to the checkout, WORK, BIN, MODEL, ...
ROWS="${ROWS:-1000000}"; REQUESTS="${REQUESTS:-200}"; PORT="${PORT:-8098}"
BACKENDS="${BACKENDS:-sqlite postgres}"; PG="${PG:-postgres://postgres@127.0.0.1:5432}"
OUT="$WORK/console-results-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"
ports_free "$PORT"
echo "start: $(machine)" | tee "$OUT/machine.txt" >&2

DATA="$WORK/console-$ROWS.csv"
if [ ! -s "$DATA" ]; then
  days=$(( ROWS / 9000 + 3 ))   # the defaults simulate about 10,000 a day
  echo "simulating $days days for $ROWS transactions" >&2
  "$BIN" simulate --days "$days" --out "$WORK/console-sim.csv" 2>/dev/null
  head -n "$(( ROWS + 1 ))" "$WORK/console-sim.csv" > "$DATA"
  rm -f "$WORK/console-sim.csv"
  [ "$(( $(wc -l < "$DATA") - 1 ))" -eq "$ROWS" ] || { echo "the simulation holds fewer than $ROWS rows" >&2; exit 1; }
fi

serve_pid=
stop() { [ -z "$serve_pid" ] || { kill "$serve_pid" 2>/dev/null; wait "$serve_pid" 2>/dev/null || true; serve_pid=; }; }
trap stop EXIT

for backend in $BACKENDS; do
  case "$backend" in
    sqlite) rm -f "$WORK"/console-bench.db*; database="sqlite://$WORK/console-bench.db" ;;
    postgres)
      command -v psql >/dev/null || { apt-get update -qq && apt-get install -y -qq postgresql-client >/dev/null; }
      psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS fraudlens_console_bench" -c "CREATE DATABASE fraudlens_console_bench" >/dev/null
      database="$PG/fraudlens_console_bench" ;;
    *) echo "unknown backend $backend" >&2; exit 2 ;;
  esac
  service="$("$BIN" keys create --role service --name loader --database "$database" 2>/dev/null)"
  analyst="$("$BIN" keys create --role analyst --name bench --database "$database" 2>/dev/null)"
  rm -f "$WORK/console-state.snap"
  FRAUDLENS_SERVE__STATE_FILE="$WORK/console-state.snap" FRAUDLENS_LOG__LEVEL=warn \
    "$BIN" serve --model "$MODEL" --database "$database" --listen "127.0.0.1:$PORT" > "$OUT/serve-$backend.log" 2>&1 &
  serve_pid=$!
  for _ in $(seq 1 600); do curl -sf "http://127.0.0.1:$PORT/health/ready" >/dev/null && break; sleep 0.2; done
  echo "$backend: loading $ROWS decisions" >&2
  python3 - "$DATA" "http://127.0.0.1:$PORT" "$service" > "$OUT/load-$backend.txt" <<'PY'
import csv, http.client, json, sys, threading, time, urllib.parse
path, base, key = sys.argv[1:4]
host = urllib.parse.urlparse(base)
rows = []
for row in csv.DictReader(open(path)):
    row.pop("is_fraud"); row.pop("fraud_scenario")
    rows.append(row)
batches = [json.dumps(rows[i:i + 1000]).encode() for i in range(0, len(rows), 1000)]
del rows
lock, cursor, errors = threading.Lock(), [0], []
def work():
    conn = http.client.HTTPConnection(host.hostname, host.port, timeout=120)
    while True:
        with lock:
            if cursor[0] >= len(batches):
                return
            body = batches[cursor[0]]; cursor[0] += 1
        conn.request("POST", "/api/v1/transactions/batch", body, {"X-API-Key": key, "Content-Type": "application/json"})
        response = conn.getresponse(); text = response.read()
        if response.status != 200:
            errors.append((response.status, text[:200]))
started = time.time()
threads = [threading.Thread(target=work) for _ in range(4)]
for t in threads: t.start()
for t in threads: t.join()
print(f"loaded {len(batches)} batches in {time.time() - started:.0f} s; errors {len(errors)} {errors[:3]}")
if errors: sys.exit(1)
PY
  cat "$OUT/load-$backend.txt" >&2
  # what autovacuum does soon after a bulk load (statistics, the visibility map for index-only
  # scans), done at once so that the run measures a settled database
  [ "$backend" != postgres ] || psql -q "$database" -c "VACUUM (ANALYZE) transactions" >/dev/null
  python3 - "http://127.0.0.1:$PORT" "$analyst" "$REQUESTS" "$backend" > "$OUT/pages-$backend.txt" <<'PY'
import http.client, json, random, re, statistics, sys, time, urllib.parse
base, key, n, backend = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
url = urllib.parse.urlparse(base)
conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
def get(path, cookie=""):
    conn.request("GET", path, headers={"Cookie": cookie})
    response = conn.getresponse(); body = response.read()
    return response, body
response, page = get("/ui/login")
nonce = re.search(rb'name="nonce" value="([0-9a-f]+)"', page).group(1).decode()
body = urllib.parse.urlencode({"key": key, "nonce": nonce, "next": "/ui/queue"})
conn.request("POST", "/ui/login", body, {"Cookie": f"fraudlens_login={nonce}", "Content-Type": "application/x-www-form-urlencoded"})
response = conn.getresponse(); response.read()
cookie = re.search(r"fraudlens_session=([0-9a-f]+)", response.getheader("Set-Cookie")).group(0)
def ids(query, pages):
    out, cursor = [], None
    for _ in range(pages):
        path = "/api/v1/anomalies?limit=500&" + query + (f"&cursor={urllib.parse.quote(cursor)}" if cursor else "")
        conn.request("GET", path, headers={"X-API-Key": key}); r = conn.getresponse(); page = json.loads(r.read())
        out += [item["transaction_id"] for item in page["items"]]
        cursor = page.get("next_cursor")
        if not cursor: break
    return out
random.seed(7)
flagged = random.sample(ids("sort=time_desc", 20), n)
# transactions of any decision: ids are tx_ and a 10-digit sequence in the simulator
any_ids = [f"tx_{random.randint(1, 1_000_000):010d}" for _ in range(n)]
def timed(paths):
    times = []
    for path in paths:
        start = time.perf_counter(); response, body = get(path, cookie)
        times.append((time.perf_counter() - start) * 1000)
        assert response.status == 200, (path, response.status, body[:300])
    return times
kinds = [
    ("queue (pending, worst first)", ["/ui/queue"] * n),
    ("queue (all, newest first)", ["/ui/queue?status=all&sort=time_desc"] * n),
    ("case (flagged)", ["/ui/cases/" + urllib.parse.quote(i, safe="") for i in flagged]),
    ("case (any decision)", ["/ui/cases/" + urllib.parse.quote(i, safe="") for i in any_ids]),
    ("overview (7 days)", ["/ui/overview"] * n),
    ("overview (30 days)", ["/ui/overview?range=30d"] * n),
]
def timed_api(paths):
    times, compared = [], []
    for path in paths:
        start = time.perf_counter()
        conn.request("GET", path, headers={"X-API-Key": key}); response = conn.getresponse(); body = response.read()
        times.append((time.perf_counter() - start) * 1000)
        assert response.status == 200, (path, response.status, body[:300])
        compared.append(json.loads(body).get("candidates_compared", 0))
    return times, compared
words = ["escalated", "tx_00001", "tx_0000999", "C000", "flagged amount"]
apis = [
    ("analysis API (flagged case, similar cases)", ["/api/v1/transactions/" + urllib.parse.quote(i, safe="") + "/analysis" for i in flagged]),
    ("search API (ids and words)", ["/api/v1/search?q=" + urllib.parse.quote(words[i % len(words)]) for i in range(n)]),
]
for name, paths in kinds:
    timed(paths[:5])  # warm
    t = sorted(timed(paths))
    p = lambda q: t[min(len(t) - 1, int(q * len(t)))]
    print(f"| {backend} | {name} | {len(t)} | {p(0.5):.1f} | {p(0.95):.1f} | {t[-1]:.1f} |")
for name, paths in apis:
    timed_api(paths[:5])  # warm
    t, compared = timed_api(paths)
    t = sorted(t)
    p = lambda q: t[min(len(t) - 1, int(q * len(t)))]
    extra = f" (compared with {statistics.median(compared):.0f} flagged decisions, median)" if max(compared) else ""
    print(f"| {backend} | {name}{extra} | {len(t)} | {p(0.5):.1f} | {p(0.95):.1f} | {t[-1]:.1f} |")
PY
  cat "$OUT/pages-$backend.txt"
  stop
done
echo "results: $OUT" >&2
