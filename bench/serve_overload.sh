#!/usr/bin/env bash
# fraudlens serve under a batch overload: CONNS connections each sending
# batches of BATCH new transactions back to back (bench/serve/unique.lua), once
# with the default `serve.max_transactions_in_flight` (shedding: 503 +
# Retry-After beyond it) and once with an unbounded budget (how serve behaved
# before shedding existed). Prints one line per run; raw output goes to $OUT.
#
#   bench/serve_overload.sh
#
# env: DURATION=20s CONNS=200 BATCH=1000 WORK=~/.cache/fraudlens/bench-serve
#      BUDGETS="16384 100000000" (max_transactions_in_flight of each run)
#      RETRY_AFTER=1 (clients wait as long as a 503's Retry-After says; 0: retry at once)
#      PIN=1 (server on CPU 0, wrk with one thread on CPU 1: the load generator
#             cannot take the server's CPU, so goodput is the server's alone)
#      BIN=path (the fraudlens binary to measure; default: built from this checkout)
#
# goodput: transactions scored and stored per second (server's
# fraud_predictions_total over the run), shed: share of requests answered 503,
# p50/p99: wrk's, over all requests (the 503s included), peak RSS: VmHWM.
set -euo pipefail
source "$(dirname "$0")/serve/common.sh"   # cd to the checkout, WORK, BIN, MODEL, TRAFFIC, cpu_ticks, ...
DURATION="${DURATION:-20s}"; CONNS="${CONNS:-200}"; BATCH="${BATCH:-1000}"
BUDGETS="${BUDGETS:-16384 100000000}"; RETRY_AFTER="${RETRY_AFTER:-1}"; PIN="${PIN:-0}"
if [ "$PIN" = 1 ]; then server_cpu=(taskset -c 0); load_cpu=(taskset -c 1); wrk_threads=1
else server_cpu=(); load_cpu=(); wrk_threads=2; fi
OUT="$WORK/overload-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"
ports_free 8090

predictions() { curl -s http://127.0.0.1:8090/metrics | awk '/^fraud_predictions_total/ { n += $2 } END { printf "%d", n }'; }

echo "conns=$CONNS batch=$BATCH duration=$DURATION retry_after=$RETRY_AFTER pin=$PIN cpu=$(nproc) cores ($(lscpu | sed -n 's/^Model name: *//p' | head -1))"
for budget in $BUDGETS; do
  dir="$WORK/overload-run"; rm -rf "$dir"; mkdir -p "$dir"
  url="sqlite://$dir/fraudlens.db"
  key="$(cd "$dir" && "$BIN" keys create --role service --database "$url" 2>/dev/null)"
  cp "$WORK/demo/engine.snapshot" "$dir/state.bin"
  (cd "$dir" && FRAUDLENS_SERVE__STATE_FILE="$dir/state.bin" FRAUDLENS_SERVE__MAX_TRANSACTIONS_IN_FLIGHT="$budget" \
    exec "${server_cpu[@]}" "$BIN" serve --model "$MODEL" --database "$url" --listen 127.0.0.1:8090 \
    > "$OUT/serve-$budget.out" 2> "$OUT/serve-$budget.log") &
  pid=$!
  for _ in $(seq 1 120); do curl -sf http://127.0.0.1:8090/health/ready >/dev/null && break; sleep 0.25; done
  kill -0 "$pid" 2>/dev/null || { echo "fraudlens did not start:" >&2; cat "$OUT/serve-$budget.log" >&2; exit 1; }
  before="$(predictions)"; cpu_before="$(cpu_ticks "$pid")"
  /usr/bin/time -f "%U %S" -o "$OUT/wrk-$budget.cpu" env WRK_RETRY_AFTER=$RETRY_AFTER WRK_BATCH=$BATCH WRK_BODIES_FILE=$TRAFFIC WRK_API_KEY=$key "${load_cpu[@]}" wrk -t$wrk_threads -c"$CONNS" -d"$DURATION" --timeout 60s --latency \
    -s "$ROOT/bench/serve/unique.lua" http://127.0.0.1:8090/api/v1/transactions/batch > "$OUT/wrk-$budget.txt" 2>&1
  after="$(predictions)"; cpu_after="$(cpu_ticks "$pid")"
  hwm="$(awk '/VmHWM/ { printf "%.0f", $2 / 1024 }' "/proc/$pid/status")"
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  line="$(grep '^RESULT' "$OUT/wrk-$budget.txt")"
  get() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p" <<<"$line"; }
  awk -v budget="$budget" -v req="$(get requests)" -v non2xx="$(get non2xx)" -v secs="$(get duration_s)" \
    -v p50="$(get p50_us)" -v p99="$(get p99_us)" -v scored=$((after - before)) -v hwm="$hwm" \
    -v sockerr=$(( $(get connect) + $(get read) + $(get write) + $(get timeout) )) \
    -v server_cpu="$(( cpu_after - cpu_before ))" -v tick="$(getconf CLK_TCK)" -v wrk_cpu="$(awk '{ print $1 + $2 }' "$OUT/wrk-$budget.cpu")" 'BEGIN {
      printf "max_transactions_in_flight=%s: requests %d, goodput %.0f tx/s, shed (503) %.1f %%, p50 %.0f ms, p99 %.0f ms, peak RSS %d MiB, socket errors %d, CPU s: server %.1f, wrk %.1f\n",
        budget, req, scored / secs, 100 * non2xx / (req > 0 ? req : 1), p50 / 1000, p99 / 1000, hwm, sockerr, server_cpu / tick, wrk_cpu }'
done | tee "$OUT/summary.txt"
echo "(raw output: $OUT)"
