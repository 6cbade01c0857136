"""Model lifecycle under traffic: versions added and reloaded by polling, models loaded and unloaded
through the API (tritonclient HTTP and gRPC), warmup, index states, memory returned on unload.

Latency percentiles are printed for the record (pytest -s), never asserted: the suite runs on
shared CPUs. Failures, versions, states and memory are asserted."""

import json
import os
import shutil
import sys
import threading
import time

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from conftest import FIXTURES, Server

sys.path.insert(0, str(FIXTURES))
from bench_mlp import mlp_model  # noqa: E402

IRIS_ROW = np.array([[5.1, 3.5, 1.4, 0.2]], dtype=np.float32)


class Traffic:
    """Back-to-back requests on one model from a background thread; records every answer."""

    def __init__(self, url, model):
        self.client = httpclient.InferenceServerClient(url=url)
        self.model = model
        self.answers = []  # (monotonic start, latency s, version, probabilities)
        self.errors = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        x = httpclient.InferInput("X", [1, 4], "FP32")
        x.set_data_from_numpy(IRIS_ROW)
        out = [httpclient.InferRequestedOutput("probabilities")]
        while not self._stop.is_set():
            start = time.monotonic()
            try:
                r = self.client.infer(self.model, [x], outputs=out)
                latency = time.monotonic() - start
                version = r.get_response()["model_version"]
                self.answers.append((start, latency, version, tuple(r.as_numpy("probabilities").ravel())))
            except Exception as e:  # noqa: BLE001 - every failure is recorded and asserted on
                self.errors.append(f"{type(e).__name__}: {e}")

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)
        self.client.close()

    def wait_for(self, predicate, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.answers and predicate(self.answers[-1]):
                return self.answers[-1]
            time.sleep(0.05)
        raise AssertionError(f"no matching answer within {timeout}s; last: {self.answers[-1:]}")

    def p99_ms(self, start=0.0, end=float("inf")):
        latencies = [a[1] for a in self.answers if start <= a[0] < end]
        return float(np.percentile(latencies, 99)) * 1e3, len(latencies)


def install(source_version_dir, target):
    """Copies a version directory beside the repository, then renames it in: a poll never sees
    half a model."""
    staging = target.parent / f".staging-{target.name}"
    shutil.copytree(source_version_dir, staging)
    os.replace(staging, target)


def index(url):
    with httpclient.InferenceServerClient(url=url) as c:
        return {(m["name"], m.get("version")): (m.get("state"), m.get("reason", "")) for m in
                c.get_model_repository_index()}


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_poll_mode_adds_and_reloads_versions_without_failing_a_request(tmp_path):
    repo = tmp_path / "repo"
    (repo / "A").mkdir(parents=True)
    install(FIXTURES / "models" / "iris_logreg" / "1", repo / "A" / "1")
    srv = Server(repo, tmp_path / "poll.log", "--model-control-mode", "poll", "--repository-poll-secs", "1")
    try:
        with Traffic(srv.url, "A") as traffic:
            traffic.wait_for(lambda a: a[2] == "1")
            time.sleep(2)
            churn_start = time.monotonic()
            # (1) A new version arrives: answers move to it.
            install(FIXTURES / "models" / "iris_logreg" / "1", repo / "A" / "2")
            first_v2 = traffic.wait_for(lambda a: a[2] == "2")
            # (2) Version 2 gets new weights in place (same size or not, the content decides).
            staged = repo / "A" / ".model.onnx"
            shutil.copy(FIXTURES / "models" / "iris_forest" / "1" / "model.onnx", staged)
            os.replace(staged, repo / "A" / "2" / "model.onnx")
            traffic.wait_for(lambda a: a[2] == "2" and a[3] != first_v2[3])
            # (3) A corrupt version 3: version 2 keeps serving, the index says why.
            (repo / "A" / ".3").mkdir()
            (repo / "A" / ".3" / "model.onnx").write_bytes(b"\x08\x07corrupt")
            os.replace(repo / "A" / ".3", repo / "A" / "3")
            deadline = time.monotonic() + 15
            while index(srv.url).get(("A", "3"), ("",))[0] != "UNAVAILABLE" and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(1)
            churn_end = time.monotonic()
        assert traffic.errors == []
        before, during = traffic.p99_ms(end=churn_start), traffic.p99_ms(churn_start, churn_end)
        print(f"\npoll swaps: p99 before {before[0]:.2f} ms ({before[1]} requests), "
              f"during {during[0]:.2f} ms ({during[1]} requests)")
        assert traffic.answers[-1][2] == "2"
        rows = index(srv.url)
        assert rows[("A", "1")] == ("UNAVAILABLE", "unloaded")
        assert rows[("A", "2")][0] == "READY"
        assert rows[("A", "3")][0] == "UNAVAILABLE" and "not a readable ONNX model" in rows[("A", "3")][1]
        # A failed update with an older version serving does not take the server out of service.
        assert srv.get("/v2/health/ready")[0] == 200
        assert "model loaded" in srv.logs() and "corrupt" not in rows[("A", "2")][1]
    finally:
        srv.stop()


@pytest.fixture()
def explicit_server(tmp_path):
    repo = tmp_path / "repo"
    install(FIXTURES / "models" / "iris_logreg" / "1", repo / "A" / "1")
    (repo / "B" / "1").mkdir(parents=True)
    (repo / "B" / "1" / "model.onnx").write_bytes(mlp_model().SerializeToString())
    (repo / "broken" / "1").mkdir(parents=True)
    (repo / "broken" / "1" / "model.onnx").write_bytes(b"\x08\x07corrupt")
    srv = Server(repo, tmp_path / "explicit.log", "--model-control-mode", "explicit", "--load-model", "A")
    yield srv
    srv.stop()


def test_explicit_load_unload_churn_leaves_other_models_alone_and_frees_memory(explicit_server):
    srv = explicit_server
    rows = index(srv.url)
    assert rows[("A", "1")] == ("READY", "")
    assert rows[("B", None)] == ("UNAVAILABLE", "not loaded")
    client = httpclient.InferenceServerClient(url=srv.url)
    x = httpclient.InferInput("x", [2, 256], "FP32")
    x.set_data_from_numpy(np.ones((2, 256), np.float32))
    with Traffic(srv.url, "A") as traffic:
        traffic.wait_for(lambda a: True)
        time.sleep(2)
        churn_start = time.monotonic()
        client.load_model("B")
        first = client.infer("B", [x]).as_numpy("probs")
        rss_first = rss_kib(srv.proc.pid)
        for _ in range(20):
            client.unload_model("B")
            with pytest.raises(InferenceServerException, match="unloaded"):
                client.infer("B", [x])
            client.load_model("B")
            np.testing.assert_array_equal(client.infer("B", [x]).as_numpy("probs"), first)
        rss_after = rss_kib(srv.proc.pid)
        churn_end = time.monotonic()
        time.sleep(1)
    assert traffic.errors == []
    before, during = traffic.p99_ms(end=churn_start), traffic.p99_ms(churn_start, churn_end)
    print(f"\nload/unload churn x20: p99 of A before {before[0]:.2f} ms ({before[1]} requests), during "
          f"{during[0]:.2f} ms ({during[1]} requests); RSS after first load of B {rss_first} KiB, "
          f"after 20 cycles {rss_after} KiB ({rss_after / rss_first - 1:+.1%})")
    assert rss_after <= rss_first * 1.10

    client.unload_model("B")
    assert index(srv.url)[("B", "1")] in (("UNAVAILABLE", "unloaded"), ("UNLOADING", "unloaded"))
    with pytest.raises(InferenceServerException, match="not a readable ONNX model"):
        client.load_model("broken")
    state, reason = index(srv.url)[("broken", "1")]
    assert state == "UNAVAILABLE" and "not a readable ONNX model" in reason
    with pytest.raises(InferenceServerException, match="Request for unknown model: 'nope' is not found"):
        client.load_model("nope")
    # Failed API loads are answered to their caller; they do not make the server unready.
    assert client.is_server_ready()
    client.close()


def test_grpc_load_with_a_config_override(explicit_server):
    client = grpcclient.InferenceServerClient(url=explicit_server.grpc_url)
    client.load_model("B", config=json.dumps({"max_batch_size": 8, "instance_count": 2}))
    config = client.get_model_config("B", as_json=True)["config"]
    assert config["max_batch_size"] == 8
    assert config["instance_group"][0]["count"] == 2
    assert client.is_model_ready("B")
    with pytest.raises(InferenceServerException, match="parameter 'config' is neither .*max_batch"):
        client.load_model("B", config='{"max_batch": 8}')
    # The failed override left the loaded model alone.
    assert client.is_model_ready("B")
    client.unload_model("B")
    assert not client.is_model_ready("B")
    client.close()


def test_a_fetched_triton_config_can_be_edited_and_sent_back(explicit_server):
    http = httpclient.InferenceServerClient(url=explicit_server.url)
    http.load_model("B")
    config = http.get_model_config("B")
    config["max_batch_size"] = 4
    config["instance_group"][0]["count"] = 2
    http.load_model("B", config=json.dumps(config))
    served = http.get_model_config("B")
    assert (served["max_batch_size"], served["instance_group"][0]["count"]) == (4, 2)
    assert "dynamic_batching" in served
    # gRPC's JSON form writes int64 fields as strings and enums by name: read alike.
    grpc = grpcclient.InferenceServerClient(url=explicit_server.grpc_url)
    config = grpc.get_model_config("B", as_json=True)["config"]
    assert config["input"][0]["dims"] == ["256"]
    config["max_batch_size"] = 2
    del config["dynamic_batching"]
    grpc.load_model("B", config=json.dumps(config))
    served = http.get_model_config("B")
    assert served["max_batch_size"] == 2 and "dynamic_batching" not in served
    with pytest.raises(InferenceServerException, match="'batch_input' is not supported"):
        http.load_model("B", config=json.dumps({"batch_input": []}))
    # A network request may not choose a program for the server to start.
    with pytest.raises(InferenceServerException, match="may not set the 'python' interpreter"):
        http.load_model("B", config=json.dumps({"parameters": {"python": "/bin/sh"}}))
    http.close()
    grpc.close()


def test_warmup_failure_is_reported_and_a_good_warmup_serves(tmp_path):
    repo = tmp_path / "repo"
    for name in ("warm", "cold"):
        install(FIXTURES / "models" / "iris_logreg" / "1", repo / name / "1")
        (repo / name / "warmup").mkdir()
    (repo / "warm" / "warmup" / "x.bin").write_bytes(IRIS_ROW.tobytes())
    (repo / "cold" / "warmup" / "x.bin").write_bytes(b"\x00" * 5)
    for name in ("warm", "cold"):
        (repo / name / "config.toml").write_text(
            '[[warmup]]\ncount = 2\nfiles = { X = "warmup/x.bin" }\n[[warmup]]\nbatch_size = 8\ndata = "random"\n')
    srv = Server(repo, tmp_path / "warmup.log", "--strict-readiness", "false")
    try:
        rows = index(srv.url)
        assert rows[("warm", "1")] == ("READY", "")
        with httpclient.InferenceServerClient(url=srv.url) as c:
            warmup = c.get_model_config("warm")["model_warmup"]
        assert [w["count"] for w in warmup] == [2, 1]
        assert warmup[0]["inputs"]["X"]["input_data_file"] == "x.bin"
        assert warmup[1]["inputs"]["X"] == {"data_type": "TYPE_FP32", "dims": [4], "random_data": True}
        state, reason = rows[("cold", "1")]
        assert state == "UNAVAILABLE" and "warmup 1" in reason and "x.bin" in reason, reason
    finally:
        srv.stop()


def test_load_is_refused_outside_explicit_mode(client, grpc_client):
    with pytest.raises(InferenceServerException, match="--model-control-mode explicit"):
        client.load_model("iris_logreg")
    with pytest.raises(InferenceServerException, match="--model-control-mode explicit"):
        grpc_client.unload_model("iris_logreg")
    assert client.is_model_ready("iris_logreg")
