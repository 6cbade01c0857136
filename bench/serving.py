#!/usr/bin/env python3
"""Serving throughput side by side, in one run, with one client (perf_analyzer 2.51):

  1. inferd on the iris logistic model and two MLPs (dynamic batch): 256->1024->1024->10, whose
     5 MB of weights stay in cache so batch 1 is already efficient on this CPU, and
     1024->4096->4096->10 (84 MB: batch 1 streams the weights from memory; 2 instances, 2 ms
     queue delay in both its variants), batching on and off, HTTP and gRPC, several
     concurrencies;
  2. the raw embedded backend in-process (no server, one thread) on each MLP at batch 1, 32
     and 64: the rows/s inferd can approach;
  3. peers on the same iris model when --peers is given and they are installed (see BENCH.md).

Prints a markdown table: infer/s, p50 and p99 (us) per configuration and concurrency.

    cargo build --release -p inferd && cargo build --release -p inferd --example time_model
    bench/get_perf_analyzer.sh
    /tmp/fixvenv/bin/python bench/serving.py          # tools from tests/fixtures/requirements.txt
"""

import argparse
import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
from bench_mlp import mlp_model  # noqa: E402
TOOLS = ROOT / "bench" / ".tools"
INFERD = ROOT / "target" / "release" / "inferd"
TIMER = ROOT / "target" / "release" / "examples" / "time_model"


# The MLPs: the 256-1024-1024-10 (5 MB, cache-resident: batch 1 is already efficient on
# this CPU) and a 1024-4096-4096-10 (84 MB: batch 1 streams the weights from memory, batching
# amortises that), which gets a 2 ms queue delay, small next to its 15 ms batches.
MLPS = {"mlp": (256, 1024, 1024, 10), "mlp_large": (1024, 4096, 4096, 10)}
BATCH_CONFIG = {"mlp_large": "instance_count = 2\n[dynamic_batching]\nmax_queue_delay_us = 2000\n"}
NOBATCH_CONFIG = {"mlp_large": "instance_count = 2\n"}


def repository(path, names):
    models = {name: mlp_model(dims).SerializeToString() for name, dims in MLPS.items() if name in names}
    if "iris" in names:
        models["iris"] = (ROOT / "tests/fixtures/models/iris_logreg/1/model.onnx").read_bytes()
    for name, data in models.items():
        for variant, config in [("batch", BATCH_CONFIG.get(name, "")),
                                ("nobatch", NOBATCH_CONFIG.get(name, "") + "[dynamic_batching]\nenabled = false\n")]:
            d = path / f"{name}_{variant}"
            (d / "1").mkdir(parents=True)
            (d / "1" / "model.onnx").write_bytes(data)
            (d / "config.toml").write_text(config)
    return path


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def wait_ready(url, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://{url}/v2/health/ready", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} not ready")


def perf(model, url, protocol, concurrency, extra=()):
    """One perf_analyzer run; returns (infer/s, p50 us, p99 us) or None on failure."""
    with tempfile.NamedTemporaryFile(suffix=".csv") as out:
        cmd = [str(TOOLS / "perf_analyzer"), "-m", model, "-u", url, "-i", protocol,
               "--concurrency-range", str(concurrency), "-p", "2000", "-s", "100", "-r", "8",
               "-f", out.name, *extra]
        env = dict(os.environ, LD_LIBRARY_PATH=str(TOOLS / "lib"))
        run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        if run.returncode != 0:
            print(f"  perf_analyzer failed for {model} {protocol} c={concurrency}: {run.stdout[-300:]}{run.stderr[-300:]}")
            return None
        row = next(csv.DictReader(open(out.name)))
        return float(row["Inferences/Second"]), int(row["p50 latency"]), int(row["p99 latency"])


def raw_backend(model_bytes, iterations):
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "model.onnx").write_bytes(model_bytes)
        out = {}
        for batch in (1, 32, 64):
            t = json.loads(subprocess.check_output([str(TIMER), tmp, str(batch), str(iterations)]))
            out[batch] = batch / t["median_us"] * 1e6
        return out


