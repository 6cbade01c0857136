"""The sequence batcher (Triton's sequence_batching): stateful accumulators whose state the server
carries, driven by tritonclient over HTTP and gRPC streams with integer and string sequence ids;
START/END semantics, the idle timeout, the oldest strategy batching across sequences, and a Python
model that sees its sequence id and flags."""

import json
import queue
import shutil
import sys
import threading
import time
import urllib.request

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from conftest import FIXTURES, Server


@pytest.fixture(scope="module")
def seq_server(tmp_path_factory):
    repo = tmp_path_factory.mktemp("sequences")
    for model in (FIXTURES / "sequences").iterdir():
        shutil.copytree(model, repo / model.name)
    srv = Server(repo, tmp_path_factory.mktemp("log") / "sequences.log", "--python", sys.executable)
    yield srv
    srv.stop()


def value(module, v):
    x = module.InferInput("INPUT", [1, 1], "INT32")
    x.set_data_from_numpy(np.array([[v]], dtype=np.int32))
    return [x]


def step(client, module, model, sid, v, start=False, end=False):
    r = client.infer(model, value(module, v), sequence_id=sid, sequence_start=start, sequence_end=end)
    return int(r.as_numpy("OUTPUT")[0][0]), r


def test_metadata_hides_what_the_server_fills_in_and_config_reports_it(seq_server):
    with httpclient.InferenceServerClient(url=seq_server.url) as c:
        meta = c.get_model_metadata("accumulator")
        assert [i["name"] for i in meta["inputs"]] == ["INPUT"]
        assert [o["name"] for o in meta["outputs"]] == ["OUTPUT", "FLAGS", "CORR"]
        config = c.get_model_config("accumulator")
    assert "dynamic_batching" not in config
    seq = config["sequence_batching"]
    assert seq["max_sequence_idle_microseconds"] == 1500000
    assert seq["direct"]["max_queue_delay_microseconds"] == 0
    kinds = {i["name"]: i["control"][0] for i in seq["control_input"]}
    assert kinds["START"]["kind"] == "CONTROL_SEQUENCE_START"
    assert kinds["START"]["int32_false_true"] == [0, 1]
    assert kinds["CORRID"] == {"kind": "CONTROL_SEQUENCE_CORRID", "int32_false_true": [], "fp32_false_true": [],
                               "bool_false_true": [], "data_type": "TYPE_INT64"}
    assert seq["state"] == [{"input_name": "STATE_IN", "output_name": "STATE_OUT", "data_type": "TYPE_INT32",
                             "dims": [1]}]
    with grpcclient.InferenceServerClient(url=seq_server.grpc_url) as g:
        pb = g.get_model_config("accumulator_oldest").config
    assert pb.WhichOneof("scheduling_choice") == "sequence_batching"
    assert pb.sequence_batching.oldest.max_candidate_sequences == 16
    assert pb.sequence_batching.oldest.max_queue_delay_microseconds == 2000
    assert [c.name for c in pb.sequence_batching.control_input] == ["START", "READY", "END"]
    assert pb.sequence_batching.state[0].output_name == "STATE_OUT"


def test_interleaved_sequences_over_http_keep_their_own_sums(seq_server):
    values = {11: [1, 2, 3, 4], 12: [10, 20, 30, 40], 2**40: [5, 5, 5, 5]}
    sums = {sid: 0 for sid in values}
    with httpclient.InferenceServerClient(url=seq_server.url) as c:
        for k in range(4):
            for sid, vs in values.items():
                out, r = step(c, httpclient, "accumulator", sid, vs[k], start=k == 0, end=k == 3)
                sums[sid] += vs[k]
                assert out == sums[sid]
                flags = int(r.as_numpy("FLAGS")[0][0])
                assert flags == (1 if k == 0 else 0) + (2 if k == 3 else 0)
                assert int(r.as_numpy("CORR")[0][0]) == sid
    assert sums == {11: 10, 12: 100, 2**40: 20}


def test_a_grpc_stream_runs_each_sequence_in_order(seq_server):
    answers = queue.Queue()
    client = grpcclient.InferenceServerClient(url=seq_server.grpc_url)
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    sequences = {101: list(range(1, 21)), 102: list(range(100, 120)), 103: [7] * 20}
    sent = 0
    for k in range(20):
        for sid, vs in sequences.items():
            client.async_stream_infer("accumulator", value(grpcclient, vs[k]), request_id=f"{sid}-{k}",
                                      sequence_id=sid, sequence_start=k == 0, sequence_end=k == 19)
            sent += 1
    got = {}
    for _ in range(sent):
        result, error = answers.get(timeout=30)
        assert error is None, error
        rid = result.get_response().id
        got[rid] = int(result.as_numpy("OUTPUT")[0][0])
    client.stop_stream()
    client.close()
    assert len(got) == sent
    for sid, vs in sequences.items():
        assert [got[f"{sid}-{k}"] for k in range(20)] == list(np.cumsum(vs))


