"""Models from an S3-compatible store (moto) and from an MLflow registry (a real tracking server):
they answer like their local copies, new versions arrive by themselves (an MLflow alias moved
under load swaps versions with no failed request), and with the source stopped the cached
versions go on serving with readiness honest."""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient

from conftest import FIXTURES, Server, expected, free_ports

IRIS = FIXTURES / "models"
X = np.array(expected("iris_logreg")["inputs"]["X"]["data"], dtype=np.float32).reshape(-1, 4)


def wait_http(url, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"{url} did not come up in {timeout} s")


def labels(server, model, version=""):
    with httpclient.InferenceServerClient(server.url) as c:
        x = httpclient.InferInput("X", list(X.shape), "FP32")
        x.set_data_from_numpy(X)
        r = c.infer(model, [x], model_version=version)
        return r.get_response()["model_version"], r.as_numpy("label").tolist()


def local_labels(fixture):
    return [int(v) for v in expected(fixture)["outputs"]["label"]["data"]]


@pytest.fixture()
def s3(tmp_path):
    port = free_ports(1)[0]
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    wait_http(f"http://127.0.0.1:{port}/", 30)
    import boto3
    client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                          aws_access_key_id="test", aws_secret_access_key="test")
    client.create_bucket(Bucket="models")
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "test",
           "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1"}
    yield client, env, proc
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)


def server_with_env(env, *args):
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return Server(*args)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_a_model_from_s3_serves_updates_and_outlives_its_store(s3, tmp_path):
    client, env, moto = s3
    client.upload_file(str(IRIS / "iris_logreg" / "1" / "model.onnx"), "models", "prod/iris/1/model.onnx")
    # A key that tries to leave the cache is refused, and never written.
    client.put_object(Bucket="models", Key="prod/iris/1/../../../escape.txt", Body=b"x")
    repo = tmp_path / "repo"
    (repo / "iris").mkdir(parents=True)
    (repo / "iris" / "config.toml").write_text('source = "s3://models/prod/iris"\n')
    cache = tmp_path / "cache"
    srv = server_with_env(env, repo, tmp_path / "s3.log", "--model-cache", cache, "--source-poll-secs", "1",
                          "--strict-readiness", "false")
    try:
        row = next(r for r in json.loads(srv.post("/v2/repository/index", b"")[2]) if r["name"] == "iris")
        assert row["state"] == "UNAVAILABLE" and ".." in row["reason"], row
        assert not any(p.name == "escape.txt" for p in tmp_path.rglob("*")), "a file left the cache"
        client.delete_object(Bucket="models", Key="prod/iris/1/../../../escape.txt")
        deadline = time.monotonic() + 20
        while True:
            try:
                assert labels(srv, "iris") == ("1", local_labels("iris_logreg"))
                break
            except Exception:
                assert time.monotonic() < deadline, "the model did not load once the key was gone"
                time.sleep(0.3)
        client.upload_file(str(IRIS / "iris_forest" / "1" / "model.onnx"), "models", "prod/iris/2/model.onnx")
        deadline = time.monotonic() + 20
        while labels(srv, "iris")[0] != "2":
            assert time.monotonic() < deadline, "version 2 did not arrive"
            time.sleep(0.2)
        assert labels(srv, "iris") == ("2", local_labels("iris_forest"))
        os.killpg(moto.pid, signal.SIGTERM)
        moto.wait(10)
        deadline = time.monotonic() + 40
        while "cached versions serve" not in srv.logs():  # polls against the stopped store
            assert time.monotonic() < deadline, "no poll saw the store gone"
            assert labels(srv, "iris") == ("2", local_labels("iris_forest"))
            time.sleep(0.5)
        assert labels(srv, "iris") == ("2", local_labels("iris_forest"))
        assert srv.get("/v2/health/ready")[0] == 200
    finally:
        srv.stop()
    # A fresh server with the store gone starts from the cache.
    srv = server_with_env(env, repo, tmp_path / "again.log", "--model-cache", cache)
    try:
        assert labels(srv, "iris")[0] == "2"
    finally:
        srv.stop()


