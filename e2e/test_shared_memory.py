"""Triton's system shared memory extension through tritonclient's own shared memory helpers:
inputs and outputs (FP32 and BYTES) pass through /dev/shm regions over HTTP and gRPC; register,
status and unregister on both; bad offsets, unknown regions and an object too small get 400 with
a message; without --allow-client-shm the API is refused naming the flag; CUDA shared memory is
refused with a clear error; perf_analyzer runs with --shared-memory system."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import tritonclient.utils.shared_memory as shm
from tritonclient.utils import InferenceServerException, serialize_byte_tensor

from conftest import FIXTURES, Server, perf_analyzer

X = np.array([[5.1, 3.5, 1.4, 0.2], [6.2, 3.4, 5.4, 2.3]], np.float32)

SHOUT = '''
import numpy as np

class Model:
    def predict(self, inputs):
        text = inputs["text"]
        return {"upper": np.array([t.upper() for t in text.reshape(-1)], dtype=object).reshape(text.shape)}
'''


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("shm") / "repo"
    shutil.copytree(FIXTURES / "models" / "iris_logreg", repo / "iris_logreg")
    (repo / "shout" / "1").mkdir(parents=True)
    (repo / "shout" / "1" / "model.py").write_text(SHOUT)
    (repo / "shout" / "config.toml").write_text(
        'backend = "python"\nmax_batch_size = 0\n'
        'inputs = [{ name = "text", datatype = "BYTES", dims = [-1] }]\n'
        'outputs = [{ name = "upper", datatype = "BYTES", dims = [-1] }]\n')
    return repo


@pytest.fixture(scope="module")
def server(repo, tmp_path_factory):
    srv = Server(repo, tmp_path_factory.mktemp("log") / "shm.log", "--allow-client-shm", "--python", sys.executable)
    yield srv
    srv.stop()


@pytest.fixture()
def regions():
    """Shared memory objects made with tritonclient's helper, destroyed after the test."""
    made = []

    def make(name, size):
        handle = shm.create_shared_memory_region(name, key(name), size)
        made.append(handle)
        return handle

    yield make
    for handle in made:
        shm.destroy_shared_memory_region(handle)


def key(name):
    return f"/inferd_test_{os.getpid()}_{name}"


def clients(server):
    return [(httpclient, httpclient.InferenceServerClient(server.url)),
            (grpcclient, grpcclient.InferenceServerClient(server.grpc_url))]


def test_fp32_inputs_and_outputs_round_trip_through_regions(server, regions):
    for module, client in clients(server):
        client.unregister_system_shared_memory()
        inp = regions("in", X.nbytes)
        out = regions("out", 64)
        shm.set_shared_memory_region(inp, [X])
        client.register_system_shared_memory("in", key("in"), X.nbytes)
        client.register_system_shared_memory("out", key("out"), 64)
        x = module.InferInput("X", list(X.shape), "FP32")
        x.set_shared_memory("in", X.nbytes)
        probs = module.InferRequestedOutput("probabilities")
        probs.set_shared_memory("out", 2 * 3 * 4)
        result = client.infer("iris_logreg", [x], outputs=[probs])
        answer = result.get_output("probabilities")
        shape = list(answer["shape"] if module is httpclient else answer.shape)
        assert shape == [2, 3]
        if module is grpcclient:  # the data went to the region: an empty raw entry keeps its place
            assert result.get_response().raw_output_contents == [b""]
        else:
            assert "data" not in answer and "parameters" not in answer
        got = shm.get_contents_as_numpy(out, np.float32, [2, 3])
        plain = module.InferInput("X", [2, 4], "FP32")
        plain.set_data_from_numpy(X)
        np.testing.assert_array_equal(got, client.infer("iris_logreg", [plain]).as_numpy("probabilities"))
        # Status lists both; unregistering one leaves the other.
        status = client.get_system_shared_memory_status()
        names = sorted(r["name"] for r in status) if module is httpclient else sorted(status.regions)
        assert names == ["in", "out"]
        client.unregister_system_shared_memory("in")
        status = client.get_system_shared_memory_status()
        names = [r["name"] for r in status] if module is httpclient else list(status.regions)
        assert names == ["out"]
        client.unregister_system_shared_memory()


def test_bytes_inputs_and_outputs_at_offsets_in_one_region(server, regions):
    text = np.array([b"hello", b"shared memory"], dtype=object)
    serialized = serialize_byte_tensor(text)
    wire = serialized.item()
    for module, client in clients(server):
        client.unregister_system_shared_memory()
        both = regions("both", 256)
        # The input at offset 16 of the object, the output region after it.
        shm.set_shared_memory_region(both, [serialized], offset=16)
        client.register_system_shared_memory("text", key("both"), len(wire), offset=16)
        client.register_system_shared_memory("upper", key("both"), 128, offset=128)
        t = module.InferInput("text", [2], "BYTES")
        t.set_shared_memory("text", len(wire))
        upper = module.InferRequestedOutput("upper")
        upper.set_shared_memory("upper", 64, offset=8)
        client.infer("shout", [t], outputs=[upper])
        got = shm.get_contents_as_numpy(both, np.object_, [2], offset=136)
        assert list(got) == [b"HELLO", b"SHARED MEMORY"]
        client.unregister_system_shared_memory()


