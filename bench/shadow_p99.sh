#!/usr/bin/env bash
# What a shadow model costs the decision path: p50/p99/req/s of `fraudlens serve` (SQLite) on the
# "new, simulated traffic" load of bench/serve_vs_peer.sh, without and with a shadow model, at full
# rate and paced to about half rate. Prints one table; raw output goes to $OUT.
#
#   bench/shadow_p99.sh
#
# env: DURATION=10s CONNS=64 RUNS=3 (runs per mode and load level)
#      PAUSE_MS=auto (the half-rate run's pause per request and connection; auto: measured after the
#      warm-up so that the paced load is about half of what the server takes without a shadow)
#      PORT=8097 SHADOW_TREES=100 SHADOW_LEAVES=63 KEEP_DB=0 BIN=(built from this checkout)
#      IDLE_WAIT=120 (s; before each run, wait until the CPUs were >= 90 % idle for 3 s; 0: no wait)
#
# - production: the demo's model (bench/serve/common.sh), served with the entity state of the 90
#   simulated days, exactly as bench/serve_vs_peer.sh serves it.
# - shadow: a second model trained on the same demo transactions and window (so it reads the same
#   inputs) with SHADOW_TREES trees of up to SHADOW_LEAVES leaves and no early stopping: bigger than
#   production (50 trees of 31 leaves), the honest worst case (refit, on by default, grows the rounds
#   by the window's share held out: 100 rounds become 125 trees). Trained once, kept in $WORK/shadow-model-t$SHADOW_TREES-l$SHADOW_LEAVES.
# - one server for every run; the shadow is toggled on it with `fraudlens models shadow VERSION`
#   and `fraudlens models shadow --off` (what an operator does), and a run starts only once
#   GET /model/info shows the change and the shadow thread has gone quiet (its queue drained).
#   The same process, entity state and database for both modes, so only the shadow differs.
# - interleaved: in each of RUNS rounds, per load level, one run without and one with the shadow,
#   the order reversed every other round (off,on / on,off / ...), so a drift of the machine or the
#   growing database does not favour one mode. Medians per load level and mode.
# - per run: the shadow's scored and dropped rows (/metrics deltas; scored counted after the
#   queue drained), the decisions stored, the CPU of the server and of its shadow thread, the CPU
#   of the whole machine over the run (busy_cpu_s, of 2 x duration; minus the server's: wrk and any
#   other work), the decision commits during the run and how many took over 25 and 50 ms
#   (store_commit_duration_seconds), and how long the run waited for idle CPUs before it (idle_wait_s; "busy": never).
set -euo pipefail
source "$(dirname "$0")/serve/common.sh"   # cd to the checkout, WORK, BIN, MODEL, TRAFFIC, result, ...
DURATION="${DURATION:-10s}"; CONNS="${CONNS:-64}"; PAUSE_MS="${PAUSE_MS:-auto}"; RUNS="${RUNS:-3}"
PORT="${PORT:-8097}"; SHADOW_TREES="${SHADOW_TREES:-100}"; SHADOW_LEAVES="${SHADOW_LEAVES:-63}"
KEEP_DB="${KEEP_DB:-0}"; IDLE_WAIT="${IDLE_WAIT:-120}"
OUT="$WORK/shadow-results-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"
ports_free "$PORT"
BASE="http://127.0.0.1:$PORT"
TICK="$(getconf CLK_TCK)"
echo "start: $(machine); $(uptime)" | tee "$OUT/machine.txt" >&2

# the shadow model: the demo's training rows (its window ends after the newest row the demo model
# trained or validated on), other tree parameters, no early stopping (exactly SHADOW_TREES trees)
SHADOW_MODEL="$WORK/shadow-model-t$SHADOW_TREES-l$SHADOW_LEAVES"
if [ ! -f "$SHADOW_MODEL/model.json" ]; then
  train_to="$(python3 - "$MODEL/model.json" <<'PY'
import datetime, json, sys
last = json.load(open(sys.argv[1]))["training"]["valid_period"][1]
when = datetime.datetime.fromisoformat(last.replace("Z", "+00:00")) + datetime.timedelta(seconds=1)
print(when.strftime("%Y-%m-%dT%H:%M:%SZ"))
PY
)"
  echo "training the shadow model (--train-to $train_to --trees $SHADOW_TREES --num-leaves $SHADOW_LEAVES)" >&2
  rm -rf "$SHADOW_MODEL.tmp"
  (cd "$WORK" && FRAUDLENS_TRAIN__GBDT__EARLY_STOPPING_ROUNDS=0 "$BIN" train --data demo/transactions.csv --mode event \
    --train-to "$train_to" --trees "$SHADOW_TREES" --num-leaves "$SHADOW_LEAVES" --out "$SHADOW_MODEL.tmp" \
    > "$OUT/train-shadow.log" 2>&1) || { cat "$OUT/train-shadow.log" >&2; exit 1; }
  mv "$SHADOW_MODEL.tmp" "$SHADOW_MODEL"
