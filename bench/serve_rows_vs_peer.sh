#!/usr/bin/env bash
# A model of feature rows served over HTTP: fraudlens (an imported XGBoost model, every decision
# stored) against the FastAPI + pickled XGBoost peer written the same way as
# ../shared/peers/fastapi-xgboost (bench/peers/fastapi_rows.py), with the same load generator (wrk),
# the same model (the peer's XGBClassifier, imported into fraudlens from its booster JSON) and
# 30-feature rows (Time, V1..V28, Amount), in one run, on this machine.
#
#   bench/serve_rows_vs_peer.sh
#
# env: DURATION=10s CONNS=64 PEER_CONFIGS="w2-omp1 w2" PEER_VENV=/tmp/peer-fastapi-venv BIN=<release binary>
#
# Rows:
# - peer /predict: the peer's runner (post.lua), one fixed row; the peer stores nothing.
# - fraudlens /predict and /api/v1/predictions: bench/serve/unique.lua cycles through 5,000 unseen
#   rows, each request with a new transaction_id: scored, explained when flagged, and durably
#   committed (SQLite, then PostgreSQL) before its response.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
cache="${FRAUDLENS_CACHE_DIR:-$HOME/.cache/fraudlens}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"
WORK="${WORK:-$cache/bench-rows}"
DURATION="${DURATION:-10s}"; CONNS="${CONNS:-64}"; PEER_CONFIGS="${PEER_CONFIGS:-w2-omp1 w2}"
PEER_DIR="${PEER_DIR:-$ROOT/../shared/peers/fastapi-xgboost}"
PEER_WORK="${PEER_WORK:-/tmp/peer-fastapi}"; PEER_VENV="${PEER_VENV:-/tmp/peer-fastapi-venv}"
PG_ADMIN="${PG_ADMIN:-postgres://root@127.0.0.1:5432/postgres}"
mkdir -p "$WORK"; OUT="$WORK/results-$(date +%Y%m%d-%H%M%S)"; mkdir -p "$OUT"
for port in 8000 8090; do
  if curl -s -o /dev/null "http://127.0.0.1:$port/"; then echo "port $port is in use: stop that server first" >&2; exit 1; fi
done
[ -x "$PEER_VENV/bin/python" ] || PEER_WORK="$PEER_WORK" VENV="$PEER_VENV" "$PEER_DIR/setup.sh" >&2
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
if [ -z "${BIN:-}" ]; then
  cargo build --release --locked -q -p fraudlens
  BIN="$CARGO_TARGET_DIR/release/fraudlens"
fi
[ -f "$WORK/data/model.json" ] || "$PEER_VENV/bin/python" bench/peers/rows_model.py "$WORK/data" >&2
rm -rf "$WORK/fl-model"
"$BIN" import --xgboost "$WORK/data/model.json" --out "$WORK/fl-model" --review-threshold 0.5 --decline-threshold 0.8 >&2

result() {  # wrk's RESULT line -> "rps p50_ms p99_ms non2xx sockerr"
  local line; line="$(grep '^RESULT' "$1")"
  get() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p" <<<"$line"; }
  local sockerr=$(( $(get connect) + $(get read) + $(get write) + $(get timeout) ))
  awk -v r="$(get rps)" -v a="$(get p50_us)" -v b="$(get p99_us)" -v n="$(get non2xx)" -v s="$sockerr" \
    'BEGIN { printf "%.0f %.2f %.2f %d %d", r, a / 1000, b / 1000, n, s }'
}
ROWS=()
row() { ROWS+=("$(printf '%-18s %-36s %s' "$1" "$2" "$3")"); echo "  $1 $2: $3" >&2; }

