"""Triton's wire behaviour where its clients depend on it: JSON error bodies on unknown routes and
methods, Triton's wording where clients match on it, every extension listed in server metadata,
gRPC answers in raw_output_contents, gzip and deflate on both protocols, LogSettings over gRPC
and the trace settings API on both."""

import json

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from conftest import FIXTURES, Server

X = np.array([[5.1, 3.5, 1.4, 0.2], [6.2, 3.4, 5.4, 2.3]], np.float32)
SPECIES = ["setosa", "versicolor", "virginica"]


def features(module):
    x = module.InferInput("X", [2, 4], "FP32")
    x.set_data_from_numpy(X)
    return x


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import shutil
    tmp = tmp_path_factory.mktemp("wire")
    shutil.copytree(FIXTURES / "models" / "iris_logreg", tmp / "repo" / "iris_logreg")
    # The same model with Triton's label_filename on its probabilities, for classification.
    labeled = tmp / "repo" / "iris_labeled"
    shutil.copytree(FIXTURES / "models" / "iris_logreg", labeled)
    (labeled / "labels.txt").write_text("\n".join(SPECIES) + "\n")
    (labeled / "config.toml").write_text(
        'outputs = [{ name = "probabilities", datatype = "FP32", dims = [3], label_filename = "labels.txt" }]\n')
    # An image model (identity over NCHW images), for Triton's input format in its config.
    import onnx
    from onnx import TensorProto, helper
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "image",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 2, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, 2, 2])])
    image = tmp / "repo" / "image"
    (image / "1").mkdir(parents=True)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), image / "1" / "model.onnx")
    (image / "config.toml").write_text('inputs = [{ name = "x", datatype = "FP32", dims = [3, 2, 2], format = "NCHW" }]\n')
    # An OTLP endpoint nothing listens on: traces are on (and dropped), so the settings apply.
    srv = Server(tmp / "repo", tmp / "wire.log", "--otlp-endpoint", "http://127.0.0.1:9", "--trace-sample-ratio", "0")
    yield srv
    srv.stop()


def test_unknown_routes_and_methods_answer_the_json_error_body(server):
    status, headers, body = server.post("/v2/no/such/route", b"{}")
    assert status == 404 and headers["content-type"] == "application/json"
    assert "POST /v2/no/such/route" in json.loads(body)["error"]
    status, body = server.get("/v2/models/iris_logreg/infer")
    assert status == 405 and "GET" in json.loads(body)["error"]


def test_every_extension_is_listed_in_server_metadata(server):
    wanted = {"binary_tensor_data", "classification", "model_configuration", "model_repository", "statistics", "logging", "trace"}
    with httpclient.InferenceServerClient(server.url) as c:
        assert wanted <= set(c.get_server_metadata()["extensions"])
    with grpcclient.InferenceServerClient(server.grpc_url) as c:
        assert wanted <= set(c.get_server_metadata().extensions)


@pytest.mark.parametrize("module", [httpclient, grpcclient], ids=["http", "grpc"])
def test_errors_start_with_tritons_wording(server, module):
    url = server.url if module is httpclient else server.grpc_url
    with module.InferenceServerClient(url) as c:
        x = features(module)
        with pytest.raises(InferenceServerException) as e:
            c.infer("nope", [x])
        assert "Request for unknown model: 'nope' is not found" in str(e.value)
        with pytest.raises(InferenceServerException) as e:
            c.infer("iris_logreg", [x], model_version="9")
        assert "Request for unknown model: 'iris_logreg' version 9 is not found" in str(e.value)