def test_start_and_end_semantics_and_refusals(seq_server):
    with httpclient.InferenceServerClient(url=seq_server.url) as c:
        with pytest.raises(InferenceServerException, match="must specify the START flag") as e:
            step(c, httpclient, "accumulator", 555, 1)
        assert e.value.status() == "400"
        with pytest.raises(InferenceServerException, match="non-zero or non-empty correlation ID"):
            c.infer("accumulator", value(httpclient, 1))
        with pytest.raises(InferenceServerException, match="use an integer sequence_id"):
            step(c, httpclient, "accumulator", "text-id", 1, start=True)
        two = httpclient.InferInput("INPUT", [2, 1], "INT32")
        two.set_data_from_numpy(np.array([[1], [2]], dtype=np.int32))
        with pytest.raises(InferenceServerException, match="carries one row"):
            c.infer("accumulator", [two], sequence_id=556, sequence_start=True)
        assert step(c, httpclient, "accumulator", 557, 3, start=True)[0] == 3
        assert step(c, httpclient, "accumulator", 557, 4)[0] == 7
        # A START for a live id starts it over from zero.
        assert step(c, httpclient, "accumulator", 557, 5, start=True)[0] == 5
        assert step(c, httpclient, "accumulator", 557, 1, end=True)[0] == 6
        with pytest.raises(InferenceServerException, match="must specify the START flag"):
            step(c, httpclient, "accumulator", 557, 1)
        # The server serves everything else meanwhile.
        assert c.is_model_ready("accumulator")


def metric(srv, name, model):
    with urllib.request.urlopen(f"http://{srv.metrics_url}/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + "{") and f'model="{model}"' in line:
                return float(line.rsplit(" ", 1)[1])
    return None


def test_an_idle_sequence_is_released_and_counted(seq_server):
    before = metric(seq_server, "inferd_sequences_idle_released_total", "accumulator") or 0
    with httpclient.InferenceServerClient(url=seq_server.url) as c:
        step(c, httpclient, "accumulator", 777, 1, start=True)
        assert metric(seq_server, "inferd_sequences_active", "accumulator") >= 1
        time.sleep(0.9)
        assert step(c, httpclient, "accumulator", 777, 1)[0] == 2, "idle below the limit is kept"
        time.sleep(2.0)
        with pytest.raises(InferenceServerException, match="released after 1500000 us idle"):
            step(c, httpclient, "accumulator", 777, 1)
    assert metric(seq_server, "inferd_sequences_idle_released_total", "accumulator") >= before + 1


def test_the_oldest_strategy_batches_across_sequences_with_string_ids(seq_server):
    steps, threads, errors, results = 30, 8, [], {}

    def run(n):
        sid = f"user-{n}"
        try:
            with grpcclient.InferenceServerClient(url=seq_server.grpc_url) as g:
                total = 0
                for k in range(steps):
                    out, _ = step(g, grpcclient, "accumulator_oldest", sid, n + k, start=k == 0, end=k == steps - 1)
                    total += n + k
                    assert out == total, (sid, k, out, total)
                results[sid] = total
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    workers = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not errors, errors
    assert results == {f"user-{n}": sum(n + k for k in range(steps)) for n in range(threads)}
    with httpclient.InferenceServerClient(url=seq_server.url) as c:
        stats = c.get_inference_statistics("accumulator_oldest")["model_stats"][0]
    sizes = {b["batch_size"] for b in stats["batch_stats"]}
    assert max(sizes) > 1, f"no batch across sequences: {sizes}"
    assert stats["inference_count"] == steps * threads


def test_a_python_model_sees_its_sequence_id_and_flags(seq_server):
    x = httpclient.InferInput("x", [1, 1], "FP32")
    with httpclient.InferenceServerClient(url=seq_server.url) as c:
        seen = []
        for k in range(3):
            x.set_data_from_numpy(np.array([[k + 0.5]], dtype=np.float32))
            r = c.infer("py_sequence", [x], sequence_id="session-42", sequence_start=k == 0, sequence_end=k == 2)
            seen.append(r.as_numpy("seen")[0][0].decode())
        assert [o["name"] for o in c.get_model_metadata("py_sequence")["outputs"]] == ["seen"]
    assert seen == ["session-42|1|0|1|0.5", "session-42|0|0|2|1.5", "session-42|0|1|3|2.5"]


def test_a_sequence_config_round_trips_through_the_load_api(tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(FIXTURES / "sequences" / "accumulator", repo / "accumulator")
    srv = Server(repo, tmp_path / "explicit.log", "--model-control-mode", "explicit",
                 "--load-model", "accumulator")
    try:
        with httpclient.InferenceServerClient(url=srv.url) as c:
            config = c.get_model_config("accumulator")
            config["sequence_batching"]["max_sequence_idle_microseconds"] = 3000000
            config["sequence_batching"]["oldest"] = {"max_candidate_sequences": 4, "max_queue_delay_microseconds": 0}
            del config["sequence_batching"]["direct"]
            c.load_model("accumulator", config=json.dumps(config))
            served = c.get_model_config("accumulator")["sequence_batching"]
            assert served["max_sequence_idle_microseconds"] == 3000000
            assert served["oldest"]["max_candidate_sequences"] == 4
            assert served["control_input"] == config["sequence_batching"]["control_input"]
            assert step(c, httpclient, "accumulator", 9, 2, start=True)[0] == 2
            assert step(c, httpclient, "accumulator", 9, 2, end=True)[0] == 4
    finally:
        srv.stop()
