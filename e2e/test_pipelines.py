"""Ensembles: a three-step text pipeline (tokenizer -> ONNX classifier -> top-3 labels) against
the Python `tokenizers` library and numpy, Triton's two-model example shape with its /config
and perf_analyzer, loads refused with the offending step named, and a step that stops serving."""

import json
import shutil
import subprocess
import threading

import numpy as np
import onnx
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from onnx import numpy_helper
from tokenizers import Tokenizer

from conftest import FIXTURES, Server, perf_analyzer
from test_processing import TEXTS

PROCESSING = FIXTURES / "processing"
PIPELINES = FIXTURES / "pipelines"


def repository(root):
    for d in [*PROCESSING.iterdir(), *PIPELINES.iterdir()]:
        shutil.copytree(d, root / d.name)
    shutil.copytree(FIXTURES / "models" / "iris_logreg", root / "iris_logreg")
    return root


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pipelines")
    srv = Server(repository(tmp / "repo"), tmp / "pipelines.log")
    yield srv
    srv.stop()


def reference(texts):
    """The pipeline computed without inferd: the Python tokenizer, the ONNX model's weights in
    numpy, softmax and top-3."""
    tok = Tokenizer.from_file(str(PROCESSING / "tokenizer" / "1" / "tokenizer.json"))
    tok.enable_padding(pad_id=tok.token_to_id("[PAD]"), pad_token="[PAD]")
    tok.enable_truncation(max_length=16)
    enc = tok.encode_batch(texts)
    ids = np.array([e.ids for e in enc])
    mask = np.array([e.attention_mask for e in enc], np.float32)
    weights = {i.name: numpy_helper.to_array(i)
               for i in onnx.load(str(PIPELINES / "sentiment" / "1" / "model.onnx")).graph.initializer}
    mean = (weights["emb"][ids] * mask[..., None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1)
    logits = mean @ weights["w"] + weights["b"]
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    order = np.argsort(-probs, axis=1, kind="stable")[:, :3]
    names = (PROCESSING / "top3" / "1" / "labels.txt").read_text().split()
    return ids, [[names[i] for i in row] for row in order], np.take_along_axis(probs, order, 1)


def text_input(module, texts, name="TEXT"):
    t = module.InferInput(name, [len(texts), 1], "BYTES")
    t.set_data_from_numpy(np.array([s.encode() for s in texts], dtype=np.object_).reshape(-1, 1))
    return t


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_text_in_labels_out_matches_the_python_pipeline(server, protocol):
    module = httpclient if protocol == "http" else grpcclient
    url = server.url if protocol == "http" else server.grpc_url
    ids, labels, scores = reference(TEXTS)
    with module.InferenceServerClient(url) as c:
        r = c.infer("text_labels", [text_input(module, TEXTS)])
        assert [[v.decode() for v in row] for row in r.as_numpy("LABELS")] == labels
        np.testing.assert_allclose(r.as_numpy("SCORES"), scores, rtol=1e-5)
        # The same chain called model by model from the client gives the same answer.
        tokens = c.infer("tokenizer", [text_input(module, TEXTS, "text")])
        np.testing.assert_array_equal(tokens.as_numpy("input_ids"), ids)
        feeds = []
        for name in ("input_ids", "attention_mask"):
            x = module.InferInput(name, list(tokens.as_numpy(name).shape), "INT64")
            x.set_data_from_numpy(tokens.as_numpy(name))
            feeds.append(x)
        logits = c.infer("sentiment", feeds).as_numpy("logits")
        x = module.InferInput("scores", list(logits.shape), "FP32")
        x.set_data_from_numpy(logits)
        top = c.infer("top3", [x])
        assert top.as_numpy("top_labels").tolist() == r.as_numpy("LABELS").tolist()


def test_concurrent_texts_of_every_length_through_the_batchers(server):
    """Requests of different lengths meet in the steps' dynamic batchers."""
    _, labels, _ = reference(TEXTS)
    failures = []

    def run(i):
        with httpclient.InferenceServerClient(server.url) as c:
            for _ in range(20):
                r = c.infer("text_labels", [text_input(httpclient, [TEXTS[i]])])
                got = [v.decode() for v in r.as_numpy("LABELS")[0]]
                if got != labels[i]:
                    failures.append((i, got, labels[i]))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(TEXTS))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures[:3]


