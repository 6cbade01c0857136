"""Starts the real inferd binary on a free loopback port over a repository of the fixture models
(plus broken ones) and hands tests its URL. Clients are the real tritonclient from PyPI."""

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
MODELS = sorted(p.name for p in (FIXTURES / "models").iterdir())
BODY_LIMIT = 1 << 20
NUMPY = {"FP32": np.float32, "FP64": np.float64, "INT64": np.int64, "INT32": np.int32, "BOOL": np.bool_}


def binary():
    path = Path(os.environ.get("INFERD_BIN", ROOT / "target" / "debug" / "inferd"))
    if not path.exists():
        pytest.exit(f"inferd binary not found at {path}; build it or set INFERD_BIN", returncode=2)
    return path


def free_ports(n):
    """n distinct free loopback ports (held open together so they cannot repeat)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def expected(name):
    return json.loads((FIXTURES / "expected" / f"{name}.json").read_text())


def as_array(tensor):
    if tensor["datatype"] == "BYTES":
        return np.array([s.encode() for s in tensor["data"]], dtype=np.object_).reshape(tensor["shape"])
    # None (JSON's stand-in for NaN) becomes NaN in a float array.
    return np.array(tensor["data"], dtype=NUMPY[tensor["datatype"]]).reshape(tensor["shape"])


# Every credential a test hands out, and every server log of the session: at the end no log may
# hold a secret (the random part of an API key, a JWT's signature).
SECRETS = []
LOGS = []


@pytest.fixture(scope="session", autouse=True)
def no_secret_in_any_log():
    yield
    for log in LOGS:
        if not Path(log).exists():
            continue
        text = Path(log).read_text(errors="replace")
        for secret in SECRETS:
            assert secret.split(".")[-1] not in text, f"a secret appears in {log}"


class Server:
    def __init__(self, repo, log_path, *extra, token=None, tls=None, ports=None):
        """`token`: the bearer credential its own calls send (a server with --auth); `tls`: an
        ssl.SSLContext for a server with --tls-cert; `ports`: (http, grpc, metrics) to reuse,
        e.g. a replica restarted behind a load balancer."""
        self.token = token
        self.tls = tls
        self.scheme = "https" if tls else "http"
        self.port, self.grpc_port, self.metrics_port = ports or free_ports(3)
        self.url = f"127.0.0.1:{self.port}"
        self.grpc_url = f"127.0.0.1:{self.grpc_port}"
        self.metrics_url = f"127.0.0.1:{self.metrics_port}"
        self.log_path = log_path
        LOGS.append(log_path)
        self.log = open(log_path, "wb")
        args = [binary(), "serve", "--model-repository", repo, "--http-port", self.port, "--grpc-port", self.grpc_port,
                "--metrics-port", self.metrics_port, *extra]
        # Stopped at once unless a test asks for a grace period (--shutdown-grace).
        env = dict(os.environ, INFERD_SHUTDOWN_GRACE=os.environ.get("INFERD_SHUTDOWN_GRACE", "0"))
        self.proc = subprocess.Popen([str(a) for a in args], stdout=self.log, stderr=subprocess.STDOUT, env=env)
        try:
            self.wait_loaded()
        except BaseException:
            self.proc.kill()  # never leave a server behind a failed start
            self.proc.wait()
            raise

    def headers(self, headers=None):
        out = dict(headers or {})
        if self.token:
            out.setdefault("Authorization", f"Bearer {self.token}")
        return out

    def get(self, path):
        request = urllib.request.Request(f"{self.scheme}://{self.url}{path}", headers=self.headers())
        try:
            with urllib.request.urlopen(request, timeout=5, context=self.tls) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def post(self, path, body, headers=None):
        request = urllib.request.Request(f"{self.scheme}://{self.url}{path}", data=body,
                                         headers=self.headers(headers), method="POST")
        try:
            with urllib.request.urlopen(request, timeout=30, context=self.tls) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def wait_loaded(self, timeout=60):
        """Until every model has left LOADING (loaded or failed)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"inferd exited with {self.proc.returncode}:\n{self.logs()}")
            try:
                status, _, body = self.post("/v2/repository/index", b"")
                if status == 200 and all(m["state"] != "LOADING" for m in json.loads(body)):
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"inferd did not finish loading in {timeout}s:\n{self.logs()}")

    def logs(self):
        if self.proc.poll() is None:
            time.sleep(0.1)  # inferd writes log lines in batches every 25 ms
        if not self.log.closed:
            self.log.flush()
        return Path(self.log_path).read_text(errors="replace")

    def stop(self, timeout=20):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


