"""`inferd batch`: a million CSV rows scored in process match ONNX Runtime and the online
server; JSON Lines give the same; SIGKILL and --resume; bad rows; shards; S3 in and out;
scoring against a running server."""

import csv
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import FIXTURES, ROOT, binary
from test_sources import s3  # noqa: F401  (the moto fixture)

ROWS = 1_000_000
IRIS = FIXTURES / "models" / "iris_logreg" / "1" / "model.onnx"
REFERENCE_PYTHON = os.environ.get("INFERD_MLFLOW_PYTHON", str(ROOT / ".venv-mlflow" / "bin" / "python"))


def batch(*args, check=True, env=None, **kw):
    done = subprocess.run([str(binary()), "batch", "--progress", "off", *map(str, args)], capture_output=True,
                          text=True, env=env, **kw)
    if check:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("batch-repo")
    shutil.copytree(FIXTURES / "models" / "iris_logreg", repo / "iris_logreg")
    return repo


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    """A million iris-like rows (seeded), as CSV with an id column."""
    d = tmp_path_factory.mktemp("batch-data")
    rng = np.random.default_rng(7)
    lo, hi = np.array([4.3, 2.0, 1.0, 0.1]), np.array([7.9, 4.4, 6.9, 2.5])
    x = np.round(rng.uniform(lo, hi, size=(ROWS, 4)), 2).astype(np.float32)
    path = d / "iris.csv"
    with open(path, "w") as f:
        f.write("id,sepal_length,sepal_width,petal_length,petal_width\n")
        np.savetxt(f, np.column_stack([np.arange(ROWS), x]), fmt=["%d", "%.2f", "%.2f", "%.2f", "%.2f"],
                   delimiter=",")
    return path, x


def head(src, rows, dest):
    """The header and the first `rows` rows of a CSV file, written to dest."""
    with open(src) as f, open(dest, "w") as g:
        for i, line in enumerate(f):
            if i > rows:
                break
            g.write(line)
    return dest


def read_output(path):
    with open(path) as f:
        reader = csv.reader(f)
        header = next(reader)
        body = np.array(list(reader))
    return header, body


