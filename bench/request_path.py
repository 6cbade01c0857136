#!/usr/bin/env python3
"""The cost of inferd's request path, side by side in one run (perf_analyzer 2.51):

  - the protocol floor (bench/floor: a do-nothing V2 echo server on the same crates),
  - inferd (target/release/inferd) and, with --baseline BIN, an earlier build of it,
  - the raw embedded backend in-process (time_model example), for the MLP's rows/s.

For each server and configuration: infer/s, p50/p99 (us) and the server's CPU time per
inference, from /proc/<pid>/stat (utime+stime) across each perf_analyzer call divided by the
inferences the server counted in that call (statistics extension). On a 2-core box the client
takes about a core, so CPU-us per inference is the figure it cannot distort.

Scenarios (the issue's targets):
  iris     HTTP binary and gRPC, c=1 (and c=4): inferd vs the floor (echo with the same 16-byte input)
  mlp      256->1024->1024->10, c=32, batching on: rows per server-CPU-second vs raw tract rows/s at batch 32
  mlp c=1  batching on vs off: p50

    cargo build --release -p inferd -p inferd-floor && cargo build --release -p inferd --example time_model
    bench/get_perf_analyzer.sh
    /tmp/fixvenv/bin/python bench/request_path.py [--baseline /tmp/inferd-before] [--rounds 2]
"""

import argparse
import csv
import json
import os
import signal
import socket
import statistics
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
FLOOR = ROOT / "target" / "release" / "inferd-floor"
TIMER = ROOT / "target" / "release" / "examples" / "time_model"
TICK_US = 1e6 / os.sysconf("SC_CLK_TCK")


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def get_json(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def wait_ready(http, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http}/v2/health/ready", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"server on {http} not ready")


def cpu_ticks(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)


def inferences(http, model):
    stats = get_json(f"http://127.0.0.1:{http}/v2/models/{model}/stats")
    return sum(s["inference_count"] for s in stats["model_stats"])


class Server:
    def __init__(self, name, cmd, http, grpc):
        self.name, self.http, self.grpc = name, http, grpc
        # Stopped at once: a benchmark needs no shutdown grace period.
        env = dict(os.environ, INFERD_SHUTDOWN_GRACE="0")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        wait_ready(http)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def start(name, binary, repo):
    http, grpc, metrics = free_ports(3)
    if name == "floor":
        cmd = [str(FLOOR), "--http-port", str(http), "--grpc-port", str(grpc)]
    else:
        cmd = [str(binary), "serve", "--model-repository", str(repo), "--http-port", str(http),
               "--grpc-port", str(grpc), "--metrics-port", str(metrics)]
    return Server(name, cmd, http, grpc)


def perf(server, model, protocol, concurrency, shape):
    """One perf_analyzer call: (infer/s, p50, p99, server CPU-us per inference)."""
    port = server.http if protocol == "http" else server.grpc
    with tempfile.NamedTemporaryFile(suffix=".csv") as out:
        cmd = [str(TOOLS / "perf_analyzer"), "-m", model, "-u", f"127.0.0.1:{port}", "-i", protocol,
               "--concurrency-range", str(concurrency), "-p", "3000", "-s", "100", "-r", "6",
               "-f", out.name] + (["--shape", shape] if shape else [])
        env = dict(os.environ, LD_LIBRARY_PATH=str(TOOLS / "lib"))
        ticks, count = cpu_ticks(server.proc.pid), inferences(server.http, model)
        run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        ticks, count = cpu_ticks(server.proc.pid) - ticks, inferences(server.http, model) - count
        if run.returncode != 0:
            print(f"  perf_analyzer failed: {server.name} {model} {protocol} c={concurrency}: {run.stdout[-400:]}")
            return None
        row = next(csv.DictReader(open(out.name)))
        return (float(row["Inferences/Second"]), int(row["p50 latency"]), int(row["p99 latency"]),
                ticks * TICK_US / max(count, 1))


def raw_tract(model_bytes, batch, iterations=300):
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "model.onnx").write_bytes(model_bytes)
        t = json.loads(subprocess.check_output([str(TIMER), tmp, str(batch), str(iterations)]))
        return batch / t["median_us"] * 1e6


