"""Security: API keys, JWTs from a JWKS server started here, scopes per endpoint group on both
protocols, quotas, TLS and mTLS with a test CA made by openssl, and no secret in any log."""

import base64
import json
import shutil
import ssl
import subprocess
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from conftest import FIXTURES, SECRETS, Server, binary, perf_analyzer

ISSUER = "https://issuer.test"
AUDIENCE = "inferd"


# --- keys, tokens, certificates ------------------------------------------------------------

def create_key(keys, key_id, scopes, *extra):
    done = subprocess.run([str(binary()), "keys", "create", "--file", str(keys), "--id", key_id,
                           "--scopes", scopes, *extra], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    secret = done.stdout.strip().splitlines()[-1]
    assert secret.startswith(f"ik.{key_id}.") and secret not in Path(keys).read_text()
    SECRETS.append(secret)
    return secret


class Jwks:
    """An identity provider's JWKS endpoint, with an RSA and an EC signing key."""

    def __init__(self):
        import jwt
        from cryptography.hazmat.primitives.asymmetric import ec, rsa
        self.jwt = jwt
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        self.keys = {"rsa-1": ("RS256", self.rsa), "ec-1": ("ES256", self.ec)}
        self.published = ["rsa-1", "ec-1"]
        self.fetches = 0
        jwks = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                jwks.fetches += 1
                body = json.dumps(jwks.document()).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/.well-known/jwks.json"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def document(self):
        out = []
        for kid in self.published:
            alg, key = self.keys[kid]
            algo = self.jwt.algorithms.RSAAlgorithm if alg == "RS256" else self.jwt.algorithms.ECAlgorithm
            jwk = json.loads(algo.to_jwk(key.public_key()))
            jwk.update(kid=kid, alg=alg, use="sig")
            out.append(jwk)
        return {"keys": out}

    def add_key(self, kid):
        from cryptography.hazmat.primitives.asymmetric import rsa
        self.keys[kid] = ("RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048))
        self.published.append(kid)

    def token(self, scope, kid="rsa-1", sub="svc-fraud", key=None, **claims):
        alg, signer = self.keys[kid]
        body = {"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "iat": int(time.time()),
                "exp": int(time.time()) + 300, **claims}
        if scope is not None:
            body["scope"] = scope
        token = self.jwt.encode(body, key or signer, algorithm=alg, headers={"kid": kid})
        SECRETS.append(token)
        return token


def openssl(*args, cwd):
    done = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    assert done.returncode == 0, f"openssl {' '.join(args)}: {done.stderr}"


class Pki:
    """A test CA, a server certificate for 127.0.0.1/localhost, client certificates (one from
    the CA, one from a CA the server does not trust)."""

    def __init__(self, d):
        self.dir = d
        for ca in ["ca", "rogue-ca"]:
            openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", f"{ca}.key", "-out", f"{ca}.crt", "-days", "2", "-subj", f"/CN=inferd {ca}",
                    cwd=d)
        self.issue("server", "/CN=localhost", "ca", san="subjectAltName=IP:127.0.0.1,DNS:localhost")
        self.issue("client", "/O=acme/CN=batch", "ca")
        self.issue("rogue", "/O=acme/CN=batch", "rogue-ca")
        self.ca = str(d / "ca.crt")

    def issue(self, name, subject, ca, san=None):
        d = self.dir
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
                f"{name}.key", "-out", f"{name}.csr", "-subj", subject, cwd=d)
        # v3 with usages: webpki refuses v1 certificates.
        usage = "serverAuth" if san else "clientAuth"
        ext = d / f"{name}.ext"
        ext.write_text(f"basicConstraints=CA:FALSE\nextendedKeyUsage={usage}\n{san or ''}\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
                "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", str(ext), cwd=d)

    def path(self, name):
        return str(self.dir / name)

    def context(self, client=None):
        ctx = ssl.create_default_context(cafile=self.ca)
        if client:
            ctx.load_cert_chain(self.path(f"{client}.crt"), self.path(f"{client}.key"))
        return ctx


# --- servers --------------------------------------------------------------------------------

def repository(tmp):
    repo = tmp / "repo"
    for name in ["iris_logreg", "mlp"]:
        shutil.copytree(FIXTURES / "models" / name, repo / name)
    return repo


@pytest.fixture(scope="module")
def jwks():
    j = Jwks()
    yield j
    j.server.shutdown()


