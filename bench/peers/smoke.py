#!/usr/bin/env python3
"""One smoke inference against a peer: 2 iris rows over HTTP with tritonclient, plus the config route.

    bench/.tools/peers-venv/bin/python bench/peers/smoke.py HTTP_PORT [--binary] [--grpc GRPC_PORT]
Waits for /v2/models/iris/ready, then checks labels/probabilities, GET /v2/models/iris/config and,
with --grpc, the gRPC ModelConfig RPC and one gRPC inference.
"""

import argparse
import json
import sys
import time
import urllib.request

import numpy as np
import tritonclient.http as httpclient

p = argparse.ArgumentParser()
p.add_argument("port", type=int)
p.add_argument("--binary", action="store_true", help="binary tensor data (Triton); default JSON")
p.add_argument("--timeout", type=float, default=60)
p.add_argument("--grpc", type=int, help="also check ModelConfig and one inference over gRPC on this port")
a = p.parse_args()
base = f"http://127.0.0.1:{a.port}"

deadline = time.time() + a.timeout
while True:
    try:
        with urllib.request.urlopen(f"{base}/v2/models/iris/ready", timeout=2) as r:
            if r.status == 200:
                break
    except Exception:
        pass
    if time.time() > deadline:
        sys.exit(f"iris not ready on {base} after {a.timeout}s")
    time.sleep(0.5)

with urllib.request.urlopen(f"{base}/v2/models/iris", timeout=5) as r:
    print("metadata:", r.read().decode())
try:
    with urllib.request.urlopen(f"{base}/v2/models/iris/config", timeout=5) as r:
        print("config:", json.dumps(json.loads(r.read())))
except Exception as e:
    print("config: FAILED", e)

x = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], np.float32)  # setosa, virginica
c = httpclient.InferenceServerClient(f"127.0.0.1:{a.port}")
inp = httpclient.InferInput("X", list(x.shape), "FP32")
inp.set_data_from_numpy(x, binary_data=a.binary)
outs = [httpclient.InferRequestedOutput(n, binary_data=a.binary) for n in ("label", "probabilities")]
r = c.infer("iris", [inp], outputs=outs)
label, probs = r.as_numpy("label"), r.as_numpy("probabilities")
print("label:", label.tolist(), label.dtype, label.shape)
print("probabilities:", np.round(probs, 4).tolist(), probs.dtype, probs.shape)
ok = (label.reshape(-1).tolist() == [0, 2] and probs.shape == (2, 3)
      and np.allclose(probs.sum(axis=1), 1, atol=1e-4))

if a.grpc:
    import tritonclient.grpc as grpcclient
    g = grpcclient.InferenceServerClient(f"127.0.0.1:{a.grpc}")
    try:
        cfg = g.get_model_config("iris", as_json=True)["config"]
        print("grpc config:", json.dumps(cfg))
    except Exception as e:
        print("grpc config: FAILED", e)
        ok = False
    gi = grpcclient.InferInput("X", list(x.shape), "FP32")
    gi.set_data_from_numpy(x)
    gr = g.infer("iris", [gi], outputs=[grpcclient.InferRequestedOutput(n) for n in ("label", "probabilities")])
    print("grpc label:", gr.as_numpy("label").tolist(), "probabilities:", np.round(gr.as_numpy("probabilities"), 4).tolist())
    ok = ok and gr.as_numpy("label").reshape(-1).tolist() == [0, 2]
print("OK" if ok else "UNEXPECTED OUTPUT")
sys.exit(0 if ok else 1)
