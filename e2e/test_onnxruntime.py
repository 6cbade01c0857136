"""The ONNX Runtime backend behind the same protocols: chosen per model (config.toml) or as the
server default, answers equal to tract's, and a clear reason when its library is missing."""

import os
import shutil

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from conftest import FIXTURES, Server, as_array, expected

MODELS = ["iris_logreg", "mlp", "sk_scaler_logreg", "two_io"]


def repository(path, backend_line):
    for name in MODELS:
        shutil.copytree(FIXTURES / "models" / name, path / f"{name}_ort")
        (path / f"{name}_ort" / "config.toml").write_text(backend_line)
        shutil.copytree(FIXTURES / "models" / name, path / f"{name}_tract")
    return path


@pytest.fixture(scope="module")
def ort_server(tmp_path_factory):
    repo = repository(tmp_path_factory.mktemp("ort"), 'backend = "onnxruntime"\n')
    srv = Server(repo, tmp_path_factory.mktemp("log") / "ort.log")
    yield srv
    srv.stop()


def infer(client, module, model, name):
    fixture = expected(name)
    inputs = []
    for input_name, tensor in fixture["inputs"].items():
        array = as_array(tensor)
        i = module.InferInput(input_name, list(array.shape), tensor["datatype"])
        i.set_data_from_numpy(array)
        inputs.append(i)
    result = client.infer(model, inputs)
    return {o: result.as_numpy(o) for o in fixture["outputs"]}, fixture


@pytest.mark.parametrize("name", MODELS)
def test_onnxruntime_answers_like_tract_and_onnxruntime_python(ort_server, name):
    http = httpclient.InferenceServerClient(url=ort_server.url)
    grpc = grpcclient.InferenceServerClient(url=ort_server.grpc_url)
    ours, fixture = infer(http, httpclient, f"{name}_ort", name)
    theirs, _ = infer(http, httpclient, f"{name}_tract", name)
    over_grpc, _ = infer(grpc, grpcclient, f"{name}_ort", name)
    for output, tensor in fixture["outputs"].items():
        want = as_array(tensor)
        np.testing.assert_allclose(ours[output], want, rtol=1e-6, atol=1e-5, err_msg=output)
        np.testing.assert_allclose(ours[output], theirs[output], rtol=1e-6, atol=1e-5, err_msg=output)
        np.testing.assert_array_equal(ours[output], over_grpc[output])
    assert http.get_model_metadata(f"{name}_ort")["platform"] == "onnxruntime_onnx"
    assert http.get_model_config(f"{name}_ort")["backend"] == "onnxruntime"
    http.close()
    grpc.close()


def test_server_default_backend(tmp_path):
    shutil.copytree(FIXTURES / "models" / "iris_logreg", tmp_path / "repo" / "iris")
    srv = Server(tmp_path / "repo", tmp_path / "default.log", "--default-backend", "onnxruntime")
    try:
        with httpclient.InferenceServerClient(url=srv.url) as c:
            assert c.get_model_metadata("iris")["platform"] == "onnxruntime_onnx"
    finally:
        srv.stop()


def test_a_missing_library_names_the_path_and_the_fix(tmp_path):
    repo = repository(tmp_path / "repo", 'backend = "onnxruntime"\n')
    srv = Server(repo, tmp_path / "nolib.log", "--onnxruntime-lib", "/nonexistent/libonnxruntime.so",
                 "--strict-readiness", "false")
    try:
        with httpclient.InferenceServerClient(url=srv.url) as c:
            rows = {(m["name"], m.get("version")): m for m in c.get_model_repository_index()}
            reason = rows[("iris_logreg_ort", "1")]["reason"]
            assert rows[("iris_logreg_ort", "1")]["state"] == "UNAVAILABLE"
            assert "/nonexistent/libonnxruntime.so" in reason and "get_onnxruntime.py" in reason, reason
            assert c.is_model_ready("iris_logreg_tract")
    finally:
        srv.stop()
