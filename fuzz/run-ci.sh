#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time and fails on the first
# crash, timeout or out-of-memory input. Inputs under regressions/<target>/
# run first, so a fixed crash stays fixed.
#
# Usage: fuzz/run-ci.sh [seconds per target, default 20]
#
# cargo-fuzz needs nightly Rust for its -Z flags (sanitizer, coverage). The
# script uses the `nightly` toolchain when rustup has one (tested with
# nightly 1.9x and cargo-fuzz 0.13.2). Without it, it falls back to stable
# with RUSTC_BOOTSTRAP=1, which lets stable accept -Z flags.
# NOTE: the stable fallback has not been run in CI.
#
# A crash leaves its input in artifacts/<target>/; the corpus of each run
# is kept in target/ci-corpus/<target>/ (both ignored by git), so later
# runs start from what earlier ones found.
set -euo pipefail
cd "$(dirname "$0")"

seconds="${1:-20}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

if rustup run nightly rustc --version >/dev/null 2>&1; then
    fuzz=(cargo +nightly fuzz)
else
    echo "No nightly toolchain; running cargo-fuzz on stable with RUSTC_BOOTSTRAP=1" >&2
    export RUSTC_BOOTSTRAP=1
    fuzz=(cargo fuzz)
fi

started=$(date +%s)
"${fuzz[@]}" build -O
built=$(date +%s)
echo "fuzz targets built in $((built - started)) s"

for target in $("${fuzz[@]}" list); do
    corpus="target/ci-corpus/$target"
    log="target/ci-logs/$target.log"
    mkdir -p "$corpus" "regressions/$target" target/ci-logs
    echo "fuzzing $target for $seconds s"
    # -timeout fails an input that runs longer than 10 s, and -rss_limit_mb
    # one that takes more than 2 GiB. New inputs are written to the first
    # corpus directory only.
    if ! "${fuzz[@]}" run -O "$target" "$corpus" "regressions/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 >"$log" 2>&1; then
        tail -n 60 "$log"
        echo "fuzz target $target failed; the input is in fuzz/artifacts/$target/ and the log in fuzz/$log" >&2
        exit 1
    fi
    grep -E '^(Done|stat::number_of_executed_units)' "$log" || true
done
echo "fuzzing finished in $(($(date +%s) - started)) s"
