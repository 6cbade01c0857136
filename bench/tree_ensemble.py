#!/usr/bin/env python3
"""Tree-ensemble speed, side by side in one run: inferd's embedded backend (tract plus our
TreeEnsembleRegressor) against onnxruntime, both in-process on one thread, on a 300-tree,
depth-8 GradientBoostingRegressor at batch 256 (and batch 1).

Run from the repository root with the fixture tools (tests/fixtures/requirements.txt):
    cargo build --release -p inferd --example time_model
    /tmp/fixvenv/bin/python bench/tree_ensemble.py
"""

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from skl2onnx import to_onnx
from sklearn.datasets import make_regression
from sklearn.ensemble import GradientBoostingRegressor

ROOT = Path(__file__).resolve().parent.parent
TIMER = ROOT / "target" / "release" / "examples" / "time_model"
ITERATIONS = 300


def ort_times(path, x):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    for _ in range(ITERATIONS // 10):
        session.run(None, {name: x})
    times = []
    for _ in range(ITERATIONS):
        start = time.perf_counter()
        session.run(None, {name: x})
        times.append((time.perf_counter() - start) * 1e6)
    times.sort()
    return {"median_us": times[len(times) // 2], "p90_us": times[int(len(times) * 0.9)]}


def main():
    if not TIMER.exists():
        sys.exit(f"build the timer first: cargo build --release -p inferd --example time_model")
    x, y = make_regression(n_samples=2000, n_features=20, random_state=0)
    model = GradientBoostingRegressor(n_estimators=300, max_depth=8, random_state=0).fit(x.astype(np.float32), y)
    onx = to_onnx(model, x[:1].astype(np.float32))
    with tempfile.TemporaryDirectory() as tmp:
        version = Path(tmp) / "1"
        version.mkdir()
        (version / "model.onnx").write_bytes(onx.SerializeToString())
        print(f"GradientBoostingRegressor: 300 trees, depth 8, 20 features; {ITERATIONS} timed calls, 1 thread")
        print(f"{'batch':>6} {'onnxruntime p50':>16} {'inferd/tract p50':>17} {'ratio':>6}")
        for batch in (1, 256):
            # Same values as the timer feeds: (i * 7919 % 1000) / 500 - 1, row-major.
            xb = ((np.arange(batch * 20) * 7919 % 1000) / 500.0 - 1.0).astype(np.float32).reshape(batch, 20)
            ours = json.loads(subprocess.check_output([str(TIMER), str(version), str(batch), str(ITERATIONS)]))
            theirs = ort_times(version / "model.onnx", xb)
            ratio = ours["median_us"] / theirs["median_us"]
            print(f"{batch:>6} {theirs['median_us']:>13.1f} us {ours['median_us']:>14.1f} us {ratio:>6.2f}")


if __name__ == "__main__":
    main()
