#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (fuzz/corpus/<target>/), from the test fixtures
and hand-made requests. Run with the e2e venv (it needs tritonclient's protobuf classes):

    .venv/bin/python fuzz/make_corpus.py
"""

import json
import shutil
import struct
from pathlib import Path

import numpy as np
from tritonclient.grpc import service_pb2

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"
FIXTURES = ROOT / "tests" / "fixtures"


def write(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data if isinstance(data, bytes) else data.encode())


def v2():
    bodies = {
        "fp32": {"id": "1", "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [[1, 2, 3, 4]]}]},
        "bytes": {"inputs": [{"name": "s", "shape": [2], "datatype": "BYTES", "data": ["a", "bc"]}],
                  "outputs": [{"name": "y", "parameters": {"binary_data": True}}]},
        "many": {"inputs": [{"name": n, "shape": [2], "datatype": d, "data": v} for n, d, v in
                            [("b", "BOOL", [True, False]), ("i", "INT64", [-1, 2]), ("u", "UINT8", [0, 255]),
                             ("h", "FP16", [0.5, 1.5]), ("f", "FP64", [1e300, -0.0])]],
                 "parameters": {"binary_data_output": True, "priority": 1, "timeout": 1000}},
    }
    for name, body in bodies.items():
        write("v2_json", name, json.dumps(body))
    header = json.dumps({"inputs": [
        {"name": "x", "shape": [2], "datatype": "INT32", "parameters": {"binary_data_size": 8}},
        {"name": "s", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 6}}],
        "parameters": {"binary_data_output": True}}).encode()
    binary = struct.pack("<ii", 1, 2) + struct.pack("<I", 2) + b"hi"
    write("v2_binary", "int32_bytes", struct.pack("<H", len(header)) + header + binary)
    write("v2_binary", "json_only", struct.pack("<H", 0xFFFF) + json.dumps(bodies["fp32"]).encode())


def grpc():
    r = service_pb2.ModelInferRequest(model_name="iris", model_version="1", id="a")
    t = r.inputs.add(name="X", datatype="FP32", shape=[1, 4])
    r.raw_input_contents.append(np.arange(4, dtype=np.float32).tobytes())
    r.outputs.add(name="label")
    write("grpc_request", "raw", r.SerializeToString())
    r = service_pb2.ModelInferRequest(model_name="m")
    t = r.inputs.add(name="s", datatype="BYTES", shape=[2])
    t.contents.bytes_contents.extend([b"a", b"bc"])
    t = r.inputs.add(name="i", datatype="INT64", shape=[2])
    t.contents.int64_contents.extend([1, -2])
    r.parameters["priority"].uint64_param = 1
    r.parameters["sequence_id"].int64_param = 7
    write("grpc_request", "contents", r.SerializeToString())


def configs():
    for p in sorted(FIXTURES.rglob("config.toml")):
        write("model_config", p.parent.name + ".toml", p.read_text())
    write("model_config", "full.toml", """max_batch_size = 8
version_policy = { latest = 2 }
inputs = [{ name = "x", datatype = "FP32", dims = [-1, 4] }]
outputs = [{ name = "y", datatype = "FP32", dims = [-1] }]
[dynamic_batching]
max_queue_delay_us = 100
preferred_batch_sizes = [4, 8]
priority_levels = 2
[[warmup]]
name = "zeros"
batch_size = 1
""")
    write("model_config", "triton.json", json.dumps({
        "name": "m", "max_batch_size": 8, "backend": "onnxruntime",
        "input": [{"name": "x", "data_type": "TYPE_FP32", "dims": ["4"]}],
        "output": [{"name": "y", "data_type": "TYPE_FP32", "dims": [1]}],
        "dynamic_batching": {"max_queue_delay_microseconds": "100", "preferred_batch_size": [4]},
        "instance_group": [{"count": 2, "kind": "KIND_CPU"}],
        "version_policy": {"latest": {"num_versions": 1}},
        "parameters": {"k": {"string_value": "v"}}}))


def trees():
    for name in ["xgb_binary", "lgb_binary"]:
        for p in (FIXTURES / "trees" / name / "1").iterdir():
            write("trees", f"{name}{p.suffix}", p.read_bytes())


if __name__ == "__main__":
    shutil.rmtree(CORPUS, ignore_errors=True)
    v2()
    grpc()
    configs()
    trees()
    print(f"wrote {sum(1 for _ in CORPUS.rglob('*') if _.is_file())} seeds under {CORPUS}")