fi
trees() { python3 -c 'import json, sys; print(len(json.load(open(sys.argv[1]))["trees"]))' "$1/trees.json"; }
echo "models: production $MODEL ($(trees "$MODEL") trees), shadow $SHADOW_MODEL ($(trees "$SHADOW_MODEL") trees)" \
  | tee -a "$OUT/machine.txt" >&2

# the server, its store and keys
DIR="$WORK/run-shadow"
rm -rf "$DIR"; mkdir -p "$DIR"
URL="sqlite://$DIR/fraudlens.db"
cli() { (cd "$DIR" && "$BIN" "$@" --database "$URL" 2>>"$OUT/cli.log"); }
KEY="$(cli keys create --role service)"
cp "$WORK/demo/engine.snapshot" "$DIR/state.bin"   # the entity state of the 90 simulated days
(cd "$DIR" && FRAUDLENS_SERVE__STATE_FILE="$DIR/state.bin" exec "$BIN" serve --model "$MODEL" --database "$URL" \
  --listen "127.0.0.1:$PORT" > "$OUT/fraudlens.out" 2> "$OUT/fraudlens.log") &
PID=$!   # the subshell execs the server: same pid
stop() {
  if kill -0 "$PID" 2>/dev/null; then kill -TERM "$PID"; wait "$PID" 2>/dev/null || true; fi
}
trap stop EXIT
for _ in $(seq 1 120); do curl -sf "$BASE/health/ready" >/dev/null && break; sleep 0.25; done
kill -0 "$PID" 2>/dev/null || { echo "fraudlens did not start:" >&2; cat "$OUT/fraudlens.log" >&2; exit 1; }
SHADOW_VERSION="$(cli models register "$SHADOW_MODEL")"
echo "production $(curl -s -H "X-API-Key: $KEY" "$BASE/model/info" | jq -r .version), shadow candidate $SHADOW_VERSION" >&2