for cfg in $PEER_CONFIGS; do
  case "$cfg" in
    w2) envs=(); args=(--workers 2) ;;
    w2-omp1) envs=(OMP_NUM_THREADS=1); args=(--workers 2) ;;
    w1) envs=(); args=() ;;
    *) echo "unknown peer config $cfg" >&2; exit 1 ;;
  esac
  (cd bench/peers && exec env "${envs[@]}" MODEL_PATH="$WORK/data/model.pkl" "$PEER_VENV/bin/uvicorn" fastapi_rows:app \
    --host 127.0.0.1 --port 8000 "${args[@]}" > "$OUT/peer-$cfg.log" 2>&1) &
  peer=$!
  for _ in $(seq 1 240); do curl -sf http://127.0.0.1:8000/health >/dev/null && break; sleep 0.5; done
  sleep 2
  peer_p="$(curl -s -X POST http://127.0.0.1:8000/predict -H 'X-API-Key: bench-key' -H 'content-type: application/json' \
    --data-binary "@$WORK/data/single.json")"
  WRK_BODY_FILE="$WORK/data/single.json" WRK_API_KEY=bench-key wrk -t2 -c"$CONNS" -d3s -s "$PEER_DIR/post.lua" \
    http://127.0.0.1:8000/predict > /dev/null 2>&1
  WRK_BODY_FILE="$WORK/data/single.json" WRK_API_KEY=bench-key wrk -t2 -c"$CONNS" -d"$DURATION" --latency \
    -s "$PEER_DIR/post.lua" http://127.0.0.1:8000/predict > "$OUT/peer-$cfg.txt" 2>&1
  row "peer $cfg" "POST /predict (30 features)" "$(result "$OUT/peer-$cfg.txt")"
  kill "$peer" 2>/dev/null; pkill -f "uvicorn fastapi_rows:app --host 127.0.0.1 --port 8000" || true
  wait "$peer" 2>/dev/null || true; sleep 2
done

run_fraudlens() {
  local label=$1 url=$2 dir="$WORK/run-$1"
  rm -rf "$dir"; mkdir -p "$dir"
  local key; key="$(cd "$dir" && "$BIN" keys create --role service --database "$url" 2>/dev/null)"
  (cd "$dir" && exec "$BIN" serve --model "$WORK/fl-model" --database "$url" --listen 127.0.0.1:8090 \
    > "$OUT/fraudlens-$label.out" 2> "$OUT/fraudlens-$label.log") &
  local pid=$!
  for _ in $(seq 1 120); do curl -sf http://127.0.0.1:8090/health/ready >/dev/null && break; sleep 0.25; done
  kill -0 "$pid" 2>/dev/null || { cat "$OUT/fraudlens-$label.log" >&2; exit 1; }
  local fl_p; fl_p="$(curl -s -X POST http://127.0.0.1:8090/predict -H "X-API-Key: $key" -H 'content-type: application/json' \
    --data-binary "@$WORK/data/single.json")"
  [ "$label" = sqlite ] && row "same model" "p(single row) peer | fraudlens" \
    "$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["fraud_probability"], json.loads(sys.argv[2])["fraud_probability"])' "$peer_p" "$fl_p")"
  local uniq="$ROOT/bench/serve/unique.lua"
  WRK_BODIES_FILE="$WORK/data/rows.jsonl" WRK_API_KEY=$key wrk -t2 -c"$CONNS" -d3s -s "$uniq" \
    http://127.0.0.1:8090/predict > /dev/null 2>&1
  for path in /predict /api/v1/predictions; do
    WRK_BODIES_FILE="$WORK/data/rows.jsonl" WRK_API_KEY=$key wrk -t2 -c"$CONNS" -d"$DURATION" --latency -s "$uniq" \
      "http://127.0.0.1:8090$path" > "$OUT/fl-$label-${path//\//_}.txt" 2>&1
    row "fraudlens $label" "POST $path new rows, stored" "$(result "$OUT/fl-$label-${path//\//_}.txt")"
  done
  local mix; mix="$(curl -s http://127.0.0.1:8090/metrics | awk '
    /^store_commit_batch_size_sum/ { rows = $2 } /^store_commit_batch_size_count/ { n = $2 }
    /^fraud_predictions_total/ { total += $2; if ($1 !~ /approve/) flagged += $2 }
    END { printf "%d commits, %.1f decisions per commit, %.2f %% flagged", n, rows / n, 100 * flagged / total }')"
  row "fraudlens $label" "commits" "$mix"
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
}

run_fraudlens sqlite "sqlite://$WORK/run-sqlite/fraudlens.db"
PG_DB="fraudlens_rows_$$"; PG_URL="${PG_ADMIN%/*}/$PG_DB"
psql "$PG_ADMIN" -qc "CREATE DATABASE $PG_DB" >/dev/null
trap 'psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" >/dev/null 2>&1 || true' EXIT
run_fraudlens postgres "$PG_URL"

{
  echo "serve_rows_vs_peer $(date -Is) conns=$CONNS duration=$DURATION cpu=$(nproc) cores ($(lscpu | sed -n 's/^Model name: *//p' | head -1))"
  printf '%-18s %-36s %s\n' "who" "what" "req/s p50_ms p99_ms non2xx sockerr (or value)"
  printf '%s\n' "${ROWS[@]}"
} | tee "$OUT/summary.txt"
echo "(raw output: $OUT)"
