#!/usr/bin/env bash
# Runs the fuzz targets in fuzz/ (libFuzzer via cargo fuzz) for FUZZ_SECONDS each (default 120),
# all of them or those named: scripts/fuzz.sh [target ...]. Not part of the test suite.
# cargo fuzz passes -Z flags (sanitizers): on the stable toolchain RUSTC_BOOTSTRAP=1 allows
# them. New inputs go to fuzz/.work/<target> (ignored); the committed seeds stay as they are.
# A crash leaves its input in fuzz/artifacts/<target>/ and stops with its stack.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${FUZZ_SECONDS:-120}
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz --version 0.13.1
export RUSTC_BOOTSTRAP=1
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(v2_json v2_binary grpc_request model_config trees)
for t in "${targets[@]}"; do
    mkdir -p "fuzz/.work/$t"
    cp -n fuzz/corpus/"$t"/* "fuzz/.work/$t/"
    max_len=65536
    [ "$t" = trees ] && max_len=131072
    echo "== $t (${secs}s)"
    cargo fuzz run --release "$t" "fuzz/.work/$t" -- -max_total_time="$secs" -max_len="$max_len" \
        -print_final_stats=1 2>&1 | grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb|Done|==|SUMMARY|thread|panicked)" || true
done