def test_triton_example_shape_config_statistics_and_perf_analyzer(server):
    x = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], np.float32)
    with grpcclient.InferenceServerClient(server.grpc_url) as c:
        config = c.get_model_config("iris_classes", as_json=True)["config"]
        assert config["platform"] == "ensemble"
        steps = config["ensemble_scheduling"]["step"]
        assert [(s["model_name"], s["model_version"]) for s in steps] == [("iris_logreg", "1"), ("iris_top2", "-1")]
        assert steps[0]["input_map"] == {"X": "FEATURES"}
        assert steps[0]["output_map"] == {"probabilities": "probs", "label": "CLASS_ID"}
        assert c.get_model_metadata("iris_classes", as_json=True)["platform"] == "ensemble"
        f = grpcclient.InferInput("FEATURES", [2, 4], "FP32")
        f.set_data_from_numpy(x)
        r = c.infer("iris_classes", [f])
        direct = grpcclient.InferInput("X", [2, 4], "FP32")
        direct.set_data_from_numpy(x)
        alone = c.infer("iris_logreg", [direct])
        np.testing.assert_array_equal(r.as_numpy("CLASS_ID"), alone.as_numpy("label"))
        species = np.array(["setosa", "versicolor", "virginica"])
        order = np.argsort(-alone.as_numpy("probabilities"), axis=1, kind="stable")[:, :2]
        assert [[v.decode() for v in row] for row in r.as_numpy("SPECIES")] == species[order].tolist()
    with httpclient.InferenceServerClient(server.url) as c:
        assert c.get_model_config("iris_classes")["ensemble_scheduling"]["step"][1]["model_version"] == -1

    def counts():
        with httpclient.InferenceServerClient(server.url) as c:
            stats = {s["name"]: s["inference_count"] for s in c.get_inference_statistics()["model_stats"]}
        return stats["iris_classes"], stats["iris_logreg"], stats["iris_top2"]

    before = counts()
    binary, env = perf_analyzer()
    done = subprocess.run([str(binary), "-m", "iris_classes", "-u", server.grpc_url, "-i", "grpc",
                           "--concurrency-range", "4", "-p", "1500", "-s", "100", "-r", "5"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "Throughput" in done.stdout
    after = counts()
    ran = after[0] - before[0]
    assert ran > 100
    # Every ensemble request ran both steps, each counted by its own model.
    assert after[1] - before[1] >= ran and after[2] - before[2] >= ran


BAD = {
    "cycle": ({"X": "back"}, {"probabilities": "probs"}, {"scores": "probs"},
              {"top_labels": "OUT", "top_scores": "back"}, "part of a cycle"),
    "datatype": ({"X": "FEATURES"}, {"label": "probs"}, {"scores": "probs"},
                 {"top_labels": "OUT"}, "step 2 (model 'iris_top2'): its input 'scores' is FP32 but 'probs' is INT64"),
    "unknown": ({"X": "FEATURES"}, {"probabilities": "probs"}, {"scores": "probs"},
                {"top_labels": "OUT"}, None),
}


@pytest.fixture()
def explicit(tmp_path):
    srv = Server(repository(tmp_path / "repo"), tmp_path / "explicit.log", "--model-control-mode", "explicit",
                 "--load-model", "iris_logreg", "--load-model", "iris_top2")
    yield srv
    srv.stop()


@pytest.mark.parametrize("case", sorted(BAD))
def test_loading_refuses_a_broken_graph_naming_the_step(explicit, case):
    in1, out1, in2, out2, message = BAD[case]
    second = "no_such_model" if case == "unknown" else "iris_top2"
    config = {
        "platform": "ensemble", "max_batch_size": 8,
        "input": [{"name": "FEATURES", "data_type": "TYPE_FP32", "dims": [4]}],
        "output": [{"name": "OUT", "data_type": "TYPE_STRING", "dims": [2]}],
        "ensemble_scheduling": {"step": [
            {"model_name": "iris_logreg", "model_version": -1, "input_map": in1, "output_map": out1},
            {"model_name": second, "model_version": -1, "input_map": in2, "output_map": out2}]},
    }
    message = message or "step 2 (model 'no_such_model'): Request for unknown model: 'no_such_model' is not found"
    with httpclient.InferenceServerClient(explicit.url) as c:
        with pytest.raises(Exception) as err:
            c.load_model("iris_classes", config=json.dumps(config))
        assert message in str(err.value), str(err.value)
        # The server goes on serving the step models.
        assert c.is_model_ready("iris_logreg")


def test_loading_an_ensemble_loads_its_steps_and_follows_their_readiness(explicit):
    with httpclient.InferenceServerClient(explicit.url) as c:
        assert not c.is_model_ready("sentiment")
        c.load_model("text_labels")
        assert c.is_model_ready("sentiment") and c.is_model_ready("tokenizer") and c.is_model_ready("text_labels")
        assert c.infer("text_labels", [text_input(httpclient, ["hello"])]).as_numpy("LABELS").shape == (1, 3)
        c.unload_model("sentiment")
        assert not c.is_model_ready("text_labels")
        index = {m["name"]: m for m in c.get_model_repository_index() if m.get("version")}
        assert index["text_labels"]["state"] == "UNAVAILABLE"
        assert "step 2 (model 'sentiment') is not ready" in index["text_labels"]["reason"]
        with pytest.raises(Exception) as err:
            c.infer("text_labels", [text_input(httpclient, ["hello"])])
        assert "ensemble 'text_labels' step 2 (model 'sentiment') failed" in str(err.value), str(err.value)
        # The other steps serve on.
        assert c.infer("tokenizer", [text_input(httpclient, ["hello"], "text")]).as_numpy("input_ids").shape[0] == 1
        c.load_model("sentiment")
        assert c.is_model_ready("text_labels")
        assert c.infer("text_labels", [text_input(httpclient, ["hello"])]).as_numpy("LABELS").shape == (1, 3)
