#!/usr/bin/env bash
# fraudlens serve with its entity state in the process (memory, the default) and shared on Redis
# ([state] backend = redis://…), alternated in one run: ROUNDS x STATES servers, each on a new store
# and (Redis) a new namespace, both starting with no entity state (so they see the same entities grow
# over the run). Each server: a 3 s warm-up, then POST /api/v1/transactions (CONNS connections) and
# POST /api/v1/transactions/batch (BATCH transactions per request, BATCH_CONNS connections), every
# transaction new (bench/serve/unique.lua on the demo's simulated traffic). Prints one line per run
# and the medians; raw output goes to $OUT.
#
#   bench/serve_state.sh
#
# env: DURATION=10s CONNS=64 BATCH=100 BATCH_CONNS=16 ROUNDS=3 STATES="memory redis"
#      REDIS=redis://127.0.0.1:6379 STORE=postgres (or sqlite)
#      PG_ADMIN=postgres://root@127.0.0.1:5432/postgres BIN=path (default: built from this checkout)
#
# Per run, counted on the server between the start and the end of wrk: transactions scored
# (fraud_predictions_total), its CPU (/proc/<pid>/stat utime+stime), Redis's CPU (`INFO cpu`
# used_cpu_sys + used_cpu_user: the whole Redis server, so nothing else may use it meanwhile) and
# commands, and the shared state's counters (fraudlens_state_*: round trips and entities of the
# fetches and the compare-and-set writes, conflicts, blocks redone).
set -euo pipefail
source "$(dirname "$0")/serve/common.sh"   # cd to the checkout, WORK, BIN, MODEL, TRAFFIC, result, ...
DURATION="${DURATION:-10s}"; CONNS="${CONNS:-64}"; BATCH="${BATCH:-100}"; BATCH_CONNS="${BATCH_CONNS:-16}"
ROUNDS="${ROUNDS:-3}"; STATES="${STATES:-memory redis}"; REDIS="${REDIS:-redis://127.0.0.1:6379}"
STORE="${STORE:-postgres}"; PG_ADMIN="${PG_ADMIN:-postgres://root@127.0.0.1:5432/postgres}"
OUT="$WORK/state-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"
ports_free 8090
RUN_ID="$$"
dbs=(); server=""
cleanup() {
  local db
  [ -z "$server" ] || kill "$server" 2>/dev/null || true
  for db in "${dbs[@]}"; do psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true; done
}
trap cleanup EXIT

