#!/usr/bin/env python3
"""Backends against the raw library, in-process, one thread, same run, median of 300 runs after
warmup, rows/s and ours/raw:
  - the MLP (256-1024-1024-10) at batch 1 and 64 on inferd's tract and ONNX Runtime backends
    (bench `time_model`, in Rust) and on onnxruntime's Python API (intra/inter-op threads 1);
  - a 300-tree XGBoost regressor (depth 8, 20 features) on inferd's tree backend and on
    xgboost's `inplace_predict` (nthread 1).

    cargo build --release -p inferd --example time_model
    python3 scripts/get_onnxruntime.py
    /tmp/fixvenv/bin/python bench/backends.py      # tools from tests/fixtures/requirements.txt
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import xgboost as xgb

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
from bench_mlp import mlp_model  # noqa: E402

TIMER = ROOT / "target" / "release" / "examples" / "time_model"
ITERATIONS = 300


def raw_ort(path, batch):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    x = ((np.arange(batch * 256) * 7919 % 1000) / 500.0 - 1.0).astype(np.float32).reshape(batch, 256)
    for _ in range(ITERATIONS // 10):
        session.run(None, {"x": x})
    times = []
    for _ in range(ITERATIONS):
        start = time.perf_counter()
        session.run(None, {"x": x})
        times.append((time.perf_counter() - start) * 1e6)
    return float(np.median(times))


def raw_xgb(path, batch):
    booster = xgb.Booster(model_file=str(path))
    booster.set_param({"nthread": 1})
    x = ((np.arange(batch * 20) * 7919 % 1000) / 500.0 - 1.0).astype(np.float32).reshape(batch, 20)
    for _ in range(ITERATIONS // 10):
        booster.inplace_predict(x)
    times = []
    for _ in range(ITERATIONS):
        start = time.perf_counter()
        booster.inplace_predict(x)
        times.append((time.perf_counter() - start) * 1e6)
    return float(np.median(times))


def ours(version_dir, batch, backend):
    out = subprocess.check_output([str(TIMER), str(version_dir), str(batch), str(ITERATIONS), backend])
    return json.loads(out)["median_us"]


def main():
    if not TIMER.exists():
        sys.exit("build the timer first: cargo build --release -p inferd --example time_model")
    print(f"onnxruntime (Python) {ort.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        version = Path(tmp) / "1"
        version.mkdir()
        (version / "model.onnx").write_bytes(mlp_model().SerializeToString())
        rows = []
        for batch in (1, 64):
            raw = raw_ort(version / "model.onnx", batch)
            ort_us = ours(version, batch, "onnxruntime")
            tract_us = ours(version, batch, "tract")
            rows.append((batch, raw, ort_us, tract_us))
        trees = Path(tmp) / "xgb" / "1"
        trees.mkdir(parents=True)
        rng = np.random.default_rng(0)
        x = rng.normal(size=(5000, 20)).astype(np.float32)
        y = x[:, 0] * 3 + np.sin(x[:, 1] * 2) + x[:, 2] * x[:, 3] + rng.normal(0, 0.1, 5000)
        xgb.XGBRegressor(n_estimators=300, max_depth=8, n_jobs=1, random_state=0).fit(x, y).save_model(
            trees / "model.json")
        tree_rows = [(batch, raw_xgb(trees / "model.json", batch), ours(trees, batch, "trees")) for batch in (1, 64)]
    print()
    print("| MLP batch | raw onnxruntime rows/s | inferd onnxruntime rows/s | ours/raw | inferd tract rows/s | tract/raw |")
    print("|---|---|---|---|---|---|")
    for batch, raw, ort_us, tract_us in rows:
        per_s = lambda us: batch / us * 1e6  # noqa: E731
        print(f"| {batch} | {per_s(raw):.0f} | {per_s(ort_us):.0f} | {raw / ort_us:.2f} | {per_s(tract_us):.0f} | {raw / tract_us:.2f} |")
    print()
    print("| XGBoost 300 trees, batch | xgboost inplace_predict rows/s | inferd trees rows/s | ours/raw |")
    print("|---|---|---|---|")
    for batch, raw, ours_us in tree_rows:
        print(f"| {batch} | {batch / raw * 1e6:.0f} | {batch / ours_us * 1e6:.0f} | {raw / ours_us:.2f} |")


if __name__ == "__main__":
    main()
