"""docs/openapi.json, the OpenAPI 3.1 description of the HTTP port, against the server itself: it
names every route of the router (crates/server/src/http/mod.rs) with its methods and nothing
else, the server serves it verbatim at GET /v2/openapi.json, and schemathesis, generating
requests from it against a live server, finds no server error and no answer (status, content
type, headers, body) that the document does not describe."""

import json
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import FIXTURES, MODELS, ROOT, SECRETS, Server, binary, free_ports, raw_call

DOC = ROOT / "docs" / "openapi.json"
ROUTER = ROOT / "crates" / "server" / "src" / "http" / "mod.rs"
METHODS = ("get", "post", "put", "delete", "patch", "head", "options")

# axum's catch-all routes, as the concrete paths the document names (TF Serving's V1 paths,
# Triton's CUDA shared memory paths) with their methods.
CATCH_ALLS = {
    "/v1/models/{*rest}": {
        "/v1/models/{model}": {"get"},
        "/v1/models/{model}/versions/{version}": {"get"},
        "/v1/models/{model}/labels/{label}": {"get"},
        "/v1/models/{model}/metadata": {"get"},
        "/v1/models/{model}/versions/{version}/metadata": {"get"},
        "/v1/models/{model}/labels/{label}/metadata": {"get"},
        "/v1/models/{model}:predict": {"post"},
        "/v1/models/{model}/versions/{version}:predict": {"post"},
        "/v1/models/{model}/labels/{label}:predict": {"post"},
    },
    "/v2/cudasharedmemory/{*rest}": {
        "/v2/cudasharedmemory/region/{name}/status": {"get"},
        "/v2/cudasharedmemory/region/{name}/register": {"post"},
        "/v2/cudasharedmemory/region/{name}/unregister": {"post"},
        "/v2/cudasharedmemory/unregister": {"post"},
    },
}

CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
]
# Test cases per operation and phase; with --generation-deterministic the run is the same every
# time (no seed, no example database).
MAX_EXAMPLES = 100
# Operations whose request bodies have the most to explore get more.
MORE_EXAMPLES = {
    "POST /v2/models/{model}/infer": 400,
    "POST /v2/models/{model}/versions/{version}/infer": 200,
    "POST /v1/models/{model}:predict": 300,
    "PUT /v2/models/{model}/traffic": 300,
    "POST /v2/models/{model}/rollout": 200,
    "POST /v2/logging": 200,
    "POST /v2/trace/setting": 200,
    "POST /v2/repository/models/{model}/load": 200,
}
# A path parameter that breaks its own schema can name another route: GET /v2/models/stats is the
# statistics of every model, not the metadata of a model called "stats". Only valid values there.
POSITIVE_ONLY = ["GET /v2/models/{model}"]


def routes():
    """{path: methods} of every `.route("path", ...)` of the router, read from its source."""
    source = re.sub(r"^\s*//.*$", "", ROUTER.read_text(), flags=re.M)
    found = {}
    for match in re.finditer(r'\.route\(\s*"([^"]+)"\s*,', source):
        depth, at = 1, match.end()
        while depth:
            depth += {"(": 1, ")": -1}.get(source[at], 0)
            at += 1
        handlers = source[match.end():at - 1]
        methods = set(re.findall(r"(?<![\w])(get|post|put|delete|patch|head|options)\(", handlers))
        assert methods, f"no method found for route {match.group(1)}: {handlers}"
        found.setdefault(match.group(1), set()).update(methods)
    return found


def document():
    return json.loads(DOC.read_text())


def test_every_route_is_documented_with_its_methods_and_nothing_else():
    served = routes()
    assert len(served) >= 30 and "/v2/openapi.json" in served, served
    expected = {}
    for path, methods in served.items():
        if "{*" not in path:
            expected.setdefault(path, set()).update(methods)
            continue
        assert path in CATCH_ALLS, f"catch-all route {path}: name its concrete paths in CATCH_ALLS"
        concrete = CATCH_ALLS[path]
        assert set().union(*concrete.values()) == methods, (path, methods)
        prefix = path.split("{*")[0]
        for p, ms in concrete.items():
            assert p.startswith(prefix) and p not in served, p
            expected.setdefault(p, set()).update(ms)
    documented = {path: {m for m in item if m in METHODS} for path, item in document()["paths"].items()}
    missing = {p: sorted(ms - documented.get(p, set())) for p, ms in expected.items()
               if ms - documented.get(p, set())}
    extra = {p: sorted(ms - expected.get(p, set())) for p, ms in documented.items()
             if ms - expected.get(p, set())}
    assert not missing, f"served but not documented: {missing}"
    assert not extra, f"documented but not served: {extra}"


