# Sourced by the model benchmarks that simulate datasets (bench/refit.sh, refit_thresholds.sh,
# tune.sh, tune_vs_peers.sh): the cache, the release binary ($BIN, built from this checkout unless
# given), the fraud levels and calendar days.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cache="${FRAUDLENS_CACHE_DIR:-$HOME/.cache/fraudlens}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"
if [ -z "${BIN:-}" ]; then
  cargo build --release --locked -q -p fraudlens
  BIN="$CARGO_TARGET_DIR/release/fraudlens"
fi
CUSTOMERS="${CUSTOMERS:-2000}"; TERMINALS="${TERMINALS:-4000}"

# `fraudlens simulate` flags of a fraud level, into the array `rates`: base = the simulator's
# default rates (~0.3 % fraud), high = every scenario three times as often
level_rates() {
  case "$1" in
    base) rates=() ;;
    high) rates=(--stolen-card-rate 0.0024 --compromised-terminal-rate 0.0006 --account-takeover-rate 0.0009 --card-testing-rate 0.0009) ;;
    *) echo "unknown fraud level $1 (base, high)" >&2; exit 2 ;;
  esac
}

# simulated day N (from 0 = 2026-01-01) as a date
day() { date -u -d "2026-01-01 + $1 days" +%F; }
