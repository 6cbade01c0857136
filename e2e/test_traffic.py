"""Version aliases and traffic policies: weighted and sticky splits, shadow copies compared with
the primary, cross-model experiments, the change history, and state that survives restarts and
is shared by replicas on one PostgreSQL."""

import collections
import json
import shutil
import threading
import time
import urllib.request

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.grpc import service_pb2, service_pb2_grpc

from conftest import FIXTURES, Postgres, Server, call

IRIS_ROWS = np.array(json.loads((FIXTURES / "expected" / "iris_logreg.json").read_text())["inputs"]["X"]["data"],
                     dtype=np.float32).reshape(-1, 4)


def repository(path):
    """iris with two versions (1: logistic regression, 2: random forest; they disagree on some
    rows), a version-less endpoint splitting over two models, and one that cannot be (its
    candidates take different inputs)."""
    (path / "iris").mkdir()
    for version, fixture in ((1, "iris_logreg"), (2, "iris_forest")):
        shutil.copytree(FIXTURES / "models" / fixture / "1", path / "iris" / str(version))
    (path / "iris" / "config.toml").write_text('version_policy = "all"\n')
    for name in ("iris_logreg", "iris_forest", "mlp"):
        shutil.copytree(FIXTURES / "models" / name, path / name)
    (path / "experiment").mkdir()
    (path / "experiment" / "config.toml").write_text(
        '[traffic]\nsplit = [{ model = "iris_logreg", weight = 50 }, { model = "iris_forest", weight = 50 }]\n')
    (path / "mismatched").mkdir()
    (path / "mismatched" / "config.toml").write_text(
        '[traffic]\nsplit = [{ model = "iris_logreg", weight = 50 }, { model = "mlp", weight = 50 }]\n')
    (path / "badpolicy" / "1").mkdir(parents=True)
    shutil.copy(FIXTURES / "models" / "iris_logreg" / "1" / "model.onnx", path / "badpolicy" / "1")
    (path / "badpolicy" / "config.toml").write_text('[traffic]\nsplit = [{ version = "7", weight = 1 }]\n')
    return path


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    repo = repository(tmp_path_factory.mktemp("traffic"))
    state = tmp_path_factory.mktemp("state")
    server = Server(repo, tmp_path_factory.mktemp("log") / "traffic.log", "--state-dir", state,
                    "--strict-readiness", "false")
    server.repo, server.state = repo, state
    yield server
    server.stop()


def stream(server, n, version="", parameters=None, rows=None):
    """n iris requests on one gRPC stream; the answering version of each, in order of ids."""
    def requests():
        for i in range(n):
            r = service_pb2.ModelInferRequest(model_name="iris", model_version=version, id=str(i))
            for k, v in (parameters(i) if parameters else {}).items():
                r.parameters[k].string_param = v
            t = r.inputs.add()
            t.name, t.datatype = "X", "FP32"
            t.shape.extend([1, 4])
            row = IRIS_ROWS[i % len(IRIS_ROWS)] if rows is None else rows[i]
            r.raw_input_contents.append(np.asarray(row, np.float32).tobytes())
            yield r
    answers = {}
    with grpc.insecure_channel(server.grpc_url) as channel:
        for response in service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelStreamInfer(requests()):
            assert not response.error_message, response.error_message
            answers[int(response.infer_response.id)] = response.infer_response.model_version
    return [answers[i] for i in range(n)]


def test_a_weighted_split_lands_within_its_weights(srv):
    status, body = call(srv, "PUT", "/v2/models/iris/traffic",
                        {"split": [{"version": "1", "weight": 90}, {"version": "2", "weight": 10}]})
    assert status == 200, body
    assert body["source"] == "api" and [a["share"] for a in body["arms"]] == [0.9, 0.1]
    versions = collections.Counter(stream(srv, 10_000))
    share = versions["2"] / 10_000
    assert abs(share - 0.10) <= 0.015, versions
    # An explicit version is never split.
    assert set(stream(srv, 50, version="2")) == {"2"}
    call(srv, "PUT", "/v2/models/iris/traffic", {})


