#!/usr/bin/env python3
"""Security costs and overload behaviour, in one run:

  1. TLS: iris over HTTP and gRPC at c=1 and c=8 (perf_analyzer), plaintext vs TLS (a test CA
     made here with openssl) vs TLS + an API key (--auth); infer/s, p99, server CPU-us/infer.
  2. Overload: a Python model that takes 5 ms per request, one instance, a queue of 8, driven
     at many times its capacity by 64 client threads; what the refused requests get (503 and
     how fast), RSS over the run, and throughput at once after the load drops.

    cargo build --release -p inferd && bench/get_perf_analyzer.sh
    .venv/bin/python bench/security.py
"""

import csv
import http.client
import json
import os
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from request_path import INFERD, ROOT, TICK_US, TOOLS, cpu_ticks, free_ports

IRIS = ROOT / "tests/fixtures/models/iris_logreg"


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(d):
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "ca.key",
            "-out", "ca.crt", "-days", "2", "-subj", "/CN=bench ca", cwd=d)
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "server.key",
            "-out", "server.csr", "-subj", "/CN=localhost", cwd=d)
    (d / "ext").write_text("basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
                           "subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.crt", "-days", "2", "-extfile", "ext", cwd=d)


class Server:
    def __init__(self, repo, *flags, tls=None, token=None):
        self.http, self.grpc, self.metrics = free_ports(3)
        self.tls, self.token = tls, token
        cmd = [str(INFERD), "serve", "--model-repository", str(repo), "--http-port", str(self.http),
               "--grpc-port", str(self.grpc), "--metrics-port", str(self.metrics), "--access-log", "false",
               *map(str, flags)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while True:
            try:
                if self.get("/v2/health/ready")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server not ready")
            time.sleep(0.2)

    def get(self, path):
        scheme = "https" if self.tls else "http"
        req = urllib.request.Request(f"{scheme}://127.0.0.1:{self.http}{path}",
                                     headers={"Authorization": f"Bearer {self.token}"} if self.token else {})
        with urllib.request.urlopen(req, timeout=5, context=self.tls) as r:
            return r.status, r.read()

    def inferences(self, model):
        stats = json.loads(self.get(f"/v2/models/{model}/stats")[1])
        return sum(s["inference_count"] for s in stats["model_stats"])

    def stop(self):
        self.proc.terminate()
        self.proc.wait(20)


def perf(server, protocol, concurrency, extra):
    port = server.http if protocol == "http" else server.grpc
    url = (f"https://127.0.0.1:{port}" if server.tls and protocol == "http" else f"127.0.0.1:{port}")
    with tempfile.NamedTemporaryFile(suffix=".csv") as out:
        cmd = [str(TOOLS / "perf_analyzer"), "-m", "iris", "-u", url, "-i", protocol, "--concurrency-range",
               str(concurrency), "-p", "3000", "-s", "100", "-r", "6", "-f", out.name, *extra]
        if server.token:
            cmd += ["-H", f"authorization: Bearer {server.token}"]  # gRPC metadata keys are lower case
        env = dict(os.environ, LD_LIBRARY_PATH=str(TOOLS / "lib"))
        ticks, count = cpu_ticks(server.proc.pid), server.inferences("iris")
        run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        ticks, count = cpu_ticks(server.proc.pid) - ticks, server.inferences("iris") - count
        if run.returncode != 0:
            print(f"  perf_analyzer failed: {run.stdout[-400:]}{run.stderr[-400:]}")
            return None
        row = next(csv.DictReader(open(out.name)))
        return float(row["Inferences/Second"]), int(row["p99 latency"]), ticks * TICK_US / max(count, 1)


def tls_costs(tmp):
    pki = tmp / "pki"
    pki.mkdir()
    make_pki(pki)
    repo = tmp / "repo"
    shutil.copytree(IRIS, repo / "iris")
    keys = tmp / "keys.toml"
    token = subprocess.run([str(INFERD), "keys", "create", "--file", str(keys), "--id", "bench", "--scopes", "admin"],
                           capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    tls_flags = ["--tls-cert", pki / "server.crt", "--tls-key", pki / "server.key"]
    ca = str(pki / "ca.crt")
    ssl_args = {"http": ["--ssl-https-verify-peer", "1", "--ssl-https-verify-host", "2",
                         "--ssl-https-ca-certificates-file", ca],
                "grpc": ["--ssl-grpc-use-ssl", "--ssl-grpc-root-certifications-file", ca]}
    setups = [("plaintext", [], None, None), ("TLS", tls_flags, ctx, None),
              ("TLS + API key", tls_flags + ["--auth", "--auth-keys", keys], ctx, token)]
    rows = {}
    for name, flags, tls, tok in setups:
        server = Server(repo, *flags, tls=tls, token=tok)
        try:
            for protocol in ("http", "grpc"):
                for c in (1, 8):
                    rows[(name, protocol, c)] = perf(server, protocol, c, ssl_args[protocol] if tls else [])
        finally:
            server.stop()
    print("\n| setup | protocol | c | infer/s | p99 us | CPU-us/infer | vs plaintext |")
    print("|---|---|---|---|---|---|---|")
    for (name, protocol, c), r in rows.items():
        base = rows[("plaintext", protocol, c)]
        if r and base:
            print(f"| {name} | {protocol} | {c} | {r[0]:.0f} | {r[1]} | {r[2]:.1f} | {r[0] / base[0]:.3f} |")


SLOW_MODEL = '''
import time


class Model:
    def predict(self, inputs):
        time.sleep(0.005)
        return {"y": inputs["x"] * 2}
'''

SLOW_CONFIG = '''
max_batch_size = 0
inputs = [{ name = "x", datatype = "FP32", dims = [1, 4] }]
outputs = [{ name = "y", datatype = "FP32", dims = [1, 4] }]

[dynamic_batching]
max_queue_size = 8
'''


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def load(port, threads, seconds):
    """`threads` clients sending back to back for `seconds`: [(status, latency_s)]."""
    body = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]})
    results, lock = [], threading.Lock()
    stop = time.monotonic() + seconds

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine = []
        while time.monotonic() < stop:
            started = time.monotonic()
            try:
                conn.request("POST", "/v2/models/slow/infer", body)
                r = conn.getresponse()
                r.read()
                mine.append((r.status, time.monotonic() - started))
            except OSError:
                mine.append((0, time.monotonic() - started))
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        with lock:
            results.extend(mine)
    workers = [threading.Thread(target=client) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return results


def summary(name, results, seconds):
    ok = [l for s, l in results if s == 200]
    refused = [l for s, l in results if s == 503]
    other = len(results) - len(ok) - len(refused)
    q = lambda xs, p: statistics.quantiles(xs, n=100)[p - 1] * 1000 if len(xs) >= 2 else float("nan")
    print(f"| {name} | {len(ok) / seconds:.0f} | {q(ok, 50):.1f} / {q(ok, 99):.1f} | {len(refused) / seconds:.0f} | "
          f"{q(refused, 50):.2f} / {q(refused, 99):.2f} | {other} |")


def overload(tmp):
    repo = tmp / "slow-repo"
    (repo / "slow" / "1").mkdir(parents=True)
    (repo / "slow" / "1" / "model.py").write_text(SLOW_MODEL)
    (repo / "slow" / "config.toml").write_text(SLOW_CONFIG)
    server = Server(repo, "--python", sys.executable)
    try:
        phases = [("capacity (2 clients)", 2, 6), ("overload (64 clients)", 64, 10), ("after (2 clients)", 2, 6)]
        print("\n| phase | answered/s | answered p50 / p99 ms | refused 503/s | refused p50 / p99 ms | other |")
        print("|---|---|---|---|---|---|")
        rss = [rss_kib(server.proc.pid)]
        for name, threads, seconds in phases:
            results = load(server.http, threads, seconds)
            rss.append(rss_kib(server.proc.pid))
            summary(name, results, seconds)
        print(f"RSS KiB: start {rss[0]}, after each phase {rss[1:]}; server alive: {server.proc.poll() is None}")
    finally:
        server.stop()


def main():
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tls_costs(tmp)
        overload(tmp)


if __name__ == "__main__":
    main()
