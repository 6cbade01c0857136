"""Decoupled models (Triton's model_transaction_policy decoupled): a Python model that yields N
responses for input N over ModelStreamInfer, the last flagged triton_final_response; HTTP and
the unary RPC refuse it as Triton does."""

import queue
import shutil
import sys
import time

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from conftest import FIXTURES, Server


@pytest.fixture(scope="module")
def repeat_server(tmp_path_factory):
    repo = tmp_path_factory.mktemp("decoupled")
    for name in ("repeat", "doubler"):
        shutil.copytree(FIXTURES / "python" / name, repo / name)
    srv = Server(repo, tmp_path_factory.mktemp("log") / "decoupled.log", "--python", sys.executable)
    yield srv
    srv.stop()


def n_input(n):
    x = grpcclient.InferInput("n", [1], "INT32")
    x.set_data_from_numpy(np.array([n], dtype=np.int32))
    return [x]


class Stream:
    def __init__(self, srv):
        self.client = grpcclient.InferenceServerClient(url=srv.grpc_url)
        self.answers = queue.Queue()
        self.client.start_stream(callback=lambda result, error: self.answers.put((result, error)))

    def send(self, n, rid, empty_final=False):
        self.client.async_stream_infer("repeat", n_input(n), request_id=rid, enable_empty_final_response=empty_final)

    def next(self):
        result, error = self.answers.get(timeout=30)
        if error is not None:
            return ("error", str(error))
        response = result.get_response()
        final = response.parameters["triton_final_response"].bool_param
        out = int(result.as_numpy("out")[0]) if response.outputs else None
        return (response.id, out, final)

    def until_final(self, rid=None):
        got = []
        while True:
            item = self.next()
            got.append(item)
            if item[0] == "error" or (item[2] and (rid is None or item[0] == rid)):
                return got

    def close(self):
        self.client.stop_stream()
        self.client.close()


@pytest.mark.parametrize("n", [1, 5, 200])
def test_n_responses_for_input_n_the_last_flagged_final(repeat_server, n):
    s = Stream(repeat_server)
    s.send(n, f"req-{n}")
    got = s.until_final()
    s.close()
    assert [g[1] for g in got] == list(range(n))
    assert [g[2] for g in got] == [False] * (n - 1) + [True]
    assert {g[0] for g in got} == {f"req-{n}"}


def test_an_empty_final_response_when_the_client_asks(repeat_server):
    s = Stream(repeat_server)
    s.send(3, "a", empty_final=True)
    got = s.until_final()
    s.send(0, "zero", empty_final=True)
    none = s.until_final()
    s.close()
    assert got == [("a", 0, False), ("a", 1, False), ("a", 2, False), ("a", None, True)]
    assert none == [("zero", None, True)], "n = 0: no data response, only the final flag"


def test_requests_interleaved_on_one_stream_keep_their_responses(repeat_server):
    s = Stream(repeat_server)
    for rid, n in (("x", 4), ("y", 6), ("z", 2)):
        s.send(n, rid)
    got = []
    while sum(1 for g in got if g[2]) < 3:
        got.append(s.next())
    s.close()
    for rid, n in (("x", 4), ("y", 6), ("z", 2)):
        mine = [g for g in got if g[0] == rid]
        assert [g[1] for g in mine] == list(range(n))
        assert [g[2] for g in mine][-1] is True


def test_an_error_after_some_responses_reaches_the_client(repeat_server):
    s = Stream(repeat_server)
    s.send(-1, "bad")
    got = s.until_final()
    s.send(2, "after")
    after = s.until_final()
    s.close()
    assert got[0] == ("bad", 0, False)
    assert got[-1][0] == "error" and "n is negative (-1)" in got[-1][1]
    assert [g[1] for g in after] == [0, 1]


def test_a_client_that_leaves_mid_stream_stops_the_model(repeat_server):
    s = Stream(repeat_server)
    s.send(1000000, "long")
    first = [s.next() for _ in range(5)]
    assert [f[1] for f in first] == [0, 1, 2, 3, 4]
    s.client.stop_stream(cancel_requests=True)
    s.client.close()
    time.sleep(0.5)
    # The worker that was streaming is replaced; the model answers the next stream.
    s = Stream(repeat_server)
    s.send(2, "next")
    assert [g[1] for g in s.until_final()] == [0, 1]
    s.close()


def test_http_and_the_unary_rpc_refuse_a_decoupled_model(repeat_server):
    with httpclient.InferenceServerClient(url=repeat_server.url) as c:
        x = httpclient.InferInput("n", [1], "INT32")
        x.set_data_from_numpy(np.array([2], dtype=np.int32))
        with pytest.raises(InferenceServerException,
                           match="HTTP end point doesn't support models with decoupled transaction policy") as e:
            c.infer("repeat", [x])
        assert e.value.status() == "400"
        assert c.get_model_config("repeat")["model_transaction_policy"] == {"decoupled": True}
        assert c.get_model_config("doubler")["model_transaction_policy"] == {"decoupled": False}
    with grpcclient.InferenceServerClient(url=repeat_server.grpc_url) as g:
        with pytest.raises(InferenceServerException,
                           match="ModelInfer RPC doesn't support models with decoupled transaction policy"):
            g.infer("repeat", n_input(2))
        assert g.get_model_config("repeat").config.model_transaction_policy.decoupled


def test_a_model_that_is_not_decoupled_still_answers_once_on_a_stream(repeat_server):
    client = grpcclient.InferenceServerClient(url=repeat_server.grpc_url)
    answers = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    x = grpcclient.InferInput("x", [1, 3], "FP32")
    x.set_data_from_numpy(np.ones((1, 3), dtype=np.float32))
    client.async_stream_infer("doubler", [x], request_id="once")
    result, error = answers.get(timeout=30)
    client.stop_stream()
    client.close()
    assert error is None
    np.testing.assert_array_equal(result.as_numpy("y"), 2 * np.ones((1, 3), dtype=np.float32))
    assert "triton_final_response" not in result.get_response().parameters
