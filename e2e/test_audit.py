"""The audit log: 100,000 requests over HTTP and gRPC (some invalid) each leave exactly one
record with the model and version that answered; the hash chains verify and a flipped byte is
found and named; recorded payloads replay against another version with the exact agreement."""

import collections
import http.client
import json
import shutil
import subprocess
import threading

import grpc
import numpy as np
import pytest
from tritonclient.grpc import service_pb2, service_pb2_grpc

from conftest import FIXTURES, Server, binary

IRIS_ROWS = np.array(json.loads((FIXTURES / "expected" / "iris_logreg.json").read_text())["inputs"]["X"]["data"],
                     dtype=np.float32).reshape(-1, 4)
# Inputs on which the two iris versions disagree now and then.
ROWS = np.array([IRIS_ROWS[k % 8] + 0.37 * (k % 7) for k in range(56)], dtype=np.float32)
GRPC_STREAMS, GRPC_PER_STREAM = 4, 20_000
HTTP_THREADS, HTTP_PER_THREAD = 4, 5_000


def audit(*args):
    done = subprocess.run([str(binary()), "audit", *map(str, args)], capture_output=True, text=True, timeout=300)
    return done.returncode, done.stdout, done.stderr


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    repo = tmp_path_factory.mktemp("audit-repo")
    (repo / "iris").mkdir()
    for version, fixture in ((1, "iris_logreg"), (2, "iris_forest")):
        shutil.copytree(FIXTURES / "models" / fixture / "1", repo / "iris" / str(version))
    (repo / "iris" / "config.toml").write_text('version_policy = "all"\n[audit]\npayloads = "all"\n')
    shutil.copytree(FIXTURES / "models" / "mlp", repo / "mlp")
    log = tmp_path_factory.mktemp("audit")
    srv = Server(repo, tmp_path_factory.mktemp("log") / "audit.log", "--audit-dir", log,
                 "--audit-segment-size", "4MiB", "--access-log", "false")
    sent = {}  # id -> (model, version expected in the record or None)
    lock = threading.Lock()

    def grpc_stream(s):
        def requests():
            for i in range(GRPC_PER_STREAM):
                rid = f"g{s}-{i}"
                bad = i % 97 == 0
                r = service_pb2.ModelInferRequest(model_name="iris", model_version="1", id=rid)
                t = r.inputs.add()
                t.name, t.datatype = "X", "FP32"
                t.shape.extend([1, 3] if bad else [1, 4])
                row = ROWS[i % len(ROWS)]
                r.raw_input_contents.append((row[:3] if bad else row).tobytes())
                with lock:
                    sent[rid] = ("iris", "1")
                yield r
        with grpc.insecure_channel(srv.grpc_url) as channel:
            for _ in service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelStreamInfer(requests()):
                pass

    def http_thread(t):
        conn = http.client.HTTPConnection(srv.url)
        for i in range(HTTP_PER_THREAD):
            rid = f"h{t}-{i}"
            if i % 53 == 0:  # not even decodable: no version routed
                body, expect = '{"id": "%s", "inputs": [{"name": "x", "shape": [1], "datatype": "NOPE", "data": [1]}]}' % rid, ("mlp", None)
            else:
                body = json.dumps({"id": rid, "inputs": [{"name": "x", "shape": [1, 16], "datatype": "FP32",
                                                          "data": [0.1] * 16}]})
                expect = ("mlp", "1")
            conn.request("POST", "/v2/models/mlp/infer", body)
            conn.getresponse().read()
            with lock:
                sent[rid] = expect
        conn.close()

    threads = [threading.Thread(target=grpc_stream, args=(s,)) for s in range(GRPC_STREAMS)]
    threads += [threading.Thread(target=http_thread, args=(t,)) for t in range(HTTP_THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert srv.stop() == 0
    yield log, sent, repo


def records(log, *query):
    code, out, err = audit("find", log, "--json", *query)
    assert code == 0, err
    return [json.loads(line) for line in out.splitlines()]


def test_every_request_has_exactly_one_record(audited):
    log, sent, _ = audited
    assert len(sent) == GRPC_STREAMS * GRPC_PER_STREAM + HTTP_THREADS * HTTP_PER_THREAD == 100_000
    found = records(log)
    counts = collections.Counter(r["id"] for r in found)
    assert len(found) == len(sent), f"{len(found)} records for {len(sent)} requests"
    assert set(counts) == set(sent) and set(counts.values()) == {1}
    by_id = {r["id"]: r for r in found}
    for rid, (model, version) in sent.items():
        r = by_id[rid]
        assert r["model_name"] == model and r.get("model_version") == version, r
    bad = by_id["g0-0"]
    assert bad["status"]["code"] == "INVALID_ARGUMENT" and "shape" in bad["status"]["message"]
    ok = by_id["g0-1"]
    assert ok["status"] == {"code": "OK"} and len(ok["input_sha256"]) == 64 and len(ok["output_sha256"]) == 64
    assert ok["protocol"] == "grpc" and ok["route"] == "version" and "inputs" in ok and "outputs" in ok
    assert "inputs" not in by_id["h0-1"], "mlp keeps no payloads"
    assert by_id["h0-0"]["status"]["code"] == "INVALID_ARGUMENT"
    # One id, found through the segment indexes.
    assert [r["id"] for r in records(log, "--id", "h2-77")] == ["h2-77"]


def test_the_chain_verifies_and_a_flipped_byte_is_named(audited, tmp_path):
    log, _, _ = audited
    code, out, err = audit("verify", log)
    assert code == 0 and "ok: 100000 records" in out, (out, err)
    copy = tmp_path / "tampered"
    shutil.copytree(log, copy)
    segment = sorted(copy.glob("audit-*.jsonl"))[1]
    data = bytearray(segment.read_bytes())
    lines = data.split(b"\n")
    target = json.loads(lines[10])
    at = sum(len(l) + 1 for l in lines[:10]) + lines[10].index(b'"latency_us":') + 14
    data[at] = ord("9") if data[at] != ord("9") else ord("8")
    segment.write_bytes(bytes(data))
    code, out, err = audit("verify", copy)
    assert code != 0
    assert f"line 11 (seq {target['seq']}, id {target['id']})" in err and "does not match its hash" in err, err


REPLAYED = 3000


def test_replay_reports_agreement_exactly(audited):
    log, _, repo = audited
    srv = Server(repo, repo.parent / "replay.log")
    try:
        replay = lambda v: audit("replay", log, "--model", "iris", "--against", v, "--url", f"http://{srv.url}",
                                 "--limit", REPLAYED, "--json")
        code, out, err = replay("1")
        assert code == 0, err
        same = json.loads(out)
        assert same["replayed"] == REPLAYED and same["differ"] == 0 and same["agreement"] == 1.0, same
        code, out, err = replay("2")
        changed = json.loads(out)
        # The rows where the forest's label differs from the logistic regression's.
        import tritonclient.http as httpclient
        with httpclient.InferenceServerClient(srv.url) as c:
            labels = {}
            for version in ("1", "2"):
                x = httpclient.InferInput("X", list(ROWS.shape), "FP32")
                x.set_data_from_numpy(ROWS)
                labels[version] = c.infer("iris", [x], model_version=version).as_numpy("label").tolist()
        differing = {ROWS[i].tobytes() for i in range(len(ROWS)) if labels["1"][i] != labels["2"][i]}
        assert differing, "the fixture versions must disagree on some rows"
        import base64
        replayed = [r for r in records(log, "--model", "iris") if r["status"]["code"] == "OK"][:REPLAYED]
        expected = sum(base64.b64decode(r["inputs"]["X"]["b64"]) in differing for r in replayed)
        assert changed["differ"] == expected and changed["failed"] == 0, (changed, expected)
    finally:
        srv.stop()


def test_records_reach_a_cloudevents_sink_at_least_once_and_resume(tmp_path):
    import http.server
    import time

    received = []
    state = {"fail": True}

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if state["fail"]:
                self.send_response(503)  # a stalled endpoint: nothing is lost meanwhile
            else:
                received.append(({k.lower(): v for k, v in self.headers.items()}, json.loads(body)))
                self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{receiver.server_address[1]}/events"
    repo = tmp_path / "repo"
    shutil.copytree(FIXTURES / "models" / "mlp", repo / "mlp")
    log = tmp_path / "audit"
    flags = ("--audit-dir", log, "--audit-sink-url", url, "--audit-fsync-ms", "0")

    def traffic(srv, prefix, n):
        conn = http.client.HTTPConnection(srv.url)
        for i in range(n):
            conn.request("POST", "/v2/models/mlp/infer", json.dumps(
                {"id": f"{prefix}{i}", "inputs": [{"name": "x", "shape": [1, 16], "datatype": "FP32", "data": [0.5] * 16}]}))
            conn.getresponse().read()

    def wait(ids):
        deadline = time.monotonic() + 30
        while not ids <= {e[1]["id"] for e in received} and time.monotonic() < deadline:
            time.sleep(0.1)
        return ids <= {e[1]["id"] for e in received}

    try:
        srv = Server(repo, tmp_path / "one.log", *flags)
        traffic(srv, "a", 100)
        time.sleep(1)
        assert not received
        state["fail"] = False
        assert wait({f"a{i}" for i in range(100)}), len(received)
        headers, record = received[0]
        assert headers["ce-specversion"] == "1.0" and headers["ce-type"] == "org.kubeflow.serving.inference.response"
        assert headers["ce-inferenceservicename"] == "mlp" and headers["ce-requestid"] == record["id"]
        srv.stop()
        before = len(received)
        srv = Server(repo, tmp_path / "two.log", *flags)
        traffic(srv, "b", 50)
        assert wait({f"b{i}" for i in range(50)})
        resent = [e for e in received[before:] if e[1]["id"].startswith("a")]
        assert len(resent) <= 1, f"{len(resent)} records sent again after the restart"
        srv.stop()
    finally:
        receiver.shutdown()
