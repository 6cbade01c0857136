#!/usr/bin/env bash
# Runs Triton 2.51 (from nvidia-pytriton 0.7.0) in the foreground on 127.0.0.1, serving
# bench/.tools/triton_repo (the iris model, python backend + onnxruntime). Metrics off.
# Usage: bench/peers/start_triton.sh HTTP_PORT GRPC_PORT [extra tritonserver flags...]
# TRITON_REPO=/other/repo overrides the model repository.
# Run bench/peers/setup.sh first.
set -euo pipefail
if [ $# -lt 2 ]; then echo "usage: $0 HTTP_PORT GRPC_PORT [tritonserver flags...]" >&2; exit 2; fi
http_port=$1 grpc_port=$2; shift 2
root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="$root/bench/.tools/peers-venv"
site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
tdir="$site/pytriton/tritonserver"
[ -x "$tdir/bin/tritonserver" ] || { echo "run bench/peers/setup.sh first" >&2; exit 1; }
# As pytriton does: bundled libs on LD_LIBRARY_PATH, the venv's bin first on PATH so the python
# backend stub (linked to libpython3.11) runs with the venv's packages (numpy, onnxruntime).
export LD_LIBRARY_PATH="$site/nvidia_pytriton.libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PATH="$venv/bin:$PATH"
export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
exec "$tdir/bin/tritonserver" \
    --model-repository="${TRITON_REPO:-$root/bench/.tools/triton_repo}" \
    --backend-directory="$tdir/backends" \
    --http-address=127.0.0.1 --http-port="$http_port" \
    --grpc-address=127.0.0.1 --grpc-port="$grpc_port" \
    --allow-metrics=false --allow-gpu-metrics=false \
    --allow-sagemaker=false --allow-vertex-ai=false \
    --log-verbose=0 \
    "$@"
