#!/usr/bin/env python3
"""The tokenizer backend against the Python `tokenizers` library, one thread each, in one run,
on the same 100,000 texts and the same tokenizer.json (tests/fixtures/processing):

  1. the Python library alone: encode_batch over batches of 64 (ids only, nothing written);
  2. the same job as a Python script: read the JSON Lines, tokenize, write ids as JSON Lines;
  3. `inferd batch --instances 1` on the same file (read, tokenize natively, write in order):
     one tokenizer thread; its reader and writer are threads of their own.

    cargo build --release -p inferd
    .venv/bin/python bench/processing.py [--texts 100000]
"""

import argparse
import json
import os
import random
import subprocess
import tempfile
import time
from pathlib import Path

from request_path import INFERD, ROOT

os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["RAYON_NUM_THREADS"] = "1"
from tokenizers import Tokenizer  # noqa: E402

TOKENIZER = ROOT / "tests" / "fixtures" / "processing" / "tokenizer"
WORDS = ("the model server loads trained models and answers requests over standard protocols déjà vu café "
         "zürich 東京 🙂 fraud detection feature store").split()


def python_tokenizer():
    tok = Tokenizer.from_file(str(TOKENIZER / "1" / "tokenizer.json"))
    tok.enable_padding(pad_id=tok.token_to_id("[PAD]"), pad_token="[PAD]")
    tok.enable_truncation(max_length=16)
    return tok


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--texts", type=int, default=100_000)
    args = parser.parse_args()
    rng = random.Random(1)
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 14))) for _ in range(args.texts)]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = tmp / "texts.jsonl"
        src.write_text("".join(json.dumps({"text": [t]}) + "\n" for t in texts))
        tok = python_tokenizer()
        t0 = time.perf_counter()
        for i in range(0, len(texts), 64):
            [e.ids for e in tok.encode_batch(texts[i:i + 64])]
        alone = len(texts) / (time.perf_counter() - t0)

        t0 = time.perf_counter()
        with open(src) as f, open(tmp / "py-out.jsonl", "w") as out:
            batch = []
            for line in f:
                batch.append(json.loads(line)["text"][0])
                if len(batch) == 64:
                    for e in tok.encode_batch(batch):
                        out.write(json.dumps({"input_ids": e.ids, "attention_mask": e.attention_mask,
                                              "token_type_ids": e.type_ids}) + "\n")
                    batch = []
            for e in tok.encode_batch(batch) if batch else []:
                out.write(json.dumps({"input_ids": e.ids, "attention_mask": e.attention_mask,
                                      "token_type_ids": e.type_ids}) + "\n")
        py_job = len(texts) / (time.perf_counter() - t0)

        t0 = time.perf_counter()
        subprocess.run([str(INFERD), "batch", "--model-repository", str(TOKENIZER.parent), "--model", "tokenizer",
                        "--input", str(src), "--output", str(tmp / "inferd-out.jsonl"), "--instances", "1",
                        "--batch-size", "64", "--progress", "off"], check=True, capture_output=True)
        inferd = len(texts) / (time.perf_counter() - t0)
    print(f"{len(texts)} texts, tokenizer.json of tests/fixtures/processing, max_length 16, one tokenizer thread each")
    print("| run | texts/s | vs the Python library alone |")
    print("|---|---|---|")
    for name, rate in (("Python tokenizers 0.22.2, encode_batch(64) alone", alone),
                       ("Python script: JSONL in, tokenize, JSONL out", py_job),
                       ("inferd batch --instances 1: JSONL in, tokenize, JSONL out", inferd)):
        print(f"| {name} | {rate:.0f} | {rate / alone:.2f} |")


if __name__ == "__main__":
    main()