@pytest.fixture(scope="module")
def secured(tmp_path_factory, jwks):
    tmp = tmp_path_factory.mktemp("secure")
    keys = tmp / "keys.toml"
    creds = {
        "ops": create_key(keys, "ops", "admin"),
        "ci": create_key(keys, "ci", "inference:iris*"),
        "reader": create_key(keys, "reader", "metadata:iris*,model-config"),
        "old": create_key(keys, "old", "admin", "--expires", "2026-01-01T00:00:00Z"),
        "slow": create_key(keys, "slow", "inference", "--rate", "1", "--burst", "2"),
    }
    log = tmp / "inferd.log"
    srv = Server(repository(tmp), log, "--model-control-mode", "explicit", "--load-model", "*",
                 "--auth", "--auth-keys", keys, "--auth-jwks-url", jwks.url, "--auth-issuer", ISSUER,
                 "--auth-audience", AUDIENCE, "--log-level", "debug", "--metrics-auth",
                 token=creds["ops"])
    srv.keys, srv.creds = keys, creds
    yield srv
    srv.stop()
    assert_no_secret(log)


def assert_no_secret(*logs):
    for log in logs:
        text = Path(log).read_text(errors="replace")
        for secret in SECRETS:
            # The random part is what must not leak; key ids and token headers may.
            tail = secret.split(".")[-1]
            assert tail not in text, f"a secret appears in {log}"


