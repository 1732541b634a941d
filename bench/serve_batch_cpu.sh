#!/usr/bin/env bash
# The batch endpoint's server CPU per transaction: fraudlens serve (the demo model, its 90 days of entity
# state) on SQLite or PostgreSQL, wrk (2 threads, 16 connections, 10 s) posting 100 new transactions per
# request (bench/serve/unique.lua); prints tx/s (the server's fraud_predictions_total over the run), the
# server's CPU seconds (/proc, user + system) and µs per transaction, and wrk's RESULT line.
#   bench/serve_batch_cpu.sh                                   # SQLite
#   DB_URL=postgres://…/empty_db bench/serve_batch_cpu.sh      # PostgreSQL (an empty database)
#   PERF=1 …                                                   # also perf record -g the server (perf.data in the run dir)
# env: BIN (default: a release build of this checkout), DURATION=10s CONNS=16
set -euo pipefail
source "$(dirname "$0")/serve/common.sh"   # cd to the checkout, WORK, BIN, MODEL, TRAFFIC, cpu_ticks
ports_free 8090
DURATION="${DURATION:-10s}"; CONNS="${CONNS:-16}"
dir="$WORK/batch-cpu-$$"; rm -rf "$dir"; mkdir -p "$dir"
url="${DB_URL:-sqlite://$dir/fraudlens.db}"
key="$(cd "$dir" && "$BIN" keys create --role service --database "$url" 2>/dev/null)"
cp "$WORK/demo/engine.snapshot" "$dir/state.bin"
(cd "$dir" && FRAUDLENS_SERVE__STATE_FILE="$dir/state.bin" exec "$BIN" serve --model "$MODEL" --database "$url" \
  --listen 127.0.0.1:8090 > "$dir/out" 2> "$dir/log") &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do curl -sf http://127.0.0.1:8090/health/ready >/dev/null && break; sleep 0.25; done
export WRK_BASE_MS
WRK_BASE_MS="$(python3 - "$TRAFFIC" <<'PY'
import datetime, json, sys
last = json.loads(open(sys.argv[1]).readlines()[-1])["timestamp"]
print(int((datetime.datetime.fromisoformat(last.replace("Z", "+00:00")) + datetime.timedelta(minutes=1)).timestamp() * 1000))
PY
)"
batch() { WRK_BATCH=100 WRK_BODIES_FILE=$TRAFFIC WRK_API_KEY=$key wrk -t2 -c"$CONNS" "$@" -s bench/serve/unique.lua \
  http://127.0.0.1:8090/api/v1/transactions/batch; }
predictions() { curl -s http://127.0.0.1:8090/metrics | awk '/^fraud_predictions_total/ { s += $2 } END { print s }'; }
batch -d3s > /dev/null 2>&1   # warm-up
c0="$(cpu_ticks "$pid")"; n0="$(predictions)"; t0="$(date +%s.%N)"
perf_pid=""
if [ -n "${PERF:-}" ]; then perf record -F 999 -g -p "$pid" -o "$dir/perf.data" -- sleep 8 > /dev/null 2>&1 & perf_pid=$!; fi
batch -d"$DURATION" --latency > "$dir/wrk.txt" 2>&1
c1="$(cpu_ticks "$pid")"; n1="$(predictions)"; t1="$(date +%s.%N)"
[ -z "$perf_pid" ] || wait "$perf_pid"
awk -v c="$(( c1 - c0 ))" -v hz="$(getconf CLK_TCK)" -v n="$(( n1 - n0 ))" -v t0="$t0" -v t1="$t1" \
  'BEGIN { printf "%.0f tx/s, server CPU %.2f s, %.1f us/tx\n", n / (t1 - t0), c / hz, c / hz / n * 1e6 }'
grep '^RESULT' "$dir/wrk.txt"
echo "($(machine); run dir $dir)"
