#!/usr/bin/env bash
# What a shadow model costs the decision path: p50/p99/req/s of `fraudlens serve` (SQLite) on the
# "new, simulated traffic" load of bench/serve_vs_peer.sh, without and with a shadow model, at full
# rate and paced to about half rate. Prints one table; raw output goes to $OUT.
#
#   bench/shadow_p99.sh
#
# env: DURATION=10s CONNS=64 PAUSE_MS=5 (the half-rate run) RUNS=3 (runs per mode and load level)
#      PORT=8097 SHADOW_TREES=100 SHADOW_LEAVES=63 KEEP_DB=0 BIN=(built from this checkout)
#
# - production: the demo's model (bench/serve/common.sh), served with the entity state of the 90
#   simulated days, exactly as bench/serve_vs_peer.sh serves it.
# - shadow: a second model trained on the same demo transactions and window (so it reads the same
#   inputs) with SHADOW_TREES trees of SHADOW_LEAVES leaves: bigger than production, the honest
#   worst case. Trained once, kept in $WORK/shadow-model-t$SHADOW_TREES-l$SHADOW_LEAVES.
# - one server for every run; the shadow is toggled on it with `fraudlens models shadow VERSION`
#   and `fraudlens models shadow --off` (what an operator does), and a run starts only once
#   GET /model/info shows the change and the shadow thread has gone quiet (its queue drained).
#   The same process, entity state and database for both modes, so only the shadow differs.
# - interleaved: in each of RUNS rounds, per load level, one run without and one with the shadow,
#   the order reversed every other round (off,on / on,off / ...), so a drift of the machine or the
#   growing database does not favour one mode. Medians per load level and mode.
# - per run: the shadow's scored and dropped rows (/metrics deltas; scored counted after the
#   queue drained), the decisions stored, the CPU of the server and of its shadow thread.
set -euo pipefail
source "$(dirname "$0")/serve/common.sh"   # cd to the checkout, WORK, BIN, MODEL, TRAFFIC, result, ...
DURATION="${DURATION:-10s}"; CONNS="${CONNS:-64}"; PAUSE_MS="${PAUSE_MS:-5}"; RUNS="${RUNS:-3}"
PORT="${PORT:-8097}"; SHADOW_TREES="${SHADOW_TREES:-100}"; SHADOW_LEAVES="${SHADOW_LEAVES:-63}"
KEEP_DB="${KEEP_DB:-0}"
OUT="$WORK/shadow-results-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"
ports_free "$PORT"
BASE="http://127.0.0.1:$PORT"
TICK="$(getconf CLK_TCK)"
echo "start: $(machine); $(uptime)" | tee "$OUT/machine.txt" >&2