def raw_call(server, method, path, body=None):
    """A request with a JSON body to a server's HTTP port: (status, headers, answer bytes)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://{server.url}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def call(server, method, path, body=None):
    """A JSON request to a server's HTTP port: (status, decoded JSON answer)."""
    status, _, answer = raw_call(server, method, path, body)
    return status, json.loads(answer or b"{}")


def make_repository(path):
    """Every fixture model, plus a garbage model file and a model with an unsupported operator."""
    for name in MODELS:
        shutil.copytree(FIXTURES / "models" / name, path / name)
    (path / "garbage" / "1").mkdir(parents=True)
    (path / "garbage" / "1" / "model.onnx").write_bytes(b"\x08\x07this is not an ONNX model")
    shutil.copytree(FIXTURES / "broken" / "unsupported_op", path / "unsupported_op")
    return path


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    repo = make_repository(tmp_path_factory.mktemp("repo"))
    srv = Server(repo, tmp_path_factory.mktemp("log") / "inferd.log", "--max-request-size", str(BODY_LIMIT))
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def good_server(tmp_path_factory):
    """A repository with only working models: readiness must be true."""
    repo = tmp_path_factory.mktemp("good")
    for name in MODELS:
        shutil.copytree(FIXTURES / "models" / name, repo / name)
    srv = Server(repo, tmp_path_factory.mktemp("log") / "good.log")
    yield srv
    srv.stop()


@pytest.fixture()
def client(server):
    import tritonclient.http as httpclient

    c = httpclient.InferenceServerClient(url=server.url)
    yield c
    c.close()


@pytest.fixture()
def grpc_client(server):
    import tritonclient.grpc as grpcclient

    c = grpcclient.InferenceServerClient(url=server.grpc_url)
    yield c
    c.close()


def perf_analyzer():
    """perf_analyzer (bench/get_perf_analyzer.sh puts it in bench/.tools; scripts/test runs it)."""
    tools = ROOT / "bench" / ".tools"
    path = Path(os.environ.get("INFERD_PERF_ANALYZER", tools / "perf_analyzer"))
    if not path.exists():
        pytest.fail(f"perf_analyzer is not at {path}: run bench/get_perf_analyzer.sh (scripts/test does)")
    env = dict(os.environ, LD_LIBRARY_PATH=str(tools / "lib"))
    return path, env


class Postgres:
    """A throwaway PostgreSQL cluster on a free loopback port (Debian's postgresql; as the
    `postgres` user when the tests run as root, since the server refuses to run as root)."""

    def __init__(self):
        import tempfile
        # Its own directory: pytest's are private to root, out of reach of the postgres user.
        base = Path(tempfile.mkdtemp(prefix="inferd-pg-"))
        self.base = base
        binaries = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
        bindir = binaries[-1] if binaries else None
        if bindir is None or not (bindir / "initdb").exists():
            pytest.fail("PostgreSQL is not installed (apt-get install postgresql): the state store tests need it")
        self.dir = base / "pgdata"
        self.port = free_ports(1)[0]
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if os.geteuid() == 0:
            shutil.chown(base, "postgres")
        def run(*cmd):
            done = subprocess.run([*self.as_user, *cmd], capture_output=True, text=True)
            if done.returncode != 0:
                pytest.fail(f"cannot start PostgreSQL ({cmd[0]}): {done.stdout}{done.stderr}")
        run(str(bindir / "initdb"), "-D", str(self.dir), "-A", "trust", "-U", "inferd")
        self.pg_ctl = str(bindir / "pg_ctl")
        run(self.pg_ctl, "-D", str(self.dir), "-w", "-l", str(base / "pg.log"), "-o",
            f"-p {self.port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
        self.url = f"postgres://inferd@127.0.0.1:{self.port}/postgres"

    def stop(self):
        subprocess.run([*self.as_user, self.pg_ctl, "-D", str(self.dir), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(self.base, ignore_errors=True)