def test_sticky_keys_stay_on_their_arm_and_a_rising_canary_only_gains_keys(srv):
    def policy(canary):
        return {"split": [{"version": "1", "weight": 100 - canary}, {"version": "2", "weight": canary}],
                "sticky": "x-user-id"}
    assert call(srv, "PUT", "/v2/models/iris/traffic", policy(10))[0] == 200
    keys = [f"user-{k}" for k in range(1000)]
    answers = stream(srv, 5000, parameters=lambda i: {"x-user-id": keys[i % 1000]})
    arm = {}
    for i, version in enumerate(answers):
        assert arm.setdefault(keys[i % 1000], version) == version, f"{keys[i % 1000]} moved"
    in_canary = {k for k, v in arm.items() if v == "2"}
    assert 50 < len(in_canary) < 150
    # The header does the same over HTTP.
    with httpclient.InferenceServerClient(srv.url) as c:
        x = httpclient.InferInput("X", [1, 4], "FP32")
        x.set_data_from_numpy(IRIS_ROWS[:1])
        for key in keys[:20]:
            r = c.infer("iris", [x], headers={"X-User-Id": key})
            assert r.get_response()["model_version"] == arm[key]
    assert call(srv, "PUT", "/v2/models/iris/traffic", policy(30))[0] == 200
    answers = stream(srv, 1000, parameters=lambda i: {"x-user-id": keys[i]})
    now = {keys[i]: v for i, v in enumerate(answers)}
    assert all(now[k] == "2" for k in in_canary), "a key left the canary"
    assert len([k for k, v in now.items() if v == "2"]) > len(in_canary)
    call(srv, "PUT", "/v2/models/iris/traffic", {})


def shadow_counts(server):
    with urllib.request.urlopen(f"http://{server.metrics_url}/metrics") as r:
        text = r.read().decode()
    counts = {}
    for line in text.splitlines():
        if line.startswith("inferd_shadow_requests_total{") and 'model="iris"' in line and 'version="2"' in line:
            result = line.split('result="')[1].split('"')[0]
            counts[result] = float(line.rsplit(" ", 1)[1])
    return counts


def test_a_shadow_is_compared_and_its_mismatches_counted_exactly(srv):
    rows = [IRIS_ROWS[i % len(IRIS_ROWS)] + 0.37 * (i % 7) for i in range(300)]
    labels = {}
    with grpcclient.InferenceServerClient(srv.grpc_url) as c:
        for version in ("1", "2"):
            got = []
            for row in rows:
                x = grpcclient.InferInput("X", [1, 4], "FP32")
                x.set_data_from_numpy(np.asarray([row], np.float32))
                got.append(int(c.infer("iris", [x], model_version=version).as_numpy("label")[0]))
            labels[version] = got
    differing = sum(a != b for a, b in zip(labels["1"], labels["2"]))
    assert 0 < differing < len(rows), "the fixture versions must disagree on some rows"
    before = shadow_counts(srv)
    status, _ = call(srv, "PUT", "/v2/models/iris/traffic",
                     {"split": [{"version": "1", "weight": 1}], "shadow": [{"version": "2", "percent": 100}]})
    assert status == 200
    with grpcclient.InferenceServerClient(srv.grpc_url) as c:
        for row in rows:
            x = grpcclient.InferInput("X", [1, 4], "FP32")
            x.set_data_from_numpy(np.asarray([row], np.float32))
            assert c.infer("iris", [x]).get_response().model_version == "1"
            time.sleep(0.002)  # one at a time: no copy should find the shadow's queue full
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        now = shadow_counts(srv)
        done = sum(now.get(k, 0) - before.get(k, 0) for k in ("match", "mismatch", "error", "dropped"))
        if done >= len(rows):
            break
        time.sleep(0.1)
    delta = {k: now.get(k, 0) - before.get(k, 0) for k in ("match", "mismatch", "error", "dropped")}
    assert delta == {"match": len(rows) - differing, "mismatch": differing, "error": 0, "dropped": 0}, delta
    status, body = call(srv, "GET", "/v2/models/iris/traffic")
    [figures] = body["shadow_figures"]
    assert figures["version"] == 2 and 0 < figures["agreement"] < 1
    call(srv, "PUT", "/v2/models/iris/traffic", {})


