"""Metrics and the statistics extension count exactly what happened: successes, failures by
reason (including requests rejected by a full queue), inferences and executions, with histogram
buckets that add up and latency components that fit in each request's duration."""

import json
import re
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from conftest import FIXTURES, Server

sys.path.insert(0, str(FIXTURES))
from bench_mlp import mlp_model  # noqa: E402

ROW = json.dumps({"inputs": [{"name": "x", "shape": [1, 256], "datatype": "FP32", "data": [0.5] * 256}]}).encode()
BAD = json.dumps({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [0.5] * 3}]}).encode()


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    repo = tmp_path_factory.mktemp("obs")
    (repo / "mlp" / "1").mkdir(parents=True)
    (repo / "mlp" / "1" / "model.onnx").write_bytes(mlp_model().SerializeToString())
    # One request may wait: a burst overflows the queue.
    (repo / "mlp" / "config.toml").write_text("[dynamic_batching]\nenabled = false\nmax_queue_size = 1\n")
    server = Server(repo, tmp_path_factory.mktemp("log") / "obs.log")
    yield server
    server.stop()


def post(url, body):
    request = urllib.request.Request(f"http://{url}/v2/models/mlp/infer", data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def scrape(srv):
    with urllib.request.urlopen(f"http://{srv.metrics_url}/metrics", timeout=10) as r:
        assert r.headers["Content-Type"].startswith("text/plain")
        return r.read().decode()


def value(text, name, **labels):
    """The sample `name{labels...}`; labels not given may have any value but must match once."""
    found = []
    for line in text.splitlines():
        m = re.fullmatch(r"([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)", line)
        if not m or m[1] != name:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', m[2] or ""))
        if all(have.get(k) == str(v) for k, v in labels.items()):
            found.append(float(m[3]))
    assert len(found) == 1, f"{name}{labels}: {found}"
    return found[0]


def test_counts_are_exact_and_agree_everywhere(srv):
    statuses = [post(srv.url, ROW) for _ in range(10)] + [post(srv.url, BAD) for _ in range(3)]
    with ThreadPoolExecutor(16) as pool:
        statuses += list(pool.map(lambda _: post(srv.url, ROW), range(48)))
    ok, bad, full = statuses.count(200), statuses.count(400), statuses.count(503)
    assert ok + bad + full == len(statuses) and bad == 3
    assert full > 0, "the burst should overflow a queue of one"

    text = scrape(srv)
    labels = {"model": "mlp", "version": "1"}
    assert value(text, "nv_inference_request_success", **labels) == ok
    assert value(text, "nv_inference_request_failure", reason="OTHER", **labels) == bad
    assert value(text, "nv_inference_request_failure", reason="REJECTED", **labels) == full
    for reason in ("CANCELED", "BACKEND", "TIMEOUT"):
        assert value(text, "nv_inference_request_failure", reason=reason, **labels) == 0
    assert value(text, "nv_inference_count", **labels) == ok
    assert value(text, "nv_inference_exec_count", **labels) == ok  # batching is off
    assert value(text, "nv_inference_pending_request_count", **labels) == 0
    assert value(text, "inferd_http_requests_total", method="POST", route="/v2/models/{model}/infer",
                 status=200) == ok
    assert value(text, "inferd_http_requests_total", method="POST", route="/v2/models/{model}/infer",
                 status=503) == full
    assert value(text, "process_resident_memory_bytes") > 1e6

    # Histograms: cumulative, +Inf equals the count, the count equals the requests they measure.
    for name, expected in [("inferd_request_duration_seconds", ok), ("inferd_queue_duration_seconds", ok),
                           ("inferd_compute_duration_seconds", ok), ("inferd_batch_size", ok)]:
        buckets = [(m[1], float(m[2])) for m in re.finditer(
            rf'{name}_bucket\{{model="mlp",version="1",le="([^"]+)"\}} (\S+)', text)]
        counts = [c for _, c in buckets]
        assert counts == sorted(counts) and buckets[-1] == ("+Inf", expected), (name, buckets)
        assert value(text, f"{name}_count", **labels) == expected
    assert value(text, "inferd_batch_size_bucket", le="1", **labels) == ok

    # The statistics extension says the same, over REST and gRPC.
    with urllib.request.urlopen(f"http://{srv.url}/v2/models/mlp/stats", timeout=10) as r:
        rest = json.loads(r.read())["model_stats"]
    with grpcclient.InferenceServerClient(url=srv.grpc_url) as c:
        grpc = c.get_inference_statistics("mlp", as_json=True)["model_stats"]
    assert len(rest) == len(grpc) == 1
    s, g = rest[0], grpc[0]
    stats = s["inference_stats"]
    assert (s["name"], s["version"], s["inference_count"], s["execution_count"]) == ("mlp", "1", ok, ok)
    assert stats["success"]["count"] == ok and stats["fail"]["count"] == bad + full
    assert int(g["inference_count"]) == ok and int(g["inference_stats"]["fail"]["count"]) == bad + full
    assert s["batch_stats"] == [b | {"batch_size": 1} for b in s["batch_stats"]] and len(s["batch_stats"]) == 1
    assert s["batch_stats"][0]["compute_infer"]["count"] == ok
    assert value(text, "nv_inference_request_duration_us", **labels) == stats["success"]["ns"] // 1000
    assert s["last_inference"] > 0

    # Under the burst, phases still fit within the request durations.
    parts = sum(stats[k]["ns"] for k in ("queue", "compute_input", "compute_infer", "compute_output"))
    assert parts <= stats["success"]["ns"]


def rest_stats(srv):
    with urllib.request.urlopen(f"http://{srv.url}/v2/models/mlp/stats", timeout=10) as r:
        return json.loads(r.read())["model_stats"][0]["inference_stats"]


def test_latency_components_add_up_to_the_request(srv):
    """Request by request, queue + compute input + infer + output is the request's time in the
    runtime but for validation and handing the answer back (measured, then bounded)."""
    before = rest_stats(srv)
    for _ in range(30):
        assert post(srv.url, ROW) == 200
    after = rest_stats(srv)
    delta = {k: after[k]["ns"] - before[k]["ns"] for k in after}
    parts = sum(delta[k] for k in ("queue", "compute_input", "compute_infer", "compute_output"))
    print(f"\nlatency components: {parts / delta['success']:.1%} of the request duration (30 requests in turn)")
    assert 0.9 * delta["success"] <= parts <= delta["success"]


def test_statistics_of_every_model_and_unknown_ones(srv):
    with urllib.request.urlopen(f"http://{srv.url}/v2/models/stats", timeout=10) as r:
        assert [m["name"] for m in json.loads(r.read())["model_stats"]] == ["mlp"]
    try:
        urllib.request.urlopen(f"http://{srv.url}/v2/models/nope/stats", timeout=10)
        raise AssertionError("expected 404")
    except urllib.error.HTTPError as e:
        assert e.code == 404 and "nope" in json.loads(e.read())["error"]
    with grpcclient.InferenceServerClient(url=srv.grpc_url) as c:
        c.get_server_metadata()
    text = scrape(srv)
    assert value(text, "inferd_grpc_requests_total", method="ServerMetadata", code="Ok") >= 1
    assert np.isfinite(value(text, "process_cpu_seconds_total"))


def test_the_grafana_dashboard_uses_only_metrics_the_server_exports(srv):
    """deploy/grafana/inferd.json stays in step with /metrics."""
    dashboard = json.loads((FIXTURES.parent.parent / "deploy" / "grafana" / "inferd.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in re.findall(r"\b((?:nv|inferd|process)_[a-z_]+)", e)}
    assert len(used) >= 12, used
    exported = {m[1] for m in re.finditer(r"^([a-zA-Z_:][\w:]*)[{ ]", scrape(srv), re.M)}
    assert used <= exported, used - exported
