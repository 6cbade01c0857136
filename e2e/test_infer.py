"""Every fixture model through tritonclient.http, JSON and binary tensors, batch 1 and 8,
against onnxruntime's expected outputs."""

import json

import numpy as np
import pytest
import tritonclient.http as httpclient

from conftest import MODELS, as_array, expected


def run(client, model, batch, binary, outputs=None):
    exp = expected(model)
    inputs = []
    for name, tensor in exp["inputs"].items():
        data = as_array(tensor)[:batch]
        inp = httpclient.InferInput(name, list(data.shape), tensor["datatype"])
        inp.set_data_from_numpy(data, binary_data=binary)
        inputs.append(inp)
    names = outputs or list(exp["outputs"])
    requested = [httpclient.InferRequestedOutput(n, binary_data=binary) for n in names]
    return exp, client.infer(model, inputs, outputs=requested, request_id=f"{model}-{batch}")


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize("batch", [1, 8])
@pytest.mark.parametrize("model", MODELS)
def test_outputs_match_onnxruntime(client, model, batch, binary):
    if not binary and any(None in t["data"] for t in expected(model)["inputs"].values()):
        pytest.skip("JSON has no NaN: missing values travel in binary tensors only")
    exp, result = run(client, model, batch, binary)
    response = result.get_response()
    assert response["model_name"] == model
    assert response["model_version"] == "1"
    assert response["id"] == f"{model}-{batch}"
    for name, tensor in exp["outputs"].items():
        want = as_array(tensor)[:batch]
        got = result.as_numpy(name)
        assert got is not None, f"output {name} missing"
        assert got.dtype == want.dtype, name
        assert got.shape == want.shape, name
        if np.issubdtype(want.dtype, np.floating):
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-5, err_msg=name)
        else:
            np.testing.assert_array_equal(got, want, err_msg=name)


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_requested_outputs_filter(client, binary):
    _, result = run(client, "two_io", 2, binary, outputs=["s"])
    names = [o["name"] for o in result.get_response()["outputs"]]
    assert names == ["s"]
    assert result.as_numpy("y") is None


def test_binary_data_output_parameter_makes_every_output_binary(server):
    exp = expected("iris_logreg")
    x = as_array(exp["inputs"]["X"])[:2]
    header = json.dumps({
        "inputs": [{"name": "X", "shape": [2, 4], "datatype": "FP32", "parameters": {"binary_data_size": x.nbytes}}],
        "parameters": {"binary_data_output": True},
    }).encode()
    status, headers, body = server.post(
        "/v2/models/iris_logreg/infer", header + x.tobytes(), {"Inference-Header-Content-Length": str(len(header))}
    )
    assert status == 200, body
    json_len = int(headers["inference-header-content-length"])
    response = json.loads(body[:json_len])
    sizes = [o["parameters"]["binary_data_size"] for o in response["outputs"]]
    assert [o["name"] for o in response["outputs"]] == ["label", "probabilities"]
    assert all("data" not in o for o in response["outputs"])
    assert sizes == [2 * 8, 2 * 3 * 4]
    probs = np.frombuffer(body[json_len + sizes[0]:], dtype=np.float32).reshape(2, 3)
    np.testing.assert_allclose(probs, as_array(exp["outputs"]["probabilities"])[:2], atol=1e-5)


def test_json_outputs_carry_no_parameters_object(server):
    """perf_analyzer's C++ client rejects a parameters object without binary_data_size."""
    body = json.dumps({"inputs": [{"name": "x", "shape": [1, 16], "datatype": "FP32", "data": [0.5] * 16}]})
    status, _, raw = server.post("/v2/models/mlp/infer", body.encode())
    assert status == 200, raw
    (output,) = json.loads(raw)["outputs"]
    assert "parameters" not in output
    assert output["shape"] == [1, 4]


def test_nested_json_data_and_explicit_version(server):
    exp = expected("iris_logreg")
    rows = as_array(exp["inputs"]["X"])[:2].tolist()
    body = json.dumps({"id": "nested", "inputs": [{"name": "X", "shape": [2, 4], "datatype": "FP32", "data": rows}]})
    status, headers, raw = server.post("/v2/models/iris_logreg/versions/1/infer", body.encode())
    assert status == 200, raw
    assert headers["content-type"] == "application/json"
    response = json.loads(raw)
    assert response["id"] == "nested" and response["model_version"] == "1"
    labels = next(o for o in response["outputs"] if o["name"] == "label")["data"]
    assert labels == exp["outputs"]["label"]["data"][:2]


def test_zipmap_output_is_served_as_a_tensor_and_logged(client, server):
    meta = client.get_model_metadata("sk_zipmap_classifier")
    assert {"name": "output_probability", "datatype": "FP32", "shape": [-1, 3]} in meta["outputs"]
    assert "ZipMap output 'output_probability' is served as a FP32 tensor" in server.logs()
