# Setup shared by the serve benchmarks (sourced by bench/serve_*.sh, from the checkout's root):
# wrk, the release binary (BIN, or built from this checkout), the demo model ($MODEL, trained once)
# and the simulated traffic ($TRAFFIC), under $WORK; helpers to read wrk's RESULT line and a
# process's CPU and memory.
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT="$PWD"
cache="${FRAUDLENS_CACHE_DIR:-$HOME/.cache/fraudlens}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"
WORK="${WORK:-$cache/bench-serve}"
mkdir -p "$WORK"
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }

# exits when one of the ports $@ answers: a server left running would take the benchmark's CPU
ports_free() {
  local port
  for port in "$@"; do
    if curl -s -o /dev/null "http://127.0.0.1:$port/"; then echo "port $port is in use: stop that server first" >&2; exit 1; fi
  done
}

if [ -z "${BIN:-}" ]; then
  echo "building fraudlens (release)" >&2
  cargo build --release --locked -q -p fraudlens
  BIN="$CARGO_TARGET_DIR/release/fraudlens"
fi
if [ ! -f "$WORK/demo/model/model.json" ]; then
  echo "training the demo model (fraudlens demo --no-serve)" >&2
  (cd "$WORK" && "$BIN" demo --no-serve --dir demo > demo.log 2>&1)
fi
MODEL="$WORK/demo/model"
TRAFFIC="$WORK/traffic-recent.jsonl"
if [ ! -s "$TRAFFIC" ]; then
  python3 - "$WORK/demo/transactions.csv" "$TRAFFIC" <<'PY'
import csv, datetime, json, sys
# the last 70,000 transactions within 6 days of the newest: older ones would be more than
# event_time.max_lateness (7 days) behind the served state and refused (422)
parse = lambda row: datetime.datetime.fromisoformat(row["timestamp"].replace("Z", "+00:00"))
rows = list(csv.DictReader(open(sys.argv[1])))
newest = parse(rows[-1])
rows = [row for row in rows[-70000:] if newest - parse(row) < datetime.timedelta(days=6)]
with open(sys.argv[2], "w") as out:
    for row in rows:
        row.pop("is_fraud"); row.pop("fraud_scenario")
        out.write(json.dumps(row, separators=(",", ":")) + "\n")
PY
fi

# wrk's RESULT line (bench/serve/unique.lua, the peer's post.lua) → "rps p50_ms p99_ms non2xx sockerr"
result() {
  local line; line="$(grep '^RESULT' "$1")"
  get() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p" <<<"$line"; }
  local sockerr=$(( $(get connect) + $(get read) + $(get write) + $(get timeout) ))
  awk -v r="$(get rps)" -v a="$(get p50_us)" -v b="$(get p99_us)" -v n="$(get non2xx)" -v s="$sockerr" \
    'BEGIN { printf "%.0f %.2f %.2f %d %d", r, a / 1000, b / 1000, n, s }'
}
rss_mib() { awk '/VmRSS/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status"; }
# user + system CPU of a process, in clock ticks (getconf CLK_TCK per second)
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
machine() { echo "cpu=$(nproc) cores ($(lscpu | sed -n 's/^Model name: *//p' | head -1)), load average $(cut -d' ' -f1-3 /proc/loadavg)"; }