def test_bad_regions_offsets_and_sizes_are_400_with_a_message(server, regions):
    regions("small", 32)
    status, _, body = server.post("/v2/systemsharedmemory/region/big/register",
                                  json.dumps({"key": key("small"), "byte_size": 64}).encode())
    assert status == 400 and "past the end" in json.loads(body)["error"], body
    status, _, body = server.post("/v2/systemsharedmemory/region/x/register",
                                  json.dumps({"key": "/inferd_no_such_object", "byte_size": 8}).encode())
    assert status == 400 and "unable to open" in json.loads(body)["error"], body
    status, body = server.get("/v2/systemsharedmemory/region/nope/status")
    assert status == 400 and "Unable to find system shared memory region: 'nope'" in json.loads(body)["error"]

    for module, client in clients(server):
        client.unregister_system_shared_memory()
        name = f"r{module.__name__[-4:]}"
        handle = regions(name, 32)
        client.register_system_shared_memory("r", key(name), 32)
        with pytest.raises(InferenceServerException) as twice:
            client.register_system_shared_memory("r", key(name), 32)
        assert "already in manager" in str(twice.value)
        x = module.InferInput("X", [2, 4], "FP32")
        x.set_shared_memory("r", 32, offset=8)  # 8 + 32 > 32
        with pytest.raises(InferenceServerException) as past:
            client.infer("iris_logreg", [x])
        assert "past its end" in str(past.value) and "input 'X'" in str(past.value)
        x = module.InferInput("X", [2, 4], "FP32")
        x.set_shared_memory("unknown", 32)
        with pytest.raises(InferenceServerException) as unknown:
            client.infer("iris_logreg", [x])
        assert "Unable to find system shared memory region: 'unknown'" in str(unknown.value)
        # An output region too small for the answer.
        x = module.InferInput("X", [2, 4], "FP32")
        x.set_shared_memory("r", 32)
        probs = module.InferRequestedOutput("probabilities")
        probs.set_shared_memory("r", 8)
        with pytest.raises(InferenceServerException) as small_out:
            client.infer("iris_logreg", [x], outputs=[probs])
        assert "output 'probabilities' is 24 bytes" in str(small_out.value)
        # The server still serves.
        x = module.InferInput("X", [2, 4], "FP32")
        x.set_shared_memory("r", 32)
        shm.set_shared_memory_region(handle, [X])
        assert client.infer("iris_logreg", [x]).as_numpy("probabilities").shape == (2, 3)
        client.unregister_system_shared_memory()


def test_unregister_while_a_request_holds_the_region_is_safe(server, regions):
    """Unregistering and re-registering over HTTP while gRPC requests use the region (one
    registry for both protocols): every answer is right or a clear error."""
    import concurrent.futures
    handle = regions("busy", X.nbytes)
    shm.set_shared_memory_region(handle, [X])
    body = json.dumps({"key": key("busy"), "byte_size": X.nbytes}).encode()
    assert server.post("/v2/systemsharedmemory/region/busy/register", body)[0] == 200
    client = grpcclient.InferenceServerClient(server.grpc_url)  # thread-safe, unlike HTTP's

    def one(_):
        x = grpcclient.InferInput("X", [2, 4], "FP32")
        x.set_shared_memory("busy", X.nbytes)
        try:
            return client.infer("iris_logreg", [x]).as_numpy("probabilities")
        except InferenceServerException as e:
            assert "Unable to find system shared memory region" in str(e)
            return None

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(one, i) for i in range(200)]
        for _ in range(20):
            assert server.post("/v2/systemsharedmemory/region/busy/unregister", b"")[0] == 200
            assert server.post("/v2/systemsharedmemory/region/busy/register", body)[0] == 200
        answers = [f.result(timeout=30) for f in futures]
    x = grpcclient.InferInput("X", [2, 4], "FP32")
    x.set_data_from_numpy(X)
    direct = client.infer("iris_logreg", [x]).as_numpy("probabilities")
    for a in answers:
        if a is not None:
            np.testing.assert_array_equal(a, direct)
    assert any(a is not None for a in answers)
    client.unregister_system_shared_memory()


def test_cuda_shared_memory_is_refused_clearly(server):
    status, body = server.get("/v2/cudasharedmemory/status")
    assert status == 400 and "CUDA shared memory is not supported" in json.loads(body)["error"]
    status, _, body = server.post("/v2/cudasharedmemory/region/g/register", b"{}")
    assert status == 400 and "system shared memory" in json.loads(body)["error"]
    with pytest.raises(InferenceServerException) as e:
        grpcclient.InferenceServerClient(server.grpc_url).get_cuda_shared_memory_status()
    assert "CUDA shared memory is not supported" in str(e.value)


def test_without_the_flag_the_api_is_refused_naming_it(repo, tmp_path, regions):
    srv = Server(repo, tmp_path / "noshm.log", "--python", sys.executable)
    try:
        regions("off", X.nbytes)
        for module, client in clients(srv):
            with pytest.raises(InferenceServerException) as e:
                client.register_system_shared_memory("off", key("off"), X.nbytes)
            assert "--allow-client-shm" in str(e.value)
            x = module.InferInput("X", [2, 4], "FP32")
            x.set_shared_memory("off", X.nbytes)
            with pytest.raises(InferenceServerException) as e:
                client.infer("iris_logreg", [x])
            assert "--allow-client-shm" in str(e.value)
        status, body = srv.get("/v2/systemsharedmemory/status")
        assert status == 403 and "--allow-client-shm" in json.loads(body)["error"]
        # Server metadata lists the extension either way (the API is there, refused).
        assert "system_shared_memory" in httpclient.InferenceServerClient(srv.url).get_server_metadata()["extensions"]
    finally:
        srv.stop()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_perf_analyzer_runs_over_system_shared_memory(server, protocol):
    url = server.url if protocol == "http" else server.grpc_url
    path, env = perf_analyzer()
    run = subprocess.run(
        [path, "-m", "iris_logreg", "-u", url, "-i", protocol, "--shared-memory", "system",
         "--output-shared-memory-size", "64", "-b", "2", "--measurement-interval", "500",
         "--concurrency-range", "2"],
        capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Throughput" in run.stdout