def test_the_document_is_valid_openapi_with_unique_operation_ids():
    from openapi_spec_validator import validate

    doc = document()
    assert doc["openapi"] == "3.1.0"
    validate(doc)
    ids = [op["operationId"] for item in doc["paths"].values() for m, op in item.items() if m in METHODS]
    assert len(ids) == len(set(ids)), ids
    # Written as the repository keeps it: 2-space indent, one trailing newline.
    assert DOC.read_text() == json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def repository(path):
    """Every fixture model (no broken ones: readiness is 200), plus what the traffic, sequence,
    ensemble and configuration shapes need: a model with two versions (rollouts), warmup and the
    response cache; a cross-model endpoint; two sequence models; an ensemble and its step."""
    for name in MODELS:
        shutil.copytree(FIXTURES / "models" / name, path / name)
    for name in ["accumulator", "accumulator_oldest"]:
        shutil.copytree(FIXTURES / "sequences" / name, path / name)
    for name in ["iris_classes", "iris_top2"]:
        shutil.copytree(FIXTURES / "pipelines" / name, path / name)
    for version in ["1", "2"]:
        (path / "iris_versions" / version).mkdir(parents=True)
        shutil.copy(FIXTURES / "models" / "iris_logreg" / "1" / "model.onnx", path / "iris_versions" / version)
    (path / "iris_versions" / "config.toml").write_text(
        'version_policy = "all"\n'
        'inputs = [{ name = "X", datatype = "FP32", dims = [4] }]\n'
        "[response_cache]\nenabled = true\n"
        '[[warmup]]\nbatch_size = 2\ncount = 1\ndata = "zero"\n'
    )
    (path / "iris_ab").mkdir()
    (path / "iris_ab" / "config.toml").write_text(
        "[traffic]\n"
        'split = [{ model = "iris_logreg", weight = 50 }, { model = "iris_forest", weight = 50 }]\n'
    )
    return path


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    """Its own server, so the fuzzing may change anything (aliases, traffic, rollouts, log and
    trace settings) without touching the session's. System shared memory is on so that its API
    answers beyond 403; model control stays `none` (load and unload answer 400)."""
    repo = repository(tmp_path_factory.mktemp("openapi-repo"))
    # A stream consumer whose broker is not there (nothing listens on the port): /v2/streams lists it.
    streams = tmp_path_factory.mktemp("streams") / "streams.toml"
    streams.write_text(f'[[stream]]\nname = "absent"\nbroker = "nats://127.0.0.1:{free_ports(1)[0]}"\n'
                       'input = "in"\noutput = "out"\ndead_letter = "dlq"\nmodel = "iris_logreg"\n')
    s = Server(repo, tmp_path_factory.mktemp("log") / "openapi.log", "--max-request-size", str(1 << 20),
               "--cache-size", "1MiB", "--allow-client-shm", "--streams", streams)
    yield s
    s.stop()


def test_the_server_serves_this_document(srv):
    status, headers, body = raw_call(srv, "GET", "/v2/openapi.json")
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert body == DOC.read_bytes(), "GET /v2/openapi.json is not docs/openapi.json: rebuild the server"


def conformance(server):
    """`conform(method, path, status, **case)`: sends one request of the document's operation
    and has schemathesis check the answer with the same checks as the fuzzing."""
    import schemathesis
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (content_type_conformance, response_headers_conformance,
                                                   response_schema_conformance, status_code_conformance)

    checks = [not_a_server_error, status_code_conformance, content_type_conformance,
              response_headers_conformance, response_schema_conformance]
    schema = schemathesis.openapi.from_path(str(DOC))

    def conform(method, path, status=200, **case):
        if "body" in case:
            case["media_type"] = "application/json"
        response = schema[path][method].Case(**case).call_and_validate(base_url=f"http://{server.url}",
                                                                       checks=checks)
        assert response.status_code in ({status} if isinstance(status, int) else status), \
            (method, path, case, response.text)
        return response

    return conform


def nested(tensor):
    """A fixture tensor as nested lists, NaN (null in the fixtures) as TF Serving's token."""
    def tokens(value):
        if isinstance(value, list):
            return [tokens(v) for v in value]
        return "NaN" if value is None else value
    return tokens(np.array(tensor["data"], dtype=object).reshape(tensor["shape"]).tolist())