redis_info() { # "cpu_seconds commands" of the whole Redis server
  redis-cli -u "$REDIS" info all | tr -d '\r' | awk -F: '
    /^used_cpu_(sys|user):/ { cpu += $2 } /^total_commands_processed:/ { n = $2 }
    END { printf "%.6f %d", cpu, n }'
}
counters() { # "scored fetch_rt write_rt fetch_entities write_entities conflicts redone" of the server
  curl -s http://127.0.0.1:8090/metrics | awk '
    /^fraud_predictions_total/ { c[1] += $2 }
    /^fraudlens_state_round_trips_total\{.*op="fetch"/ { c[2] += $2 }
    /^fraudlens_state_round_trips_total\{.*op="write"/ { c[3] += $2 }
    /^fraudlens_state_entities_total\{.*op="fetch"/ { c[4] += $2 }
    /^fraudlens_state_entities_total\{.*op="write"/ { c[5] += $2 }
    /^fraudlens_state_conflicts_total/ { c[6] += $2 }
    /^fraudlens_state_redone_total/ { c[7] += $2 }
    END { for (i = 1; i <= 7; i++) printf "%d ", c[i] }'
}

# one wrk run (state round endpoint pid key path batch conns); appends a line to $OUT/runs.tsv
measure() {
  local label="$1	$2	$3" file="$OUT/wrk-$1-$2-$3.txt" pid=$4 key=$5 path=$6 batch=$7 conns=$8
  local before after redis_before redis_after cpu_before cpu_after
  before="$(counters)"; redis_before="$(redis_info)"; cpu_before="$(cpu_ticks "$pid")"
  WRK_BATCH=$batch WRK_BODIES_FILE=$TRAFFIC WRK_API_KEY=$key wrk -t2 -c"$conns" -d"$DURATION" --latency \
    -s "$ROOT/bench/serve/unique.lua" "http://127.0.0.1:8090$path" > "$file" 2>&1
  cpu_after="$(cpu_ticks "$pid")"; redis_after="$(redis_info)"; after="$(counters)"
  local requests; requests="$(sed -n 's/^RESULT.* requests=\([0-9]*\).*/\1/p' "$file")"
  # shellcheck disable=SC2086
  awk -v label="$label" -v wrk="$(result "$file")" -v requests="$requests" -v tick="$(getconf CLK_TCK)" \
    -v cpu=$((cpu_after - cpu_before)) -v rb="$redis_before" -v ra="$redis_after" -v b="$before" -v a="$after" \
    -v secs="${DURATION%s}" 'BEGIN {
      split(b, x, " "); split(a, y, " "); for (i = 1; i <= 7; i++) d[i] = y[i] - x[i]
      split(rb, r0, " "); split(ra, r1, " "); split(wrk, w, " ")
      tx = d[1] > 0 ? d[1] : 1; rt = d[2] + d[3]
      printf "%s\t%.0f\t%.2f\t%.2f\t%d\t%d\t%.1f\t%.1f\t%.3f\t%.2f\t%.1f\t%.1f\t%d\t%d\t%.1f\n", label, d[1] / secs, w[2], w[3], w[4] + w[5],
        requests, 1e6 * cpu / tick / tx, 1e6 * (r1[1] - r0[1]) / tx, rt / tx, rt / (requests > 0 ? requests : 1),
        (d[2] > 0 ? d[4] / d[2] : 0), (d[3] > 0 ? d[5] / d[3] : 0), d[6], d[7], (r1[2] - r0[2]) / tx }' | tee -a "$OUT/runs.tsv" >&2
}

run_server() {
  local state=$1 round=$2 name="$1-$2" dir="$WORK/state-run" url
  rm -rf "$dir"; mkdir -p "$dir"
  if [ "$STORE" = postgres ]; then
    local db="fraudlens_bench_state_${RUN_ID}_${round}_${state}"
    psql "$PG_ADMIN" -qc "CREATE DATABASE $db" >/dev/null; dbs+=("$db"); url="${PG_ADMIN%/*}/$db"
  else
    url="sqlite://$dir/fraudlens.db"
  fi
  local key; key="$(cd "$dir" && "$BIN" keys create --role service --database "$url" 2>/dev/null)"
  local backend=memory; [ "$state" = redis ] && backend="$REDIS"
  (cd "$dir" && FRAUDLENS_STATE__BACKEND="$backend" FRAUDLENS_STATE__NAMESPACE="bench-state-$RUN_ID-$name" \
    exec "$BIN" serve --model "$MODEL" --database "$url" --listen 127.0.0.1:8090 \
    > "$OUT/serve-$name.out" 2> "$OUT/serve-$name.log") &
  local pid=$!   # the subshell execs the server: same pid
  server=$pid
  for _ in $(seq 1 240); do curl -sf http://127.0.0.1:8090/health/ready >/dev/null && break; sleep 0.25; done
  curl -sf http://127.0.0.1:8090/health/ready >/dev/null \
    || { echo "fraudlens did not get ready:" >&2; cat "$OUT/serve-$name.log" >&2; exit 1; }
  WRK_BODIES_FILE=$TRAFFIC WRK_API_KEY=$key wrk -t2 -c"$CONNS" -d3s -s "$ROOT/bench/serve/unique.lua" \
    http://127.0.0.1:8090/api/v1/transactions >/dev/null 2>&1
  measure "$state" "$round" single "$pid" "$key" /api/v1/transactions 1 "$CONNS"
  measure "$state" "$round" batch "$pid" "$key" /api/v1/transactions/batch "$BATCH" "$BATCH_CONNS"
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  [ "$state" = redis ] && redis-cli -u "$REDIS" --scan --pattern "bench-state-$RUN_ID-$name:*" \
    | xargs -r -n 500 redis-cli -u "$REDIS" unlink >/dev/null
  return 0
}

echo "serve_state $(date -Is) store=$STORE duration=$DURATION conns=$CONNS batch=${BATCH}x$BATCH_CONNS $(machine)" | tee "$OUT/summary.txt"
header="state	round	endpoint	tx/s	p50_ms	p99_ms	errors	requests	server_cpu_us/tx	redis_cpu_us/tx	round_trips/tx	round_trips/request	entities/fetch	entities/write	conflicts	redone	redis_commands/tx"
echo "$header" > "$OUT/runs.tsv"; echo "$header" >&2
for round in $(seq 1 "$ROUNDS"); do
  for state in $STATES; do run_server "$state" "$round"; done
  echo "  (load average $(cut -d' ' -f1-3 /proc/loadavg))" >&2
done
# medians over the rounds, and redis / memory of each round's pair (median)
python3 - "$OUT/runs.tsv" <<'PY' | tee -a "$OUT/summary.txt"
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
cols = [c for c in rows[0] if c not in ("state", "round", "endpoint")]
print("\t".join(["state", "endpoint"] + cols) + "\t(medians)")
for endpoint in ("single", "batch"):
    for state in dict.fromkeys(r["state"] for r in rows):
        sel = [r for r in rows if r["state"] == state and r["endpoint"] == endpoint]
        print("\t".join([state, endpoint] + [f"{statistics.median(float(r[c]) for r in sel):g}" for c in cols]))
    pairs = {}
    for r in rows:
        if r["endpoint"] == endpoint:
            pairs.setdefault(r["round"], {})[r["state"]] = r
    for c in ("tx/s", "p99_ms", "server_cpu_us/tx"):
        ratios = [float(p["redis"][c]) / float(p["memory"][c]) for p in pairs.values() if {"redis", "memory"} <= p.keys()]
        if ratios:
            print(f"{endpoint}: redis / memory {c}: median {statistics.median(ratios):.2f} (rounds: {', '.join(f'{x:.2f}' for x in ratios)})")
PY
echo "(raw output: $OUT)"
