#!/usr/bin/env bash
# Soak: bench/soak.sh [--minutes N] [--workers N] [--out DIR]
#
# Runs the real `ward` binary behind the dev IdP for N minutes (default 10; CI: --minutes 1)
# under mixed load (80% valid, 10% expired, 10% invalid tokens) from a Rust load client,
# with a key rotation and a config reload every minute. Samples ward's RSS, fd count, the
# error rate and p99 every 2 s into DIR/samples.csv (DIR/summary.json at the end), and
# fails if a valid request failed, an invalid one was not refused, something unverified
# reached the upstream, or RSS did not plateau (last-third max <= 1.2 x first-third max
# + 5 MiB) or fds grew.
#
# The load client is the fault suite's (tests/src/load.rs) rather than wrk: wrk's Lua hooks
# cannot tell which request a response belongs to across connections, and the soak must
# know that no *valid* request failed.
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=10
WORKERS=16
OUT=""
while [ $# -gt 0 ]; do
    case "$1" in
        --minutes) MINUTES="$2"; shift 2 ;;
        --workers) WORKERS="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "soak: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
OUT="${OUT:-$TARGET_DIR/soak/$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

# The binary under test: $WARD_BIN, else a release build (what ships; debug builds are
# several times slower and use more memory).
if [ -z "${WARD_BIN:-}" ]; then
    echo "soak: building ward (release)"
    cargo build -q -p ward --release
    WARD_BIN="$(cd "$TARGET_DIR/release" && pwd)/ward"
fi
export WARD_BIN SOAK_MINUTES="$MINUTES" SOAK_WORKERS="$WORKERS" SOAK_OUT="$OUT"
echo "soak: $MINUTES min, $WORKERS workers, ward = $WARD_BIN, results in $OUT"
cargo test -q -p ward-e2e --release --test fault_soak -- --ignored --nocapture --test-threads 1 2>&1 | tee "$OUT/soak.log"
