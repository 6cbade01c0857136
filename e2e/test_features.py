"""Feature-store pipelines: an account id in, its features from a real Feast feature server (a
SQLite online store materialized from a Parquet file written here) or from Redis hashes (Debian's
redis-server), a tree model, a fraud probability out; compared with the same model fed the
features directly. Then the stores stop: requests fail fast with the reason, or answer cached
values and defaults where configured, and the server keeps serving."""

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from conftest import FIXTURES, ROOT, Server, free_ports
from test_sources import wait_http

FEAST_PYTHON = os.environ.get("INFERD_FEAST_PYTHON", str(ROOT / ".venv-feast" / "bin" / "python"))

# account id -> (amount_mean, txn_count, chargebacks); values exact in FP32. Account 4 is only
# ever asked for after the stores stop.
ACCOUNTS = {1: (10.5, 5, 0), 2: (200.0, 100, 3), 3: (33.25, 7, 1), 4: (120.0, 12, 2)}
DEFAULTS = (50.0, 30, 0)
FEATURES = ["amount_mean", "txn_count", "chargebacks"]

FEATURE_REPO = """
from datetime import timedelta
from feast import Entity, FeatureService, FeatureView, Field, FileSource
from feast.types import Float32, Int64

account = Entity(name="account", join_keys=["account_id"])
stats = FeatureView(
    name="account_stats", entities=[account], ttl=timedelta(days=3650),
    schema=[Field(name="amount_mean", dtype=Float32), Field(name="txn_count", dtype=Int64),
            Field(name="chargebacks", dtype=Int64)],
    source=FileSource(path="data/accounts.parquet", timestamp_field="event_timestamp"))
fraud_v1 = FeatureService(name="fraud_v1", features=[stats])
"""

WRITE_PARQUET = """
import sys, pandas as pd
rows = [tuple(map(float, r.split(","))) for r in sys.argv[1:]]
pd.DataFrame({
    "account_id": [int(r[0]) for r in rows], "amount_mean": [r[1] for r in rows],
    "txn_count": [int(r[2]) for r in rows], "chargebacks": [int(r[3]) for r in rows],
    "event_timestamp": [pd.Timestamp("2026-01-01", tz="UTC")] * len(rows),
}).to_parquet("data/accounts.parquet")
"""