MLFLOW_PYTHON = os.environ.get("INFERD_MLFLOW_PYTHON", str(Path(__file__).resolve().parent.parent / ".venv-mlflow" / "bin" / "python"))

REGISTER = """
import sys, mlflow, onnx
from mlflow import MlflowClient
mlflow.set_tracking_uri(sys.argv[1])
for path in sys.argv[2:]:
    with mlflow.start_run():
        mlflow.onnx.log_model(onnx.load(path), name="model", registered_model_name="fraud")
MlflowClient().set_registered_model_alias("fraud", "champion", "1")
"""

MOVE = """
import sys, mlflow
from mlflow import MlflowClient
mlflow.set_tracking_uri(sys.argv[1])
MlflowClient().set_registered_model_alias("fraud", "champion", sys.argv[2])
"""


@pytest.fixture()
def mlflow_server(tmp_path):
    if not Path(MLFLOW_PYTHON).exists():
        pytest.fail(f"MLflow's venv is missing ({MLFLOW_PYTHON}): scripts/test makes it from e2e/requirements-mlflow.txt")
    port = free_ports(1)[0]
    home = tmp_path / "mlflow"
    home.mkdir()
    mlflow_bin = Path(MLFLOW_PYTHON).parent / "mlflow"
    proc = subprocess.Popen([str(mlflow_bin), "server", "--host", "127.0.0.1", "--port", str(port),
                             "--backend-store-uri", f"sqlite:///{home}/db.sqlite",
                             "--artifacts-destination", str(home / "artifacts"), "--workers", "1"],
                            cwd=home, stdout=open(home / "server.log", "w"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/health", 90)
    yield url, proc
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)


def mlflow_run(script, *args):
    done = subprocess.run([MLFLOW_PYTHON, "-c", script, *map(str, args)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def test_a_model_from_mlflow_follows_its_alias_under_load(mlflow_server, tmp_path):
    url, mlflow_proc = mlflow_server
    mlflow_run(REGISTER, url, IRIS / "iris_logreg" / "1" / "model.onnx", IRIS / "iris_forest" / "1" / "model.onnx")
    repo = tmp_path / "repo"
    (repo / "fraud").mkdir(parents=True)
    (repo / "fraud" / "config.toml").write_text(f'source = "mlflow://{url[7:]}/fraud@champion"\n')
    audit = tmp_path / "audit"
    srv = Server(repo, tmp_path / "mlflow.log", "--model-cache", tmp_path / "cache", "--source-poll-secs", "1",
                 "--audit-dir", audit, "--state-dir", tmp_path / "state")
    try:
        assert labels(srv, "fraud") == ("1", local_labels("iris_logreg"))
        stop, failures, versions = threading.Event(), [], set()

        def load():
            with httpclient.InferenceServerClient(srv.url) as c:
                x = httpclient.InferInput("X", list(X.shape), "FP32")
                x.set_data_from_numpy(X)
                while not stop.is_set():
                    try:
                        versions.add(c.infer("fraud", [x]).get_response()["model_version"])
                    except Exception as e:
                        failures.append(str(e))

        threads = [threading.Thread(target=load) for _ in range(2)]
        for t in threads:
            t.start()
        time.sleep(1)
        mlflow_run(MOVE, url, "2")
        deadline = time.monotonic() + 30
        while "2" not in versions and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1)
        stop.set()
        for t in threads:
            t.join()
        assert "2" in versions, "the alias move did not reach the server"
        assert not failures, failures[:3]
        assert labels(srv, "fraud") == ("2", local_labels("iris_forest"))
        history = json.loads(srv.get("/v2/models/fraud/history")[1])["history"]
        assert any(h["kind"] == "source" and "version 1 -> 2" in (h["new"] or "") for h in history), history
        os.killpg(mlflow_proc.pid, signal.SIGTERM)
        mlflow_proc.wait(20)
        time.sleep(2.5)
        assert labels(srv, "fraud")[0] == "2"
        assert srv.get("/v2/health/ready")[0] == 200
    finally:
        srv.stop()
    events = [json.loads(l) for p in sorted(audit.glob("audit-*.jsonl")) for l in p.read_text().splitlines()]
    assert any(e.get("event") == "model" and "moved: version 1 -> 2" in e["message"] for e in events)
