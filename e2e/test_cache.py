"""The response cache (Triton's response_cache and --cache-size): repeated requests are answered
without running the model, counted as hits and misses in statistics and Triton's metrics, the
cache stays within its size by evicting the least recently used answers, and the audit record of
a cached answer says so."""

import json
import shutil
import subprocess
import urllib.request

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from conftest import FIXTURES, Server, binary

CACHED = "[response_cache]\nenabled = true\n"


def repository(path):
    shutil.copytree(FIXTURES / "models" / "iris_logreg", path / "iris_cached")
    (path / "iris_cached" / "config.toml").write_text(CACHED)
    shutil.copytree(FIXTURES / "models" / "iris_logreg", path / "iris_plain")
    return path


@pytest.fixture(scope="module")
def cached_server(tmp_path_factory):
    base = tmp_path_factory.mktemp("cache")
    srv = Server(repository(base / "repo"), base / "cache.log", "--cache-size", "4MiB")
    yield srv
    srv.stop()


def rows(n, seed):
    return np.random.default_rng(seed).uniform(0, 8, size=(n, 1, 4)).astype(np.float32)


def infer_all(c, module, model, xs):
    out = []
    for x in xs:
        inp = module.InferInput("X", [1, 4], "FP32")
        inp.set_data_from_numpy(x)
        r = c.infer(model, [inp])
        out.append((r.as_numpy("label").tolist(), r.as_numpy("probabilities").tobytes()))
    return out


def metrics(srv):
    with urllib.request.urlopen(f"http://{srv.metrics_url}/metrics", timeout=10) as r:
        return r.read().decode()


def value(text, name, labels=""):
    for line in text.splitlines():
        if line.startswith(name + ("{" + labels if labels else " ")):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_the_same_thousand_requests_miss_then_hit(cached_server):
    xs = rows(1000, 7)
    with httpclient.InferenceServerClient(url=cached_server.url) as c:
        first = infer_all(c, httpclient, "iris_cached", xs)
        stats = c.get_inference_statistics("iris_cached")["model_stats"][0]
        assert stats["inference_stats"]["cache_miss"]["count"] == 1000
        assert stats["inference_stats"]["cache_hit"]["count"] == 0
        assert stats["inference_count"] == 1000
    # The second time over gRPC: the cache is the runtime's, whatever the protocol.
    with grpcclient.InferenceServerClient(url=cached_server.grpc_url) as g:
        second = infer_all(g, grpcclient, "iris_cached", xs)
        stats = g.get_inference_statistics("iris_cached", as_json=True)["model_stats"][0]
    assert second == first
    inference = stats["inference_stats"]
    assert int(inference["cache_hit"]["count"]) == 1000
    assert int(inference["cache_miss"]["count"]) == 1000
    assert int(inference["success"]["count"]) == 2000
    assert int(stats["inference_count"]) == 1000, "a hit runs nothing"
    text = metrics(cached_server)
    labels = 'model="iris_cached",version="1"'
    assert value(text, "nv_cache_num_hits_per_model", labels) == 1000
    assert value(text, "nv_cache_num_misses_per_model", labels) == 1000
    assert value(text, "inferd_cache_entries") >= 1000
    assert value(text, "inferd_cache_bytes") <= value(text, "inferd_cache_capacity_bytes")
    # A model without [response_cache] never looks.
    with httpclient.InferenceServerClient(url=cached_server.url) as c:
        infer_all(c, httpclient, "iris_plain", xs[:10])
        infer_all(c, httpclient, "iris_plain", xs[:10])
        plain = c.get_inference_statistics("iris_plain")["model_stats"][0]
        assert plain["inference_count"] == 20 and plain["inference_stats"]["cache_hit"]["count"] == 0
        assert c.get_model_config("iris_cached")["response_cache"] == {"enable": True}
        assert c.get_model_config("iris_plain")["response_cache"] == {"enable": False}


def test_requested_outputs_and_parameters_are_part_of_the_key(cached_server):
    x = rows(1, 99)[0]
    with httpclient.InferenceServerClient(url=cached_server.url) as c:
        inp = httpclient.InferInput("X", [1, 4], "FP32")
        inp.set_data_from_numpy(x)
        both = c.infer("iris_cached", [inp])
        only = c.infer("iris_cached", [inp], outputs=[httpclient.InferRequestedOutput("label")])
        assert only.as_numpy("probabilities") is None and only.as_numpy("label").tolist() == both.as_numpy("label").tolist()
        top = c.infer("iris_cached", [inp], outputs=[httpclient.InferRequestedOutput("probabilities", class_count=1)])
        assert top.as_numpy("probabilities").dtype == np.object_
        # Priority changes scheduling, not the answer: a hit.
        before = c.get_inference_statistics("iris_cached")["model_stats"][0]["inference_stats"]["cache_hit"]["count"]
        c.infer("iris_cached", [inp], priority=1)
        after = c.get_inference_statistics("iris_cached")["model_stats"][0]["inference_stats"]["cache_hit"]["count"]
        assert after == before + 1


def test_the_audit_record_says_cached(tmp_path):
    srv = Server(repository(tmp_path / "repo"), tmp_path / "audit.log", "--cache-size", "1MiB", "--audit-dir",
                 tmp_path / "audit")
    x = rows(1, 1234)[0]
    try:
        with httpclient.InferenceServerClient(url=srv.url) as c:
            for rid in ("first", "again"):
                inp = httpclient.InferInput("X", [1, 4], "FP32")
                inp.set_data_from_numpy(x)
                c.infer("iris_cached", [inp], request_id=rid)
    finally:
        assert srv.stop() == 0
    done = subprocess.run([str(binary()), "audit", "find", str(tmp_path / "audit"), "--json", "--model",
                           "iris_cached"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    records = {r["id"]: r for r in map(json.loads, done.stdout.splitlines())}
    assert "cached" not in records["first"]
    assert records["again"]["cached"] is True
    assert records["again"]["output_sha256"] == records["first"]["output_sha256"]


def test_a_small_cache_evicts_the_least_recently_used_and_stays_within_its_size(tmp_path):
    srv = Server(repository(tmp_path / "repo"), tmp_path / "small.log", "--cache-size", "64KiB")
    try:
        xs = rows(400, 3)
        with httpclient.InferenceServerClient(url=srv.url) as c:
            first = infer_all(c, httpclient, "iris_cached", xs)
            text = metrics(srv)
            assert value(text, "inferd_cache_bytes") <= 64 * 1024
            assert value(text, "inferd_cache_evictions_total") > 0
            entries = value(text, "inferd_cache_entries")
            assert 0 < entries < 400
            # The most recent answers are there; the first ones were evicted.
            hits = lambda: c.get_inference_statistics("iris_cached")["model_stats"][0]["inference_stats"]["cache_hit"]["count"]
            before = hits()
            assert infer_all(c, httpclient, "iris_cached", xs[-5:]) == first[-5:]
            assert hits() == before + 5
            assert infer_all(c, httpclient, "iris_cached", xs[:5]) == first[:5]
            assert hits() == before + 5
            assert value(metrics(srv), "inferd_cache_bytes") <= 64 * 1024
    finally:
        srv.stop()
