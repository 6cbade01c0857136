"""Traces over OTLP to a real gRPC receiver (the OpenTelemetry collector protocol, served here with
the `opentelemetry-proto` definitions), parented to the caller's W3C traceparent; JSON logs with
an access line per request and the request id on every line; log settings changed at run time."""

import json
import threading
import time
import urllib.request
from concurrent import futures

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from conftest import FIXTURES, Server

STAGES = {"route", "decode", "queue", "batch", "backend", "encode"}


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self):
        self.spans, self.resources = [], []
        self.lock = threading.Lock()

    def Export(self, request, context):  # noqa: N802 - the protocol's name
        with self.lock:
            for rs in request.resource_spans:
                self.resources.append({a.key: a.value.string_value for a in rs.resource.attributes})
                for ss in rs.scope_spans:
                    self.spans.extend(ss.spans)
        return trace_service_pb2.ExportTraceServiceResponse()

    def trace(self, trace_id, count, timeout=15):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                found = [s for s in self.spans if s.trace_id.hex() == trace_id]
            if len(found) >= count:
                return found
            time.sleep(0.1)
        raise AssertionError(f"{len(found)} spans of trace {trace_id} arrived, expected {count}")


@pytest.fixture(scope="module")
def traced(tmp_path_factory):
    receiver = Receiver()
    grpc_server = grpc.server(futures.ThreadPoolExecutor(4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, grpc_server)
    port = grpc_server.add_insecure_port("127.0.0.1:0")
    grpc_server.start()
    repo = tmp_path_factory.mktemp("traced")
    import shutil
    shutil.copytree(FIXTURES / "models" / "iris_logreg", repo / "iris")
    # Triton's two-model ensemble example, for the spans of its steps.
    shutil.copytree(FIXTURES / "models" / "iris_logreg", repo / "iris_logreg")
    for name in ("iris_top2", "iris_classes"):
        shutil.copytree(FIXTURES / "pipelines" / name, repo / name)
    # Ratio 0: only requests whose caller samples them are traced.
    srv = Server(repo, tmp_path_factory.mktemp("log") / "traced.log", "--log-format", "json",
                 "--otlp-endpoint", f"http://127.0.0.1:{port}", "--trace-sample-ratio", "0")
    yield srv, receiver
    srv.stop()
    grpc_server.stop(0)


def http_infer(url, headers=None, request_id=None):
    client = httpclient.InferenceServerClient(url=url)
    x = httpclient.InferInput("X", [1, 4], "FP32")
    x.set_data_from_numpy(np.array([[5.1, 3.5, 1.4, 0.2]], np.float32))
    result = client.infer("iris", [x], headers=headers, request_id=request_id or "")
    client.close()
    return result


def check_trace(receiver, trace_id, caller_span, protocol):
    spans = receiver.trace(trace_id, 1 + len(STAGES))
    roots = [s for s in spans if s.name == "infer"]
    assert len(roots) == 1, [s.name for s in spans]
    root = roots[0]
    assert root.parent_span_id.hex() == caller_span
    assert root.kind == 2  # SPAN_KIND_SERVER
    attributes = {a.key: a.value.string_value for a in root.attributes}
    assert attributes["protocol"] == protocol and attributes["model"] == "iris"
    children = {s.name: s for s in spans if s.parent_span_id == root.span_id}
    assert set(children) == STAGES, sorted(children)
    for child in children.values():
        assert root.start_time_unix_nano <= child.start_time_unix_nano <= child.end_time_unix_nano
        assert child.end_time_unix_nano <= root.end_time_unix_nano
    batch = {a.key: a.value.int_value for a in children["batch"].attributes}
    assert batch["batch_size"] == 1
    # Stages follow each other: the queue ends before the batch starts, the backend after it.
    assert children["queue"].end_time_unix_nano <= children["batch"].start_time_unix_nano
    assert children["batch"].end_time_unix_nano <= children["backend"].start_time_unix_nano
    assert children["backend"].end_time_unix_nano <= children["encode"].start_time_unix_nano


def test_a_sampled_caller_gets_one_trace_per_request_with_every_stage(traced):
    srv, receiver = traced
    trace_id, span_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    http_infer(srv.url, headers={"traceparent": f"00-{trace_id}-{span_id}-01"})
    check_trace(receiver, trace_id, span_id, "http")

    trace_id, span_id = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    client = grpcclient.InferenceServerClient(url=srv.grpc_url)
    x = grpcclient.InferInput("X", [1, 4], "FP32")
    x.set_data_from_numpy(np.array([[5.1, 3.5, 1.4, 0.2]], np.float32))
    client.infer("iris", [x], headers={"traceparent": f"00-{trace_id}-{span_id}-01"})
    client.close()
    check_trace(receiver, trace_id, span_id, "grpc")
    assert {"service.name": "inferd"}.items() <= receiver.resources[-1].items()


def test_an_ensemble_has_a_span_per_step_with_the_step_models_stages_under_it(traced):
    srv, receiver = traced
    trace_id, span_id = "5cf92f3577b34da6a3ce929d0e0e4799", "11f067aa0ba902b7"
    client = grpcclient.InferenceServerClient(url=srv.grpc_url)
    x = grpcclient.InferInput("FEATURES", [1, 4], "FP32")
    x.set_data_from_numpy(np.array([[5.1, 3.5, 1.4, 0.2]], np.float32))
    client.infer("iris_classes", [x], headers={"traceparent": f"00-{trace_id}-{span_id}-01"})
    client.close()
    names = ["step 1 (model 'iris_logreg')", "step 2 (model 'iris_top2')"]
    deadline = time.monotonic() + 15
    while True:
        spans = receiver.trace(trace_id, 1)
        steps = {s.name: s for s in spans if s.name in names}
        roots = [s for s in spans if s.name == "infer"]
        backends = [s for s in spans if s.name == "backend"]
        if (len(steps) == 2 and roots and len(backends) == 2) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert len(roots) == 1 and sorted(steps) == names, sorted(s.name for s in spans)
    root = roots[0]
    assert {a.key: a.value.string_value for a in root.attributes}["model"] == "iris_classes"
    for name, step in steps.items():
        assert step.parent_span_id == root.span_id, name
        attributes = {a.key: (a.value.string_value or a.value.int_value) for a in step.attributes}
        assert attributes["model"] == name.split("'")[1]
        under = {s.name for s in spans if s.parent_span_id == step.span_id}
        assert {"queue", "backend"} <= under, (name, sorted(under))
        assert root.start_time_unix_nano <= step.start_time_unix_nano <= step.end_time_unix_nano <= root.end_time_unix_nano
    # Step 2 reads what step 1 wrote: it starts after step 1's model has run.
    first_backend = next(s for s in spans if s.name == "backend" and s.parent_span_id == steps[names[0]].span_id)
    assert first_backend.end_time_unix_nano <= steps[names[1]].start_time_unix_nano


def test_unsampled_requests_create_no_spans(traced):
    srv, receiver = traced
    unsampled = "11111111111111111111111111111111"
    http_infer(srv.url, headers={"traceparent": f"00-{unsampled}-2222222222222222-00"})
    http_infer(srv.url)  # no caller decision, ratio 0
    marker = "33333333333333333333333333333333"
    http_infer(srv.url, headers={"traceparent": f"00-{marker}-4444444444444444-01"})
    receiver.trace(marker, 1 + len(STAGES))  # exported after the two before it
    with receiver.lock:
        traces = {s.trace_id.hex() for s in receiver.spans}
    assert unsampled not in traces
    assert len(traces) == 4, traces  # the three sampled traces of the tests, and the marker


def log_lines(srv):
    return [json.loads(line) for line in srv.logs().splitlines() if line.startswith("{")]


def post_logging(srv, settings):
    request = urllib.request.Request(f"http://{srv.url}/v2/logging", data=json.dumps(settings).encode(),
                                     method="POST")
    with urllib.request.urlopen(request, timeout=10) as r:
        return json.loads(r.read())


def test_access_log_and_request_ids_and_run_time_settings(traced):
    srv, _ = traced
    http_infer(srv.url, request_id="req-42")
    time.sleep(0.2)
    access = [line for line in log_lines(srv) if line["target"] == "inferd::access"]
    mine = [line for line in access if line["fields"]["id"] == "req-42"]
    assert len(mine) == 1
    fields = mine[0]["fields"]
    assert (fields["model"], fields["version"], fields["status"]) == ("iris", "1", "200")
    assert fields["latency_us"] > 0 and mine[0]["span"]["id"] == "req-42"
    # Requests without an id get one, on their lines too.
    http_infer(srv.url)
    time.sleep(0.2)
    last = [line for line in log_lines(srv) if line["target"] == "inferd::access"][-1]
    assert last["fields"]["id"].startswith("inferd-") and last["span"]["id"] == last["fields"]["id"]

    with urllib.request.urlopen(f"http://{srv.url}/v2/logging", timeout=10) as r:
        settings = json.loads(r.read())
    assert settings["access_log"] is True and settings["log_format"] == "json"
    assert post_logging(srv, {"access_log": False})["access_log"] is False
    before = len(log_lines(srv))
    http_infer(srv.url, request_id="quiet")
    time.sleep(0.2)
    assert not any(line["fields"].get("id") == "quiet" for line in log_lines(srv)[before:])
    post_logging(srv, {"access_log": True})
    # Triton's switches map onto a level; a bad level is refused and changes nothing.
    assert post_logging(srv, {"log_verbose_level": 1})["log_level"] == "debug"
    assert post_logging(srv, {"log_level": "info,tract_onnx=error"})["log_verbose_level"] == 0
    request = urllib.request.Request(f"http://{srv.url}/v2/logging", data=b'{"log_level": "loud=+"}',
                                     method="POST")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(request, timeout=10)
    assert e.value.code == 400 and "log_level" in json.loads(e.value.read())["error"]
