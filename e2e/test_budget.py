"""Many models on one box: --model-control-mode lazy loads a model on its first request, and
--max-loaded-models / --model-memory-limit unload the least recently used idle models to make
room (never a pinned one). 200 copies of the MLP under a budget of 20: random traffic over all of
them answers every request."""

import json
import random
import shutil
import threading
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient

from conftest import FIXTURES, Server, as_array, expected

COPIES, BUDGET = 200, 20


def rss(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def metric(srv, name):
    with urllib.request.urlopen(f"http://{srv.metrics_url}/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
    return None


def index(srv):
    status, _, body = srv.post("/v2/repository/index", b"")
    assert status == 200
    return json.loads(body)


@pytest.fixture(scope="module")
def lazy_server(tmp_path_factory):
    repo = tmp_path_factory.mktemp("lazy")
    version = FIXTURES / "models" / "mlp" / "1"
    for i in range(COPIES):
        (repo / f"mlp_{i:03}").mkdir()
        # One file on disk for all: each copy's version directory links to it.
        (repo / f"mlp_{i:03}" / "1").symlink_to(version)
    (repo / "hot").mkdir()
    (repo / "hot" / "1").symlink_to(version)
    (repo / "hot" / "config.toml").write_text("pinned = true\n")
    srv = Server(repo, tmp_path_factory.mktemp("log") / "lazy.log", "--model-control-mode", "lazy",
                 "--max-loaded-models", str(BUDGET), "--model-memory-limit", "1GiB")
    yield srv
    srv.stop()


def mlp_request(client, model, row):
    fixture = expected("mlp")
    x = as_array(fixture["inputs"]["x"])[row:row + 1]
    inp = httpclient.InferInput("x", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    return client.infer(model, [inp]).as_numpy("probs")


def test_only_pinned_models_load_at_start(lazy_server):
    rows = {r["name"]: r for r in index(lazy_server)}
    assert rows["hot"]["state"] == "READY"
    assert rows["mlp_000"]["state"] == "UNAVAILABLE" and rows["mlp_000"]["reason"] == "not loaded"
    assert sum(r["state"] == "READY" for r in rows.values()) == 1


def test_random_traffic_over_200_models_under_a_budget_of_20_answers_everything(lazy_server):
    want = as_array(expected("mlp")["outputs"]["probs"])
    start_rss = rss(lazy_server.proc.pid)
    rng = random.Random(20)
    plan = [(f"mlp_{rng.randrange(COPIES):03}", rng.randrange(8)) for _ in range(600)]
    failures, peak = [], {"loaded": 0, "rss": 0}

    def run(chunk):
        with httpclient.InferenceServerClient(lazy_server.url, network_timeout=60) as c:
            for model, row in chunk:
                try:
                    got = mlp_request(c, model, row)
                    np.testing.assert_allclose(got[0], want[row], rtol=1e-5, atol=1e-6)
                    # The pinned model is used between the cold ones.
                    mlp_request(c, "hot", row)
                except Exception as e:  # noqa: BLE001 - collected and reported below
                    failures.append((model, repr(e)))

    def watch(done):
        while not done.is_set():
            peak["loaded"] = max(peak["loaded"], sum(r["state"] == "READY" for r in index(lazy_server)))
            peak["rss"] = max(peak["rss"], rss(lazy_server.proc.pid))
            done.wait(0.05)

    done = threading.Event()
    watcher = threading.Thread(target=watch, args=(done,))
    watcher.start()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(run, [plan[i::4] for i in range(4)]))
    done.set()
    watcher.join()
    assert not failures, failures[:5]
    assert peak["loaded"] <= BUDGET, peak
    rows = {r["name"]: r for r in index(lazy_server)}
    assert rows["hot"]["state"] == "READY", "a pinned model is never unloaded"
    loaded = [r for r in rows.values() if r["state"] == "READY"]
    assert len(loaded) <= BUDGET
    assert all("memory_bytes" in r for r in loaded if r["name"] != "hot")
    loads, evictions = metric(lazy_server, "inferd_model_loads_total"), metric(lazy_server, "inferd_model_evictions_total")
    assert loads >= len({m for m, _ in plan}) and evictions >= loads - BUDGET, (loads, evictions)
    # Under the budget plus a margin: 20 models of at most their measured size, plus 64 MiB.
    largest = max(metric_lines(lazy_server, "inferd_model_memory_bytes") or [0])
    assert peak["rss"] <= start_rss + BUDGET * largest + 64 * 2**20, (peak, start_rss, largest)


def metric_lines(srv, name):
    with urllib.request.urlopen(f"http://{srv.metrics_url}/metrics", timeout=10) as r:
        return [float(line.rsplit(" ", 1)[1]) for line in r.read().decode().splitlines() if line.startswith(name + "{")]


def test_concurrent_first_requests_trigger_one_load(lazy_server):
    cold = next(r["name"] for r in index(lazy_server) if r["state"] != "READY" and r["name"].startswith("mlp_"))
    before = metric(lazy_server, "inferd_model_loads_total")

    def one(_):
        with httpclient.InferenceServerClient(lazy_server.url, network_timeout=60) as c:
            return mlp_request(c, cold, 0)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(one, range(8)))
    assert all(np.array_equal(a, answers[0]) for a in answers)
    assert metric(lazy_server, "inferd_model_loads_total") == before + 1


def test_an_unknown_model_is_still_unknown(lazy_server):
    with httpclient.InferenceServerClient(lazy_server.url) as c:
        with pytest.raises(Exception, match="unknown model"):
            mlp_request(c, "nope", 0)
