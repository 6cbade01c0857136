#!/usr/bin/env python3
"""Issue 20's two figures, side by side in one run (perf_analyzer, HTTP, c=1):

  1. The response cache on the MLP (256->1024->1024->10): the same model with
     `[response_cache] enabled = true` and without it. perf_analyzer sends the same input every
     time, so after the first request every answer of the cached model is a hit. infer/s, p50,
     p99 and server CPU-us per request (/proc/<pid>/stat over the call, divided by the requests
     the server answered: statistics `success`, which counts hits, unlike inference_count).
  2. Lazy loading under a budget: a pinned ("hot") MLP measured alone, then while a client
     thread keeps requesting 200 other copies of the MLP under --max-loaded-models 20, so that
     almost every one of its requests loads a model and evicts another, and then beside the
     same rate of requests to another pinned MLP (the control: the client and the requests
     themselves, without loads). The hot model's p50/p99 in each, and the loads/s.

    cargo build --release -p inferd
    bench/get_perf_analyzer.sh
    .venv/bin/python bench/serving_breadth.py [--seconds 10]
"""

import argparse
import csv
import os
import random
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import tritonclient.http as httpclient

from request_path import INFERD, ROOT, TICK_US, TOOLS, Server, cpu_ticks, free_ports, get_json, mlp_model


def served(http, model):
    stats = get_json(f"http://127.0.0.1:{http}/v2/models/{model}/stats")
    return sum(s["inference_stats"]["success"]["count"] for s in stats["model_stats"])


def perf(server, model, seconds):
    with tempfile.NamedTemporaryFile(suffix=".csv") as out:
        cmd = [str(TOOLS / "perf_analyzer"), "-m", model, "-u", f"127.0.0.1:{server.http}", "-i", "http",
               "--concurrency-range", "1", "-p", str(int(seconds * 1000 / 3)), "-s", "100", "-r", "3",
               "-f", out.name]
        env = dict(os.environ, LD_LIBRARY_PATH=str(TOOLS / "lib"))
        ticks, count = cpu_ticks(server.proc.pid), served(server.http, model)
        run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        ticks, count = cpu_ticks(server.proc.pid) - ticks, served(server.http, model) - count
        if run.returncode != 0:
            raise RuntimeError(run.stdout[-600:])
        row = next(csv.DictReader(open(out.name)))
        return (float(row["Inferences/Second"]), int(row["p50 latency"]), int(row["p99 latency"]),
                ticks * TICK_US / max(count, 1))


def start(repo, *flags):
    http, grpc, metrics = free_ports(3)
    cmd = [str(INFERD), "serve", "--model-repository", str(repo), "--http-port", str(http), "--grpc-port",
           str(grpc), "--metrics-port", str(metrics), *flags]
    server = Server("inferd", cmd, http, grpc)
    return server


def cache_run(tmp, seconds):
    repo = tmp / "cache"
    model = mlp_model().SerializeToString()
    for name, config in (("mlp_cached", "[response_cache]\nenabled = true\n"), ("mlp_plain", "")):
        (repo / name / "1").mkdir(parents=True)
        (repo / name / "1" / "model.onnx").write_bytes(model)
        (repo / name / "config.toml").write_text(config)
    server = start(repo, "--cache-size", "256MiB")
    try:
        rows = {name: perf(server, name, seconds) for name in ("mlp_plain", "mlp_cached")}
    finally:
        server.stop()
    print("\n## Response cache, MLP, HTTP c=1 (perf_analyzer repeats one input: every cached answer is a hit)\n")
    print("| model | infer/s | p50 us | p99 us | server CPU-us/request |")
    print("|---|---|---|---|---|")
    for name, (ips, p50, p99, cpu) in rows.items():
        print(f"| {name} | {ips:,.0f} | {p50:,} | {p99:,} | {cpu:.1f} |")
    plain, cached = rows["mlp_plain"], rows["mlp_cached"]
    print(f"\ncached / uncached: p50 {cached[1] / plain[1]:.2f}x, CPU per request {cached[3] / plain[3]:.2f}x")


def budget_run(tmp, seconds):
    repo = tmp / "lazy"
    model_dir = tmp / "mlp_files"
    model_dir.mkdir()
    (model_dir / "model.onnx").write_bytes(mlp_model().SerializeToString())
    for i in range(200):
        (repo / f"mlp_{i:03}").mkdir(parents=True)
        (repo / f"mlp_{i:03}" / "1").symlink_to(model_dir)
    for pinned in ("hot", "warm"):
        (repo / pinned).mkdir()
        (repo / pinned / "1").symlink_to(model_dir)
        (repo / pinned / "config.toml").write_text("pinned = true\n")
    server = start(repo, "--model-control-mode", "lazy", "--max-loaded-models", "20")

    def beside(pick, rate=None):
        """The hot model's figures while a client thread requests `pick()`, at `rate` a second
        when given; and the rate it made."""
        stop, sent = threading.Event(), [0]

        def other():
            rng = random.Random(1)
            x = httpclient.InferInput("x", [1, 256], "FP32")
            x.set_data_from_numpy(np.zeros((1, 256), np.float32))
            with httpclient.InferenceServerClient(f"127.0.0.1:{server.http}", network_timeout=120) as c:
                began = time.monotonic()
                while not stop.is_set():
                    c.infer(pick(rng), [x])
                    sent[0] += 1
                    if rate:
                        time.sleep(max(0.0, began + sent[0] / rate - time.monotonic()))

        thread = threading.Thread(target=other)
        thread.start()
        time.sleep(1)
        began, first = time.monotonic(), sent[0]
        figures = perf(server, "hot", seconds)
        made = (sent[0] - first) / (time.monotonic() - began)
        stop.set()
        thread.join()
        return figures, made

    try:
        alone = perf(server, "hot", seconds)
        cold, rate = beside(lambda rng: f"mlp_{rng.randrange(200):03}")
        # The control: as many requests a second to a model that stays loaded, so that the
        # client's and the requests' own CPU on this 2-core box are in both rows.
        warm, warm_rate = beside(lambda rng: "warm", rate)
    finally:
        server.stop()
    print("\n## Lazy loading: the pinned hot MLP, HTTP c=1, alone, beside requests to a resident model, and "
          "beside cold requests over 200 MLPs (budget 20)\n")
    print("| hot model | infer/s | p50 us | p99 us | server CPU-us/request |")
    print("|---|---|---|---|---|")
    rows = (("alone", alone), (f"beside {warm_rate:.1f} requests/s to a resident model", warm),
            (f"beside {rate:.1f} cold requests/s", cold))
    for label, (ips, p50, p99, cpu) in rows:
        print(f"| {label} | {ips:,.0f} | {p50:,} | {p99:,} | {cpu:.1f} |")
    print(f"\nbeside cold loads: hot p50 {cold[1] / alone[1]:.2f}x, p99 {cold[2] / alone[2]:.2f}x of alone; "
          f"p99 {cold[2] / warm[2]:.2f}x of beside the same rate of resident requests")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=9)
    args = parser.parse_args()
    if not INFERD.exists():
        raise SystemExit(f"{INFERD} is missing: cargo build --release -p inferd")
    with tempfile.TemporaryDirectory() as tmp:
        cache_run(Path(tmp), args.seconds)
        budget_run(Path(tmp), args.seconds)


if __name__ == "__main__":
    main()
