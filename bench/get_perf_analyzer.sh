#!/usr/bin/env bash
# Fetches the real perf_analyzer binary (see ../shared/BENCH.md): the one in tritonclient 2.51.0's
# manylinux wheel is the newest that runs on glibc 2.36. Installs into bench/.tools/.
# Needs the Debian package libb64-0d; libcudart comes from PyPI (no GPU needed).
set -euo pipefail
cd "$(dirname "$0")"
tools=.tools
mkdir -p "$tools"
if [ ! -x "$tools/perf_analyzer" ]; then
    tmp=$(mktemp -d)
    python3 -m pip download -q --no-deps --only-binary=:all: --platform manylinux1_x86_64 \
        tritonclient==2.51.0 -d "$tmp"
    python3 -m pip download -q --no-deps --only-binary=:all: nvidia-cuda-runtime-cu12==12.9.79 -d "$tmp"
    # Python's zipfile rather than unzip: one tool less to install.
    extract() { python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract(sys.argv[2], sys.argv[3])' "$@"; }
    extract "$(ls "$tmp"/tritonclient-2.51.0-*.whl)" 'tritonclient-2.51.0.data/data/bin/perf_analyzer' "$tmp"
    extract "$(ls "$tmp"/nvidia_cuda_runtime_cu12-*.whl)" 'nvidia/cuda_runtime/lib/libcudart.so.12' "$tmp"
    mv "$tmp/tritonclient-2.51.0.data/data/bin/perf_analyzer" "$tools/"
    mkdir -p "$tools/lib" && mv "$tmp/nvidia/cuda_runtime/lib/libcudart.so.12" "$tools/lib/"
    chmod +x "$tools/perf_analyzer"
    rm -rf "$tmp"
fi
if ! ldconfig -p | grep -q libb64.so.0d; then
    echo "perf_analyzer needs libb64.so.0d: apt-get install libb64-0d" >&2
    exit 1
fi
echo "$PWD/$tools/perf_analyzer (run with LD_LIBRARY_PATH=$PWD/$tools/lib)"
