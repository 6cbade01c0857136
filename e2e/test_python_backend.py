"""The Python backend: a hand-written model.py and a pickled scikit-learn pipeline, each in its
own worker process; a worker killed mid-request fails that request only, and is restarted."""

import os
import shutil
import signal
import sys
import threading
import time

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from conftest import FIXTURES, Server, as_array, expected


@pytest.fixture(scope="module")
def py_server(tmp_path_factory):
    repo = tmp_path_factory.mktemp("py")
    for name in ("doubler", "sk_pipeline"):
        shutil.copytree(FIXTURES / "python" / name, repo / name)
    # A second copy, for the crash-loop test: its deaths must not count against doubler's.
    shutil.copytree(FIXTURES / "python" / "doubler", repo / "crasher")
    # A third with a short call timeout: its 30 s sleep must be cut short.
    shutil.copytree(FIXTURES / "python" / "doubler", repo / "sleeper")
    with open(repo / "sleeper" / "config.toml", "a") as config:
        config.write("\n[parameters]\ncall_timeout_ms = 1500\n")
    srv = Server(repo, tmp_path_factory.mktemp("log") / "py.log", "--python", sys.executable)
    yield srv
    srv.stop()


def doubler_input(module, values):
    x = module.InferInput("x", list(values.shape), "FP32")
    x.set_data_from_numpy(values)
    return [x]


def test_model_py_over_both_protocols(py_server):
    x = np.arange(6, dtype=np.float32).reshape(2, 3) + 1
    with httpclient.InferenceServerClient(url=py_server.url) as c:
        r = c.infer("doubler", doubler_input(httpclient, x))
        np.testing.assert_array_equal(r.as_numpy("y"), 2 * x)
        assert r.as_numpy("rows").tolist() == [2]
        assert c.get_model_metadata("doubler")["platform"] == "python"
    with grpcclient.InferenceServerClient(url=py_server.grpc_url) as c:
        r = c.infer("doubler", doubler_input(grpcclient, x))
        np.testing.assert_array_equal(r.as_numpy("y"), 2 * x)


def test_a_scikit_learn_pipeline_matches_predict_proba(py_server):
    fixture = expected("py_sk_pipeline")
    x = as_array(fixture["inputs"]["input"])
    with httpclient.InferenceServerClient(url=py_server.url) as c:
        meta = c.get_model_metadata("sk_pipeline")
        assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]
        inp = httpclient.InferInput("input", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        r = c.infer("sk_pipeline", [inp])
    np.testing.assert_allclose(r.as_numpy("probabilities"), as_array(fixture["outputs"]["probabilities"]),
                               rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(r.as_numpy("label"), as_array(fixture["outputs"]["label"]))


def test_an_exception_in_predict_is_the_requests_error(py_server):
    with httpclient.InferenceServerClient(url=py_server.url) as c:
        with pytest.raises(InferenceServerException, match="all inputs are zero"):
            c.infer("doubler", doubler_input(httpclient, np.zeros((1, 3), np.float32)))
        r = c.infer("doubler", doubler_input(httpclient, np.ones((1, 3), np.float32)))
        assert r.as_numpy("rows").tolist() == [1]


def workers(srv, model):
    """PIDs of the server's worker processes serving `model`."""
    pids = []
    for child in os.listdir("/proc"):
        if not child.isdigit():
            continue
        try:
            stat = open(f"/proc/{child}/stat").read()
            cmdline = open(f"/proc/{child}/cmdline", "rb").read().split(b"\0")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == srv.proc.pid and any(arg.endswith(f"/{model}/1".encode()) for arg in cmdline):
            pids.append(int(child))
    return pids


def test_a_killed_worker_fails_its_request_and_is_restarted(py_server):
    [pid] = workers(py_server, "doubler")
    outcome = {}

    def slow():
        with httpclient.InferenceServerClient(url=py_server.url, network_timeout=60) as c:
            try:
                c.infer("doubler", doubler_input(httpclient, -np.ones((1, 3), np.float32)))
                outcome["result"] = "answered"
            except InferenceServerException as e:
                outcome["result"] = str(e)

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(1.0)  # the worker is sleeping inside predict()
    os.kill(pid, signal.SIGKILL)
    t.join(30)
    assert "worker died" in outcome["result"] and "restarted" in outcome["result"], outcome
    with httpclient.InferenceServerClient(url=py_server.url) as c:
        for _ in range(3):
            r = c.infer("doubler", doubler_input(httpclient, np.ones((2, 3), np.float32)))
            assert r.as_numpy("rows").tolist() == [2]
        assert c.is_server_live() and c.is_model_ready("sk_pipeline")
    [new_pid] = workers(py_server, "doubler")
    assert new_pid != pid


def test_a_worker_that_keeps_dying_is_restarted_with_back_off(py_server):
    crash = np.full((1, 3), -2, np.float32)
    messages = []
    with httpclient.InferenceServerClient(url=py_server.url) as c:
        for _ in range(4):
            with pytest.raises(InferenceServerException) as e:
                c.infer("crasher", doubler_input(httpclient, crash))
            messages.append(str(e.value))
        # The first death restarts at once; then the worker waits instead of restarting for
        # every request that kills it.
        assert "it was restarted" in messages[0], messages
        assert any("the next restart is in" in m for m in messages[1:]), messages
        time.sleep(2.5)
        r = c.infer("crasher", doubler_input(httpclient, np.ones((1, 3), np.float32)))
        assert r.as_numpy("rows").tolist() == [1]
        assert c.is_server_live()


def test_a_call_past_its_timeout_is_answered_and_the_worker_replaced(py_server):
    [pid] = workers(py_server, "sleeper")
    with httpclient.InferenceServerClient(url=py_server.url, network_timeout=60) as c:
        started = time.monotonic()
        with pytest.raises(InferenceServerException) as e:
            c.infer("sleeper", doubler_input(httpclient, -np.ones((1, 3), np.float32)))
        waited = time.monotonic() - started
        assert "did not answer within 1500 ms" in str(e.value) and "call_timeout_ms" in str(e.value), e.value
        assert waited < 20, f"answered after {waited:.1f} s, not at the timeout"
        r = c.infer("sleeper", doubler_input(httpclient, np.ones((1, 3), np.float32)))
        assert r.as_numpy("rows").tolist() == [1]
        # The other models never waited for it.
        assert c.is_model_ready("doubler")
    [new_pid] = workers(py_server, "sleeper")
    assert new_pid != pid
    # The killed worker was reaped, not left a zombie.
    deadline = time.monotonic() + 5
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{pid}")