def test_every_model_and_every_answer_shape_conforms(srv):
    """What fuzzing seldom reaches, asked for and checked against the document by schemathesis:
    every model's metadata, configuration (sequence, ensemble, warmup, cache, cross-model
    endpoint), readiness, statistics and V1 status and metadata; an inference on every fixture
    model, JSON and binary, V2 and V1; shared memory tensors; a shadow's figures; a rollout."""
    conform = conformance(srv)

    _, _, index = raw_call(srv, "POST", "/v2/repository/index")
    models = sorted({row["name"] for row in json.loads(index)}) + ["iris_ab"]
    for model in models:
        for path in ["/v2/models/{model}", "/v2/models/{model}/config", "/v2/models/{model}/ready",
                     "/v2/models/{model}/stats", "/v2/models/{model}/aliases", "/v2/models/{model}/traffic",
                     "/v2/models/{model}/history", "/v1/models/{model}", "/v1/models/{model}/metadata"]:
            conform("GET", path, path_parameters={"model": model})

    for model in MODELS:
        exp = json.loads((FIXTURES / "expected" / f"{model}.json").read_text())
        inputs = exp["inputs"]
        if not any(None in t["data"] for t in inputs.values()):
            for parameters in [{}, {"binary_data_output": True}]:
                body = {"id": model, "parameters": parameters,
                        "inputs": [{"name": n, **t} for n, t in inputs.items()]}
                response = conform("POST", "/v2/models/{model}/infer", path_parameters={"model": model},
                                   body=body)
                assert response.headers["x-inferd-route"] == [f"{model}/1"]
        columns = {n: nested(t) for n, t in inputs.items()}
        conform("POST", "/v1/models/{model}:predict", path_parameters={"model": model},
                body={"inputs": columns})
        rows = [dict(zip(columns, values)) for values in zip(*columns.values())]
        if len(columns) == 1:
            rows = next(iter(columns.values()))
        conform("POST", "/v1/models/{model}/versions/{version}:predict",
                path_parameters={"model": model, "version": "1"}, body={"instances": rows})

    iris = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
    x = {"name": "X", "shape": [2, 4], "datatype": "FP32", "data": iris}
    conform("POST", "/v2/models/{model}/infer", path_parameters={"model": "iris_classes"},
            body={"inputs": [{**x, "name": "FEATURES"}]})
    conform("POST", "/v2/models/{model}/infer", path_parameters={"model": "iris_ab"}, body={"inputs": [x]})
    conform("POST", "/v2/models/{model}/infer", path_parameters={"model": "accumulator"},
            body={"inputs": [{"name": "INPUT", "shape": [1, 1], "datatype": "INT32", "data": [5]}],
                  "parameters": {"sequence_id": 7, "sequence_start": True, "sequence_end": True}})
    conform("POST", "/v2/models/{model}/versions/{version}/infer",
            path_parameters={"model": "iris_versions", "version": "2"},
            body={"inputs": [x], "outputs": [{"name": "label", "parameters": {"binary_data": True}},
                                             {"name": "probabilities", "parameters": {"classification": 3}}]})

    # Tensors in system shared memory: the answer names the output without its data.
    from multiprocessing import shared_memory

    region = shared_memory.SharedMemory(create=True, size=64)
    try:
        region.buf[:16] = np.array(iris[0], dtype=np.float32).tobytes()
        conform("POST", "/v2/systemsharedmemory/region/{name}/register", path_parameters={"name": "r"},
                body={"key": f"/{region.name}", "offset": 0, "byte_size": 64})
        conform("GET", "/v2/systemsharedmemory/status")
        conform("GET", "/v2/systemsharedmemory/region/{name}/status", path_parameters={"name": "r"})

        def shm(offset, size):
            return {"shared_memory_region": "r", "shared_memory_offset": offset, "shared_memory_byte_size": size}

        response = conform("POST", "/v2/models/{model}/infer", path_parameters={"model": "iris_logreg"},
                           body={"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32",
                                             "parameters": shm(0, 16)}],
                                 "outputs": [{"name": "probabilities", "parameters": shm(16, 12)}]})
        assert "data" not in response.json()["outputs"][0]
        conform("POST", "/v2/systemsharedmemory/region/{name}/unregister", path_parameters={"name": "r"})
        conform("POST", "/v2/systemsharedmemory/unregister")
    finally:
        region.close()
        region.unlink()

    # A shadow with figures, then a rollout moved by hand, then the history of it all.
    versions = {"model": "iris_versions"}
    conform("PUT", "/v2/models/{model}/traffic", path_parameters=versions,
            body={"split": [{"version": "2", "weight": 1}], "shadow": [{"version": "1", "percent": 100}]})
    for _ in range(5):
        conform("POST", "/v2/models/{model}/infer", path_parameters=versions,
                body={"inputs": [x], "id": "shadowed"})
    deadline = time.monotonic() + 10

    def shadow_figures():
        return json.loads(raw_call(srv, "GET", "/v2/models/iris_versions/traffic")[2])["shadow_figures"]

    while not any(f["match"] for f in shadow_figures()):
        assert time.monotonic() < deadline, "the shadow compared nothing"
        time.sleep(0.1)
    conform("GET", "/v2/models/{model}/traffic", path_parameters=versions)
    conform("PUT", "/v2/models/{model}/traffic", path_parameters=versions, body={})
    conform("PUT", "/v2/models/{model}/aliases/{alias}", path_parameters={**versions, "alias": "production"},
            body={"version": 2})
    conform("POST", "/v2/models/{model}/rollout", path_parameters=versions,
            body={"version": "1", "steps": [50, 100], "min_agreement": 0.5})
    for action in ["pause", "resume", "promote"]:
        conform("POST", "/v2/models/{model}/rollout/{action}", path_parameters={**versions, "action": action})
    conform("GET", "/v2/models/{model}/rollout", path_parameters=versions)
    conform("GET", "/v2/models/{model}/history", path_parameters=versions)
    conform("DELETE", "/v2/models/{model}/aliases/{alias}", path_parameters={**versions, "alias": "production"})
    for path in ["/v2", "/v2/health/live", "/v2/health/ready", "/v2/models/stats", "/v2/logging",
                 "/v2/trace/setting", "/v2/streams", "/v1/models", "/v2/openapi.json"]:
        conform("GET", path)
    assert [s["name"] for s in json.loads(raw_call(srv, "GET", "/v2/streams")[2])["streams"]] == ["absent"]
    conform("POST", "/v2/repository/index", body={"ready": True})


