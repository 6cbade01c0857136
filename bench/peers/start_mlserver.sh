#!/usr/bin/env bash
# Runs MLServer 1.7.1 in the foreground on 127.0.0.1 serving "iris" (the inferd fixture
# tests/fixtures/models/iris_logreg/1/model.onnx) with the onnxruntime runtime in
# bench/peers/mlserver_runtime.py, which also adds GET /v2/models/iris/config. Metrics off.
# Usage: bench/peers/start_mlserver.sh HTTP_PORT GRPC_PORT
# MLSERVER_WORKERS=N sets parallel_workers (default 1, MLServer's default: inference runs in one
# worker process; 0 runs it in the server process).
# Writes its settings.json and iris/model-settings.json to bench/.tools/mlserver/<HTTP_PORT>/.
# Run bench/peers/setup.sh first.
set -euo pipefail
if [ $# -ne 2 ]; then echo "usage: $0 HTTP_PORT GRPC_PORT" >&2; exit 2; fi
http_port=$1 grpc_port=$2
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="$root/bench/.tools/peers-venv"
[ -x "$venv/bin/mlserver" ] || { echo "run bench/peers/setup.sh first" >&2; exit 1; }
workers="${MLSERVER_WORKERS:-1}"
dir="$root/bench/.tools/mlserver/$http_port"
mkdir -p "$dir/iris"
cat > "$dir/settings.json" <<JSON
{
  "debug": false,
  "host": "127.0.0.1",
  "http_port": $http_port,
  "grpc_port": $grpc_port,
  "metrics_endpoint": null,
  "parallel_workers": $workers,
  "load_models_at_startup": true
}
JSON
cat > "$dir/iris/model-settings.json" <<JSON
{
  "name": "iris",
  "implementation": "mlserver_runtime.OnnxRuntime",
  "parameters": {"uri": "$root/tests/fixtures/models/iris_logreg/1/model.onnx", "version": "1"},
  "max_batch_size": 0,
  "inputs": [{"name": "X", "datatype": "FP32", "shape": [-1, 4]}],
  "outputs": [
    {"name": "label", "datatype": "INT64", "shape": [-1]},
    {"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]}
  ]
}
JSON
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
export PATH="$venv/bin:$PATH"
# mlserver_launch.py = the mlserver CLI plus the gRPC ModelConfig RPC perf_analyzer needs.
exec "$venv/bin/python" "$here/mlserver_launch.py" start "$dir"
