"""Canary rollouts: a good version reaches 100% and the production alias under perf_analyzer
load; a version that fails one request in ten is rolled back at its first step; the baseline
fails no request in either."""

import json
import shutil
import subprocess
import sys
import threading
import time

import numpy as np
import tritonclient.http as httpclient

import pytest
from conftest import FIXTURES, Server, perf_analyzer
from test_traffic import call


@pytest.fixture()
def srv(tmp_path):
    shutil.copytree(FIXTURES / "python" / "staged", tmp_path / "repo" / "staged")
    server = Server(tmp_path / "repo", tmp_path / "rollout.log", "--python", sys.executable,
                    "--state-poll-ms", "200")
    assert call(server, "PUT", "/v2/models/staged/aliases/production", {"version": "1"})[0] == 200
    yield server
    server.stop()


def failures(server, version):
    status, body = call(server, "GET", f"/v2/models/staged/versions/{version}/stats")
    return body["model_stats"][0]["inference_stats"]["fail"]["count"]


def wait_for(server, states, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, body = call(server, "GET", "/v2/models/staged/rollout")
        if body.get("state") in states:
            return body
        time.sleep(0.2)
    raise AssertionError(f"rollout still {body.get('state')} after {timeout} s: {json.dumps(body)[:2000]}")


def test_a_good_version_is_promoted_under_perf_analyzer_load(srv):
    binary, env = perf_analyzer()
    load = subprocess.Popen(
        [str(binary), "-m", "staged", "-u", srv.url, "-i", "http", "--concurrency-range", "2",
         "-p", "4000", "-s", "100", "-r", "10"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(2)
        status, body = call(srv, "POST", "/v2/models/staged/rollout",
                            {"version": "2", "steps": [20, 50, 100], "step_seconds": 1.5, "min_requests": 50,
                             # A new Python worker answers its first calls slower: p99 over a
                             # step of a few hundred requests is not what this test judges.
                             "max_p99_ratio": 20})
        assert status == 200 and body["state"] == "running" and body["weight"] == 20, body
        done = wait_for(srv, {"promoted", "rolled_back"}, 60)
        assert done["state"] == "promoted", done["decisions"]
        assert [d["action"] for d in done["decisions"]] == ["start", "advance", "advance", "advance", "promote"]
        assert call(srv, "GET", "/v2/models/staged/aliases")[1]["aliases"]["production"] == "2"
    finally:
        output, _ = load.communicate(timeout=60)
    assert load.returncode == 0, output[-2000:]
    assert failures(srv, 1) == 0 and failures(srv, 2) == 0
    # Unversioned traffic now goes to version 2.
    with httpclient.InferenceServerClient(srv.url) as c:
        x = httpclient.InferInput("x", [1, 4], "FP32")
        x.set_data_from_numpy(np.zeros((1, 4), np.float32))
        assert c.infer("staged", [x]).as_numpy("y").tolist() == [[2, 2, 2, 2]]
    history = call(srv, "GET", "/v2/models/staged/history")[1]["history"]
    assert any(h["kind"] == "alias" and h["new"] == "2" for h in history)


def test_a_failing_version_is_rolled_back_at_its_first_step(srv):
    stop = threading.Event()
    outcomes = {"ok": 0, "failed": 0}

    def client():
        with httpclient.InferenceServerClient(srv.url) as c:
            x = httpclient.InferInput("x", [1, 4], "FP32")
            x.set_data_from_numpy(np.ones((1, 4), np.float32))
            while not stop.is_set():
                try:
                    c.infer("staged", [x])
                    outcomes["ok"] += 1
                except Exception:
                    outcomes["failed"] += 1

    threads = [threading.Thread(target=client) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        time.sleep(1)
        status, body = call(srv, "POST", "/v2/models/staged/rollout",
                            {"version": "3", "steps": [25, 50, 100], "step_seconds": 30, "min_requests": 100})
        assert status == 200, body
        done = wait_for(srv, {"rolled_back", "promoted"}, 60)
        time.sleep(0.5)  # requests after the rollback go to the baseline
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert done["state"] == "rolled_back", done["decisions"]
    decision = done["decisions"][-1]
    assert decision["action"] == "rollback" and decision["step"] == 0, decision
    assert "error rate" in decision["reason"] and decision["canary"]["errors"] > 0
    assert failures(srv, 1) == 0, "the baseline must not fail"
    assert call(srv, "GET", "/v2/models/staged/aliases")[1]["aliases"]["production"] == "1"
    assert call(srv, "GET", "/v2/models/staged/traffic")[1]["source"] != "rollout"
    # Hand controls on a finished rollout say why they cannot act.
    status, body = call(srv, "POST", "/v2/models/staged/rollout/promote")
    assert status == 400 and "over" in body["error"]
