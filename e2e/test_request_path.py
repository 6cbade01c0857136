"""The one request path: REST and gRPC answer metadata, configuration and statistics from the same
values (compared field by field, through Triton's own protobuf schema); one gRPC stream with
20,000 requests pipelined stays bounded and answers each exactly once; bad BYTES are the
caller's error."""

import collections
import json
import shutil
import sys
import threading
import time
import urllib.request

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2, service_pb2, service_pb2_grpc

from conftest import FIXTURES, MODELS, Server, expected


def rest_json(server, path):
    status, body = server.get(path)
    assert status == 200, (path, body)
    return json.loads(body)


def as_message(rest, message):
    """The REST answer read with Triton's protobuf schema: an unknown or misnamed field fails."""
    return json_format.ParseDict(rest, message)


def send_traffic(server, name):
    """A few inferences, so statistics have something to say."""
    fixture = expected(name)
    inputs = []
    with grpcclient.InferenceServerClient(server.grpc_url) as c:
        for input_name, t in fixture["inputs"].items():
            arr = np.array(t["data"], dtype={"FP32": np.float32, "INT64": np.int64}.get(t["datatype"], object))
            if t["datatype"] == "BYTES":
                arr = np.array([s.encode() for s in t["data"]], dtype=np.object_)
            arr = arr.reshape(t["shape"])
            i = grpcclient.InferInput(input_name, list(arr.shape), t["datatype"])
            i.set_data_from_numpy(arr)
            inputs.append(i)
        c.infer(name, inputs)


@pytest.mark.parametrize("name", MODELS)
def test_rest_and_grpc_describe_every_model_alike(server, name):
    with grpcclient.InferenceServerClient(server.grpc_url) as c:
        metadata = c.get_model_metadata(name)
        assert as_message(rest_json(server, f"/v2/models/{name}"), service_pb2.ModelMetadataResponse()) == metadata
        config = c.get_model_config(name).config
        rest_config = rest_json(server, f"/v2/models/{name}/config")
        assert as_message(rest_config, model_config_pb2.ModelConfig()) == config
        # Every field the protocol has, REST says (false and empty ones too), as Triton's does.
        assert "model_transaction_policy" in rest_config and "instance_group" in rest_config
        send_traffic(server, name)
        stats = c.get_inference_statistics(name)
        rest_stats = rest_json(server, f"/v2/models/{name}/stats")
        assert as_message(rest_stats, service_pb2.ModelStatisticsResponse()) == stats
        assert stats.model_stats[0].inference_stats.success.count >= 1


def rss_kib(pid):
    """The server's resident memory (its Python workers are other processes)."""
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# The server's RSS may grow by at most this much while one stream has 20,000 requests in flight
# from the client: requests wait in the transport, not in the server (it reads at most 128 of a
# stream at once, well under the model's queue of 1024).
STREAM_RSS_BOUND_KIB = 48 * 1024


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory):
    """A model far slower than a client can send (a Python worker, one call at a time)."""
    repo = tmp_path_factory.mktemp("slow")
    shutil.copytree(FIXTURES / "python" / "doubler", repo / "doubler")
    srv = Server(repo, tmp_path_factory.mktemp("log") / "slow.log", "--python", sys.executable)
    yield srv
    srv.stop()


def test_a_stream_of_20000_pipelined_requests_is_bounded_and_answered_once(slow_server):
    server = slow_server
    n = 20_000
    x = np.ones((64, 3), dtype=np.float32).tobytes()

    def requests():
        for i in range(n):
            r = service_pb2.ModelInferRequest(model_name="doubler", id=f"s{i}")
            t = r.inputs.add()
            t.name, t.datatype = "x", "FP32"
            t.shape.extend([64, 3])
            r.raw_input_contents.append(x)
            yield r

    before = rss_kib(server.proc.pid)
    peak = [before]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_kib(server.proc.pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    ids = collections.Counter()
    errors = []
    with grpc.insecure_channel(server.grpc_url) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        for response in stub.ModelStreamInfer(requests(), timeout=600):
            if response.error_message:
                errors.append(response.error_message)
            ids[response.infer_response.id] += 1
    done.set()
    sampler.join()
    # Without back-pressure most of them would find the model's queue full.
    assert not errors, (len(errors), errors[:3])
    assert len(ids) == n and set(ids.values()) == {1}, "each id answered exactly once"
    assert set(ids) == {f"s{i}" for i in range(n)}
    growth = peak[0] - before
    print(f"stream of {n}: RSS {before} KiB before, +{growth} KiB at most")
    assert growth <= STREAM_RSS_BOUND_KIB, f"RSS grew {growth} KiB over one stream"


def bytes_tensor(*elements):
    return b"".join(len(e).to_bytes(4, "little") + e for e in elements)


def failure_count(server, model, reason):
    with urllib.request.urlopen(f"http://{server.metrics_url}/metrics") as r:
        text = r.read().decode()
    for line in text.splitlines():
        if line.startswith("nv_inference_request_failure{") and f'model="{model}"' in line \
                and f'reason="{reason}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_bytes_that_are_not_utf8_are_a_bad_request(server):
    model = "sk_label_encoder"
    backend_failures = failure_count(server, model, "BACKEND")
    data = bytes_tensor(b"\xff\xfe")
    header = json.dumps({"inputs": [{"name": "X", "shape": [1], "datatype": "BYTES",
                                     "parameters": {"binary_data_size": len(data)}}]}).encode()
    status, _, raw = server.post(f"/v2/models/{model}/infer", header + data,
                                 {"Inference-Header-Content-Length": str(len(header))})
    assert status == 400, raw
    assert "not valid UTF-8" in json.loads(raw)["error"]
    with grpcclient.InferenceServerClient(server.grpc_url) as c:
        i = grpcclient.InferInput("X", [1], "BYTES")
        i.set_data_from_numpy(np.array([b"\xff\xfe"], dtype=np.object_))
        with pytest.raises(Exception) as e:
            c.infer(model, [i])
        assert "not valid UTF-8" in str(e.value) and "INVALID_ARGUMENT" in str(e.value)
        # Valid text in the same batch position is served.
        i.set_data_from_numpy(np.array([b"setosa"], dtype=np.object_))
        c.infer(model, [i])
    assert failure_count(server, model, "BACKEND") == backend_failures, "not a backend failure"
    assert failure_count(server, model, "OTHER") >= 2
