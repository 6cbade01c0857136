#!/usr/bin/env python3
"""What an ensemble costs against calling its models one by one from the client, in one run, on
Triton's two-model example shape (tests/fixtures/pipelines/iris_classes: iris_logreg -> iris_top2,
the 4 features in, the 2 likeliest species out):

  1. perf_analyzer (gRPC, c=1 and c=16) on the ensemble, on each step model alone, and on the
     protocol floor (bench/floor: a do-nothing V2 echo server on the same crates): infer/s,
     p50/p99 and server CPU-us per inference (/proc/<pid>/stat over the call, divided by the
     inferences the server counted for that model). Calling the steps one by one costs at least
     the sum of the steps' latencies and CPU; the difference to the ensemble is its overhead
     (or saving: one request to parse instead of two), per step.
  2. the same client code (tritonclient gRPC, threads) running the pipeline as one ensemble
     call, and as two calls chained in the client (probabilities back, then on to iris_top2).

    cargo build --release -p inferd -p inferd-floor
    bench/get_perf_analyzer.sh
    .venv/bin/python bench/pipelines.py [--seconds 10]
"""

import argparse
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient

from request_path import FLOOR, INFERD, ROOT, TICK_US, cpu_ticks, inferences, perf, start

FIXTURES = ROOT / "tests" / "fixtures"
X = np.array([[5.1, 3.5, 1.4, 0.2]], np.float32)


def repository(path):
    shutil.copytree(FIXTURES / "models" / "iris_logreg", path / "iris_logreg")
    for name in ("iris_top2", "iris_classes"):
        shutil.copytree(FIXTURES / "pipelines" / name, path / name)


def features():
    t = grpcclient.InferInput("FEATURES", [1, 4], "FP32")
    t.set_data_from_numpy(X)
    return t


def ensemble_call(c):
    return c.infer("iris_classes", [features()]).as_numpy("SPECIES")


def chained_call(c):
    x = grpcclient.InferInput("X", [1, 4], "FP32")
    x.set_data_from_numpy(X)
    probs = c.infer("iris_logreg", [x]).as_numpy("probabilities")
    s = grpcclient.InferInput("scores", list(probs.shape), "FP32")
    s.set_data_from_numpy(probs)
    return c.infer("iris_top2", [s]).as_numpy("top_labels")


def client_run(server, call, threads, seconds):
    """Pipelines/s, p50 and p99 (us) of `call` from `threads` client threads, and the server's
    CPU-us per pipeline."""
    latencies, stop = [], time.monotonic() + seconds
    lock = threading.Lock()

    def worker():
        with grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc}") as c:
            call(c)  # connection set up outside the timing
            mine = []
            while time.monotonic() < stop:
                started = time.perf_counter()
                call(c)
                mine.append((time.perf_counter() - started) * 1e6)
            with lock:
                latencies.extend(mine)

    ticks = cpu_ticks(server.proc.pid)
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    ticks = cpu_ticks(server.proc.pid) - ticks
    latencies.sort()
    n = len(latencies)
    return n / seconds, statistics.median(latencies), latencies[int(n * 0.99)], ticks * TICK_US / n


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        repository(repo)
        server = start("inferd", INFERD, repo)
        floor = start("floor", FLOOR, None)
        try:
            print("1. perf_analyzer, gRPC (infer/s, p50 us, p99 us, server CPU-us/inference)")
            for c in (1, 16):
                rows = {
                    "ensemble iris_classes": perf(server, "iris_classes", "grpc", c, None),
                    "step iris_logreg alone": perf(server, "iris_logreg", "grpc", c, None),
                    "step iris_top2 alone": perf(server, "iris_top2", "grpc", c, "scores:3"),
                    # The same 16 input bytes as iris's features, answered unchanged.
                    "protocol floor (echo)": perf(floor, "echo", "grpc", c, "INPUT0:4"),
                }
                for label, r in rows.items():
                    if r:
                        print(f"  c={c:<2} {label:<24} {r[0]:9.0f}/s  p50 {r[1]:6d}  p99 {r[2]:6d}  cpu {r[3]:6.1f}")
                ens, a, b, _ = rows.values()
                if ens and a and b:
                    print(f"  c={c:<2} per step, ensemble - steps alone: p50 {(ens[1] - a[1] - b[1]) / 2:+.0f} us, "
                          f"cpu {(ens[3] - a[3] - b[3]) / 2:+.1f} us; ensemble p50 / sum of steps' p50 "
                          f"{ens[1] / (a[1] + b[1]):.2f}")
            print("2. the same Python client (tritonclient gRPC): pipelines/s, p50 us, p99 us, server CPU-us/pipeline")
            for threads in (1, 16):
                one = client_run(server, ensemble_call, threads, args.seconds)
                two = client_run(server, chained_call, threads, args.seconds)
                for label, r in (("one ensemble call", one), ("two calls chained", two)):
                    print(f"  c={threads:<2} {label:<18} {r[0]:7.0f}/s  p50 {r[1]:7.0f}  p99 {r[2]:7.0f}  cpu {r[3]:6.1f}")
                print(f"  c={threads:<2} ensemble / chained: throughput {one[0] / two[0]:.2f}x, p50 {one[1] / two[1]:.2f}x, "
                      f"server cpu {one[3] / two[3]:.2f}x")
            total = inferences(server.http, "iris_classes")
            print(f"(the ensemble answered {total} requests in all)")
        finally:
            server.stop()
            floor.stop()


if __name__ == "__main__":
    main()
