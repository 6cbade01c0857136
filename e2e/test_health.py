"""Health, metadata, configuration, repository index and broken-model reporting."""

import json

import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from conftest import FIXTURES, MODELS, Server, make_repository


def test_liveness_and_server_metadata(client):
    assert client.is_server_live()
    meta = client.get_server_metadata()
    assert meta["name"] == "inferd"
    assert "binary_tensor_data" in meta["extensions"]


def test_model_metadata(client):
    meta = client.get_model_metadata("iris_logreg")
    assert meta["name"] == "iris_logreg" and meta["versions"] == ["1"]
    assert meta["inputs"] == [{"name": "X", "datatype": "FP32", "shape": [-1, 4]}]
    assert meta["outputs"] == [
        {"name": "label", "datatype": "INT64", "shape": [-1]},
        {"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]},
    ]
    assert client.get_model_metadata("two_io", model_version="1")["inputs"][1]["datatype"] == "INT64"


def test_model_config_in_triton_shape(client):
    config = client.get_model_config("two_io")
    assert config["name"] == "two_io" and config["max_batch_size"] > 0
    assert [(i["name"], i["data_type"], i["dims"]) for i in config["input"]] == [
        ("x", "TYPE_FP32", [3]), ("k", "TYPE_INT64", [1])]
    assert [(o["name"], o["data_type"], o["dims"]) for o in config["output"]] == [
        ("y", "TYPE_FP32", [3]), ("s", "TYPE_INT64", [1])]


def test_model_readiness(client):
    assert client.is_model_ready("mlp")
    assert client.is_model_ready("mlp", "1")
    assert not client.is_model_ready("garbage")
    assert not client.is_model_ready("no_such_model")


def test_broken_models_leave_the_rest_ready(server, client):
    index = {m["name"]: m for m in client.get_model_repository_index()}
    for name in MODELS:
        assert index[name]["state"] == "READY", index[name]
    assert index["garbage"]["state"] == "UNAVAILABLE"
    assert "not a readable ONNX model" in index["garbage"]["reason"]
    assert index["unsupported_op"]["state"] == "UNAVAILABLE"
    assert "Frobnicate (com.example)" in index["unsupported_op"]["reason"]

    # Readiness is honest: the server is not ready while models it should serve are broken.
    assert not client.is_server_ready()
    status, body = server.get("/v2/health/ready")
    assert status == 503
    error = json.loads(body)["error"]
    assert "garbage/1" in error and "unsupported_op/1" in error

    logs = server.logs()
    assert "garbage" in logs and "not a readable ONNX model" in logs
    assert "Frobnicate" in logs

    with pytest.raises(InferenceServerException) as info:
        client.infer("garbage", [httpclient.InferInput("X", [1], "FP32")])
    assert info.value.status() == "503" and "failed to load" in info.value.message()


def test_ready_when_every_model_loads(good_server):
    status, body = good_server.get("/v2/health/ready")
    assert status == 200 and json.loads(body) == {"ready": True}


def test_non_strict_readiness_ignores_failed_models(tmp_path):
    srv = Server(make_repository(tmp_path / "repo"), tmp_path / "log", "--strict-readiness", "false")
    try:
        assert srv.get("/v2/health/ready")[0] == 200
    finally:
        srv.stop()


def test_sigterm_shuts_down_cleanly(tmp_path):
    repo = tmp_path / "repo"
    (repo / "mlp").mkdir(parents=True)
    (repo / "mlp" / "1").symlink_to(FIXTURES / "models" / "mlp" / "1")
    srv = Server(repo, tmp_path / "log")
    assert srv.get("/v2/health/live")[0] == 200
    assert srv.stop() == 0
    assert "shutting down" in srv.logs()
