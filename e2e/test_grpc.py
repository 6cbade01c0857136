"""The gRPC front end through tritonclient.grpc (and its generated stubs for typed contents)."""

import queue
import subprocess
import sys
import tempfile
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException, deserialize_bytes_tensor

from conftest import BODY_LIMIT, MODELS, ROOT, as_array, expected


def assert_matches(model, batch, get):
    for name, tensor in expected(model)["outputs"].items():
        want = as_array(tensor)[:batch]
        got = get(name)
        assert got is not None, name
        assert got.dtype == want.dtype and got.shape == want.shape, name
        if np.issubdtype(want.dtype, np.floating):
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-5, err_msg=name)
        else:
            np.testing.assert_array_equal(got, want, err_msg=name)


def inputs_for(model, batch):
    out = []
    for name, tensor in expected(model)["inputs"].items():
        data = as_array(tensor)[:batch]
        inp = grpcclient.InferInput(name, list(data.shape), tensor["datatype"])
        inp.set_data_from_numpy(data)
        out.append(inp)
    return out


@pytest.mark.parametrize("batch", [1, 8])
@pytest.mark.parametrize("model", MODELS)
def test_raw_contents_match_onnxruntime(grpc_client, model, batch):
    result = grpc_client.infer(model, inputs_for(model, batch), request_id=f"{model}-{batch}")
    response = result.get_response()
    assert (response.model_name, response.model_version, response.id) == (model, "1", f"{model}-{batch}")
    assert len(response.raw_output_contents) == len(response.outputs)
    assert_matches(model, batch, result.as_numpy)


TYPED_FIELD = {"FP32": "fp32_contents", "INT64": "int64_contents", "BYTES": "bytes_contents"}
NUMPY = {"FP32": np.float32, "INT64": np.int64}


@pytest.mark.parametrize("model", MODELS)
def test_typed_contents_are_answered_raw(server, model):
    """tritonclient only sends raw contents; its generated stub sends typed ones. Answers are in
    raw_output_contents either way, as Triton's."""
    batch = 8
    request = service_pb2.ModelInferRequest(model_name=model, id="typed")
    for name, tensor in expected(model)["inputs"].items():
        data = as_array(tensor)[:batch]
        inp = request.inputs.add(name=name, datatype=tensor["datatype"], shape=list(data.shape))
        getattr(inp.contents, TYPED_FIELD[tensor["datatype"]]).extend(data.ravel().tolist())
    with grpc.insecure_channel(server.grpc_url) as channel:
        response = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request)
    assert response.id == "typed" and len(response.raw_output_contents) == len(response.outputs)
    assert all(not o.HasField("contents") for o in response.outputs)
    raw = {o.name: (o, response.raw_output_contents[i]) for i, o in enumerate(response.outputs)}

    def get(name):
        o, data = raw[name]
        if o.datatype == "BYTES":
            return deserialize_bytes_tensor(data).reshape(list(o.shape))
        return np.frombuffer(data, dtype=NUMPY[o.datatype]).reshape(list(o.shape))

    assert_matches(model, batch, get)


def test_stream_answers_every_request_and_survives_a_bad_one(server):
    answers = queue.Queue()
    client = grpcclient.InferenceServerClient(url=server.grpc_url)
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    model, rows = "mlp", as_array(expected("mlp")["inputs"]["x"])
    sent = 120
    for i in range(sent):
        if i == 50:
            bad = grpcclient.InferInput("x", [1, 15], "FP32")
            bad.set_data_from_numpy(np.ones((1, 15), np.float32))
            client.async_stream_infer(model, [bad], request_id="bad")
            continue
        inp = grpcclient.InferInput("x", [1, 16], "FP32")
        inp.set_data_from_numpy(rows[i % 8 : i % 8 + 1])
        client.async_stream_infer(model, [inp], request_id=f"req-{i}")
    results, errors = {}, []
    for _ in range(sent):
        result, error = answers.get(timeout=30)
        if error is not None:
            errors.append(error)
        else:
            results[result.get_response().id] = result
    client.stop_stream()
    client.close()

    assert len(errors) == 1 and "input 'x' has shape [1, 15]" in str(errors[0])
    assert sorted(results) == sorted(f"req-{i}" for i in range(sent) if i != 50)
    probs = as_array(expected("mlp")["outputs"]["probs"])
    for i in (0, 49, 51, sent - 1):
        np.testing.assert_allclose(results[f"req-{i}"].as_numpy("probs")[0], probs[i % 8], atol=1e-5)