# the server's counters: one scrape → "decisions scored dropped errors skipped write_failures
# commits commits_over_25ms commits_over_50ms" (commits: of decisions, BEGIN IMMEDIATE's wait included)
counters() {
  curl -s "$BASE/metrics" | awk '
    /^fraud_predictions_total/ { d += $2 }
    /^fraudlens_shadow_scored_total/ { s += $2 }
    /^fraudlens_shadow_dropped_total/ { x += $2 }
    /^fraudlens_shadow_errors_total/ { e += $2 }
    /^fraudlens_shadow_skipped_total/ { k += $2 }
    /^fraudlens_shadow_write_failures_total/ { w += $2 }
    /^store_commit_duration_seconds_count/ { c += $2 }
    /^store_commit_duration_seconds_bucket/ && /le="0.025"/ { c25 += $2 }
    /^store_commit_duration_seconds_bucket/ && /le="0.05"/ { c50 += $2 }
    END { printf "%d %d %d %d %d %d %d %d %d\n", d, s, x, e, k, w, c, c - c25, c - c50 }'
}
# CPU ticks of the shadow thread (0 before it exists)
shadow_tid() { grep -l '^fraudlens-shad' /proc/"$PID"/task/*/comm 2>/dev/null | head -1 | cut -d/ -f5; }
shadow_ticks() { local t; t="$(shadow_tid)"; [ -n "$t" ] && awk '{ print $14 + $15 }' "/proc/$PID/task/$t/stat" || echo 0; }
# busy CPU ticks of the whole machine
busy_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }
# waits (at most IDLE_WAIT s) until the CPUs have been >= 90 % idle for 3 s; prints the wait or "busy"
wait_for_idle() {
  local started=$SECONDS a b c d e f g h t1 i1 t2 i2
  [ "$IDLE_WAIT" -gt 0 ] || { echo 0; return; }
  while [ $((SECONDS - started)) -lt "$IDLE_WAIT" ]; do
    read -r _ a b c d e f g h _ < /proc/stat; t1=$((a + b + c + d + e + f + g + h)); i1=$((d + e))
    sleep 3
    read -r _ a b c d e f g h _ < /proc/stat; t2=$((a + b + c + d + e + f + g + h)); i2=$((d + e))
    if [ $((100 * (i2 - i1))) -ge $((90 * (t2 - t1))) ]; then echo $((SECONDS - started)); return; fi
  done
  echo busy
}
secs() { awk -v a="$1" -v b="$2" -v t="$TICK" 'BEGIN { printf "%.2f", (b - a) / t }'; }
# waits until the shadow has no backlog: its scored count and the server's CPU stand still
quiet() {
  local last="" now ticks lticks=0 n=0 started=$SECONDS
  while [ $((SECONDS - started)) -lt 120 ]; do
    now="$(counters | cut -d' ' -f2)"; ticks="$(cpu_ticks "$PID")"
    if [ "$now" = "$last" ] && [ $((ticks - lticks)) -le $((TICK / 10)) ]; then n=$((n + 1)); else n=0; fi
    [ $n -ge 2 ] && { echo $((SECONDS - started)); return; }
    last=$now; lticks=$ticks; sleep 1
  done
  echo "timeout"
}
# sets the registry's shadow (on|off) and waits until the server follows it
set_mode() {
  local want
  if [ "$1" = on ]; then cli models shadow "$SHADOW_VERSION"; want="$SHADOW_VERSION"
  else cli models shadow --off; want=null; fi
  local t0=$SECONDS
  until [ "$(curl -s -H "X-API-Key: $KEY" "$BASE/model/info" | jq -r '.shadow // "null"')" = "$want" ]; do
    [ $((SECONDS - t0)) -lt 30 ] || { echo "the server did not follow shadow=$want in 30 s" >&2; exit 1; }
    sleep 0.1
  done
  MODE=$1
}
MODE=off

UNIQ="$ROOT/bench/serve/unique.lua"
load() {   # load level, duration, output file
  local pause=0; [ "$1" = half ] && pause=$PAUSE_MS
  WRK_DELAY_MS=$pause WRK_BODIES_FILE=$TRAFFIC WRK_API_KEY=$KEY wrk -t2 -c"$CONNS" -d"$2" --latency -s "$UNIQ" \
    "$BASE/api/v1/transactions" > "$3" 2>&1
}

# warm-up (as bench/serve_vs_peer.sh, then once more with the shadow)
load full 3s /dev/null
set_mode on; load full 3s /dev/null; quiet >/dev/null
set_mode off; quiet >/dev/null
if [ "$PAUSE_MS" = auto ]; then
  # each connection sends, waits for the answer, then pauses: CONNS / pause is about the rate
  wait_for_idle >/dev/null
  load full 5s "$OUT/calibrate.txt"
  cap="$(result "$OUT/calibrate.txt" | cut -d' ' -f1)"
  PAUSE_MS="$(python3 -c 'import sys; print(max(1, round(1000 * int(sys.argv[1]) / (0.5 * float(sys.argv[2])))))' "$CONNS" "$cap")"
  echo "capacity without a shadow: $cap req/s; half rate: pause $PAUSE_MS ms per request and connection" >&2
fi

RAW="$OUT/runs.tsv"
printf 'round\tlevel\tmode\trps\tp50_ms\tp99_ms\tnon2xx\tsockerr\tdecisions\tscored\tdropped\tshadow_errors\tskipped\twrite_failures\tserver_cpu_s\tshadow_cpu_s\tbusy_cpu_s\tcommits\tcommits_25ms\tcommits_50ms\tdrain_s\tidle_wait_s\tload1\n' > "$RAW"
for round in $(seq 1 "$RUNS"); do
  if [ $((round % 2)) = 1 ]; then order="off on"; else order="on off"; fi
  for level in full half; do
    for mode in $order; do
      [ "$mode" = "$MODE" ] || set_mode "$mode"
      quiet >/dev/null
      waited="$(wait_for_idle)"
      load1="$(cut -d' ' -f1 /proc/loadavg)"
      read -r d0 s0 x0 e0 k0 w0 m0 m25_0 m50_0 < <(counters)
      c0="$(cpu_ticks "$PID")"; t0="$(shadow_ticks)"; b0="$(busy_ticks)"
      file="$OUT/wrk-$round-$level-$mode.txt"
      load "$level" "$DURATION" "$file"
      c1="$(cpu_ticks "$PID")"; b1="$(busy_ticks)"; read -r _ _ x1 _ _ _ m1 m25_1 m50_1 < <(counters)
      drain="$(quiet)"   # the shadow finishes what it queued during the run
      read -r d1 s1 _ e1 k1 w1 _ _ _ < <(counters)
      t1="$(shadow_ticks)"
      r="$(result "$file")"
      read -r rps p50 p99 non2xx sockerr <<<"$r"
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\t%s\n' \
        "$round" "$level" "$mode" "$rps" "$p50" "$p99" "$non2xx" "$sockerr" $((d1 - d0)) $((s1 - s0)) $((x1 - x0)) \
        $((e1 - e0)) $((k1 - k0)) $((w1 - w0)) "$(secs "$c0" "$c1")" "$(secs "$t0" "$t1")" "$(secs "$b0" "$b1")" $((m1 - m0)) $((m25_1 - m25_0)) $((m50_1 - m50_0)) "$drain" "$waited" "$load1" >> "$RAW"
      echo "  round $round $level shadow=$mode: $r (idle wait $waited, decisions $((d1 - d0)), shadow scored $((s1 - s0)), dropped $((x1 - x0)))" >&2
    done
  done
done
set_mode off
shadow_nice="$(t=$(shadow_tid); [ -n "$t" ] && awk '{ print $19 }' "/proc/$PID/task/$t/stat" || echo '?')"
stop; trap - EXIT
stored="$(python3 - "$DIR/fraudlens-shadow.db" "$SHADOW_VERSION" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
print(db.execute("SELECT count(*) FROM shadow_scores WHERE model_version = ?", (sys.argv[2],)).fetchone()[0])
PY
)"
[ "$KEEP_DB" = 1 ] || rm -f "$DIR"/fraudlens.db* "$DIR"/fraudlens-shadow.db*
echo "end: $(machine); $(uptime)" | tee -a "$OUT/machine.txt" >&2

{
  echo "shadow_p99 $(date -Is) conns=$CONNS duration=$DURATION pause_ms(half)=$PAUSE_MS runs=$RUNS; $(head -2 "$OUT/machine.txt" | tr '\n' ' ')"
  echo "shadow thread nice: $shadow_nice; shadow_scores rows stored: $stored (shadow version $SHADOW_VERSION)"
  echo
  echo "each run (scored/dropped: shadow rows; CPU s over the run; drain: s until the shadow went quiet after it):"
  column -t -s $'\t' "$RAW"
  echo
  echo "medians per load level and mode:"
  python3 - "$RAW" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
med = lambda xs: statistics.median(float(x) for x in xs)
print(f"{'level':<6} {'shadow':<6} {'req/s':>8} {'p50_ms':>7} {'p99_ms':>7}  {'p99_ms of each run':<24} "
      f"{'decisions':>10} {'scored':>9} {'dropped':>8} {'server_cpu_s':>12} {'shadow_cpu_s':>12} {'busy_cpu_s':>10} {'commits':>8} {'>25ms':>5} {'>50ms':>5}")
for level in ("full", "half"):
    for mode in ("off", "on"):
        rs = [r for r in rows if r["level"] == level and r["mode"] == mode]
        if not rs:
            continue
        print(f"{level:<6} {mode:<6} {med(r['rps'] for r in rs):>8.0f} {med(r['p50_ms'] for r in rs):>7.2f} "
              f"{med(r['p99_ms'] for r in rs):>7.2f}  {' '.join(r['p99_ms'] for r in rs):<24} "
              f"{sum(int(r['decisions']) for r in rs):>10} {sum(int(r['scored']) for r in rs):>9} "
              f"{sum(int(r['dropped']) for r in rs):>8} {med(r['server_cpu_s'] for r in rs):>12.2f} "
              f"{med(r['shadow_cpu_s'] for r in rs):>12.2f} {med(r['busy_cpu_s'] for r in rs):>10.2f} "
              f"{sum(int(r['commits']) for r in rs):>8} {sum(int(r['commits_25ms']) for r in rs):>5} {sum(int(r['commits_50ms']) for r in rs):>5}")
print("(decisions, scored, dropped, commits: totals over the runs; CPU: medians per run)")
PY
  echo
  echo "server log: $(awk '$2 == "WARN" || $2 == "ERROR"' "$OUT/fraudlens.log" | wc -l) warnings/errors"
  awk '$2 == "WARN" || $2 == "ERROR" { $1 = ""; print }' "$OUT/fraudlens.log" | sort | uniq -c | sort -rn | head -5
} | tee "$OUT/summary.txt"
echo "(raw output: $OUT)"
