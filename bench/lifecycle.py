#!/usr/bin/env python3
"""Latency of a model while the server changes what it serves, in one run, one client
(perf_analyzer 2.51 on model A, a separate process):

  1. baseline: A alone (explicit mode, A loaded at start);
  2. churn: the same while a thread of this script loads and unloads model B (the 256-1024-1024-10
     MLP) through the REST API: 20 cycles 0.25 s apart, then back to back for the whole
     measurement (a stress case), then only cheap API calls back to back (what the client
     harness alone costs on a small machine);
  3. poll swaps: poll mode (1 s), while versions of A are added and A's weights are replaced
     every second.

perf_analyzer stops at the first failed request, so a row with figures had 0 failures.
Prints a markdown table (infer/s, p50, p99 in us) and the p99 ratios against the baseline.

    cargo build --release -p inferd && bench/get_perf_analyzer.sh
    /tmp/fixvenv/bin/python bench/lifecycle.py       # tools from tests/fixtures/requirements.txt
"""

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
sys.path.insert(0, str(ROOT / "bench"))
from bench_mlp import mlp_model  # noqa: E402
from serving import INFERD, TOOLS, free_ports, perf, wait_ready  # noqa: E402

IRIS = ROOT / "tests" / "fixtures" / "models" / "iris_logreg" / "1"
FOREST = ROOT / "tests" / "fixtures" / "models" / "iris_forest" / "1" / "model.onnx"
# Steady windows are not expected while the server changes: take what is measured.
PERF_FLAGS = ("--stability-percentage", "100")


def post(url, path):
    request = urllib.request.Request(f"http://{url}{path}", data=b"{}", method="POST")
    with urllib.request.urlopen(request, timeout=60) as r:
        return r.status


class Background:
    """Runs `step` repeatedly on a thread until stopped or it returns False; counts the steps."""

    def __init__(self, step):
        self.step, self.count, self.error = step, 0, None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                if self.step(self.count) is False:
                    return
                self.count += 1
            except Exception as e:  # noqa: BLE001 - reported in the table
                self.error = e
                return

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(120)


def server(repo, *flags):
    http, grpc = free_ports(2)
    proc = subprocess.Popen([str(INFERD), "serve", "--model-repository", str(repo), "--http-port", str(http),
                             "--grpc-port", str(grpc), "--metrics-port", str(free_ports(1)[0]), *flags], stderr=subprocess.DEVNULL)
    url = f"127.0.0.1:{http}"
    wait_ready(url)
    return proc, url


def main():
    for tool in (INFERD, TOOLS / "perf_analyzer"):
        if not tool.exists():
            raise SystemExit(f"missing {tool}: see this script's docstring")
    concurrency = int(os.environ.get("CONCURRENCY", "1"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        shutil.copytree(IRIS, repo / "A" / "1")
        (repo / "B" / "1").mkdir(parents=True)
        (repo / "B" / "1" / "model.onnx").write_bytes(mlp_model().SerializeToString())

        proc, url = server(repo, "--model-control-mode", "explicit", "--load-model", "A")
        try:
            rows.append(("baseline: A alone", perf("A", url, "http", concurrency, PERF_FLAGS), ""))

            def cycle(i, pause):
                post(url, "/v2/repository/models/B/load")
                post(url, "/v2/repository/models/B/unload")
                time.sleep(pause)

            for name, step in [
                ("churn: 20 load+unload cycles of B, 0.25 s apart", lambda i: i < 20 and cycle(i, 0.25)),
                ("churn: load+unload B back to back (stress)", lambda i: cycle(i, 0)),
                ("client harness only: back-to-back index calls", lambda i: post(url, "/v2/repository/index")),
            ]:
                with Background(step) as churn:
                    result = perf("A", url, "http", concurrency, PERF_FLAGS)
                rows.append((name, result, f"{churn.count} steps" + (f", error: {churn.error}" if churn.error else "")))
        finally:
            proc.terminate()
            proc.wait(20)

        proc, url = server(repo, "--model-control-mode", "poll", "--repository-poll-secs", "1")
        try:
            rows.append(("poll mode, no change", perf("A", url, "http", concurrency, PERF_FLAGS), ""))

            def change(i):
                # Alternately a new version, and new weights for the newest one; renamed in whole.
                newest = max(int(p.name) for p in (repo / "A").iterdir() if p.name.isdigit())
                staging = repo / "A" / f".stage{i}"
                if i % 2 == 0:
                    shutil.copytree(IRIS, staging)
                    os.replace(staging, repo / "A" / str(newest + 1))
                else:
                    shutil.copy(FOREST if i % 4 == 1 else IRIS / "model.onnx", staging)
                    os.replace(staging, repo / "A" / str(newest) / "model.onnx")
                time.sleep(1)

            with Background(change) as swaps:
                result = perf("A", url, "http", concurrency, PERF_FLAGS)
            rows.append(("poll swaps: a change every second", result,
                         f"{swaps.count} changes" + (f", error: {swaps.error}" if swaps.error else "")))
        finally:
            proc.terminate()
            proc.wait(20)

    print()
    print(f"| scenario (model A = iris, HTTP, concurrency {concurrency}) | infer/s | p50 us | p99 us | p99 / baseline | background |")
    print("|---|---|---|---|---|---|")
    poll_base = next(i for i, row in enumerate(rows) if row[0].startswith("poll mode"))
    for i, (name, r, note) in enumerate(rows):
        ref = rows[0 if i < poll_base else poll_base][1]
        if r:
            ratio = f"{r[2] / ref[2]:.2f}" if ref else ""
            print(f"| {name} | {r[0]:.0f} | {r[1]} | {r[2]} | {ratio} | {note} |")
        else:
            print(f"| {name} | failed (a request failed or perf_analyzer stopped) | | | | {note} |")


if __name__ == "__main__":
    main()
