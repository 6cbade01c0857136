#!/usr/bin/env python3
"""The audit log's costs, in one run:

  1. iris at c=4 (perf_analyzer, HTTP): audit off vs on (no payloads, default flush policy),
     servers alternating; infer/s, p99 and server CPU-us per inference;
  2. RSS with a stalled sink: audit on with --audit-sink-url at an endpoint that never answers,
     under the same load (the sink reads the log files, so nothing piles up in memory);
  3. finding one id among 10,000,000 records (`inferd audit find --id`), the log written by
     the audit_fill example with realistic records.

    cargo build --release -p inferd && cargo build --release -p inferd-runtime --example audit_fill
    bench/get_perf_analyzer.sh
    .venv/bin/python bench/audit.py [--records 10000000] [--rounds 3]
"""

import argparse
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from request_path import INFERD, ROOT, Server, cpu_ticks, free_ports, inferences, perf, TICK_US

FILL = ROOT / "target" / "release" / "examples" / "audit_fill"


def start(repo, *flags):
    http, grpc, metrics = free_ports(3)
    return Server("inferd", [str(INFERD), "serve", "--model-repository", str(repo), "--http-port", str(http),
                             "--grpc-port", str(grpc), "--metrics-port", str(metrics), *map(str, flags)], http, grpc)


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def stalled_endpoint():
    """Accepts connections and reads, never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held = []

    def serve():
        while True:
            conn, _ = listener.accept()
            held.append(conn)
    threading.Thread(target=serve, daemon=True).start()
    return f"http://127.0.0.1:{listener.getsockname()[1]}/events", listener


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--records", type=int, default=10_000_000)
    args = parser.parse_args()
    results = {"off": [], "on": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        repo = tmp / "repo"
        (repo / "iris" / "1").mkdir(parents=True)
        shutil.copy(ROOT / "tests/fixtures/models/iris_logreg/1/model.onnx", repo / "iris" / "1")
        for r in range(args.rounds):
            for mode in ("off", "on"):
                flags = ["--audit-dir", tmp / f"audit-{r}"] if mode == "on" else []
                server = start(repo, *flags)
                try:
                    results[mode].append(perf(server, "iris", "http", 4, None))
                finally:
                    server.stop()
        url, _ = stalled_endpoint()
        server = start(repo, "--audit-dir", tmp / "audit-stalled", "--audit-sink-url", url)
        try:
            before = rss_kib(server.proc.pid)
            perf(server, "iris", "http", 4, None)
            after_one = rss_kib(server.proc.pid)
            perf(server, "iris", "http", 4, None)
            after_two = rss_kib(server.proc.pid)
            records = sum(1 for p in (tmp / "audit-stalled").glob("audit-*.jsonl") for _ in open(p))
        finally:
            server.stop()
        fill = tmp / "audit-10m"
        started = time.monotonic()
        subprocess.run([str(FILL), str(fill), str(args.records)], check=True)
        fill_s = time.monotonic() - started
        size = sum(p.stat().st_size for p in fill.iterdir())
        lookups = []
        for rid in ("req-0000000007", f"req-{args.records // 2:010}", f"req-{args.records - 1:010}"):
            started = time.monotonic()
            out = subprocess.run([str(INFERD), "audit", "find", str(fill), "--id", rid, "--json"],
                                 capture_output=True, text=True, check=True).stdout
            lookups.append((rid, time.monotonic() - started, len(out.splitlines())))
    med = {m: [statistics.median(r[i] for r in results[m]) for i in range(4)] for m in results}
    print("\n| audit | infer/s | p50 us | p99 us | CPU-us/infer |")
    print("|---|---|---|---|---|")
    for m in ("off", "on"):
        print(f"| {m} | {med[m][0]:.0f} | {med[m][1]:.0f} | {med[m][2]:.0f} | {med[m][3]:.1f} |")
    print(f"audit on / off infer/s = {med['on'][0] / med['off'][0]:.3f}")
    print(f"stalled sink: RSS {before} KiB -> {after_one} KiB -> {after_two} KiB over {records} records logged")
    print(f"{args.records} records: written in {fill_s:.0f} s, {size / 2**30:.2f} GiB")
    for rid, seconds, found in lookups:
        print(f"find --id {rid}: {seconds * 1000:.0f} ms, {found} record(s)")


if __name__ == "__main__":
    main()
