#!/usr/bin/env python3
"""What observability costs, in one run, one client (perf_analyzer 2.51) on the iris model:

  off:     no /metrics endpoint, no OTLP, no access log (statistics are always counted);
  on:      /metrics scraped every second, OTLP export configured at sampling ratio 0;
  on+log:  the same with the access log (one line per request on stderr, to /dev/null here);
  traced:  OTLP at ratio 1 to a receiver in this script (every request exported).

Prints infer/s, p50, p99 per configuration, protocol and concurrency, and each one's infer/s
relative to `off`.

    cargo build --release -p inferd && bench/get_perf_analyzer.sh
    python3 bench/observability.py         # needs grpcio and opentelemetry-proto (e2e/requirements.txt)
"""

import os
import subprocess
import sys
import tempfile
import threading
import shutil
import urllib.request
from concurrent import futures
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from serving import INFERD, TOOLS, free_ports, perf, wait_ready  # noqa: E402

IRIS = ROOT / "tests" / "fixtures" / "models" / "iris_logreg"


def receiver():
    """An OTLP trace receiver that counts spans (when the traced configuration runs)."""
    import grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

    class Count(trace_service_pb2_grpc.TraceServiceServicer):
        spans = 0

        def Export(self, request, context):  # noqa: N802
            Count.spans += sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
            return trace_service_pb2.ExportTraceServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Count(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port, Count


def main():
    for tool in (INFERD, TOOLS / "perf_analyzer"):
        if not tool.exists():
            raise SystemExit(f"missing {tool}: see this script's docstring")
    otlp_server, otlp_port, counter = receiver()
    otlp = f"http://127.0.0.1:{otlp_port}"
    configs = {
        "off": ["--allow-metrics", "false", "--access-log", "false"],
        "on": ["--otlp-endpoint", otlp, "--trace-sample-ratio", "0", "--access-log", "false"],
        "on+log": ["--otlp-endpoint", otlp, "--trace-sample-ratio", "0"],
        "traced": ["--otlp-endpoint", otlp, "--trace-sample-ratio", "1", "--access-log", "false"],
    }
    levels = [int(c) for c in os.environ.get("CONCURRENCY", "1,4").split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        shutil.copytree(IRIS, repo / "iris")
        for name, flags in configs.items():
            http, grpc_port, metrics = free_ports(3)
            proc = subprocess.Popen([str(INFERD), "serve", "--model-repository", str(repo), "--http-port", str(http),
                                     "--grpc-port", str(grpc_port), "--metrics-port", str(metrics), *flags],
                                    stderr=subprocess.DEVNULL)
            stop = threading.Event()

            def scrape():
                while not stop.wait(1.0):
                    try:
                        urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=5).read()
                    except OSError:
                        pass

            scraper = threading.Thread(target=scrape, daemon=True)
            try:
                wait_ready(f"127.0.0.1:{http}")
                if "--allow-metrics" not in flags:
                    scraper.start()
                for protocol, port in (("http", http), ("grpc", grpc_port)):
                    for c in levels:
                        rows.append((name, protocol, c, perf("iris", f"127.0.0.1:{port}", protocol, c)))
                        print(rows[-1], flush=True)
            finally:
                stop.set()
                proc.terminate()
                proc.wait(20)
    otlp_server.stop(0)
    base = {(p, c): r for n, p, c, r in rows if n == "off" and r}
    print()
    print("| configuration | protocol | concurrency | infer/s | p50 us | p99 us | vs off |")
    print("|---|---|---|---|---|---|---|")
    for name, protocol, c, r in rows:
        if not r:
            print(f"| {name} | {protocol} | {c} | failed | | | |")
            continue
        ref = base.get((protocol, c))
        ratio = f"{r[0] / ref[0] - 1:+.1%}" if ref else ""
        print(f"| {name} | {protocol} | {c} | {r[0]:.0f} | {r[1]} | {r[2]} | {ratio} |")
    print(f"\nspans received by the OTLP receiver (the traced configuration): {counter.spans}")


if __name__ == "__main__":
    main()