def test_metadata_config_and_readiness(grpc_client):
    assert grpc_client.is_server_live()
    assert not grpc_client.is_server_ready()  # the repository holds broken models
    assert grpc_client.is_model_ready("two_io") and grpc_client.is_model_ready("two_io", "1")
    assert not grpc_client.is_model_ready("garbage")
    assert not grpc_client.is_model_ready("no_such_model")
    meta = grpc_client.get_server_metadata()
    assert meta.name == "inferd" and "binary_tensor_data" in meta.extensions
    meta = grpc_client.get_model_metadata("two_io", as_json=True)
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": ["-1", "3"]},
                              {"name": "k", "datatype": "INT64", "shape": ["-1", "1"]}]
    config = grpc_client.get_model_config("iris_logreg").config
    assert config.name == "iris_logreg" and config.max_batch_size > 0
    assert [(i.name, i.data_type, list(i.dims)) for i in config.input] == [("X", 11, [4])]  # TYPE_FP32
    assert [(o.name, list(o.dims)) for o in config.output] == [("label", []), ("probabilities", [3])]
    index = {m.name: m.state for m in grpc_client.get_model_repository_index().models}
    assert index["mlp"] == "READY" and index["garbage"] == "UNAVAILABLE"


def test_server_ready_when_every_model_loads(good_server):
    client = grpcclient.InferenceServerClient(url=good_server.grpc_url)
    assert client.is_server_ready()
    client.close()


def status_of(call):
    with pytest.raises(InferenceServerException) as info:
        call()
    return info.value.status(), info.value.message()


def test_errors_map_to_grpc_codes(grpc_client):
    inp = grpcclient.InferInput("X", [1, 4], "FP64")
    inp.set_data_from_numpy(np.ones((1, 4), np.float64))
    status, message = status_of(lambda: grpc_client.infer("iris_logreg", [inp]))
    assert status == "StatusCode.INVALID_ARGUMENT" and "expects FP32" in message
    status, message = status_of(lambda: grpc_client.infer("no_such_model", inputs_for("mlp", 1)))
    assert status == "StatusCode.NOT_FOUND" and "no_such_model" in message
    status, message = status_of(lambda: grpc_client.infer("mlp", inputs_for("mlp", 1), model_version="3"))
    assert status == "StatusCode.NOT_FOUND"
    status, message = status_of(lambda: grpc_client.infer("garbage", inputs_for("mlp", 1)))
    assert status == "StatusCode.UNAVAILABLE" and "failed to load" in message
    status, message = status_of(lambda: grpc_client.get_inference_statistics("no_such_model"))
    assert status == "StatusCode.NOT_FOUND" and "no_such_model" in message


def test_oversize_message_is_resource_exhausted_and_serving_goes_on(grpc_client):
    big = np.zeros((1, BODY_LIMIT // 4 + 16), np.float32)
    inp = grpcclient.InferInput("x", list(big.shape), "FP32")
    inp.set_data_from_numpy(big)
    status, message = status_of(lambda: grpc_client.infer("mlp", [inp]))
    assert status == "StatusCode.RESOURCE_EXHAUSTED" and str(BODY_LIMIT) in message
    assert grpc_client.infer("mlp", inputs_for("mlp", 1)).as_numpy("probs").shape == (1, 4)


def test_standard_health_service(server, good_server):
    def check(url, service=""):
        with grpc.insecure_channel(url) as channel:
            call = channel.unary_unary("/grpc.health.v1.Health/Check",
                                       request_serializer=lambda s: (b"\n" + bytes([len(s)]) + s.encode()) if s else b"",
                                       response_deserializer=lambda b: b)
            return call(service)
    assert check(good_server.grpc_url) == b"\x08\x01"  # SERVING
    assert check(good_server.grpc_url, "inference.GRPCInferenceService") == b"\x08\x01"
    assert check(server.grpc_url) == b"\x08\x02"  # NOT_SERVING: broken models in the repository
    with pytest.raises(grpc.RpcError) as info:
        check(good_server.grpc_url, "no.such.Service")
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_proto_field_numbers_match_tritonclient():
    """Every message and field in proto/ has the name, number, type and label of Triton's."""
    from google.protobuf import descriptor_pb2, descriptor_pool
    from tritonclient.grpc import model_config_pb2  # noqa: F401  (registers Triton's descriptors)

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "inferd.pb"
        subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{ROOT / 'proto'}", f"--descriptor_set_out={out}",
                        "--include_imports", "grpc_service.proto"], check=True)
        ours = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    theirs = descriptor_pool.Default()
    checked = 0

    def compare(prefix, message):
        nonlocal checked
        full = f"{prefix}.{message.name}"
        triton = theirs.FindMessageTypeByName(full)
        for field in message.field:
            t = triton.fields_by_name.get(field.name)
            assert t is not None, f"{full}.{field.name} is not in Triton's proto"
            repeated = field.label == descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED
            assert (field.number, field.type, repeated) == (t.number, t.type, t.is_repeated), f"{full}.{field.name}"
            checked += 1
        for nested in message.nested_type:
            compare(full, nested)

    for file in ours.file:
        for message in file.message_type:
            compare(file.package, message)
        for enum in file.enum_type:
            triton = theirs.FindEnumTypeByName(f"{file.package}.{enum.name}")
            assert {v.name: v.number for v in enum.value} == {v.name: v.number for v in triton.values}
        for service in file.service:
            triton = theirs.FindServiceByName(f"{file.package}.{service.name}")
            for method in service.method:
                t = triton.methods_by_name[method.name]
                assert (method.input_type[1:], method.output_type[1:]) == (t.input_type.full_name, t.output_type.full_name)
    assert checked > 100
