#!/usr/bin/env bash
# Installs the peer servers for the side-by-side benchmark (see /work/shared/BENCH.md):
#   MLServer 1.7.1 and Triton 2.51 (the tritonserver bundled in PyPI nvidia-pytriton 0.7.0).
# Idempotent. Creates bench/.tools/peers-venv and bench/.tools/triton_repo/iris.
# Usage: bench/peers/setup.sh            (PYTHON=python3.11 to choose the interpreter)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
tools="$root/bench/.tools"
venv="$tools/peers-venv"
py="${PYTHON:-python3}"
mkdir -p "$tools"

pins=(
    mlserver==1.7.1
    mlserver-sklearn==1.7.1
    uvloop==0.21.0            # MLServer with parallel_workers crashes on uvloop 0.23
    nvidia-pytriton==0.7.0    # bundles tritonserver 2.51 + python backend
    numpy==1.26.4
    scikit-learn==1.7.2
    onnxruntime==1.23.2
    'tritonclient[all]==2.73.0'
)

if [ ! -x "$venv/bin/python" ]; then
    "$py" -m venv "$venv"
fi
stamp="$venv/.peers-pins"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "${pins[*]}" ]; then
    "$venv/bin/python" -m pip install -q --upgrade pip
    "$venv/bin/python" -m pip install -q "${pins[@]}"
    printf '%s' "${pins[*]}" > "$stamp"
fi

# Triton: the bundled python backend ships one stub per Python version; put the 3.11 one in place.
pyver="$("$venv/bin/python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
tdir="$("$venv/bin/python" -c 'import pytriton, pathlib; print(pathlib.Path(pytriton.__file__).parent / "tritonserver")')"
backend="$tdir/backends/python"
# (The wheel's default stub in backends/python is linked against its bundled Python 3.13.)
stub="$tdir/python_backend_stubs/$pyver/triton_python_backend_stub"
if [ ! -f "$stub" ]; then
    echo "no triton_python_backend_stub for Python $pyver under $tdir/python_backend_stubs" >&2
    exit 1
fi
if ! cmp -s "$stub" "$backend/triton_python_backend_stub"; then
    cp "$stub" "$backend/triton_python_backend_stub"
    chmod +x "$backend/triton_python_backend_stub"
fi

# Triton model repository: iris served by the python backend running the same ONNX file.
repo="$tools/triton_repo"
mkdir -p "$repo/iris/1"
cp "$root/tests/fixtures/models/iris_logreg/1/model.onnx" "$repo/iris/1/model.onnx"
cp "$here/triton_iris_model.py" "$repo/iris/1/model.py"
cp "$here/triton_iris_config.pbtxt" "$repo/iris/config.pbtxt"

# MLServer: start_mlserver.sh writes settings.json + iris/model-settings.json per port under
# bench/.tools/mlserver/<http_port>/; the model is the fixture file itself (mlserver_runtime.py).

echo "venv:              $venv ($("$venv/bin/python" --version))"
echo "tritonserver:      $tdir/bin/tritonserver"
echo "python backend:    $backend (stub for Python $pyver)"
echo "triton repository: $repo"
echo "mlserver runtime:  $here/mlserver_runtime.py (settings written by start_mlserver.sh)"
"$venv/bin/python" -m pip list 2>/dev/null | grep -iE '^(mlserver|mlserver-sklearn|uvloop|nvidia-pytriton|numpy|scikit-learn|onnxruntime|tritonclient) ' || true