def reference(x, tmp):
    """ONNX Runtime's labels and probabilities for x."""
    np.save(tmp / "x.npy", x)
    script = ("import numpy as np, onnxruntime as ort, sys\n"
              f"s = ort.InferenceSession({str(IRIS)!r}, providers=['CPUExecutionProvider'])\n"
              f"x = np.load({str(tmp / 'x.npy')!r})\n"
              "label, prob = s.run(None, {s.get_inputs()[0].name: x})\n"
              f"np.save({str(tmp / 'label.npy')!r}, label); np.save({str(tmp / 'prob.npy')!r}, prob)\n")
    done = subprocess.run([REFERENCE_PYTHON, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, f"ONNX Runtime (the reference) failed: {done.stderr}"
    return np.load(tmp / "label.npy"), np.load(tmp / "prob.npy")


@pytest.fixture(scope="module")
def scored(repo, rows, tmp_path_factory):
    path, _ = rows
    out = tmp_path_factory.mktemp("batch-out") / "scores.csv"
    summary = out.with_suffix(".summary.json")
    started = time.monotonic()
    batch("--model-repository", repo, "--model", "iris_logreg", "--input", path, "--output", out,
          "--id-column", "id", "--summary", summary)
    seconds = time.monotonic() - started
    print(f"scored {ROWS} rows in {seconds:.1f} s")
    return out, json.loads(summary.read_text())


def test_a_million_rows_match_onnxruntime_and_the_server(scored, rows, server, tmp_path):
    out, summary = scored
    _, x = rows
    assert summary["rows"] == ROWS and summary["errors"] == 0 and summary["versions"] == ["1"]
    header, body = read_output(out)
    assert header == ["id", "label", "probabilities_0", "probabilities_1", "probabilities_2", "model_version"]
    assert len(body) == ROWS
    assert (body[:, 0].astype(np.int64) == np.arange(ROWS)).all(), "rows are not in input order"
    label, prob = reference(x, tmp_path)
    assert (body[:, 1].astype(np.int64) == label).all()
    np.testing.assert_allclose(body[:, 2:5].astype(np.float32), prob, rtol=1e-5, atol=1e-6)
    # Every 1,000th row against the online server.
    import tritonclient.http as httpclient
    sample = x[::1000]
    labels, probs = [], []
    with httpclient.InferenceServerClient(server.url) as c:
        for at in range(0, len(sample), 50):  # max_batch_size is 64
            t = httpclient.InferInput("X", [len(sample[at:at + 50]), 4], "FP32")
            t.set_data_from_numpy(sample[at:at + 50], binary_data=True)
            online = c.infer("iris_logreg", [t])
            labels.append(online.as_numpy("label"))
            probs.append(online.as_numpy("probabilities"))
    assert (np.concatenate(labels) == body[::1000, 1].astype(np.int64)).all()
    np.testing.assert_allclose(np.concatenate(probs), body[::1000, 2:5].astype(np.float32), rtol=1e-6)


def test_jsonl_gives_the_same_outputs(repo, rows, scored, tmp_path):
    _, x = rows
    n = 20_000
    src = tmp_path / "rows.jsonl"
    with open(src, "w") as f:
        for i in range(n):
            f.write(json.dumps({"id": str(i), "X": [float(v) for v in x[i]]}) + "\n")
    out = tmp_path / "scores.jsonl"
    batch("--model-repository", repo, "--model", "iris_logreg", "--input", src, "--output", out, "--id-column", "id")
    lines = [json.loads(line) for line in open(out)]
    _, body = read_output(scored[0])
    assert [int(r["id"]) for r in lines] == list(range(n))
    assert [r["label"] for r in lines] == body[:n, 1].astype(np.int64).tolist()
    np.testing.assert_array_equal(np.array([r["probabilities"] for r in lines], np.float32),
                                  body[:n, 2:5].astype(np.float32))
    # JSONL output of the CSV input: the same text for the same values.
    out2 = tmp_path / "from_csv.jsonl"
    first = head(rows[0], n, tmp_path / "first.csv")
    batch("--model-repository", repo, "--model", "iris_logreg", "--input", first, "--output", out2, "--id-column", "id")
    assert out2.read_text() == out.read_text()


def test_v2_request_lines_as_mlserver_infer_takes(repo, tmp_path):
    src = tmp_path / "requests.jsonl"
    with open(src, "w") as f:
        for i in range(3):
            f.write(json.dumps({"id": f"r{i}", "inputs": [{"name": "X", "datatype": "FP32", "shape": [2, 4],
                                                          "data": [5.1, 3.5, 1.4, 0.2, 6.7, 3.0, 5.2, 2.3]}]}) + "\n")
    out = tmp_path / "answers.jsonl"
    batch("--model-repository", repo, "--model", "iris_logreg", "--input", src, "--output", out)
    lines = [json.loads(line) for line in open(out)]
    assert [r["row"] for r in lines] == ["r0", "r1", "r2"]
    assert all(r["label"] == [0, 2] and len(r["probabilities"]) == 6 for r in lines)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_kill_and_resume_writes_every_row_once_in_order(repo, rows, scored, tmp_path, fmt):
    path, _ = rows
    out = tmp_path / f"resumed.{fmt}"
    args = ["batch", "--progress", "off", "--model-repository", repo, "--model", "iris_logreg", "--input", path,
            "--output", out, "--id-column", "id", "--batch-size", "64"]
    job = subprocess.Popen([str(binary()), *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    checkpoint = Path(str(out) + ".checkpoint")
    deadline = time.monotonic() + 300
    done_rows = 0
    while done_rows < ROWS // 2:
        assert job.poll() is None, f"the job ended before it could be killed: {job.stderr.read()}"
        assert time.monotonic() < deadline
        try:
            done_rows = json.loads(checkpoint.read_text())["rows"]
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.02)
    job.send_signal(signal.SIGKILL)
    job.wait()
    # Without --resume the unfinished output is not overwritten.
    refused = batch(*args[3:], check=False)
    assert refused.returncode != 0 and "--resume" in refused.stderr
    batch(*args[3:], "--resume")
    assert not checkpoint.exists()
    if fmt == "csv":
        assert out.read_text() == scored[0].read_text(), "the resumed output differs from an uninterrupted run"
        return
    # Parquet: the closed parts of the killed run, then the rest, joined into one file.
    import pyarrow.parquet as pq

    assert not Path(str(out) + ".parts").exists()
    t = pq.read_table(out)
    _, body = read_output(scored[0])
    assert t.num_rows == ROWS and t.column("id").to_pylist() == body[:, 0].tolist()
    assert t.column("label").to_pylist() == body[:, 1].astype(np.int64).tolist()
    np.testing.assert_array_equal(np.array(t.column("probabilities").to_pylist(), np.float32),
                                  body[:, 2:5].astype(np.float32))


def test_bad_rows_go_to_the_errors_file(repo, tmp_path):
    src = tmp_path / "mixed.csv"
    src.write_text("id,a,b,c,d\n1,5.1,3.5,1.4,0.2\n2,5.1,3.5,1.4\n3,5.1,abc,1.4,0.2\n4,6.7,3.0,5.2,2.3\n5,,3.0,5.2,2.3\n")
    out, errors = tmp_path / "out.csv", tmp_path / "errors.jsonl"
    summary = tmp_path / "summary.json"
    done = batch("--model-repository", repo, "--model", "iris_logreg", "--input", src, "--output", out,
                 "--id-column", "id", "--errors", errors, "--summary", summary, check=False)
    assert done.returncode != 0 and "2 of 5 rows failed" in done.stderr
    bad = [json.loads(line) for line in open(errors)]
    assert [(b["row"], b["id"]) for b in bad] == [(1, "2"), (2, "3")]
    assert "4 fields, the header has 5" in bad[0]["error"]
    assert "'abc' is not a number" in bad[1]["error"]
    _, body = read_output(out)
    assert body[:, 0].tolist() == ["1", "4", "5"]  # an empty cell is NaN, which FP32 allows
    assert json.loads(summary.read_text())["errors"] == 2
    # --max-errors stops the job.
    stopped = batch("--model-repository", repo, "--model", "iris_logreg", "--input", src, "--output",
                    tmp_path / "o2.csv", "--id-column", "id", "--max-errors", "1", check=False)
    assert stopped.returncode != 0 and "--max-errors 1" in stopped.stderr


def test_shards_split_the_rows(repo, rows, scored, tmp_path):
    src = head(rows[0], 10_000, tmp_path / "part.csv")
    parts = []
    for i in range(3):
        out = tmp_path / f"shard{i}.csv"
        env = dict(os.environ, JOB_COMPLETION_INDEX=str(i))
        batch("--model-repository", repo, "--model", "iris_logreg", "--input", src, "--output", out,
              "--id-column", "id", "--shards", "3", env=env)
        parts.append(read_output(out)[1])
    ids = sorted(int(r) for p in parts for r in p[:, 0])
    assert ids == list(range(10_000)), "shards overlap or miss rows"
    assert all(len(p) > 0 for p in parts)


def test_s3_in_and_out(repo, rows, s3, tmp_path):  # noqa: F811
    client, env, _ = s3
    client.create_bucket(Bucket="data")
    src = head(rows[0], 5000, tmp_path / "small.csv")
    for part in range(2):
        client.put_object(Bucket="data", Key=f"in/part-{part}.csv", Body=src.read_bytes())
    done = batch("--model-repository", repo, "--model", "iris_logreg", "--input", "s3://data/in/", "--output",
                 "s3://data/out/scores.jsonl", "--id-column", "id", env=dict(os.environ, **env,
                                                                             HOME=str(tmp_path)))
    body = client.get_object(Bucket="data", Key="out/scores.jsonl")["Body"].read().decode().splitlines()
    assert len(body) == 10_000, done.stderr
    assert [json.loads(line)["id"] for line in body[:3]] == ["0", "1", "2"]


def test_against_a_running_server(server, repo, rows, scored, tmp_path):
    src = head(rows[0], 3000, tmp_path / "few.csv")
    out = tmp_path / "remote.csv"
    batch("--url", f"http://{server.url}", "--url", f"http://{server.url}", "--model", "iris_logreg", "--input", src,
          "--output", out, "--id-column", "id", "--batch-size", "100")
    _, remote = read_output(out)
    _, local = read_output(scored[0])
    assert (remote == local[:3000]).all()
    # The same over gRPC (one HTTP/2 connection per server, calls multiplexed on it); requests of
    # max_batch_size rows, as above, so the batcher merges nothing and the sums are the same.
    out = tmp_path / "remote-grpc.csv"
    batch("--url", f"grpc://{server.grpc_url}", "--model", "iris_logreg", "--input", src, "--output", out,
          "--id-column", "id", "--batch-size", "100", "--concurrency", "8")
    _, remote = read_output(out)
    assert (remote == local[:3000]).all()


def test_parquet_in_and_out(repo, rows, scored, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    _, x = rows
    n = 20_000
    _, body = read_output(scored[0])
    # Scalar feature columns, and the same rows as one list column named as the model's input.
    pq.write_table(pa.table({"id": [str(i) for i in range(n)], **{f"f{j}": x[:n, j] for j in range(4)}}),
                   tmp_path / "columns.parquet", row_group_size=4096)
    pq.write_table(pa.table({"id": [str(i) for i in range(n)], "X": pa.array(list(x[:n]), pa.list_(pa.float32()))}),
                   tmp_path / "lists.parquet")
    for name in ["columns", "lists"]:
        out = tmp_path / f"{name}.jsonl"
        batch("--model-repository", repo, "--model", "iris_logreg", "--input", tmp_path / f"{name}.parquet",
              "--output", out, "--id-column", "id")
        lines = [json.loads(line) for line in open(out)]
        assert [int(r["id"]) for r in lines] == list(range(n)), name
        assert [r["label"] for r in lines] == body[:n, 1].astype(np.int64).tolist(), name
        np.testing.assert_array_equal(np.array([r["probabilities"] for r in lines], np.float32),
                                      body[:n, 2:5].astype(np.float32))
    # A Parquet output: vectors as list columns, readable by pyarrow.
    out = tmp_path / "scores.parquet"
    batch("--model-repository", repo, "--model", "iris_logreg", "--input", tmp_path / "columns.parquet",
          "--output", out, "--id-column", "id")
    t = pq.read_table(out)
    assert t.column_names == ["id", "label", "probabilities", "model_version"]
    assert t.column("id").to_pylist()[:3] == ["0", "1", "2"] and t.num_rows == n
    assert t.column("label").to_pylist() == body[:n, 1].astype(np.int64).tolist()
    np.testing.assert_array_equal(np.array(t.column("probabilities").to_pylist(), np.float32),
                                  body[:n, 2:5].astype(np.float32))
    assert set(t.column("model_version").to_pylist()) == {"1"}


def test_parquet_nulls_lists_and_other_types(repo, tmp_path):
    """Parquet read through its column readers: optional scalars (null is NaN for a float input),
    lists with null elements, empty and null lists, integer and text columns, a struct column
    that no input uses, and several row groups; bad rows fail alone with their reason."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    good = [5.1, 3.5, 1.4, 0.2]
    lists = [good, [6.7, None, 5.2, 2.3], [], None, [6.7, 3.0, 5.2, 2.3], good[:3]]
    n = len(lists)
    table = pa.table({
        "id": pa.array([f"r{i}" for i in range(n)]),
        "X": pa.array(lists, pa.list_(pa.float64())),
        "meta": pa.array([{"a": i, "b": "x"} for i in range(n)]),
    })
    pq.write_table(table, tmp_path / "lists.parquet", row_group_size=4)
    out, errors = tmp_path / "lists.jsonl", tmp_path / "lists.errors.jsonl"
    done = batch("--model-repository", repo, "--model", "iris_logreg", "--input", tmp_path / "lists.parquet",
                 "--output", out, "--errors", errors, "--id-column", "id", check=False)
    assert done.returncode != 0 and "3 of 6 rows failed" in done.stderr, done.stderr
    answered = {r["id"]: r for r in map(json.loads, open(out))}
    assert sorted(answered) == ["r0", "r1", "r4"]
    assert answered["r0"]["label"] == 0 and answered["r4"]["label"] == 2
    failed = {r["id"]: r["error"] for r in map(json.loads, open(errors))}
    assert sorted(failed) == ["r2", "r3", "r5"]
    assert "takes 4 values per row, this row has 0" in failed["r2"], failed
    assert "takes 4 values per row, this row has 1" in failed["r3"], failed  # a null list: one NaN
    assert "this row has 3" in failed["r5"], failed

    # Scalar columns: float with a null (NaN), int and text that reads as numbers.
    table = pa.table({"a": pa.array([5.1, None, 6.7], pa.float32()), "b": pa.array([3, 3, 3], pa.int64()),
                      "c": pa.array(["1.4", "1.4", "5.2"]), "d": pa.array([0.2, 0.2, 2.3])})
    pq.write_table(table, tmp_path / "scalars.parquet")
    out = tmp_path / "scalars.jsonl"
    batch("--model-repository", repo, "--model", "iris_logreg", "--input", tmp_path / "scalars.parquet",
          "--output", out)
    lines = [json.loads(line) for line in open(out)]
    assert [r["row"] for r in lines] == [0, 1, 2] and lines[2]["label"] == 2

    # A column the model needs that is a struct: a clear reason for each row.
    pq.write_table(pa.table({"X": pa.array([{"a": 1.0}])}), tmp_path / "struct.parquet")
    done = batch("--model-repository", repo, "--model", "iris_logreg", "--input", tmp_path / "struct.parquet",
                 "--output", tmp_path / "struct.jsonl", "--errors", tmp_path / "struct.errors.jsonl", check=False)
    assert done.returncode != 0
    assert "a struct, map, nested list or INT96 value is not a number" in (tmp_path / "struct.errors.jsonl").read_text()


def test_the_batch_manifests_are_valid_kubernetes():
    import sys
    manifests = sorted((ROOT / "deploy" / "batch").glob("*.yaml"))
    assert len(manifests) == 2
    done = subprocess.run([str(Path(sys.executable).parent / "kubernetes-validate"), "--strict",
                           *map(str, manifests)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    # The Indexed Job's pods take their shard from JOB_COMPLETION_INDEX.
    job = (ROOT / "deploy" / "batch" / "indexed-job.yaml").read_text()
    assert "completionMode: Indexed" in job and "--shards=8" in job and "completions: 8" in job