def test_grpc_answers_typed_contents_in_raw_output_contents(server):
    """Triton always answers in raw_output_contents; raw-stub clients index into it."""
    with grpc.insecure_channel(server.grpc_url) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        request = service_pb2.ModelInferRequest(model_name="iris_logreg")
        x = request.inputs.add(name="X", datatype="FP32", shape=[2, 4])
        x.contents.fp32_contents.extend(X.ravel().tolist())
        response = stub.ModelInfer(request)
    names = [o.name for o in response.outputs]
    assert len(response.raw_output_contents) == len(names) == 2
    assert all(not o.HasField("contents") for o in response.outputs)
    label = np.frombuffer(response.raw_output_contents[names.index("label")], np.int64)
    assert label.tolist() == [0, 2]


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_compressed_requests_and_answers_match_plain_ones(server, algorithm):
    with httpclient.InferenceServerClient(server.url) as c:
        x = httpclient.InferInput("X", [2, 4], "FP32")
        x.set_data_from_numpy(X, binary_data=True)
        plain = c.infer("iris_logreg", [x]).as_numpy("probabilities")
        packed = c.infer("iris_logreg", [x], request_compression_algorithm=algorithm,
                         response_compression_algorithm=algorithm).as_numpy("probabilities")
        np.testing.assert_array_equal(plain, packed)
    # The server really answers compressed when asked.
    import urllib.request
    body = json.dumps({"inputs": [{"name": "X", "shape": [2, 4], "datatype": "FP32", "data": X.ravel().tolist()}]})
    request = urllib.request.Request(f"http://{server.url}/v2/models/iris_logreg/infer", data=body.encode(),
                                     headers={"Accept-Encoding": algorithm}, method="POST")
    with urllib.request.urlopen(request, timeout=10) as r:
        assert r.headers["Content-Encoding"] == algorithm
    with grpcclient.InferenceServerClient(server.grpc_url) as c:
        x = features(grpcclient)
        packed = c.infer("iris_logreg", [x], compression_algorithm=algorithm).as_numpy("probabilities")
        np.testing.assert_array_equal(plain, packed)


def test_a_corrupt_compressed_body_is_a_clear_400(server):
    status, _, body = server.post("/v2/models/iris_logreg/infer", b"not gzip at all",
                                  headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})
    assert status == 400, body
    assert "gzip" in json.loads(body)["error"].lower()


def test_log_settings_over_grpc(server):
    with grpcclient.InferenceServerClient(server.grpc_url) as c:
        settings = c.get_log_settings(as_json=True)["settings"]
        assert settings["log_verbose_level"]["uint32_param"] == 0
        assert settings["log_info"]["bool_param"] is True
        updated = c.update_log_settings({"log_verbose_level": 1}, as_json=True)["settings"]
        assert updated["log_verbose_level"]["uint32_param"] == 1
        assert c.update_log_settings({"log_verbose_level": 0}, as_json=True)["settings"]["log_verbose_level"]["uint32_param"] == 0
        with pytest.raises(InferenceServerException) as e:
            c.update_log_settings({"log_file": "/tmp/x.log"})
        assert "log_file" in str(e.value)
    with httpclient.InferenceServerClient(server.url) as c:
        assert c.get_log_settings()["log_verbose_level"] == 0


def test_trace_settings_map_onto_the_sampling_ratio(server):
    with httpclient.InferenceServerClient(server.url) as c:
        settings = c.get_trace_settings()
        assert settings["trace_level"] == ["OFF"] and settings["trace_mode"] == "opentelemetry"
        updated = c.update_trace_settings(settings={"trace_level": ["TIMESTAMPS"], "trace_rate": "4"})
        assert updated["trace_level"] == ["TIMESTAMPS"] and updated["trace_rate"] == "4"
        # Per model: the server-wide settings (inferd samples server-wide).
        assert c.get_trace_settings(model_name="iris_logreg")["trace_rate"] == "4"
        with pytest.raises(InferenceServerException) as e:
            c.update_trace_settings(settings={"trace_rate": "zero"})
        assert "trace_rate" in str(e.value)
        with pytest.raises(InferenceServerException) as e:
            c.update_trace_settings(model_name="iris_logreg", settings={"trace_rate": "2"})
        assert "server-wide" in str(e.value)
    with grpcclient.InferenceServerClient(server.grpc_url) as c:
        got = c.get_trace_settings(as_json=True)["settings"]
        assert got["trace_rate"]["value"] == ["4"] and got["trace_level"]["value"] == ["TIMESTAMPS"]
        off = c.update_trace_settings(settings={"trace_level": ["OFF"]}, as_json=True)["settings"]
        assert off["trace_level"]["value"] == ["OFF"]


