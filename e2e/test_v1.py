"""The V1 front door (TF Serving's REST predict API and KServe V1) on the V2 port: plain HTTP with
TF Serving's JSON, as its clients send it, gets the same numbers as V2 for every fixture model,
in row (`instances`) and columnar (`inputs`) form; labels address aliases; status, metadata and
errors come in TF Serving's shapes."""

import base64
import json

import numpy as np
import pytest
import tritonclient.http as httpclient

from conftest import FIXTURES, MODELS, as_array, call, expected

FIXTURE_MODELS = [m for m in MODELS if (FIXTURES / "expected" / f"{m}.json").exists()]


def as_json(array):
    if isinstance(array, bytes):
        return array.decode()
    if array.dtype == np.object_:
        return [as_json(a) for a in array] if array.ndim else array.item().decode()
    return array.tolist()


def v2_answer(client, model, inputs):
    wire = []
    for name, array in inputs.items():
        datatype = "BYTES" if array.dtype == np.object_ else \
            {np.float32: "FP32", np.float64: "FP64", np.int64: "INT64", np.int32: "INT32"}[array.dtype.type]
        x = httpclient.InferInput(name, list(array.shape), datatype)
        x.set_data_from_numpy(array)
        wire.append(x)
    result = client.infer(model, wire)
    return {o["name"]: result.as_numpy(o["name"]) for o in result.get_response()["outputs"]}


def close(got, want, what):
    want = np.asarray(want)
    if want.dtype == np.object_:
        assert got == as_json(want), what
        return
    got = np.asarray(got, dtype=np.float64)
    np.testing.assert_allclose(got, want.astype(np.float64), rtol=1e-5, atol=1e-6, err_msg=what)


@pytest.mark.parametrize("model", FIXTURE_MODELS)
def test_row_and_columnar_predictions_equal_v2(server, client, model):
    fixture = expected(model)
    inputs = {name: as_array(t) for name, t in fixture["inputs"].items()}
    want = v2_answer(client, model, inputs)
    rows = len(next(iter(inputs.values())))
    names = list(inputs)
    if len(names) == 1:
        instances = [as_json(r) for r in inputs[names[0]]]
    else:
        instances = [{n: as_json(inputs[n][i]) for n in names} for i in range(rows)]
    status, body = call(server, "POST", f"/v1/models/{model}:predict", {"instances": instances})
    assert status == 200, body
    predictions = body["predictions"]
    assert len(predictions) == rows
    for out, array in want.items():
        got = [p[out] for p in predictions] if len(want) > 1 else predictions
        close(got, array, f"{model} rows {out}")
    columns = {n: as_json(a) for n, a in inputs.items()}
    status, body = call(server, "POST", f"/v1/models/{model}/versions/1:predict",
                        {"signature_name": "serving_default", "inputs": columns})
    assert status == 200, body
    outputs = body["outputs"] if len(want) > 1 else {next(iter(want)): body["outputs"]}
    for out, array in want.items():
        close(outputs[out], array, f"{model} columns {out}")


def test_bytes_as_b64_and_text(server, client):
    fixture = expected("sk_label_encoder")
    words = as_array(fixture["inputs"]["X"])
    want = v2_answer(client, "sk_label_encoder", {"X": words})["variable"]
    instances = [{"b64": base64.b64encode(w).decode()} if i % 2 else w.decode() for i, w in enumerate(words)]
    status, body = call(server, "POST", "/v1/models/sk_label_encoder:predict", {"instances": instances})
    assert status == 200, body
    assert body["predictions"] == want.tolist()


def test_labels_address_aliases(server):
    status, _ = call(server, "PUT", "/v2/models/iris_logreg/aliases/production", {"version": "1"})
    assert status == 200
    try:
        row = expected("iris_logreg")["inputs"]["X"]["data"][:4]
        status, body = call(server, "POST", "/v1/models/iris_logreg/labels/production:predict",
                            {"instances": [row]})
        assert status == 200, body
        assert set(body["predictions"][0]) == {"label", "probabilities"}
        status, body = call(server, "POST", "/v1/models/iris_logreg/labels/canary:predict", {"instances": [row]})
        assert status == 404 and "canary" in body["error"], body
    finally:
        call(server, "DELETE", "/v2/models/iris_logreg/aliases/production")


def test_status_metadata_and_list_in_tf_serving_and_kserve_shapes(server):
    status, body = call(server, "GET", "/v1/models/iris_logreg")
    assert status == 200
    assert body["name"] == "iris_logreg" and body["ready"] is True
    assert body["model_version_status"] == [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]
    status, body = call(server, "GET", "/v1/models/iris_logreg/versions/1/metadata")
    assert status == 200
    assert body["model_spec"] == {"name": "iris_logreg", "signature_name": "", "version": "1"}
    sig = body["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert sig["inputs"]["X"]["dtype"] == "DT_FLOAT"
    assert [d["size"] for d in sig["inputs"]["X"]["tensor_shape"]["dim"]] == ["-1", "4"]
    assert sig["outputs"]["label"]["dtype"] == "DT_INT64"
    status, body = call(server, "GET", "/v1/models")
    assert status == 200 and "iris_logreg" in body["models"] and "garbage" not in body["models"]


def test_errors_in_tf_serving_shape(server):
    row = expected("iris_logreg")["inputs"]["X"]["data"][:4]
    cases = [
        ("POST", "/v1/models/nope:predict", {"instances": [row]}, 404, "nope"),
        ("GET", "/v1/models/nope", None, 404, "nope"),
        ("POST", "/v1/models/iris_logreg:predict", {"instances": [[1, 2, 3]]}, 400, "shape"),
        ("POST", "/v1/models/iris_logreg:predict", {"instances": [["a", "b", "c", "d"]]}, 400, "not a FP32 value"),
        ("POST", "/v1/models/iris_logreg:predict", {"instances": [row], "inputs": [row]}, 400, "send one"),
        ("POST", "/v1/models/iris_logreg:predict", {"signature_name": "other", "instances": [row]}, 400,
         "serving_default"),
        ("POST", "/v1/models/iris_logreg:classify", {"instances": [row]}, 400, ":classify"),
        ("POST", "/v1/models/iris_logreg/versions/9:predict", {"instances": [row]}, 404, "9"),
    ]
    for method, path, body, code, needle in cases:
        status, answer = call(server, method, path, body)
        assert (status, needle in answer.get("error", "")) == (code, True), (path, status, answer)
    # The server serves on.
    assert call(server, "POST", "/v1/models/iris_logreg:predict", {"instances": [row]})[0] == 200
