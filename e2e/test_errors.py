"""Every bad request gets its status and a message that names what was wrong; the server keeps
serving afterwards."""

import json

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from conftest import BODY_LIMIT


def infer_error(client, model, inputs, **kwargs):
    with pytest.raises(InferenceServerException) as info:
        client.infer(model, inputs, **kwargs)
    return info.value.status(), info.value.message()


def iris_input(name="X", shape=(1, 4), datatype="FP32", dtype=np.float32):
    inp = httpclient.InferInput(name, list(shape), datatype)
    inp.set_data_from_numpy(np.ones(shape, dtype=dtype))
    return inp


def test_unknown_input(client):
    status, message = infer_error(client, "iris_logreg", [iris_input(name="petals")])
    assert status == "400"
    assert "unknown input 'petals'" in message and "iris_logreg" in message and "X" in message


def test_missing_input(client):
    x = httpclient.InferInput("x", [1, 3], "FP32")
    x.set_data_from_numpy(np.ones((1, 3), np.float32))
    status, message = infer_error(client, "two_io", [x])
    assert status == "400"
    assert "missing input 'k'" in message and "two_io" in message


def test_shape_mismatch(client):
    status, message = infer_error(client, "iris_logreg", [iris_input(shape=(1, 5))])
    assert status == "400"
    assert "input 'X' has shape [1, 5]" in message and "[-1, 4]" in message


def test_batch_sizes_must_agree(client):
    x = httpclient.InferInput("x", [2, 3], "FP32")
    x.set_data_from_numpy(np.ones((2, 3), np.float32))
    k = httpclient.InferInput("k", [3, 1], "INT64")
    k.set_data_from_numpy(np.ones((3, 1), np.int64))
    status, message = infer_error(client, "two_io", [x, k])
    assert status == "400" and "batch size" in message


def test_datatype_mismatch(client):
    status, message = infer_error(client, "iris_logreg", [iris_input(datatype="FP64", dtype=np.float64)])
    assert status == "400"
    assert "input 'X' has datatype FP64" in message and "expects FP32" in message


@pytest.mark.parametrize("binary", [False, True])
def test_unknown_output(client, binary):
    out = httpclient.InferRequestedOutput("nope", binary_data=binary)
    status, message = infer_error(client, "iris_logreg", [iris_input()], outputs=[out])
    assert status == "400" and "unknown output 'nope'" in message


def test_unknown_model_and_version(client):
    status, message = infer_error(client, "no_such_model", [iris_input()])
    assert status == "404" and "no_such_model" in message
    status, message = infer_error(client, "iris_logreg", [iris_input()], model_version="9")
    assert status == "404" and "version 9" in message


def post_json(server, body, model="iris_logreg"):
    status, _, raw = server.post(f"/v2/models/{model}/infer", body)
    return status, json.loads(raw)["error"]


def test_malformed_json(server):
    status, message = post_json(server, b'{"inputs": [')
    assert status == 400 and "malformed inference request JSON" in message


def test_element_count_mismatch(server):
    body = json.dumps({"inputs": [{"name": "X", "shape": [2, 4], "datatype": "FP32", "data": [1.0] * 7}]})
    status, message = post_json(server, body.encode())
    assert status == 400 and "input 'X'" in message and "needs 8 elements but 7" in message


def test_wrong_element_type_in_json(server):
    body = json.dumps({"inputs": [{"name": "k", "shape": [1, 1], "datatype": "INT64", "data": ["seven"]},
                                  {"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]})
    status, message = post_json(server, body.encode(), model="two_io")
    assert status == 400 and "input 'k'" in message and "INT64" in message


def test_unknown_datatype(server):
    body = json.dumps({"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FLOAT32", "data": [1] * 4}]})
    status, message = post_json(server, body.encode())
    assert status == 400 and "input 'X'" in message and "FLOAT32" in message


def test_binary_size_mismatch(server):
    header = json.dumps({"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32",
                                     "parameters": {"binary_data_size": 12}}]}).encode()
    status, _, raw = server.post("/v2/models/iris_logreg/infer", header + b"\0" * 12,
                                 {"Inference-Header-Content-Length": str(len(header))})
    message = json.loads(raw)["error"]
    assert status == 400 and "input 'X'" in message and "binary_data_size is 12" in message and "needs 16" in message


def test_truncated_binary_body(server):
    header = json.dumps({"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32",
                                     "parameters": {"binary_data_size": 16}}]}).encode()
    status, _, raw = server.post("/v2/models/iris_logreg/infer", header + b"\0" * 5,
                                 {"Inference-Header-Content-Length": str(len(header))})
    assert status == 400 and "only 5 bytes" in json.loads(raw)["error"]


def test_oversize_body_gets_413_with_the_limit(server):
    status, _, raw = server.post("/v2/models/iris_logreg/infer", b" " * (BODY_LIMIT + 1))
    assert status == 413
    assert str(BODY_LIMIT) in json.loads(raw)["error"]


def test_server_still_serves_after_errors(client):
    result = client.infer("iris_logreg", [iris_input()])
    assert result.as_numpy("probabilities").shape == (1, 3)


def test_overflowing_shape_is_rejected(server):
    body = json.dumps({"inputs": [{"name": "X", "shape": [2**40, 2**40], "datatype": "FP32", "data": [1.0]}]})
    status, message = post_json(server, body.encode())
    assert status == 400 and "input 'X'" in message and "more elements than can be addressed" in message
    header = json.dumps({"inputs": [{"name": "X", "shape": [2**40, 2**40], "datatype": "FP32",
                                     "parameters": {"binary_data_size": 16}}]}).encode()
    status, _, raw = server.post("/v2/models/iris_logreg/infer", header + b"\0" * 16,
                                 {"Inference-Header-Content-Length": str(len(header))})
    assert status == 400 and "more than can be addressed" in json.loads(raw)["error"]


def test_errors_before_any_handler_have_the_protocols_shape(server):
    """A path that is not UTF-8 (refused by the router's extractor) and a Content-Encoding the
    server lacks (refused by the decompression layer) answer {"error": ...} like the rest."""
    import urllib.request
    for path in ("/v2/models/%FF/ready", "/v1/models/%C3%28"):
        request = urllib.request.Request(f"http://{server.url}{path}")
        try:
            urllib.request.urlopen(request, timeout=5)
            raise AssertionError(f"{path} answered 2xx")
        except urllib.error.HTTPError as e:
            assert e.code == 400 and e.headers["content-type"] == "application/json"
            assert "UTF-8" in json.loads(e.read())["error"]
    request = urllib.request.Request(f"http://{server.url}/v2/models/iris_logreg/infer", data=b"x", method="POST",
                                     headers={"Content-Encoding": "br"})
    try:
        urllib.request.urlopen(request, timeout=5)
        raise AssertionError("a br body was accepted")
    except urllib.error.HTTPError as e:
        assert e.code == 415 and "gzip or deflate" in json.loads(e.read())["error"]
