"""Triton's `reshape`: clients send and receive tensors in the config's dims while the backend
gets and gives the reshaped ones (iris with its 4 features sent as 2x2 and its 3 probabilities
answered as 3x1)."""

import shutil

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from conftest import FIXTURES, Server, as_array, expected

CONFIG = """\
inputs = [{ name = "X", datatype = "FP32", dims = [2, 2], reshape = { shape = [4] } }]
outputs = [{ name = "probabilities", datatype = "FP32", dims = [3, 1], reshape = { shape = [3] } }]
"""


@pytest.fixture(scope="module")
def reshape_server(tmp_path_factory):
    repo = tmp_path_factory.mktemp("reshape")
    shutil.copytree(FIXTURES / "models" / "iris_logreg", repo / "iris_2x2")
    (repo / "iris_2x2" / "config.toml").write_text(CONFIG)
    bad = repo / "iris_bad"
    shutil.copytree(FIXTURES / "models" / "iris_logreg", bad)
    (bad / "config.toml").write_text(CONFIG.replace("dims = [2, 2]", "dims = [5]"))
    srv = Server(repo, tmp_path_factory.mktemp("log") / "reshape.log")
    yield srv
    srv.stop()


@pytest.mark.parametrize("module", [httpclient, grpcclient])
def test_clients_use_the_config_dims_and_get_the_models_answer(reshape_server, module):
    fixture = expected("iris_logreg")
    x = as_array(fixture["inputs"]["X"])
    want = as_array(fixture["outputs"]["probabilities"])
    url = reshape_server.url if module is httpclient else reshape_server.grpc_url
    with module.InferenceServerClient(url=url) as c:
        inp = module.InferInput("X", [len(x), 2, 2], "FP32")
        inp.set_data_from_numpy(x.reshape(len(x), 2, 2))
        r = c.infer("iris_2x2", [inp])
        got = r.as_numpy("probabilities")
        assert got.shape == (len(x), 3, 1)
        np.testing.assert_allclose(got.reshape(len(x), 3), want, rtol=1e-5, atol=1e-6)
        assert r.as_numpy("label").shape == (len(x),)
        # The backend's own shape is refused: clients use the config's dims.
        flat = module.InferInput("X", [1, 4], "FP32")
        flat.set_data_from_numpy(x[:1])
        with pytest.raises(InferenceServerException, match=r"expects \[-1, 2, 2\]"):
            c.infer("iris_2x2", [flat])


def test_metadata_and_config_show_dims_and_reshape(reshape_server):
    with httpclient.InferenceServerClient(url=reshape_server.url) as c:
        meta = c.get_model_metadata("iris_2x2")
        assert meta["inputs"] == [{"name": "X", "datatype": "FP32", "shape": [-1, 2, 2]}]
        config = c.get_model_config("iris_2x2")
        assert config["input"][0]["dims"] == [2, 2]
        assert config["input"][0]["reshape"] == {"shape": [4]}
        prob = next(o for o in config["output"] if o["name"] == "probabilities")
        assert (prob["dims"], prob["reshape"]) == ([3, 1], {"shape": [3]})
        assert "reshape" not in next(o for o in config["output"] if o["name"] == "label")
        index = {m["name"]: m for m in c.get_model_repository_index()}
        assert index["iris_bad"]["state"] == "UNAVAILABLE"
        assert "dims [5] and reshape [4] must hold as many elements" in index["iris_bad"]["reason"]
    with grpcclient.InferenceServerClient(url=reshape_server.grpc_url) as g:
        pb = g.get_model_config("iris_2x2").config
        assert list(pb.input[0].reshape.shape) == [4]
        assert list(pb.input[0].dims) == [2, 2]