# the shadow model: the demo's training window, other tree parameters
SHADOW_MODEL="$WORK/shadow-model-t$SHADOW_TREES-l$SHADOW_LEAVES"
if [ ! -f "$SHADOW_MODEL/model.json" ]; then
  read -r train_from train_to < <(python3 - "$MODEL/model.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
def find(node, key):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == key and isinstance(v, (str, int)):
                return v
            found = find(v, key)
            if found is not None:
                return found
    elif isinstance(node, list):
        for v in node:
            found = find(v, key)
            if found is not None:
                return found
    return None
print(find(m, "train_from") or "-", find(m, "train_to") or "-")
PY
)
  window=()
  [ "$train_from" != - ] && window+=(--train-from "$train_from")
  [ "$train_to" != - ] && window+=(--train-to "$train_to")
  [ ${#window[@]} -gt 0 ] || { echo "no training window in $MODEL/model.json" >&2; exit 1; }
  echo "training the shadow model (${window[*]}, --trees $SHADOW_TREES --num-leaves $SHADOW_LEAVES)" >&2
  rm -rf "$SHADOW_MODEL.tmp"
  (cd "$WORK" && "$BIN" train --data demo/transactions.csv --mode event "${window[@]}" \
    --trees "$SHADOW_TREES" --num-leaves "$SHADOW_LEAVES" --out "$SHADOW_MODEL.tmp" > "$OUT/train-shadow.log" 2>&1) \
    || { cat "$OUT/train-shadow.log" >&2; exit 1; }
  mv "$SHADOW_MODEL.tmp" "$SHADOW_MODEL"
fi
trees() { python3 - "$1/model.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
def count(node):
    # the ensemble: the longest list of dicts that look like trees
    best = 0
    if isinstance(node, dict):
        for v in node.values():
            best = max(best, count(v))
    elif isinstance(node, list):
        if node and all(isinstance(t, dict) for t in node) and any(k in node[0] for k in ("nodes", "split_feature", "leaf_values", "left", "threshold", "feature")):
            best = len(node)
        for v in node:
            best = max(best, count(v))
    return best
print(count(m))
PY
}
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

# the server's counters: one scrape → "decisions scored dropped errors skipped write_failures"
counters() {
  curl -s "$BASE/metrics" | awk '
    /^fraud_predictions_total/ { d += $2 }
    /^fraudlens_shadow_scored_total/ { s += $2 }
    /^fraudlens_shadow_dropped_total/ { x += $2 }
    /^fraudlens_shadow_errors_total/ { e += $2 }
    /^fraudlens_shadow_skipped_total/ { k += $2 }
    /^fraudlens_shadow_write_failures_total/ { w += $2 }
    END { printf "%d %d %d %d %d %d\n", d, s, x, e, k, w }'
}
# CPU ticks of the shadow thread (0 before it exists)
shadow_tid() { grep -l '^fraudlens-shad' /proc/"$PID"/task/*/comm 2>/dev/null | head -1 | cut -d/ -f5; }
shadow_ticks() { local t; t="$(shadow_tid)"; [ -n "$t" ] && awk '{ print $14 + $15 }' "/proc/$PID/task/$t/stat" || echo 0; }
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

RAW="$OUT/runs.tsv"
printf 'round\tlevel\tmode\trps\tp50_ms\tp99_ms\tnon2xx\tsockerr\tdecisions\tscored\tdropped\tshadow_errors\tskipped\twrite_failures\tserver_cpu_s\tshadow_cpu_s\tdrain_s\tload1\n' > "$RAW"
for round in $(seq 1 "$RUNS"); do
  if [ $((round % 2)) = 1 ]; then order="off on"; else order="on off"; fi
  for level in full half; do
    for mode in $order; do
      [ "$mode" = "$MODE" ] || set_mode "$mode"
      quiet >/dev/null
      load1="$(cut -d' ' -f1 /proc/loadavg)"
      read -r d0 s0 x0 e0 k0 w0 < <(counters)
      c0="$(cpu_ticks "$PID")"; t0="$(shadow_ticks)"
      file="$OUT/wrk-$round-$level-$mode.txt"
      load "$level" "$DURATION" "$file"
      c1="$(cpu_ticks "$PID")"; read -r _ _ x1 _ _ _ < <(counters)
      drain="$(quiet)"   # the shadow finishes what it queued during the run
      read -r d1 s1 _ e1 k1 w1 < <(counters)
      t1="$(shadow_ticks)"
      r="$(result "$file")"
      read -r rps p50 p99 non2xx sockerr <<<"$r"
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%.2f\t%.2f\t%s\t%s\n' \
        "$round" "$level" "$mode" "$rps" "$p50" "$p99" "$non2xx" "$sockerr" $((d1 - d0)) $((s1 - s0)) $((x1 - x0)) \
        $((e1 - e0)) $((k1 - k0)) $((w1 - w0)) "$(secs "$c0" "$c1")" "$(secs "$t0" "$t1")" "$drain" "$load1" >> "$RAW"
      echo "  round $round $level shadow=$mode: $r (decisions $((d1 - d0)), shadow scored $((s1 - s0)), dropped $((x1 - x0)))" >&2
    done
  done
done
set_mode off
shadow_nice="$(t=$(shadow_tid); [ -n "$t" ] && awk '{ print $19 }' "/proc/$PID/task/$t/stat" || echo '?')"
stop; trap - EXIT
stored="$(python3 - "$DIR/fraudlens.db" "$SHADOW_VERSION" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
print(db.execute("SELECT count(*) FROM shadow_scores WHERE model_version = ?", (sys.argv[2],)).fetchone()[0])
PY
)"
[ "$KEEP_DB" = 1 ] || rm -f "$DIR"/fraudlens.db*
echo "end: $(machine); $(uptime)" | tee -a "$OUT/machine.txt" >&2

{
  echo "shadow_p99 $(date -Is) conns=$CONNS duration=$DURATION pause_ms(half)=$PAUSE_MS runs=$RUNS; $(head -2 "$OUT/machine.txt" | tr '\n' ' ')"
  echo "shadow thread nice: $shadow_nice; shadow_scores rows stored: $stored (shadow version $SHADOW_VERSION)"
  echo
  echo "each run (scored/dropped: shadow rows; CPU s over the run; drain: s until the shadow went quiet after it):"
  column -t -s $'\t' "$RAW"
  echo
  echo "medians per load level and mode (req/s p50_ms p99_ms; scored and dropped: totals over the runs):"
  python3 - "$RAW" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
med = lambda xs: statistics.median(float(x) for x in xs)
print(f"{'level':<6} {'shadow':<6} {'req/s':>8} {'p50_ms':>7} {'p99_ms':>7} {'p99 runs':<22} {'decisions':>10} {'scored':>9} {'dropped':>9} {'shadow_cpu_s':>12}")
for level in ("full", "half"):
    for mode in ("off", "on"):
        rs = [r for r in rows if r["level"] == level and r["mode"] == mode]
        if not rs:
            continue
        print(f"{level:<6} {mode:<6} {med(r['rps'] for r in rs):>8.0f} {med(r['p50_ms'] for r in rs):>7.2f} "
              f"{med(r['p99_ms'] for r in rs):>7.2f} {','.join(r['p99_ms'] for r in rs):<22} "
              f"{sum(int(r['decisions']) for r in rs):>10} {sum(int(r['scored']) for r in rs):>9} "
              f"{sum(int(r['dropped']) for r in rs):>9} {sum(float(r['shadow_cpu_s']) for r in rs):>12.2f}")
PY
  echo
  echo "server log: $(grep -c -i -E 'warn|error' "$OUT/fraudlens.log" || true) warning/error lines"
  grep -i -E 'warn|error' "$OUT/fraudlens.log" | sort | uniq -c | sort -rn | head -5 || true
} | tee "$OUT/summary.txt"
echo "(raw output: $OUT)"
