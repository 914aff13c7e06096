#!/usr/bin/env bash
# Run every fuzz target for a bounded time: fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]
# Default 20 s each (the CI budget). Prints one summary line per target and exits non-zero
# if any target crashed; the crashing input is left in fuzz/artifacts/<target>/ and can be
# replayed with `cargo +nightly fuzz run <target> <file>`.
#
# The committed seed corpora (fuzz/corpus/<target>/) are read, never written: new inputs
# go to a scratch corpus that is thrown away, so the repository stays small.
set -uo pipefail
cd "$(dirname "$0")"
SECONDS_PER_TARGET="${1:-20}"
shift || true
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then TARGETS=(token jwks config policy path); fi

if ! command -v cargo-fuzz >/dev/null; then
    echo "fuzz: cargo-fuzz not found; install it with: cargo install cargo-fuzz" >&2
    exit 2
fi
# The agent's build script builds the eBPF objects (and insists on them when CI=true); the
# fuzz targets never load them, so skip that build here and leave CI alone elsewhere.
export AYA_BUILD_SKIP=1
unset CI

# Optimized, with debug assertions and overflow checks (cargo fuzz's default), under ASan.
echo "fuzz: building the targets (nightly, address sanitizer, overflow checks)"
if ! cargo +nightly fuzz build 2>build.log; then
    tail -n 40 build.log >&2
    echo "fuzz: build failed (full log: fuzz/build.log)" >&2
    exit 2
fi

SCRATCH="$(mktemp -d)"
trap 'rm -rf "$SCRATCH"' EXIT
failed=0
for t in "${TARGETS[@]}"; do
    mkdir -p "artifacts/$t" "$SCRATCH/$t"
    log="$SCRATCH/$t.log"
    seeds="corpus/$t"
    [ -d "$seeds" ] || seeds=""
    start=$(date +%s)
    cargo +nightly fuzz run "$t" "$SCRATCH/$t" $seeds -- \
        -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -artifact_prefix="artifacts/$t/" -print_final_stats=1 >"$log" 2>&1
    rc=$?
    secs=$(( $(date +%s) - start ))
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -n1)
    cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -n1 | grep -oE '[0-9]+')
    units=$(ls "$SCRATCH/$t" | wc -l)
    if [ $rc -eq 0 ]; then
        printf 'fuzz: %-7s ok     %4ss  %10s execs  cov %6s  corpus %s\n' "$t" "$secs" "${runs:-?}" "${cov:-?}" "$units"
    else
        failed=1
        printf 'fuzz: %-7s CRASH  %4ss  %10s execs  (exit %s)\n' "$t" "$secs" "${runs:-?}" "$rc"
        grep -E 'panicked at|ERROR: AddressSanitizer|ERROR: libFuzzer|SUMMARY|Test unit written to' "$log" | head -n 8 | sed 's/^/    /'
        cp "$log" "artifacts/$t/last-run.log"
    fi
done
exit $failed