def request(srv, method, path, token=None, body=None, base=None):
    headers = {"content-type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    url = base or f"{srv.scheme}://{srv.url}"
    req = urllib.request.Request(f"{url}{path}", data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10, context=srv.tls) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


IRIS = {"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 4], "data": [5.1, 3.5, 1.4, 0.2]}]}
MLP_INPUT = np.zeros((1, 16), np.float32)

# (group, method, path, body): at least one endpoint of every group the HTTP front end serves.
HTTP_ENDPOINTS = [
    ("metadata", "GET", "/v2", None),
    ("metadata", "GET", "/v2/models/iris_logreg", None),
    ("metadata", "GET", "/v2/models/iris_logreg/aliases", None),
    ("model-config", "GET", "/v2/models/iris_logreg/config", None),
    ("statistics", "GET", "/v2/models/iris_logreg/stats", None),
    ("inference", "POST", "/v2/models/iris_logreg/infer", IRIS),
    ("model-repository", "POST", "/v2/repository/index", {}),
    ("model-repository", "POST", "/v2/repository/models/mlp/load", {}),
    ("logging", "GET", "/v2/logging", None),
    ("logging", "POST", "/v2/logging", {}),
    ("traffic", "PUT", "/v2/models/iris_logreg/aliases/prod", {"version": "1"}),
]


def test_http_every_group_needs_credentials(secured):
    for group, method, path, body in HTTP_ENDPOINTS:
        status, headers, answer = request(secured, method, path, body=body)
        assert status == 401, (path, status, answer)
        assert headers.get("www-authenticate", "").startswith("Bearer"), (path, headers)
        assert "Authorization: Bearer" in json.loads(answer)["error"]
        status, _, answer = request(secured, method, path, token=secured.creds["ops"], body=body)
        assert status not in (401, 403), (path, status, answer)
    for path in ["/v2/health/live", "/v2/health/ready", "/v2/models/iris_logreg/ready"]:
        assert request(secured, "GET", path)[0] == 200, path
    # A wrong key on a public endpoint does not lock health checks out.
    assert request(secured, "GET", "/v2/health/ready", token="ik.ops.wrong")[0] == 200


def test_http_scopes(secured):
    ci = secured.creds["ci"]
    status, _, answer = request(secured, "POST", "/v2/models/iris_logreg/infer", ci, IRIS)
    assert status == 200, answer
    refusals = [
        ("POST", "/v2/models/mlp/infer", {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]},
         "inference:mlp"),
        ("POST", "/v2/repository/models/mlp/load", {}, "model-repository"),
        ("POST", "/v2/repository/models/mlp/unload", {}, "model-repository"),
        ("POST", "/v2/logging", {"log_info": False}, "logging"),
        ("PUT", "/v2/models/iris_logreg/aliases/prod", {"version": "1"}, "traffic"),
        ("PUT", "/v2/models/iris_logreg/traffic", {"split": []}, "traffic"),
        ("GET", "/v2/models/iris_logreg", None, "metadata:iris_logreg"),
    ]
    for method, path, body, scope in refusals:
        status, _, answer = request(secured, method, path, ci, body)
        assert status == 403, (path, status, answer)
        message = json.loads(answer)["error"]
        assert scope in message and "ci" in message, (path, message)
    # Forbidden on a model says nothing of the model's inputs.
    assert "inputs are" not in json.loads(request(secured, "POST", "/v2/models/mlp/infer", ci, {"inputs": []})[2])["error"]
    reader = secured.creds["reader"]
    assert request(secured, "GET", "/v2/models/iris_logreg", reader)[0] == 200
    assert request(secured, "GET", "/v2/models/iris_logreg/config", reader)[0] == 200
    assert request(secured, "GET", "/v2/models/mlp", reader)[0] == 403
    # The model still serves (nothing was unloaded by the refused call).
    assert request(secured, "GET", "/v2/models/mlp/ready")[0] == 200


def test_metrics_scope(secured):
    base = f"http://{secured.metrics_url}"
    assert request(secured, "GET", "/metrics", base=base)[0] == 401
    assert request(secured, "GET", "/metrics", secured.creds["ci"], base=base)[0] == 403
    status, _, text = request(secured, "GET", "/metrics", secured.creds["ops"], base=base)
    assert status == 200 and b"inferd_auth_denied_total" in text


def test_expired_and_malformed_credentials(secured):
    for token in [secured.creds["old"], "ik.ci.not-the-secret", "ik.nobody.abc", "garbage"]:
        status, headers, answer = request(secured, "GET", "/v2/models/iris_logreg", token)
        assert status == 401, (token[:8], answer)
        assert token.split(".")[-1] not in answer.decode()
    status, _, answer = request(secured, "GET", "/v2", secured.creds["old"])
    assert "expired" in json.loads(answer)["error"]


def test_jwt(secured, jwks):
    status, _, answer = request(secured, "POST", "/v2/models/iris_logreg/infer",
                                jwks.token("inference:iris* metadata"), IRIS)
    assert status == 200, answer
    # ES256, and scopes in `scp` as a list.
    token = jwks.token(None, kid="ec-1", scp=["inference:iris_logreg"])
    assert request(secured, "POST", "/v2/models/iris_logreg/infer", token, IRIS)[0] == 200
    assert request(secured, "POST", "/v2/models/mlp/infer", token, IRIS)[0] == 403
    # Signed by a key the JWKS does not hold (same kid): bad signature.
    from cryptography.hazmat.primitives.asymmetric import rsa
    forged = jwks.token("admin", key=rsa.generate_private_key(public_exponent=65537, key_size=2048))
    status, _, answer = request(secured, "GET", "/v2", forged)
    assert status == 401, answer
    for bad in [jwks.token("admin", exp=int(time.time()) - 3600), jwks.token("admin", aud="other"),
                jwks.token("admin", iss="https://evil.test")]:
        assert request(secured, "GET", "/v2", bad)[0] == 401
    # A key published after start: an unknown kid makes inferd fetch the JWKS again (at most
    # once per 10 s, so it may take that long after the fetch at start).
    jwks.add_key("rsa-2")
    deadline = time.monotonic() + 15
    while request(secured, "GET", "/v2", jwks.token("metadata", kid="rsa-2"))[0] != 200:
        assert time.monotonic() < deadline, "a key added to the JWKS was not fetched within 15 s"
        time.sleep(0.5)
    # Unknown kids do not make it fetch on every request.
    before = jwks.fetches
    for _ in range(5):
        request(secured, "GET", "/v2", jwks.token("metadata", kid="rsa-1").replace("rsa-1", "nope"))
    assert jwks.fetches - before <= 1
    # The principal is the token's subject, on the access log line.
    request(secured, "POST", "/v2/models/iris_logreg/infer", jwks.token("inference", sub="svc-audit-me"), IRIS)
    time.sleep(0.3)
    assert "principal=svc-audit-me" in secured.logs()


def test_key_file_changes_apply_without_restart(secured):
    new = create_key(secured.keys, "late", "metadata")
    deadline = time.monotonic() + 10
    while request(secured, "GET", "/v2", new)[0] != 200:
        assert time.monotonic() < deadline, "a new key was not accepted within 10 s"
        time.sleep(0.2)
    done = subprocess.run([str(binary()), "keys", "revoke", "--file", str(secured.keys), "--id", "late"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    deadline = time.monotonic() + 10
    while request(secured, "GET", "/v2", new)[0] != 401:
        assert time.monotonic() < deadline, "a revoked key still worked after 10 s"
        time.sleep(0.2)
    listed = subprocess.run([str(binary()), "keys", "list", "--file", str(secured.keys)], capture_output=True, text=True)
    assert "ci" in listed.stdout and "late" not in listed.stdout
    # A broken file keeps the keys in force.
    text = secured.keys.read_text()
    secured.keys.write_text(text + "\n[[keys]]\nbroken")
    time.sleep(2)
    assert request(secured, "GET", "/v2", secured.creds["ops"])[0] == 200
    secured.keys.write_text(text)


def test_rate_limit(secured):
    slow = secured.creds["slow"]
    statuses, headers = [], None
    for _ in range(6):
        status, h, _ = request(secured, "POST", "/v2/models/iris_logreg/infer", slow, IRIS)
        statuses.append(status)
        if status == 429:
            headers = h
    assert statuses[:2] == [200, 200] and 429 in statuses, statuses
    assert int(headers["retry-after"]) >= 1
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException
    c = grpcclient.InferenceServerClient(url=secured.grpc_url)
    x = grpcclient.InferInput("X", [1, 4], "FP32")
    x.set_data_from_numpy(np.array([[5.1, 3.5, 1.4, 0.2]], np.float32))
    codes = []
    for _ in range(4):
        try:
            c.infer("iris_logreg", [x], headers={"authorization": f"Bearer {slow}"})
            codes.append("OK")
        except InferenceServerException as e:
            codes.append(e.status())
    assert "StatusCode.RESOURCE_EXHAUSTED" in codes, codes
    c.close()


def grpc_status(call):
    from tritonclient.utils import InferenceServerException
    try:
        call()
        return "OK"
    except InferenceServerException as e:
        return e.status()


def test_grpc_groups(secured):
    import tritonclient.grpc as grpcclient
    c = grpcclient.InferenceServerClient(url=secured.grpc_url)
    ci = {"authorization": f"Bearer {secured.creds['ci']}"}
    ops = {"authorization": f"Bearer {secured.creds['ops']}"}
    x = grpcclient.InferInput("X", [1, 4], "FP32")
    x.set_data_from_numpy(np.array([[5.1, 3.5, 1.4, 0.2]], np.float32))
    m = grpcclient.InferInput("x", [1, 16], "FP32")
    m.set_data_from_numpy(MLP_INPUT)
    calls = {
        "metadata": lambda h: c.get_server_metadata(headers=h),
        "model-metadata": lambda h: c.get_model_metadata("iris_logreg", headers=h),
        "model-config": lambda h: c.get_model_config("iris_logreg", headers=h),
        "statistics": lambda h: c.get_inference_statistics("iris_logreg", headers=h),
        "inference": lambda h: c.infer("iris_logreg", [x], headers=h),
        "model-repository": lambda h: c.get_model_repository_index(headers=h),
        "load": lambda h: c.load_model("mlp", headers=h),
        "logging": lambda h: c.get_log_settings(headers=h),
        "log-update": lambda h: c.update_log_settings({"log_info": True}, headers=h),
        "trace": lambda h: c.get_trace_settings(headers=h),
    }
    for name, call in calls.items():
        assert grpc_status(lambda: call(None)) == "StatusCode.UNAUTHENTICATED", name
        assert grpc_status(lambda: call(ops)) not in ("StatusCode.UNAUTHENTICATED", "StatusCode.PERMISSION_DENIED"), name
    assert c.is_server_live() and c.is_server_ready() and c.is_model_ready("iris_logreg")
    assert grpc_status(lambda: c.infer("iris_logreg", [x], headers=ci)) == "OK"
    for name in ["model-metadata", "load", "log-update", "model-repository"]:
        assert grpc_status(lambda: calls[name](ci)) == "StatusCode.PERMISSION_DENIED", name
    from tritonclient.utils import InferenceServerException
    with pytest.raises(InferenceServerException) as e:
        c.infer("mlp", [m], headers=ci)
    assert e.value.status() == "StatusCode.PERMISSION_DENIED" and "inference:mlp" in e.value.message()
    # The streaming RPC checks each request's model too.
    results = []
    c.start_stream(callback=lambda result, error: results.append(error), headers=ci)
    c.async_stream_infer("mlp", [m])
    c.async_stream_infer("iris_logreg", [x])
    deadline = time.monotonic() + 10
    while len(results) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    c.stop_stream()
    assert sum(r is None for r in results) == 1 and any(r is not None and "inference:mlp" in str(r) for r in results), results
    c.close()


# --- TLS ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory, pki):
    tmp = tmp_path_factory.mktemp("tls")
    cert, key = tmp / "server.crt", tmp / "server.key"
    shutil.copy(pki.path("server.crt"), cert)
    shutil.copy(pki.path("server.key"), key)
    srv = Server(repository(tmp), tmp / "inferd.log", "--tls-cert", cert, "--tls-key", key,
                 "--metrics-tls", tls=pki.context())
    srv.cert, srv.key = cert, key
    yield srv
    srv.stop()


def test_tritonclient_over_tls(tls_server, pki):
    import gevent.ssl
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient
    c = httpclient.InferenceServerClient(url=tls_server.url, ssl=True, ssl_options={"ca_certs": pki.ca},
                                         ssl_context_factory=gevent.ssl.create_default_context)
    x = httpclient.InferInput("X", [1, 4], "FP32")
    x.set_data_from_numpy(np.array([[5.1, 3.5, 1.4, 0.2]], np.float32), binary_data=True)
    assert c.infer("iris_logreg", [x]).as_numpy("label").tolist() == [0]
    c.close()
    root = Path(pki.ca).read_bytes()
    g = grpcclient.InferenceServerClient(url=tls_server.grpc_url, ssl=True, root_certificates=pki.ca)
    gx = grpcclient.InferInput("X", [1, 4], "FP32")
    gx.set_data_from_numpy(np.array([[5.1, 3.5, 1.4, 0.2]], np.float32))
    assert g.infer("iris_logreg", [gx]).as_numpy("label").tolist() == [0]
    g.close()
    assert root
    # Plaintext to a TLS port is refused; the metrics port has TLS too.
    import http.client
    with pytest.raises((OSError, http.client.HTTPException)):
        urllib.request.urlopen(f"http://{tls_server.url}/v2/health/live", timeout=5).read()
    with urllib.request.urlopen(f"https://{tls_server.metrics_url}/metrics", timeout=5,
                                context=pki.context()) as r:
        assert r.status == 200


def test_the_cli_speaks_https_with_a_private_ca(tls_server, pki, tmp_path):
    """`inferd models` and `inferd batch --url` against the TLS server: the CA from
    $INFERD_CA_CERT; without it the server's certificate is refused."""
    import os
    url = f"https://{tls_server.url}"
    env = {**os.environ, "INFERD_CA_CERT": str(pki.ca)}
    done = subprocess.run([str(binary()), "models", "--url", url, "list"], capture_output=True, text=True,
                          env=env, timeout=60)
    assert done.returncode == 0 and "iris_logreg" in done.stdout, done.stderr
    src, out = tmp_path / "rows.csv", tmp_path / "scores.csv"
    src.write_text("a,b,c,d\n5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3\n")
    done = subprocess.run([str(binary()), "batch", "--progress", "off", "--url", url, "--model", "iris_logreg",
                           "--input", str(src), "--output", str(out)], capture_output=True, text=True, env=env,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert [line.split(",")[1] for line in out.read_text().splitlines()[1:]] == ["0", "2"]
    env.pop("INFERD_CA_CERT")
    done = subprocess.run([str(binary()), "models", "--url", url, "list"], capture_output=True, text=True,
                          env=env, timeout=60)
    assert done.returncode != 0 and "certificate" in done.stderr.lower(), done.stderr


def peer_certificate(url, pki):
    host, port = url.split(":")
    import socket
    with socket.create_connection((host, int(port)), timeout=5) as s:
        with pki.context().wrap_socket(s, server_hostname="localhost") as t:
            return t.getpeercert(binary_form=True)


def test_certificate_reload_keeps_connections(tls_server, pki):
    import http.client
    before = peer_certificate(tls_server.url, pki)
    conn = http.client.HTTPSConnection(tls_server.url.split(":")[0], int(tls_server.url.split(":")[1]),
                                       context=pki.context(), timeout=10)
    conn.request("GET", "/v2/health/live")
    assert conn.getresponse().read() is not None
    pki.issue("server2", "/CN=localhost", "ca", san="subjectAltName=IP:127.0.0.1,DNS:localhost")
    # Key first, then the certificate: either order must not leave the server broken.
    shutil.copy(pki.path("server2.key"), tls_server.key)
    shutil.copy(pki.path("server2.crt"), tls_server.cert)
    deadline = time.monotonic() + 10
    while peer_certificate(tls_server.url, pki) == before:
        assert time.monotonic() < deadline, "the new certificate was not served within 10 s"
        time.sleep(0.2)
    # The connection opened before the change still works.
    conn.request("GET", "/v2/health/live")
    assert conn.getresponse().status == 200
    conn.close()


@pytest.fixture(scope="module")
def mtls_server(tmp_path_factory, pki):
    tmp = tmp_path_factory.mktemp("mtls")
    keys = tmp / "keys.toml"
    keys.write_text('[[subjects]]\nsubject = "CN=batch,O=acme"\nid = "batch"\nscopes = ["inference:iris*", "health"]\n')
    ops = create_key(keys, "ops", "admin")
    srv = Server(repository(tmp), tmp / "inferd.log", "--tls-cert", pki.path("server.crt"), "--tls-key",
                 pki.path("server.key"), "--tls-client-ca", pki.ca, "--auth", "--auth-keys", keys,
                 token=ops, tls=pki.context("client"))
    yield srv
    srv.stop()
    assert_no_secret(tmp / "inferd.log")


def test_mtls(mtls_server, pki):
    # Without a certificate, or with one from another CA: no connection.
    for ctx in [pki.context(), pki.context("rogue")]:
        with pytest.raises((ssl.SSLError, OSError)):
            urllib.request.urlopen(f"https://{mtls_server.url}/v2/health/live", timeout=5, context=ctx).read()
    # The certificate's subject is a principal with scopes from the key file.
    status, _, answer = request(mtls_server, "POST", "/v2/models/iris_logreg/infer", body=IRIS)
    assert status == 200, answer
    status, _, answer = request(mtls_server, "GET", "/v2/repository/index")
    assert status == 403 and "batch" in json.loads(answer)["error"]
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException
    g = grpcclient.InferenceServerClient(url=mtls_server.grpc_url, ssl=True, root_certificates=pki.ca,
                                         private_key=pki.path("client.key"),
                                         certificate_chain=pki.path("client.crt"))
    gx = grpcclient.InferInput("X", [1, 4], "FP32")
    gx.set_data_from_numpy(np.array([[5.1, 3.5, 1.4, 0.2]], np.float32))
    assert g.infer("iris_logreg", [gx]).as_numpy("label").tolist() == [0]
    g.close()
    bare = grpcclient.InferenceServerClient(url=mtls_server.grpc_url, ssl=True, root_certificates=pki.ca)
    with pytest.raises(InferenceServerException):
        bare.is_server_live()
    bare.close()
    time.sleep(0.3)
    assert "principal=batch" in mtls_server.logs()


def test_perf_analyzer_over_tls(tls_server, pki):
    path, env = perf_analyzer()
    # -s 100 -r 10: any three windows in ten count as stable (this checks TLS, not speed).
    common = ["-m", "iris_logreg", "--concurrency-range", "2", "-p", "500", "-s", "100", "-r", "10"]
    runs = [
        ["-i", "grpc", "-u", tls_server.grpc_url, "--ssl-grpc-use-ssl", "--ssl-grpc-root-certifications-file", pki.ca],
        ["-i", "http", "-u", f"https://{tls_server.url}", "--ssl-https-verify-peer", "1", "--ssl-https-verify-host", "2",
         "--ssl-https-ca-certificates-file", pki.ca],
    ]
    for args in runs:
        done = subprocess.run([str(path), *common, *args], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "Throughput" in done.stdout


# --- slow clients ---------------------------------------------------------------------------

def test_slow_and_idle_clients_are_closed_and_connections_capped(tmp_path):
    import socket
    srv = Server(repository(tmp_path), tmp_path / "inferd.log", "--header-timeout-secs", "1",
                 "--max-connections", "3")
    try:
        host, port = srv.url.split(":")
        # Half a request line, then silence: closed after the header timeout.
        slow = socket.create_connection((host, int(port)))
        slow.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n")
        slow.settimeout(5)
        started = time.monotonic()
        answer = slow.recv(4096)
        assert answer == b"" or answer.startswith(b"HTTP/1.1 408"), answer
        assert time.monotonic() - started < 4, "a client that stalls in its headers was not cut off"
        slow.close()
        # Connections beyond the cap wait for a slot instead of being served.
        idle = [socket.create_connection((host, int(port))) for _ in range(3)]
        time.sleep(0.2)
        waiting = socket.create_connection((host, int(port)))
        waiting.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        waiting.settimeout(0.5)
        with pytest.raises(socket.timeout):
            waiting.recv(4096)
        # Idle connections are closed at the header timeout too, which frees the slots.
        waiting.settimeout(5)
        assert waiting.recv(4096).startswith(b"HTTP/1.1 200")
        for s in idle + [waiting]:
            s.close()
        assert srv.get("/v2/health/ready")[0] == 200
    finally:
        srv.stop()
