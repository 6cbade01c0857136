#!/usr/bin/env python3
"""Batch scoring throughput, in one run, on the compute-bound MLP (256->1024->1024->10):

  1. raw tract: the model alone at batch 64, one thread (bench `time_model`);
  2. `inferd batch` in process on a CSV, on JSON Lines and on Parquet (one LIST column, and one
     column per feature) of the same rows (batch 64), with one model instance and with one per
     core (its default); Parquet also to a Parquet output;
  3. `inferd batch --url` against `inferd serve` (the same rows over HTTP);
  4. `mlserver infer` against MLServer 1.7.1 (onnxruntime, bench/peers) and `inferd batch` in
     process, both on the same file of V2 requests of 64 rows each (what `mlserver infer` reads).

Rows/s and ratios; server CPU-us per row for the server runs (from /proc/<pid>/stat). The
in-process runs and raw tract go in rounds (`--rounds`, 3 by default), and each row reports its
median. This VM's speed drifts by about 10% within a minute, so each in-process run is paired with
a raw tract run on all cores just before it, and its ratio is the median of its rounds' ratios to
that run. Raw tract's rows/s comes from its mean call over 500 calls (about as long as a job here),
not its median: a job's rows/s counts every slow moment too.

    cargo build --release -p inferd && cargo build --release -p inferd --example time_model
    bench/peers/setup.sh        # for MLServer (skipped with a note when absent)
    .venv/bin/python bench/batch.py [--rows 40000]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from request_path import INFERD, ROOT, TICK_US, cpu_ticks, free_ports, wait_ready

sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
from bench_mlp import mlp_model  # noqa: E402

TIMER = ROOT / "target" / "release" / "examples" / "time_model"
PEERS = ROOT / "bench" / ".tools" / "peers-venv"
RAW_CALLS = 500


def run_batch(*args):
    """Seconds of the whole command (start, model load and all)."""
    started = time.monotonic()
    done = subprocess.run([str(INFERD), "batch", "--progress", "off", *map(str, args)], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return time.monotonic() - started


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    n = args.rows - args.rows % 64
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        repo = tmp / "repo"
        (repo / "mlp" / "1").mkdir(parents=True)
        import onnx
        onnx.save(mlp_model(), repo / "mlp" / "1" / "model.onnx")
        x = np.random.default_rng(1).normal(0, 1, (n, 256)).astype(np.float32)
        csv_path = tmp / "rows.csv"
        with open(csv_path, "w") as f:
            f.write(",".join(f"f{i}" for i in range(256)) + "\n")
            np.savetxt(f, x, fmt="%.5f", delimiter=",")
        jsonl_path = tmp / "rows.jsonl"
        with open(jsonl_path, "w") as f:
            for row in x:
                f.write('{"x": [' + ",".join(f"{v:.5f}" for v in row) + "]}\n")
        import pyarrow as pa
        import pyarrow.parquet as pq
        flat = pa.array(x.ravel())
        pq.write_table(pa.table({"x": pa.ListArray.from_arrays(pa.array(np.arange(0, n * 256 + 1, 256, dtype=np.int32)),
                                                                 flat)}), tmp / "rows.parquet")
        pq.write_table(pa.table({f"f{i}": x[:, i] for i in range(256)}), tmp / "wide.parquet")
        v2_path = tmp / "requests.jsonl"
        with open(v2_path, "w") as f:
            for at in range(0, n, 64):
                data = ",".join(f"{v:.5f}" for v in x[at:at + 64].ravel())
                f.write('{"inputs": [{"name": "x", "datatype": "FP32", "shape": [64, 256], "data": [' + data + "]}]}\n")

        cores = os.cpu_count() or 1

        # Raw tract's rows/s is 64 over the mean call (all calls' time, as a job's rows/s counts all
        # of its time), over 500 calls: about as long as a job of these rows on all cores.
        def raw_one():
            t = json.loads(subprocess.check_output([str(TIMER), str(repo / "mlp" / "1"), "64", str(RAW_CALLS)]))
            return 64 / t["mean_us"] * 1e6, None

        def raw_all():
            # One timer per core at once: what the model alone gets from the whole machine.
            timers = [subprocess.Popen([str(TIMER), str(repo / "mlp" / "1"), "64", str(RAW_CALLS)],
                                       stdout=subprocess.PIPE) for _ in range(cores)]
            return sum(64 / json.loads(p.communicate()[0])["mean_us"] * 1e6 for p in timers), None

        def in_process(path, ext, *extra):
            def go():
                out_path = tmp / f"out.{ext}"
                for old in tmp.glob(f"out.{ext}*"):  # the last round's output and its errors file
                    old.unlink()
                secs = run_batch("--model-repository", repo, "--model", "mlp", "--input", path, "--output",
                                 out_path, "--summary", tmp / "summary.json", *extra)
                # The job's own rate: from reading its first row, after process start and model load.
                # (Its seconds, not its rows/s: a V2 request line counts as one row there.)
                return n / secs, n / json.loads((tmp / "summary.json").read_text())["seconds"]
            return go

        runs = {"raw tract, batch 64, 1 thread": raw_one, f"raw tract, batch 64, {cores} threads at once": raw_all}
        inputs = [("csv", csv_path, "csv"), ("jsonl", jsonl_path, "jsonl"),
                  ("parquet, list column", tmp / "rows.parquet", "csv"),
                  ("parquet, a column per feature", tmp / "wide.parquet", "csv")]
        for name, path, ext in inputs:
            for instances in (1, cores):
                runs[f"inferd batch in process, {name}, {instances} instance(s)"] = in_process(
                    path, ext, "--batch-size", "64", "--instances", instances)
        runs[f"inferd batch in process, parquet list column to parquet, {cores} instance(s)"] = in_process(
            tmp / "rows.parquet", "parquet", "--batch-size", "64")
        runs["inferd batch in process, V2 request lines"] = in_process(v2_path, "jsonl")
        rates = {name: [] for name in runs}
        for _ in range(args.rounds):
            for name, go in runs.items():
                paired = raw_all()[0] if not name.startswith("raw") else None
                rates[name].append((*go(), paired))

        def median(values):
            return sorted(values)[len(values) // 2]
        out = {name: median([whole for whole, _, _ in r]) for name, r in rates.items()}
        # name: (median rows/s, median ratio to the paired raw run), for the in-process runs
        paired = {name: (median([w / p for w, _, p in r]), median([j / p for _, j, p in r]))
                  for name, r in rates.items() if r[0][2] is not None}
        steady = {name: median([job for _, job, _ in r]) for name, r in rates.items() if r[0][1] is not None}

        http, grpc, metrics = free_ports(3)
        server = subprocess.Popen([str(INFERD), "serve", "--model-repository", str(repo), "--http-port", str(http),
                                   "--grpc-port", str(grpc), "--metrics-port", str(metrics), "--access-log", "false"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_ready(http)
            ticks = cpu_ticks(server.pid)
            secs = run_batch("--url", f"http://127.0.0.1:{http}", "--model", "mlp", "--input", csv_path, "--output",
                             tmp / "out-remote.csv", "--batch-size", "64", "--concurrency", "4")
            server_us = (cpu_ticks(server.pid) - ticks) * TICK_US / n
            out["inferd batch --url inferd serve, csv"] = n / secs
        finally:
            server.terminate()
            server.wait(20)

        mlserver = None
        if (PEERS / "bin" / "mlserver").exists():
            mlserver = run_mlserver(tmp, repo, v2_path, n)
            if mlserver:
                out["mlserver infer -> MLServer 1.7.1, V2 request lines"] = mlserver
        raw = out["raw tract, batch 64, 1 thread"]
        raw_all = out[f"raw tract, batch 64, {cores} threads at once"]
        print(f"\n{n} rows of 256 FP32 values; MLP 256->1024->1024->10")
        print(f"(rows/s of whole commands: process start and model load included; median of {args.rounds} rounds,"
              " except the --url and MLServer rows)")
        print(f"| run | rows/s | vs raw tract, 1 thread | vs raw tract on all {cores} cores"
              " (in process: median of its ratios to a raw run just before it) |")
        print("|---|---|---|---|")
        for name, rate in out.items():
            ratio = paired[name][0] if name in paired else rate / raw_all
            print(f"| {name} | {rate:.0f} | {rate / raw:.3f} | {ratio:.3f} |")
        print("\nThe in-process jobs' own rows/s (their --summary: from the first row read, after process start and"
              " model load, as raw tract's figure is)")
        print(f"| run | rows/s | vs raw tract on all {cores} cores, paired |")
        print("|---|---|---|")
        for name, rate in steady.items():
            print(f"| {name} | {rate:.0f} | {paired[name][1]:.3f} |")
        print(f"inferd serve CPU-us per row under `inferd batch --url`: {server_us:.1f}")
        if mlserver:
            ours = out["inferd batch in process, V2 request lines"]
            print(f"inferd batch / mlserver infer on the same file: {ours / mlserver:.1f}x")
        else:
            print("MLServer: bench/peers/setup.sh was not run (bench/.tools/peers-venv missing); no comparison")


def run_mlserver(tmp, repo, v2_path, n):
    http, grpc = free_ports(2)
    d = tmp / "mlserver"
    (d / "mlp").mkdir(parents=True)
    (d / "settings.json").write_text(json.dumps({"debug": False, "host": "127.0.0.1", "http_port": http,
                                                 "grpc_port": grpc, "metrics_endpoint": None,
                                                 "parallel_workers": 1, "load_models_at_startup": True}))
    (d / "mlp" / "model-settings.json").write_text(json.dumps({
        "name": "mlp", "implementation": "mlserver_runtime.OnnxRuntime",
        "parameters": {"uri": str(repo / "mlp" / "1" / "model.onnx"), "version": "1"},
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 256]}],
        "outputs": [{"name": "probs", "datatype": "FP32", "shape": [-1, 10]}]}))
    env = dict(os.environ, PYTHONPATH=str(ROOT / "bench" / "peers"), PATH=f"{PEERS / 'bin'}:{os.environ['PATH']}")
    proc = subprocess.Popen([str(PEERS / "bin" / "python"), str(ROOT / "bench" / "peers" / "mlserver_launch.py"),
                             "start", str(d)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        import urllib.request
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{http}/v2/models/mlp/ready", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                print("MLServer did not start")
                return None
            time.sleep(0.5)
        started = time.monotonic()
        done = subprocess.run([str(PEERS / "bin" / "mlserver"), "infer", "-u", f"127.0.0.1:{http}", "-m", "mlp",
                               "-i", str(v2_path), "-o", str(tmp / "mlserver-out.jsonl"), "--workers", "4"],
                              env=env, capture_output=True, text=True)
        secs = time.monotonic() - started
        if done.returncode != 0:
            print(f"mlserver infer failed: {done.stderr[-1000:]}")
            return None
        return n / secs
    finally:
        proc.terminate()
        proc.wait(30)


if __name__ == "__main__":
    main()
