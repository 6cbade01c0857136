"""XGBoost and LightGBM models dropped in as the libraries save them, served by the tree backend
over both protocols, answering what the libraries' predict() answers."""

import shutil

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from conftest import FIXTURES, Server, as_array, expected

NAMES = sorted(p.name for p in (FIXTURES / "trees").iterdir())


@pytest.fixture(scope="module")
def tree_server(tmp_path_factory):
    repo = tmp_path_factory.mktemp("trees")
    for name in NAMES:
        shutil.copytree(FIXTURES / "trees" / name, repo / name)
    srv = Server(repo, tmp_path_factory.mktemp("log") / "trees.log")
    yield srv
    srv.stop()


@pytest.mark.parametrize("name", NAMES)
def test_tree_models_match_their_library(tree_server, name):
    fixture = expected(name)
    x = as_array(fixture["inputs"]["input"])
    want = as_array(fixture["outputs"]["predictions"])
    for module, url in ((httpclient, tree_server.url), (grpcclient, tree_server.grpc_url)):
        client = module.InferenceServerClient(url=url)
        inp = module.InferInput("input", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        got = client.infer(name, [inp]).as_numpy("predictions")
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-5)
        client.close()
    with httpclient.InferenceServerClient(url=tree_server.url) as c:
        assert c.get_model_metadata(name)["platform"] == "tree_ensemble"
