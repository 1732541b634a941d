#!/usr/bin/env bash
# fraudlens serve (SQLite and PostgreSQL) against the FastAPI + pickled XGBoost
# peer (../shared/peers/fastapi-xgboost), with the same load generator (wrk),
# in one run, on this machine. Prints one table; raw wrk output goes to $OUT.
#
#   bench/serve_vs_peer.sh
#
# env: DURATION=10s CONNS=64 PAUSE_MS=5 (the half-rate run) PEER_DIR=../shared/peers/fastapi-xgboost
#      PG_ADMIN=postgres://root@127.0.0.1:5432/postgres  PEER_CONFIGS="w2-omp1 w2"  SKIP_PEER=0
#
# What each row measures:
# - peer /predict: the peer's own runner, a fixed body (the peer stores nothing).
# - fraudlens "new, simulated traffic": bench/serve/unique.lua sends the last 70,000 transactions of
#   the demo's simulated data (customers and terminals the model knows, 0.7 % fraud) with a new
#   transaction id on every request, to a server whose entity state holds the 90 simulated days; each
#   request is featurized, scored and durably committed before its response. The goals are about this.
# - fraudlens "new, peer body": the peer's body with a new id, a customer from a pool of 20,000 and a
#   terminal from 5,000 per request (unknown to the model: more of them are flagged and explained).
# - fraudlens /predict fixed body: the peer's runner as is; after the first request every request is
#   an idempotent replay (the stored decision is read back).
# - batch: 100 new transactions per request (throughput in transactions/s = req/s x 100).
set -euo pipefail
source "$(dirname "$0")/serve/common.sh"   # cd to the checkout, WORK, BIN, MODEL, TRAFFIC, result, ...
DURATION="${DURATION:-10s}"; CONNS="${CONNS:-64}"; PAUSE_MS="${PAUSE_MS:-5}"
PEER_DIR="${PEER_DIR:-$ROOT/../shared/peers/fastapi-xgboost}"
PEER_WORK="${PEER_WORK:-/tmp/peer-fastapi}"; PEER_VENV="${PEER_VENV:-/tmp/peer-fastapi-venv}"
PEER_CONFIGS="${PEER_CONFIGS:-w2-omp1 w2}"; SKIP_PEER="${SKIP_PEER:-0}"
PG_ADMIN="${PG_ADMIN:-postgres://root@127.0.0.1:5432/postgres}"
OUT="$WORK/results-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"
ports_free 8000 8090
if [ "$SKIP_PEER" != 1 ] && [ ! -f "$PEER_WORK/models/fraud_detector.pkl" ]; then
  PEER_WORK="$PEER_WORK" VENV="$PEER_VENV" "$PEER_DIR/setup.sh" >&2
fi
SINGLE="$PEER_DIR/bodies/single.json"; BATCH="$PEER_DIR/bodies/batch100.json"
# fraudlens refuses events more than event_time.max_lateness (7 days) before its newest: its
# runs of the peer's body are dated just after the traffic (the end of the demo's state)
export WRK_BASE_MS
WRK_BASE_MS="$(python3 - "$TRAFFIC" <<'PY'
import datetime, json, sys
last = json.loads(open(sys.argv[1]).readlines()[-1])["timestamp"]
when = datetime.datetime.fromisoformat(last.replace("Z", "+00:00")) + datetime.timedelta(minutes=1)
print(int(when.timestamp() * 1000))
PY
)"
SINGLE_FL="$WORK/single-fraudlens.json"
python3 - "$SINGLE" "$SINGLE_FL" "$WRK_BASE_MS" <<'PY'
import datetime, json, sys
body = json.load(open(sys.argv[1]))
body["timestamp"] = datetime.datetime.fromtimestamp(int(sys.argv[3]) / 1000, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
json.dump(body, open(sys.argv[2], "w"))
PY

ROWS=()
row() { ROWS+=("$(printf '%-11s %-40s %s' "$1" "$2" "$3")"); echo "  $1 $2: $3" >&2; }

# peer: uvicorn configs, the peer's own runner
if [ "$SKIP_PEER" != 1 ]; then
  for cfg in $PEER_CONFIGS; do
    case "$cfg" in
      w2) envs=(); args=(--workers 2) ;;
      w2-omp1) envs=(OMP_NUM_THREADS=1); args=(--workers 2) ;;
      w1) envs=(); args=() ;;
      *) echo "unknown peer config $cfg" >&2; exit 1 ;;
    esac
    (cd "$PEER_WORK" && env "${envs[@]}" "$PEER_VENV/bin/uvicorn" app:app --host 127.0.0.1 --port 8000 "${args[@]}" \
      > "$OUT/peer-$cfg.log" 2>&1) &
    for _ in $(seq 1 240); do curl -sf http://127.0.0.1:8000/health >/dev/null && break; sleep 0.5; done
    sleep 3
    for case in single batch; do
      body=$SINGLE; path=/predict; [ $case = batch ] && { body=$BATCH; path=/predict/batch; }
      WRK_BODY_FILE=$body WRK_API_KEY=bench-key wrk -t2 -c"$CONNS" -d"$DURATION" --latency \
        -s "$PEER_DIR/post.lua" "http://127.0.0.1:8000$path" > "$OUT/peer-$cfg-$case.txt" 2>&1
      row "peer $cfg" "POST $path$([ $case = batch ] && echo ' x100')" "$(result "$OUT/peer-$cfg-$case.txt")"
    done
    pkill -f "uvicorn app:app --host 127.0.0.1 --port 8000" || true
    sleep 2
  done