def test_aliases_pin_versions_and_every_answer_says_where_it_went(srv):
    assert call(srv, "PUT", "/v2/models/iris/aliases/production", {"version": "1"})[0] == 200
    status, body = call(srv, "GET", "/v2/models/iris/aliases")
    assert body == {"aliases": {"production": "1"}}
    with httpclient.InferenceServerClient(srv.url) as c:
        x = httpclient.InferInput("X", [1, 4], "FP32")
        x.set_data_from_numpy(IRIS_ROWS[:1])
        assert c.infer("iris", [x]).get_response()["model_version"] == "1"  # not the highest
        r = c.infer("iris", [x], model_version="production")
        assert r.get_response()["model_version"] == "1"
        assert c.get_model_metadata("iris", "production")["name"] == "iris"
    request = urllib.request.Request(
        f"http://{srv.url}/v2/models/iris/infer", method="POST",
        data=json.dumps({"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}).encode())
    with urllib.request.urlopen(request) as r:
        assert r.headers["x-inferd-route"] == "iris/1"
    with grpcclient.InferenceServerClient(srv.grpc_url) as c:
        x = grpcclient.InferInput("X", [1, 4], "FP32")
        x.set_data_from_numpy(IRIS_ROWS[:1])
        stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(srv.grpc_url))
        req = service_pb2.ModelInferRequest(model_name="iris", model_version="production")
        t = req.inputs.add()
        t.name, t.datatype = "X", "FP32"
        t.shape.extend([1, 4])
        req.raw_input_contents.append(IRIS_ROWS[0].tobytes())
        response, call_info = stub.ModelInfer.with_call(req)
        assert response.model_version == "1"
        assert dict(call_info.initial_metadata())["x-inferd-route"] == "iris/1"
    assert call(srv, "DELETE", "/v2/models/iris/aliases/production")[0] == 200
    assert call(srv, "GET", "/v2/models/iris/aliases")[1] == {"aliases": {}}


def test_bad_policies_and_aliases_are_refused_with_reasons(srv):
    status, body = call(srv, "PUT", "/v2/models/iris/traffic", {"split": [{"version": "1", "weight": -5}]})
    assert status == 400 and "weight -5" in body["error"]
    status, body = call(srv, "PUT", "/v2/models/iris/traffic", {"split": [{"version": "1", "weight": 0}]})
    assert status == 400 and "all zero" in body["error"]
    status, body = call(srv, "PUT", "/v2/models/iris/traffic", {"split": [{"version": "9", "weight": 1}]})
    assert status == 400 and "version 9" in body["error"]
    # Weights whose total overflows would make every share 0.
    status, body = call(srv, "PUT", "/v2/models/iris/traffic",
                        {"split": [{"version": "1", "weight": 1e308}, {"version": "2", "weight": 1e308}]})
    assert status == 400 and "add up past" in body["error"]
    # A step past a year is refused, not left to crash the rollout controller.
    status, body = call(srv, "POST", "/v2/models/iris/rollout", {"version": "2", "step_seconds": 1e300})
    assert status == 400 and "step_seconds" in body["error"]
    status, body = call(srv, "PUT", "/v2/models/iris/aliases/production", {"version": "9"})
    assert status == 404 and "version 9" in body["error"]
    status, body = call(srv, "PUT", "/v2/models/iris/aliases/Bad_Name", {"version": "1"})
    assert status == 400 and "[a-z][a-z0-9_-]*" in body["error"]
    with httpclient.InferenceServerClient(srv.url) as c:
        x = httpclient.InferInput("X", [1, 4], "FP32")
        x.set_data_from_numpy(IRIS_ROWS[:1])
        with pytest.raises(Exception) as e:
            c.infer("iris", [x], model_version="canary")
        assert "canary" in str(e.value) and e.value.status() == "404"
    # config.toml's policy names a version the model lacks: its load fails with the reason.
    status, body = call(srv, "POST", "/v2/repository/index", {})
    row = next(r for r in body if r["name"] == "badpolicy")
    assert row["state"] == "UNAVAILABLE" and "names version 7" in row["reason"]


def test_a_policy_over_arms_that_batch_differently_is_refused(srv, tmp_path):
    import onnx
    from onnx import TensorProto, helper
    fixed = helper.make_model(helper.make_graph(
        [helper.make_node("Identity", ["X"], ["label"])], "fixed",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("label", TensorProto.FLOAT, [1, 4])]),
        opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    (srv.repo / "iris" / "3").mkdir()
    onnx.save(fixed, srv.repo / "iris" / "3" / "model.onnx")
    # Not polled: load it through a second server over the same repository.
    other = Server(srv.repo, tmp_path / "other.log", "--strict-readiness", "false")
    try:
        status, body = call(other, "PUT", "/v2/models/iris/traffic",
                            {"split": [{"version": "1", "weight": 50}, {"version": "3", "weight": 50}]})
        assert status == 400 and "max_batch_size" in body["error"], body
    finally:
        other.stop()
        shutil.rmtree(srv.repo / "iris" / "3")


def test_a_cross_model_experiment_splits_over_models(srv):
    with httpclient.InferenceServerClient(srv.url) as c:
        x = httpclient.InferInput("X", [1, 4], "FP32")
        x.set_data_from_numpy(IRIS_ROWS[:1])
        names = collections.Counter(c.infer("experiment", [x]).get_response()["model_name"] for _ in range(200))
        assert set(names) == {"iris_logreg", "iris_forest"} and min(names.values()) > 50, names
        assert c.get_model_metadata("experiment")["name"] == "experiment"
    status, body = call(srv, "POST", "/v2/repository/index", {})
    row = next(r for r in body if r["name"] == "mismatched")
    assert row["state"] == "UNAVAILABLE" and "must agree" in row["reason"], row
    # The endpoint itself is in the index, ready while an arm serves.
    row = next(r for r in body if r["name"] == "experiment")
    assert row["state"] == "READY" and "iris_forest" in row["reason"], row


def test_changes_have_a_history_and_survive_a_restart(srv, tmp_path):
    call(srv, "PUT", "/v2/models/iris/aliases/staging", {"version": "2"})
    call(srv, "PUT", "/v2/models/iris/traffic", {"split": [{"version": "1", "weight": 3}, {"version": "2", "weight": 1}]})
    status, body = call(srv, "GET", "/v2/models/iris/history")
    kinds = [(h["kind"], h.get("name", "")) for h in body["history"]]
    assert ("alias", "staging") in kinds and ("traffic", "") in kinds
    last = body["history"][-1]
    assert last["new"] and last["time"].endswith("Z") and "old" in last
    again = Server(srv.repo, tmp_path / "again.log", "--state-dir", srv.state, "--strict-readiness", "false")
    try:
        assert call(again, "GET", "/v2/models/iris/aliases")[1]["aliases"]["staging"] == "2"
        assert call(again, "GET", "/v2/models/iris/traffic")[1]["split"][1] == {"version": "2", "weight": 1.0}
        assert len(call(again, "GET", "/v2/models/iris/history")[1]["history"]) == len(body["history"])
    finally:
        again.stop()
    call(srv, "PUT", "/v2/models/iris/traffic", {})
    call(srv, "DELETE", "/v2/models/iris/aliases/staging")


def test_replicas_on_one_postgres_see_each_others_changes_within_2s(tmp_path):
    pg = Postgres()
    repo = tmp_path / "repo"
    (repo / "iris").mkdir(parents=True)
    for version, fixture in ((1, "iris_logreg"), (2, "iris_forest")):
        shutil.copytree(FIXTURES / "models" / fixture / "1", repo / "iris" / str(version))
    (repo / "iris" / "config.toml").write_text('version_policy = "all"\n')
    a = b = None
    try:
        a = Server(repo, tmp_path / "a.log", "--state-url", pg.url)
        b = Server(repo, tmp_path / "b.log", "--state-url", pg.url)
        assert call(a, "PUT", "/v2/models/iris/aliases/production", {"version": "1"})[0] == 200
        changed = time.monotonic()
        while call(b, "GET", "/v2/models/iris/aliases")[1]["aliases"].get("production") != "1":
            assert time.monotonic() - changed < 2.0, "replica b did not see the alias within 2 s"
            time.sleep(0.05)
        with httpclient.InferenceServerClient(b.url) as c:
            x = httpclient.InferInput("X", [1, 4], "FP32")
            x.set_data_from_numpy(IRIS_ROWS[:1])
            assert c.infer("iris", [x]).get_response()["model_version"] == "1"
        assert any(h["new"] == "1" for h in call(b, "GET", "/v2/models/iris/history")[1]["history"])
    finally:
        for s in (a, b):
            if s:
                s.stop()
        pg.stop()


def test_the_models_cli_reads_and_changes_a_running_server(srv):
    from conftest import binary
    import subprocess

    def cli(*args):
        done = subprocess.run([str(binary()), "models", "--url", f"http://{srv.url}", *args],
                              capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "iris" in cli("list") and "READY" in cli("list")
    cli("aliases", "iris", "set", "staging", "2")
    assert json.loads(cli("aliases", "iris", "--json")) == {"aliases": {"staging": "2"}}
    table = cli("aliases", "iris")
    assert table.splitlines()[0].split() == ["ALIAS", "VERSION"] and "staging  2" in table
    cli("traffic", "iris", "set", "--split", "1=90,2=10", "--sticky", "x-user-id")
    shown = cli("traffic", "iris")
    assert "source: api" in shown and "90.0%" in shown and "sticky: x-user-id" in shown
    cli("traffic", "iris", "clear")
    assert json.loads(cli("traffic", "iris", "--json"))["source"] in ("none", "config")
    assert "alias staging" in cli("history", "iris")
    cli("aliases", "iris", "delete", "staging")
    done = subprocess.run([str(binary()), "models", "--url", f"http://{srv.url}", "aliases", "nope"],
                          capture_output=True, text=True)
    assert done.returncode != 0 and "Request for unknown model: 'nope' is not found" in done.stderr