def repository(path):
    (path / "iris" / "1").mkdir(parents=True)
    (path / "iris" / "1" / "model.onnx").write_bytes((ROOT / "tests/fixtures/models/iris_logreg/1/model.onnx").read_bytes())
    mlp = mlp_model().SerializeToString()
    for variant, config in (("mlp_batch", ""), ("mlp_nobatch", "[dynamic_batching]\nenabled = false\n")):
        (path / variant / "1").mkdir(parents=True)
        (path / variant / "1" / "model.onnx").write_bytes(mlp)
        (path / variant / "config.toml").write_text(config)
    return mlp


# (label, model on inferd, model on the floor or None, protocol, concurrency, the floor's input shape
# with the same bytes as inferd's input; inferd's models have fixed dims, perf_analyzer needs none)
SCENARIOS = [
    ("iris", "iris", "echo", "http", 1, "INPUT0:4"),
    ("iris", "iris", "echo", "grpc", 1, "INPUT0:4"),
    ("iris", "iris", "echo", "http", 4, "INPUT0:4"),
    ("iris", "iris", "echo", "grpc", 4, "INPUT0:4"),
    ("mlp batching on", "mlp_batch", None, "http", 32, None),
    ("mlp batching on", "mlp_batch", None, "grpc", 32, None),
    ("mlp batching on", "mlp_batch", None, "http", 1, None),
    ("mlp batching off", "mlp_nobatch", None, "http", 1, None),
]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--baseline", help="an earlier inferd binary to run beside this one")
    parser.add_argument("--rounds", type=int, default=2, help="servers alternate; medians over rounds")
    args = parser.parse_args()
    for tool in (INFERD, FLOOR, TIMER, TOOLS / "perf_analyzer"):
        if not tool.exists():
            raise SystemExit(f"missing {tool}: see this script's docstring")
    servers = [("floor", None), ("inferd", INFERD)] + ([("baseline", args.baseline)] if args.baseline else [])
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        mlp = repository(Path(tmp))
        for _ in range(args.rounds):
            for name, binary in servers:
                server = start(name, binary, tmp)
                try:
                    for label, model, floor_model, protocol, c, shape in SCENARIOS:
                        if name == "floor":
                            if floor_model is None:
                                continue
                            model, shape = floor_model, shape
                        r = perf(server, model, protocol, c, shape)
                        print(name, label, protocol, c, r, flush=True)
                        if r:
                            results.setdefault((name, label, protocol, c), []).append(r)
                finally:
                    server.stop()
        raw32 = raw_tract(mlp, 32)
    med = {k: tuple(statistics.median(x[i] for x in v) for i in range(4)) for k, v in results.items()}

    print("\n| scenario | protocol | c | server | infer/s | p50 us | p99 us | CPU-us/infer |")
    print("|---|---|---|---|---|---|---|---|")
    for label, _, _, protocol, c, _ in SCENARIOS:
        for name, _ in servers:
            r = med.get((name, label, protocol, c))
            if r:
                print(f"| {label} | {protocol} | {c} | {name} | {r[0]:.0f} | {r[1]:.0f} | {r[2]:.0f} | {r[3]:.1f} |")
    print()
    for protocol in ("http", "grpc"):
        for c in (1, 4):
            floor, ours = med.get(("floor", "iris", protocol, c)), med.get(("inferd", "iris", protocol, c))
            if floor and ours:
                line = (f"iris {protocol} c={c}: inferd/floor infer/s = {ours[0] / floor[0]:.2f}, "
                        f"CPU-us ratio = {ours[3] / floor[3]:.2f}")
                base = med.get(("baseline", "iris", protocol, c))
                if base:
                    line += f" (baseline: {base[0] / floor[0]:.2f}, {base[3] / floor[3]:.2f})"
                print(line)
    print(f"raw tract, one thread, batch 32: {raw32:.0f} rows/s")
    for name, _ in servers:
        for protocol in ("http", "grpc"):
            r = med.get((name, "mlp batching on", protocol, 32))
            if r:
                rows_per_cpu_s = 1e6 / r[3]
                print(f"{name} mlp c=32 {protocol}: {rows_per_cpu_s:.0f} rows per server-CPU-second = "
                      f"{rows_per_cpu_s / raw32:.2f} of raw tract at batch 32")
        on, off = med.get((name, "mlp batching on", "http", 1)), med.get((name, "mlp batching off", "http", 1))
        if on and off:
            print(f"{name} mlp c=1 http: p50 batching on / off = {on[1] / off[1]:.2f}")


if __name__ == "__main__":
    main()
