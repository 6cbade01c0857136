"""Running on a platform: the container contract (the binary started with exactly the KServe
ServingRuntime's args on a /mnt/models laid out as KServe's storage initializer leaves it, as a
non-root user), the shutdown lifecycle (readiness drops at SIGTERM, answers go on through the
grace period, in-flight requests finish), three replicas behind HAProxy sharing a PostgreSQL
state store (a rolling restart under perf_analyzer loses nothing; a traffic change through one
replica governs all three within 2 s), and the saturation gauges autoscalers read."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import yaml

from conftest import FIXTURES, ROOT, Postgres, Server, binary, free_ports, perf_analyzer

IRIS = np.array(json.loads((FIXTURES / "expected" / "iris_logreg.json").read_text())["inputs"]["X"]["data"],
                dtype=np.float32).reshape(-1, 4)


def iris_input(module, rows=1):
    x = module.InferInput("X", [rows, 4], "FP32")
    x.set_data_from_numpy(IRIS[:rows])
    return [x]


def get(url, timeout=5):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError:
        return None, b""


def metric(srv, name, labels=""):
    _, body = get(f"http://{srv.metrics_url}/metrics")
    for line in body.decode().splitlines():
        if line.startswith(name + (("{" + labels) if labels else " ")):
            return float(line.rsplit(" ", 1)[1])
    return None


def serving_runtime():
    """deploy/kserve's ClusterServingRuntime `inferd`."""
    for path in sorted((ROOT / "deploy" / "kserve").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "ClusterServingRuntime":
                return doc
    pytest.fail("deploy/kserve has no ClusterServingRuntime")


def image_env():
    """The ENV of the image's default stage (`runtime`) and the stages it is built FROM."""
    stages, current = {}, None
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        m = re.match(r"\s*FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line, re.IGNORECASE)
        if m:
            current = m.group(2) or m.group(1)
            stages[current] = {"parent": m.group(1), "env": {}}
            continue
        m = re.match(r"\s*ENV\s+(\w+)[= ](\S+)", line)
        if m and current:
            stages[current]["env"][m.group(1)] = m.group(2).strip('"')
    env, stage = {}, "runtime"
    while stage in stages:
        env = {**stages[stage]["env"], **env}
        stage = stages[stage]["parent"]
    assert env, "the Dockerfile's runtime stage sets no ENV"
    return env


def port_free(port):
    with socket.socket() as s:
        try:
            s.bind(("0.0.0.0", port))
            return True
        except OSError:
            return False


def test_the_container_contract_as_kserve_starts_it():
    runtime = serving_runtime()
    container = next(c for c in runtime["spec"]["containers"] if c["name"] == "kserve-container")
    args = [a.replace("{{.Name}}", "iris") for a in container.get("args", [])]
    ports = {p["containerPort"] for p in container.get("ports", [])}
    # KServe gives the container 8080 unless the InferenceService lists ports (h2c 9000 for gRPC).
    assert ports <= {8080, 9000}, ports
    for port in (8080, 9000):
        if not port_free(port):
            pytest.fail(f"port {port} is taken: the ServingRuntime's contract needs it")
    # /mnt/models as the storage initializer leaves it: the model's files, no version directory.
    base = Path(tempfile.mkdtemp(prefix="inferd-kserve-"))
    os.chmod(base, 0o755)
    mnt = base / "mnt" / "models"
    mnt.mkdir(parents=True)
    shutil.copy(FIXTURES / "models" / "iris_logreg" / "1" / "model.onnx", mnt / "model.onnx")
    for d in (base, base / "mnt", mnt):
        os.chmod(d, 0o755)
    args = [a.replace("/mnt/models", str(mnt)) for a in args]
    env = dict(os.environ, **image_env(), HOME=str(base))
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = e["value"].replace("/mnt/models", str(mnt))
    as_user = {}
    if os.geteuid() == 0:
        # The image runs as a non-root user: so does this process.
        as_user = {"user": 65534, "group": 65534, "extra_groups": []}
    log = open(base / "server.log", "wb")
    proc = subprocess.Popen([str(binary()), *args], env=env, stdout=log, stderr=subprocess.STDOUT, **as_user)
    try:
        deadline = time.monotonic() + 30
        while get("http://127.0.0.1:8080/v2/health/ready")[0] != 200:
            assert proc.poll() is None, (base / "server.log").read_text()
            assert time.monotonic() < deadline, (base / "server.log").read_text()
            time.sleep(0.1)
        uid = next(line for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines()
                   if line.startswith("Uid:")).split()[1]
        assert uid != "0", "the server runs as root"
        with httpclient.InferenceServerClient("127.0.0.1:8080") as c:
            assert [m["name"] for m in c.get_model_repository_index()] == ["iris"]
            assert c.infer("iris", iris_input(httpclient, 2)).as_numpy("label").shape == (2,)
        with grpcclient.InferenceServerClient("127.0.0.1:9000") as g:
            assert g.is_server_ready()
            assert g.infer("iris", iris_input(grpcclient)).as_numpy("probabilities").shape == (1, 3)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        log.close()
    # The image logs JSON: every line the server wrote parses.
    lines = [line for line in (base / "server.log").read_text().splitlines() if line.strip()]
    assert lines and all(json.loads(line) for line in lines), lines[:3]
    assert proc.returncode == 0
    shutil.rmtree(base, ignore_errors=True)


SLEEPY = '''\
import time
import numpy as np


class Model:
    """y = x after x[0] seconds (capped at 5): a request that is in flight for a known time."""

    def predict(self, inputs):
        x = inputs["x"]
        time.sleep(min(float(x.reshape(-1)[0]), 5.0))
        return {"y": x}
'''
SLEEPY_CONFIG = """\
max_batch_size = 0
instance_count = 1
inputs = [{ name = "x", datatype = "FP32", dims = [1] }]
outputs = [{ name = "y", datatype = "FP32", dims = [1] }]
"""


def sleepy_repository(path):
    (path / "sleepy" / "1").mkdir(parents=True)
    (path / "sleepy" / "1" / "model.py").write_text(SLEEPY)
    (path / "sleepy" / "config.toml").write_text(SLEEPY_CONFIG)
    shutil.copytree(FIXTURES / "models" / "iris_logreg", path / "iris_logreg")
    return path


def sleep_for(c, seconds):
    x = httpclient.InferInput("x", [1], "FP32")
    x.set_data_from_numpy(np.array([seconds], dtype=np.float32))
    return float(c.infer("sleepy", [x]).as_numpy("y")[0])


def test_sigterm_drops_readiness_serves_through_the_grace_and_finishes_in_flight(tmp_path):
    import sys
    srv = Server(sleepy_repository(tmp_path / "repo"), tmp_path / "s.log", "--python", sys.executable,
                 "--shutdown-grace", "2")
    try:
        results = {}
        inflight = threading.Thread(target=lambda: results.update(slow=sleep_for(
            httpclient.InferenceServerClient(srv.url, network_timeout=30), 3.0)))
        inflight.start()
        time.sleep(0.5)
        signalled = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        assert get(f"http://{srv.url}/v2/health/ready")[0] == 503
        assert get(f"http://{srv.url}/v2/health/live")[0] == 200
        # Answers go on through the grace period, on both protocols.
        with httpclient.InferenceServerClient(srv.url) as c:
            assert c.infer("iris_logreg", iris_input(httpclient)).as_numpy("label").shape == (1,)
        with grpcclient.InferenceServerClient(srv.grpc_url) as g:
            assert not g.is_server_ready()
            assert g.infer("iris_logreg", iris_input(grpcclient)).as_numpy("label").shape == (1,)
        inflight.join(30)
        assert results.get("slow") == 3.0, "the request in flight at SIGTERM was answered"
        srv.proc.wait(30)
        took = time.monotonic() - signalled
        assert srv.proc.returncode == 0
        assert took >= 2.0, f"exited {took:.1f} s after SIGTERM, before the 2 s grace"
        assert "readiness is 503" in srv.logs()
    finally:
        srv.stop()


def test_queue_depth_and_inflight_rise_under_overload_and_fall_back_to_zero(tmp_path):
    import sys
    srv = Server(sleepy_repository(tmp_path / "repo"), tmp_path / "g.log", "--python", sys.executable)
    try:
        labels = 'model="sleepy",version="1"'
        clients = [threading.Thread(target=lambda: sleep_for(httpclient.InferenceServerClient(srv.url), 0.2))
                   for _ in range(8)]
        for t in clients:
            t.start()
        peak = {"queue": 0.0, "inflight": 0.0, "server_queue": 0.0, "util": 0.0}
        while any(t.is_alive() for t in clients):
            peak["queue"] = max(peak["queue"], metric(srv, "inferd_queue_depth", labels) or 0)
            peak["inflight"] = max(peak["inflight"], metric(srv, "inferd_inflight_requests", labels) or 0)
            peak["server_queue"] = max(peak["server_queue"], metric(srv, "inferd_server_queue_depth") or 0)
            peak["util"] = max(peak["util"], metric(srv, "inferd_instance_utilization", labels) or 0)
            time.sleep(0.05)
        assert peak["queue"] >= 3 and peak["inflight"] >= 4 and peak["server_queue"] >= 3, peak
        assert peak["util"] > 0.5, peak
        assert metric(srv, "inferd_queue_depth", labels) == 0
        assert metric(srv, "inferd_inflight_requests", labels) == 0
        assert metric(srv, "inferd_server_inflight_requests") == 0
        assert 0 < metric(srv, "inferd_server_instance_utilization") <= 1
    finally:
        srv.stop()


HAPROXY = """\
global
    maxconn 1024
defaults
    mode http
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    retries 3
    option redispatch
    retry-on conn-failure empty-response
frontend v2
    bind 127.0.0.1:{port}
    default_backend inferd
backend inferd
    balance roundrobin
    option httpchk GET /v2/health/ready
    http-check expect status 200
    default-server inter 200ms fall 1 rise 2
{servers}
"""


class HAProxy:
    def __init__(self, base, replicas):
        path = shutil.which("haproxy")
        if path is None:
            pytest.fail("haproxy is not installed (apt-get install haproxy; scripts/test does)")
        self.port = free_ports(1)[0]
        servers = "\n".join(f"    server r{i} {r.url} check" for i, r in enumerate(replicas))
        config = base / "haproxy.cfg"
        config.write_text(HAPROXY.format(port=self.port, servers=servers))
        check = subprocess.run([path, "-c", "-f", str(config)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        self.log = open(base / "haproxy.log", "wb")
        self.proc = subprocess.Popen([path, "-db", "-f", str(config)], stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"127.0.0.1:{self.port}"
        deadline = time.monotonic() + 10
        while get(f"http://{self.url}/v2/health/ready")[0] != 200:
            assert time.monotonic() < deadline, "HAProxy never saw a ready replica"
            time.sleep(0.1)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)
        self.log.close()


def replica_repository(path):
    (path / "iris").mkdir(parents=True)
    for version, fixture in ((1, "iris_logreg"), (2, "iris_forest")):
        shutil.copytree(FIXTURES / "models" / fixture / "1", path / "iris" / str(version))
    (path / "iris" / "config.toml").write_text('version_policy = "all"\n')
    return path


def route(srv):
    request = urllib.request.Request(f"http://{srv.url}/v2/models/iris/infer", method="POST",
                                     data=json.dumps({"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32",
                                                                  "data": IRIS[0].tolist()}]}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as r:
        return r.headers["x-inferd-route"]


def test_three_replicas_behind_haproxy_restart_one_by_one_under_load_without_a_failure(tmp_path):
    pg = Postgres()
    repo = replica_repository(tmp_path / "repo")
    flags = ("--state-url", pg.url, "--state-poll-ms", "200", "--shutdown-grace", "1.5")
    replicas, lb = [], None
    try:
        replicas = [Server(repo, tmp_path / f"r{i}.log", *flags) for i in range(3)]
        lb = HAProxy(tmp_path, replicas)
        # A split changed through one replica governs all three within 2 s.
        body = json.dumps({"split": [{"version": "2", "weight": 1}]}).encode()
        request = urllib.request.Request(f"http://{replicas[0].url}/v2/models/iris/traffic", data=body, method="PUT",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as r:
            assert r.status == 200
        changed = time.monotonic()
        while {route(r) for r in replicas} != {"iris/2"}:
            assert time.monotonic() - changed < 2.0, [route(r) for r in replicas]
            time.sleep(0.05)
        binary_path, env = perf_analyzer()
        load = subprocess.Popen(
            [str(binary_path), "-m", "iris", "-u", lb.url, "-i", "http", "--concurrency-range", "4",
             "-p", "4000", "-s", "100", "-r", "10"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            time.sleep(1.5)
            for i, old in enumerate(replicas):
                old.proc.send_signal(signal.SIGTERM)
                assert old.proc.wait(30) == 0
                old.log.close()
                replicas[i] = Server(repo, tmp_path / f"r{i}-again.log", *flags,
                                     ports=(old.port, old.grpc_port, old.metrics_port))
                time.sleep(1.0)  # HAProxy's checks see it ready again (rise 2 x 200 ms)
            assert load.poll() is None, "perf_analyzer ended before the last restart: the load did not cover it"
        finally:
            output, _ = load.communicate(timeout=120)
        assert load.returncode == 0, output[-3000:]
        assert "Throughput" in output, output[-3000:]
        # The restarted replicas read the shared split from PostgreSQL.
        assert {route(r) for r in replicas} == {"iris/2"}
    finally:
        if lb:
            lb.stop()
        for r in replicas:
            r.stop()
        pg.stop()