PEERS = {
    "triton": ("start_triton.sh", (), ()),
    "mlserver": ("start_mlserver.sh", ("--input-tensor-format", "json", "--output-tensor-format", "json"), ()),
}


def peers(levels):
    """Triton and MLServer on the iris model, started one at a time by bench/peers/ scripts."""
    rows = []
    for name, (script, http_flags, grpc_flags) in PEERS.items():
        http, grpc = free_ports(2)
        proc = subprocess.Popen([str(ROOT / "bench" / "peers" / script), str(http), str(grpc)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            wait_ready(f"127.0.0.1:{http}", timeout=180)
            for protocol, port, flags in (("http", http, http_flags), ("grpc", grpc, grpc_flags)):
                for c in levels:
                    rows.append((f"{name} iris", protocol, c, perf("iris", f"127.0.0.1:{port}", protocol, c, flags)))
                    print(rows[-1], flush=True)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
    return rows


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--concurrency", default="1,4,16,32")
    parser.add_argument("--peers", action="store_true", help="also Triton and MLServer (bench/peers/setup.sh first)")
    parser.add_argument("--models", default="iris,mlp,mlp_large")
    args = parser.parse_args()
    names = args.models.split(",")
    levels = [int(c) for c in args.concurrency.split(",")]
    for tool in (INFERD, TIMER, TOOLS / "perf_analyzer"):
        if not tool.exists():
            raise SystemExit(f"missing {tool}: see this script's docstring")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        repo = repository(Path(tmp) / "repo", names)
        http, grpc = free_ports(2)
        server = subprocess.Popen([str(INFERD), "serve", "--model-repository", str(repo), "--http-port", str(http),
                                   "--grpc-port", str(grpc), "--metrics-port", str(free_ports(1)[0])], stderr=subprocess.DEVNULL)
        try:
            wait_ready(f"127.0.0.1:{http}")
            for model in names:
                for variant in ("batch", "nobatch"):
                    for protocol, port in (("http", http), ("grpc", grpc)):
                        for c in levels:
                            r = perf(f"{model}_{variant}", f"127.0.0.1:{port}", protocol, c)
                            rows.append((f"inferd {model} batching {'on' if variant == 'batch' else 'off'}", protocol, c, r))
                            print(rows[-1], flush=True)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(20)
    if args.peers:
        rows += peers(levels)
    raw = {name: raw_backend(mlp_model(dims).SerializeToString(), 300 if name == "mlp" else 30)
           for name, dims in MLPS.items() if name in names}
    print()
    print("| server / model | protocol | concurrency | infer/s | p50 us | p99 us |")
    print("|---|---|---|---|---|---|")
    for name, protocol, c, r in rows:
        if r:
            print(f"| {name} | {protocol} | {c} | {r[0]:.0f} | {r[1]} | {r[2]} |")
        else:
            print(f"| {name} | {protocol} | {c} | failed | | |")
    print()
    for name, r in raw.items():
        print(f"raw embedded backend, {name} {MLPS[name]} in-process, one thread: "
              + ", ".join(f"{v:.0f} rows/s at batch {b}" for b, v in r.items()))
    best = {}
    for name, protocol, c, r in rows:
        if r:
            best[(name, protocol, c)] = r[0]
    for name, r in raw.items():
        top = max(r[32], r[64])
        for protocol in ("http", "grpc"):
            on = best.get((f"inferd {name} batching on", protocol, 32))
            off = best.get((f"inferd {name} batching off", protocol, 32))
            if on and off:
                print(f"{name} c=32 {protocol}: batching on/off = {on / off:.2f}x; "
                      f"on / raw best batched rows/s = {on / top:.0%}")
    peak = {}
    for (name, protocol, _), value in best.items():
        if "iris" in name and "batching off" not in name:
            key = (name.split()[0], protocol)
            peak[key] = max(peak.get(key, 0), value)
    for protocol in ("http", "grpc"):
        ours = peak.get(("inferd", protocol))
        for peer in ("triton", "mlserver"):
            if ours and peak.get((peer, protocol)):
                print(f"iris peak {protocol}: inferd / {peer} = {ours / peak[(peer, protocol)]:.1f}x")


if __name__ == "__main__":
    main()
