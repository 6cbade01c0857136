#!/usr/bin/env python3
"""The cost of a shadow to the primary, in one run (perf_analyzer 2.51, HTTP, c=4 by default):
iris as version 1 (the primary) and, as version 2, a model with iris's inputs and outputs that is
about 20x slower per request (a 4->2048->2048->3 MLP). The same load runs without a shadow, then
with version 2 shadowing 100% of requests. Reports the primary's infer/s and p50/p99, the
shadow's measured slowdown, how many copies ran and were dropped, and the server's RSS.

    cargo build --release -p inferd && bench/get_perf_analyzer.sh
    .venv/bin/python bench/shadow.py [--concurrency 4] [--rounds 3]
"""

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from request_path import INFERD, ROOT, TOOLS, free_ports, wait_ready


def heavy_iris(hidden=int(os.environ.get("SHADOW_HIDDEN", 2048))):
    """X [N,4] -> label INT64 [N], probabilities FP32 [N,3], through two wide layers."""
    rng = np.random.default_rng(1)
    dims = [4, hidden, hidden, 3]
    inits, nodes, x = [], [], "X"
    for i, (a, b) in enumerate(zip(dims, dims[1:])):
        inits += [numpy_helper.from_array(rng.normal(0, 0.05, (a, b)).astype(np.float32), f"w{i}"),
                  numpy_helper.from_array(np.zeros(b, np.float32), f"b{i}")]
        nodes.append(helper.make_node("Gemm", [x, f"w{i}", f"b{i}"], [f"h{i}"]))
        x = f"h{i}"
        if i < len(dims) - 2:
            nodes.append(helper.make_node("Relu", [x], [f"r{i}"]))
            x = f"r{i}"
    nodes.append(helper.make_node("Softmax", [x], ["probabilities"], axis=-1))
    nodes.append(helper.make_node("ArgMax", ["probabilities"], ["label"], axis=1, keepdims=0))
    graph = helper.make_graph(
        nodes, "heavy_iris", [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
         helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 3])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def call(port, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read() or b"{}")


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def perf(port, concurrency):
    with tempfile.NamedTemporaryFile(suffix=".csv") as out:
        cmd = [str(TOOLS / "perf_analyzer"), "-m", "iris", "-u", f"127.0.0.1:{port}", "-i", "http",
               "--concurrency-range", str(concurrency), "-p", "3000", "-s", "100", "-r", "6", "-f", out.name]
        subprocess.run(cmd, env=dict(os.environ, LD_LIBRARY_PATH=str(TOOLS / "lib")), check=True,
                       capture_output=True, timeout=600)
        row = next(csv.DictReader(open(out.name)))
        return float(row["Inferences/Second"]), int(row["p50 latency"]), int(row["p99 latency"])


def per_request_us(port, version):
    s = call(port, "GET", f"/v2/models/iris/versions/{version}/stats")["model_stats"][0]
    return s["inference_stats"]["compute_infer"]["ns"] / 1000 / max(1, s["inference_stats"]["success"]["count"])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp)
        (repo / "iris" / "1").mkdir(parents=True)
        shutil.copy(ROOT / "tests/fixtures/models/iris_logreg/1/model.onnx", repo / "iris" / "1")
        (repo / "iris" / "2").mkdir()
        (repo / "iris" / "2" / "model.onnx").write_bytes(heavy_iris().SerializeToString())
        (repo / "iris" / "config.toml").write_text('version_policy = "all"\n')
        http, grpc, metrics = free_ports(3)
        server = subprocess.Popen([str(INFERD), "serve", "--model-repository", str(repo), "--http-port", str(http),
                                   "--grpc-port", str(grpc), "--metrics-port", str(metrics)],
                                  stderr=subprocess.DEVNULL)
        try:
            wait_ready(http)
            call(http, "PUT", "/v2/models/iris/aliases/production", {"version": "1"})
            # The shadow's cost per request, measured alone.
            x = {"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]}
            for version in ("1", "2"):
                for _ in range(200):
                    call(http, "POST", f"/v2/models/iris/versions/{version}/infer", x)
            slowdown = per_request_us(http, 2) / per_request_us(http, 1)
            rows = {"off": [], "on": []}
            rss = {"off": [], "on": []}
            for _ in range(args.rounds):
                for mode in ("off", "on"):
                    policy = {"split": [{"version": "1", "weight": 1}]}
                    if mode == "on":
                        policy["shadow"] = [{"version": "2", "percent": 100}]
                    call(http, "PUT", "/v2/models/iris/traffic", policy)
                    rows[mode].append(perf(http, args.concurrency))
                    rss[mode].append(rss_kib(server.pid))
                    time.sleep(1)
            figures = call(http, "GET", "/v2/models/iris/traffic")["shadow_figures"]
        finally:
            server.terminate()
            server.wait(20)
    med = {m: [statistics.median(r[i] for r in rows[m]) for i in range(3)] for m in rows}
    print(f"\nshadow (version 2) takes {slowdown:.1f}x the primary's compute per request")
    print(f"| shadow | infer/s | p50 us | p99 us | RSS KiB (max) |")
    print("|---|---|---|---|---|")
    for m in ("off", "on"):
        print(f"| {m} | {med[m][0]:.0f} | {med[m][1]:.0f} | {med[m][2]:.0f} | {max(rss[m])} |")
    print(f"primary p99 with shadow / without = {med['on'][2] / med['off'][2]:.2f}")
    for f in figures:
        print(f"shadow version {f['version']}: {f['match']} match, {f['mismatch']} mismatch, "
              f"{f['error']} error, {f['dropped']} dropped")


if __name__ == "__main__":
    main()