def test_onnx_models_report_tritons_platform_name(server):
    with httpclient.InferenceServerClient(server.url) as c:
        assert c.get_model_metadata("iris_logreg")["platform"] == "onnxruntime_onnx"
        config = c.get_model_config("iris_logreg")
        assert config["platform"] == "onnxruntime_onnx" and config["backend"] == "tract"


def triton_classes(probabilities, k, labels=None):
    """Triton's classification answer: "<%f score>:<index>[:<label>]", best first."""
    rows = []
    for row in probabilities:
        order = sorted(range(len(row)), key=lambda i: (-row[i], i))[:k]
        rows.append([f"{float(row[i]):.6f}:{i}" + (f":{labels[i]}" if labels else "") for i in order])
    return rows


@pytest.mark.parametrize("module", [httpclient, grpcclient], ids=["http", "grpc"])
def test_classification_answers_the_best_classes_in_tritons_format(server, module):
    url = server.url if module is httpclient else server.grpc_url
    with module.InferenceServerClient(url) as c:
        x = features(module)
        probabilities = c.infer("iris_logreg", [x]).as_numpy("probabilities")
        for model, labels in (("iris_logreg", None), ("iris_labeled", SPECIES)):
            wanted = [module.InferRequestedOutput("probabilities", class_count=2), module.InferRequestedOutput("label")]
            r = c.infer(model, [x], outputs=wanted)
            got = [[v.decode() for v in row] for row in r.as_numpy("probabilities")]
            assert got == triton_classes(probabilities, 2, labels)
            assert r.as_numpy("label").tolist() == [0, 2]
        # More classes than there are: all of them.
        r = c.infer("iris_labeled", [x], outputs=[module.InferRequestedOutput("probabilities", class_count=5)])
        assert r.as_numpy("probabilities").shape == (2, 3)
        with pytest.raises(InferenceServerException) as e:
            c.infer("iris_logreg", [x], outputs=[module.InferRequestedOutput("label", class_count=1),
                                                 module.InferRequestedOutput("nope", class_count=1)])
        assert "classification of output 'nope'" in str(e.value)


def test_the_config_carries_label_filename(server):
    with httpclient.InferenceServerClient(server.url) as c:
        outputs = {o["name"]: o for o in c.get_model_config("iris_labeled")["output"]}
        assert outputs["probabilities"]["label_filename"] == "labels.txt"
    with grpcclient.InferenceServerClient(server.grpc_url) as c:
        outputs = {o.name: o for o in c.get_model_config("iris_labeled").config.output}
        assert outputs["probabilities"].label_filename == "labels.txt"


def test_the_config_carries_the_input_format(server):
    from tritonclient.grpc import model_config_pb2
    with httpclient.InferenceServerClient(server.url) as c:
        assert c.get_model_config("image")["input"][0]["format"] == "FORMAT_NCHW"
        assert c.get_model_config("iris_logreg")["input"][0]["format"] == "FORMAT_NONE"
        x = httpclient.InferInput("x", [1, 3, 2, 2], "FP32")
        data = np.arange(12, dtype=np.float32).reshape(1, 3, 2, 2)
        x.set_data_from_numpy(data)
        np.testing.assert_array_equal(c.infer("image", [x]).as_numpy("y"), data)
    with grpcclient.InferenceServerClient(server.grpc_url) as c:
        assert c.get_model_config("image").config.input[0].format == model_config_pb2.ModelInput.FORMAT_NCHW