class Feast:
    """`feast apply`, `feast materialize`, then `feast serve` on a free loopback port."""

    def __init__(self, tmp):
        if not Path(FEAST_PYTHON).exists():
            pytest.fail(f"Feast's venv is missing ({FEAST_PYTHON}): scripts/test makes it from e2e/requirements-feast.txt")
        self.dir = tmp / "feast"
        (self.dir / "data").mkdir(parents=True)
        (self.dir / "feature_store.yaml").write_text(
            "project: fraud\nregistry: data/registry.db\nprovider: local\n"
            "online_store:\n  type: sqlite\n  path: data/online.db\nentity_key_serialization_version: 3\n")
        (self.dir / "features.py").write_text(FEATURE_REPO)
        self.env = dict(os.environ, FEAST_USAGE="False")
        self.run(FEAST_PYTHON, "-c", WRITE_PARQUET, *(",".join(map(str, (k, *v))) for k, v in ACCOUNTS.items()))
        feast = str(Path(FEAST_PYTHON).parent / "feast")
        self.run(feast, "apply")
        self.run(feast, "materialize", "2025-01-01T00:00:00", "2026-06-01T00:00:00")
        self.port = free_ports(1)[0]
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([feast, "serve", "-h", "127.0.0.1", "-p", str(self.port)], cwd=self.dir,
                                     env=self.env, stdout=open(self.dir / "serve.log", "w"),
                                     stderr=subprocess.STDOUT, start_new_session=True)
        wait_http(f"{self.url}/health", 120)

    def run(self, *cmd):
        done = subprocess.run(cmd, cwd=self.dir, env=self.env, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            pytest.fail(f"cannot set up Feast ({cmd[0]} {cmd[1]}): {done.stdout[-2000:]}{done.stderr[-3000:]}")

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(30)


class Redis:
    """Debian's redis-server on a free loopback port, no persistence."""

    def __init__(self, tmp):
        if not shutil.which("redis-server"):
            pytest.fail("redis-server is not installed (scripts/test installs Debian's redis-server)")
        self.port = free_ports(1)[0]
        self.url = f"redis://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                                      "--save", "", "--appendonly", "no", "--dir", str(tmp)],
                                     stdout=open(tmp / "redis.log", "w"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while self.cli("PING") != "PONG":
            if time.monotonic() > deadline or self.proc.poll() is not None:
                pytest.fail(f"redis-server did not start: {(tmp / 'redis.log').read_text()}")
            time.sleep(0.1)

    def cli(self, *args):
        done = subprocess.run(["redis-cli", "-p", str(self.port), *map(str, args)], capture_output=True, text=True)
        return done.stdout.strip()

    def stop(self):
        self.proc.terminate()
        self.proc.wait(20)


def lookup(root, name, backend, **parameters):
    """A lookup model's directory: config.toml from `parameters` (TOML written by hand)."""
    def toml(v):
        if isinstance(v, str):
            return f'"{v}"'
        if isinstance(v, list):
            return "[" + ", ".join(toml(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {toml(x)}" for k, x in v.items()) + " }"
        return str(v)
    (root / name / "1").mkdir(parents=True)
    lines = [f'backend = "{backend}"', "max_batch_size = 64",
             'inputs = [{ name = "account_id", datatype = "INT64", dims = [1] }]', "[parameters]"]
    lines += [f"{k} = {toml(v)}" for k, v in parameters.items()]
    (root / name / "config.toml").write_text("\n".join(lines) + "\n")


def fraud_ensemble(root, name, features):
    (root / name).mkdir()
    (root / name / "config.toml").write_text(f"""
platform = "ensemble"
max_batch_size = 64
inputs = [{{ name = "ACCOUNT", datatype = "INT64", dims = [1] }}]
outputs = [{{ name = "FRAUD_PROBABILITY", datatype = "FP32", dims = [] }}]

[[ensemble.step]]
model = "{features}"
input_map = {{ account_id = "ACCOUNT" }}
output_map = {{ features = "features" }}

[[ensemble.step]]
model = "fraud_xgb"
input_map = {{ input = "features" }}
output_map = {{ predictions = "FRAUD_PROBABILITY" }}
""")


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("features")
    redis = Redis(tmp)
    feast = Feast(tmp)
    for account, values in ACCOUNTS.items():
        if account != 4:
            redis.cli("HSET", f"account:{account}", *[x for pair in zip(FEATURES, values) for x in pair])
    redis.cli("HSET", "account:8", "amount_mean", "lots", "txn_count", "3")
    repo = tmp / "repo"
    shutil.copytree(FIXTURES / "fraud" / "fraud_xgb", repo / "fraud_xgb")
    lookup(repo, "account_features", "feast", url=feast.url, entity="account_id", timeout_ms=500,
           features=[f"account_stats:{f}" for f in FEATURES])
    lookup(repo, "account_features_or_defaults", "feast", url=feast.url, entity="account_id",
           feature_service="fraud_v1", features=FEATURES, on_unavailable="defaults", cache_ttl_ms=600000,
           defaults=dict(zip(FEATURES, DEFAULTS)))
    lookup(repo, "account_bogus", "feast", url=feast.url, entity="account_id", features=["account_stats:bogus"])
    lookup(repo, "account_hash", "redis", url=redis.url, entity="account_id", key="account:{account_id}",
           features=FEATURES, defaults={"chargebacks": 0}, timeout_ms=500)
    fraud_ensemble(repo, "fraud", "account_features")
    fraud_ensemble(repo, "fraud_or_defaults", "account_features_or_defaults")
    fraud_ensemble(repo, "fraud_redis", "account_hash")
    srv = Server(repo, tmp / "features.log")
    yield srv, feast, redis
    srv.stop()
    feast.stop()
    redis.stop()


def accounts(module, ids):
    t = module.InferInput("ACCOUNT", [len(ids), 1], "INT64")
    t.set_data_from_numpy(np.array(ids, np.int64).reshape(-1, 1))
    return t


def direct(c, module, rows):
    """fraud_xgb fed the features by the client."""
    x = module.InferInput("input", [len(rows), 3], "FP32")
    x.set_data_from_numpy(np.array(rows, np.float32))
    return c.infer("fraud_xgb", [x]).as_numpy("predictions")


def fails(c, call, *args):
    with pytest.raises(InferenceServerException) as e:
        call(*args)
    return str(e.value)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("ensemble", ["fraud", "fraud_or_defaults", "fraud_redis"])
def test_entity_id_in_probability_out_matches_the_model_fed_the_features(stores, protocol, ensemble):
    srv = stores[0]
    module = httpclient if protocol == "http" else grpcclient
    with module.InferenceServerClient(srv.url if protocol == "http" else srv.grpc_url) as c:
        ids = [3, 1, 2, 1]
        got = c.infer(ensemble, [accounts(module, ids)]).as_numpy("FRAUD_PROBABILITY")
        want = direct(c, module, [ACCOUNTS[i] for i in ids])
        assert got.shape == (4,)
        np.testing.assert_array_equal(got, want)
        assert len(set(want.tolist())) == 3, "the accounts' features lead to different answers"


def test_the_lookup_alone_answers_the_features_in_the_configured_order(stores):
    srv = stores[0]
    with httpclient.InferenceServerClient(srv.url) as c:
        for model in ("account_features", "account_hash"):
            t = httpclient.InferInput("account_id", [2, 1], "INT64")
            t.set_data_from_numpy(np.array([[2], [3]], np.int64))
            r = c.infer(model, [t]).as_numpy("features")
            np.testing.assert_array_equal(r, np.array([ACCOUNTS[2], ACCOUNTS[3]], np.float32))
        meta = c.get_model_metadata("account_features")
        assert meta["platform"] == "feast"
        assert meta["outputs"] == [{"name": "features", "datatype": "FP32", "shape": [-1, 3]}]


def test_missing_values_take_their_default_or_fail_naming_the_feature(stores):
    srv = stores[0]
    with httpclient.InferenceServerClient(srv.url) as c:
        message = fails(c, c.infer, "fraud", [accounts(httpclient, [1, 99])])
        assert "ensemble 'fraud' step 1 (model 'account_features') failed" in message
        assert "feature 'amount_mean' of account_id 99 is NOT_FOUND and has no default" in message
        got = c.infer("fraud_or_defaults", [accounts(httpclient, [99])]).as_numpy("FRAUD_PROBABILITY")
        np.testing.assert_array_equal(got, direct(c, httpclient, [DEFAULTS]))
        # Redis: a hash without the field takes its default (chargebacks); one without a
        # default fails; a value that is not a number says so.
        srv_message = fails(c, c.infer, "fraud_redis", [accounts(httpclient, [99])])
        assert "feature 'amount_mean' of account_id 99 is not in the hash and has no default" in srv_message
        bad = fails(c, c.infer, "fraud_redis", [accounts(httpclient, [8])])
        assert f"redis {stores[2].url}: account:8 field amount_mean = \"lots\" is not a number" in bad, bad
        stores[2].cli("HDEL", "account:3", "chargebacks")
        got = c.infer("fraud_redis", [accounts(httpclient, [3])]).as_numpy("FRAUD_PROBABILITY")
        np.testing.assert_array_equal(got, direct(c, httpclient, [(*ACCOUNTS[3][:2], 0)]))
        stores[2].cli("HSET", "account:3", "chargebacks", ACCOUNTS[3][2])
        # A feature Feast does not know: its own message.
        t = httpclient.InferInput("account_id", [1, 1], "INT64")
        t.set_data_from_numpy(np.array([[1]], np.int64))
        message = fails(c, c.infer, "account_bogus", [t])
        assert "Feature bogus not found in projection account_stats" in message, message


def test_stores_stopped_requests_fail_fast_or_answer_cached_values_and_defaults(stores):
    srv, feast, redis = stores
    with httpclient.InferenceServerClient(srv.url) as c:
        # Seen before the outage: in the lookup's cache.
        seen = c.infer("fraud_or_defaults", [accounts(httpclient, [2])]).as_numpy("FRAUD_PROBABILITY")
        one = direct(c, httpclient, [ACCOUNTS[1]])
        feast.stop()
        redis.stop()
        for ensemble, reason in [("fraud", f"feature server {feast.url} is unreachable"),
                                 ("fraud_redis", f"redis {redis.url}")]:
            started = time.monotonic()
            message = fails(c, c.infer, ensemble, [accounts(httpclient, [1])])
            assert time.monotonic() - started < 2, "a stopped store fails the request fast"
            assert reason in message, message
        got = c.infer("fraud_or_defaults", [accounts(httpclient, [2, 4])]).as_numpy("FRAUD_PROBABILITY")
        np.testing.assert_array_equal(got, [seen[0], direct(c, httpclient, [DEFAULTS])[0]])
        # Everything else serves on.
        assert c.is_server_ready() and c.is_model_ready("fraud")
        np.testing.assert_array_equal(direct(c, httpclient, [ACCOUNTS[1]]), one)