fi

# fraudlens on each backend
run_fraudlens() {
  local label=$1 url=$2 dir="$WORK/run-$1"
  rm -rf "$dir"; mkdir -p "$dir"
  local key; key="$(cd "$dir" && "$BIN" keys create --role service --database "$url" 2>/dev/null)"
  cp "$WORK/demo/engine.snapshot" "$dir/state.bin"   # the entity state of the 90 simulated days
  (cd "$dir" && FRAUDLENS_SERVE__STATE_FILE="$dir/state.bin" exec "$BIN" serve --model "$MODEL" --database "$url" \
    --listen 127.0.0.1:8090 > "$OUT/fraudlens-$label.out" 2> "$OUT/fraudlens-$label.log") &
  local pid=$!   # the subshell execs the server: same pid
  for _ in $(seq 1 120); do curl -sf http://127.0.0.1:8090/health/ready >/dev/null && break; sleep 0.25; done
  kill -0 "$pid" 2>/dev/null || { echo "fraudlens did not start:" >&2; cat "$OUT/fraudlens-$label.log" >&2; exit 1; }
  row "fraudlens" "$label RSS idle (MiB)" "$(rss_mib "$pid")"
  local uniq="$ROOT/bench/serve/unique.lua"
  # warm-up, then the runs
  WRK_BODIES_FILE=$TRAFFIC WRK_API_KEY=$key wrk -t2 -c"$CONNS" -d3s -s "$uniq" http://127.0.0.1:8090/api/v1/transactions >/dev/null 2>&1
  WRK_BODIES_FILE=$TRAFFIC WRK_API_KEY=$key wrk -t2 -c"$CONNS" -d"$DURATION" --latency -s "$uniq" \
    http://127.0.0.1:8090/api/v1/transactions > "$OUT/fl-$label-new.txt" 2>&1 &
  local wrk_pid=$!; sleep 5; local rss_load; rss_load="$(rss_mib "$pid")"; wait $wrk_pid
  row "fraudlens" "$label POST /api/v1/transactions new, simulated" "$(result "$OUT/fl-$label-new.txt")"
  row "fraudlens" "$label RSS under load (MiB)" "$rss_load"
  WRK_DELAY_MS=$PAUSE_MS WRK_BODIES_FILE=$TRAFFIC WRK_API_KEY=$key wrk -t2 -c"$CONNS" -d"$DURATION" --latency -s "$uniq" \
    http://127.0.0.1:8090/api/v1/transactions > "$OUT/fl-$label-half.txt" 2>&1
  row "fraudlens" "$label  same, paced (~half rate)" "$(result "$OUT/fl-$label-half.txt")"
  WRK_BODY_FILE=$SINGLE WRK_API_KEY=$key wrk -t2 -c"$CONNS" -d"$DURATION" --latency -s "$uniq" \
    http://127.0.0.1:8090/api/v1/transactions > "$OUT/fl-$label-peerbody.txt" 2>&1
  row "fraudlens" "$label POST /api/v1/transactions new, peer body" "$(result "$OUT/fl-$label-peerbody.txt")"
  WRK_BATCH=100 WRK_BODIES_FILE=$TRAFFIC WRK_API_KEY=$key wrk -t2 -c16 -d"$DURATION" --latency -s "$uniq" \
    http://127.0.0.1:8090/api/v1/transactions/batch > "$OUT/fl-$label-batch.txt" 2>&1
  row "fraudlens" "$label POST /api/v1/transactions/batch x100" "$(result "$OUT/fl-$label-batch.txt")"
  WRK_BODY_FILE=$SINGLE_FL WRK_API_KEY=$key wrk -t2 -c"$CONNS" -d"$DURATION" --latency -s "$PEER_DIR/post.lua" \
    http://127.0.0.1:8090/predict > "$OUT/fl-$label-predict.txt" 2>&1
  row "fraudlens" "$label POST /predict fixed body (replay)" "$(result "$OUT/fl-$label-predict.txt")"
  local commits; commits="$(curl -s http://127.0.0.1:8090/metrics | awk '
    /^store_commit_batch_size_sum/ { rows = $2 } /^store_commit_batch_size_count/ { n = $2 }
    /^fraud_predictions_total/ { total += $2; if ($1 !~ /approve/) flagged += $2 }
    END { printf "%d commits, %.1f decisions per commit, %.2f %% flagged", n, rows / n, 100 * flagged / total }')"
  row "fraudlens" "$label commits" "$commits"
  kill -TERM "$pid"; wait 2>/dev/null || true
}

run_fraudlens sqlite "sqlite://$WORK/run-sqlite/fraudlens.db"
PG_DB="fraudlens_bench_$$"
PG_URL="${PG_ADMIN%/*}/$PG_DB"
psql "$PG_ADMIN" -qc "CREATE DATABASE $PG_DB" >/dev/null
trap 'psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" >/dev/null 2>&1 || true' EXIT
run_fraudlens postgres "$PG_URL"

{
  echo "serve_vs_peer $(date -Is) conns=$CONNS duration=$DURATION cpu=$(nproc) cores ($(lscpu | sed -n 's/^Model name: *//p' | head -1))"
  printf '%-11s %-40s %s\n' "who" "what" "req/s p50_ms p99_ms non2xx sockerr (or value)"
  printf '%s\n' "${ROWS[@]}"
} | tee "$OUT/summary.txt"
echo "(raw output: $OUT)"
