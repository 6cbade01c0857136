"""Processing models served natively: the tokenizer backend against the Python `tokenizers`
library (same tokenizer.json, same padding and truncation), and top-K post-processing
against numpy, over HTTP and gRPC with tritonclient."""

import shutil

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tokenizers import Tokenizer

from conftest import FIXTURES, Server

PROCESSING = FIXTURES / "processing"
TEXTS = [
    "The model server loads trained models.",
    "Déjà vu: naïve café in Zürich",
    "東京 and 北京 🙂🚀",
    "",
    "fraud detection " * 20,  # over max_length: truncated
    "   spaces   and\ttabs\nnewlines  ",
    "UNKNOWN-words like zzyzx and qwxj",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("processing")
    repo = tmp / "repo"
    shutil.copytree(PROCESSING, repo)
    srv = Server(repo, tmp / "processing.log")
    yield srv
    srv.stop()


def reference(texts):
    tok = Tokenizer.from_file(str(PROCESSING / "tokenizer" / "1" / "tokenizer.json"))
    tok.enable_padding(pad_id=tok.token_to_id("[PAD]"), pad_token="[PAD]")
    tok.enable_truncation(max_length=16)
    enc = tok.encode_batch(texts)
    return {"input_ids": np.array([e.ids for e in enc]), "attention_mask": np.array([e.attention_mask for e in enc]),
            "token_type_ids": np.array([e.type_ids for e in enc])}


def texts_tensor(module, texts):
    data = np.array([t.encode() for t in texts], dtype=np.object_).reshape(len(texts), 1)
    t = module.InferInput("text", [len(texts), 1], "BYTES")
    t.set_data_from_numpy(data)
    return t


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_token_ids_match_the_python_library(server, protocol):
    module = httpclient if protocol == "http" else grpcclient
    url = server.url if protocol == "http" else server.grpc_url
    want = reference(TEXTS)
    with module.InferenceServerClient(url) as c:
        r = c.infer("tokenizer", [texts_tensor(module, TEXTS)])
        for name, expected in want.items():
            got = r.as_numpy(name)
            assert got.dtype == np.int64 and got.shape == expected.shape, name
            np.testing.assert_array_equal(got, expected, err_msg=name)
        # One text at a time: padded to its own length.
        for text in TEXTS:
            r = c.infer("tokenizer", [texts_tensor(module, [text])])
            np.testing.assert_array_equal(r.as_numpy("input_ids"), reference([text])["input_ids"])


def test_tokenizer_metadata_and_bad_input(server):
    with httpclient.InferenceServerClient(server.url) as c:
        meta = c.get_model_metadata("tokenizer")
        assert [i["name"] for i in meta["inputs"]] == ["text"]
        assert [o["name"] for o in meta["outputs"]] == ["input_ids", "attention_mask", "token_type_ids"]
        assert meta["platform"] == "tokenizer"
    bad = b'{"inputs":[{"name":"text","datatype":"BYTES","shape":[1,1],"parameters":{"binary_data_size":5}}]}'
    status, _, body = server.post("/v2/models/tokenizer/infer", bad + b"\x01\x00\x00\x00\xff",
                                  {"Inference-Header-Content-Length": str(len(bad))})
    assert status == 400 and b"UTF-8" in body, body


def test_top3_labels_from_scores(server):
    rng = np.random.default_rng(3)
    scores = rng.standard_normal((4, 5)).astype(np.float32)
    labels = (PROCESSING / "top3" / "1" / "labels.txt").read_text().split()
    probs = np.exp(scores - scores.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    order = np.argsort(-probs, axis=1, kind="stable")[:, :3]
    for module, url in ((httpclient, server.url), (grpcclient, server.grpc_url)):
        with module.InferenceServerClient(url) as c:
            x = module.InferInput("scores", [4, 5], "FP32")
            x.set_data_from_numpy(scores)
            r = c.infer("top3", [x])
            np.testing.assert_array_equal(r.as_numpy("top_indices"), order)
            np.testing.assert_allclose(r.as_numpy("top_scores"), np.take_along_axis(probs, order, 1), rtol=1e-5)
            assert [[v.decode() for v in row] for row in r.as_numpy("top_labels")] == \
                [[labels[i] for i in row] for row in order]