def test_refusals_under_auth_conform(tmp_path):
    """With --auth (which the fuzzed server runs without): 401 with WWW-Authenticate, 403 out of
    scope and 429 with Retry-After, as the document describes them."""
    keys = tmp_path / "keys.toml"
    done = subprocess.run([str(binary()), "keys", "create", "--file", str(keys), "--id", "reader", "--scopes",
                           "metadata,model-config,model-repository", "--rate", "2", "--burst", "20"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    secret = done.stdout.strip().splitlines()[-1]
    SECRETS.append(secret)
    repo = tmp_path / "repo"
    shutil.copytree(FIXTURES / "models" / "iris_logreg", repo / "iris_logreg")
    s = Server(repo, tmp_path / "auth.log", "--auth", "--auth-keys", keys, token=secret)
    try:
        conform = conformance(s)
        model = {"model": "iris_logreg"}
        conform("GET", "/v2/models/{model}", 401, path_parameters=model)
        conform("POST", "/v2/repository/index", 401, headers={"Authorization": "Bearer ik.nobody.x"}, body={})
        bearer = {"Authorization": f"Bearer {secret}"}
        conform("GET", "/v2/models/{model}", 200, headers=bearer, path_parameters=model)
        conform("POST", "/v2/models/{model}/infer", 403, headers=bearer, path_parameters=model,
                body={"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]})
        # Over the key's burst of 20 at 2 requests per second: 429.
        for _ in range(22):
            response = conform("GET", "/v2/models/{model}/config", {200, 429}, headers=bearer, path_parameters=model)
        assert response.status_code == 429 and int(response.headers["retry-after"][0]) >= 0
    finally:
        s.stop()


def test_schemathesis_finds_no_server_error_and_no_undocumented_answer(srv, tmp_path):
    status, _, body = raw_call(srv, "GET", "/v2/health/ready")
    assert status == 200, body
    # An alias for the V1 /labels/ routes (the document's example label).
    status, _, body = raw_call(srv, "PUT", "/v2/models/iris_logreg/aliases/stable", {"version": "1"})
    assert status == 200, body

    config = tmp_path / "schemathesis.toml"
    sections = [f'[[operations]]\ninclude-name = "{name}"\ngeneration.mode = "positive"\n'
                for name in POSITIVE_ONLY]
    sections += [f'[[operations]]\ninclude-name = "{name}"\ngeneration.max-examples = {n}\n'
                 for name, n in MORE_EXAMPLES.items()]
    config.write_text("\n".join(sections))
    report = tmp_path / "report"
    command = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run", str(DOC),
        "--url", f"http://{srv.url}",
        "--checks", ",".join(CHECKS),
        "--max-examples", str(MAX_EXAMPLES),
        "--generation-deterministic",
        "--workers", "1",
        "--phases", "examples,coverage,fuzzing",
        "--request-timeout", "30",
        "--no-color",
        "--report", "json", "--report-dir", str(report),
    ]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    output = done.stdout + done.stderr
    reports = list(report.glob("*.json"))
    assert len(reports) == 1, output
    result = json.loads(reports[0].read_text())
    assert result["complete"] and result["operations"]["tested"] == result["operations"]["selected"], output
    assert not result["failures"] and not result["errors"], output
    assert done.returncode == 0, output
    # Nothing generated may bring a part of the server down (a panic ends only its task).
    assert srv.proc.poll() is None, srv.logs()
    assert "panicked" not in srv.logs(), srv.logs()
