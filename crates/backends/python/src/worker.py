"""inferd's Python model worker: one process per model instance, so that the interpreter, its
GIL and whatever the model does (crash included) never sit inside the server.

Protocol on stdin/stdout, little-endian, every message a u32 length then the payload:
  worker -> server, once: JSON {"ok": true, "signature": {...} | null} or {"ok": false, "error": ...}
  server -> worker:       tensors (the request's inputs)
  worker -> server:       u8 0 + tensors (outputs), or u8 1 + UTF-8 error text; a predict()
                          that returns a generator (decoupled models) answers u8 2 + tensors
                          per response it yields, then u8 3 (done) or u8 1 + error text
tensors: u32 count, then per tensor: u16 name length, name, u8 datatype length, datatype (the
protocol's name, e.g. FP32), u8 rank, u64 dims, u64 byte length, data (BYTES: u32 length before
each element, as the binary tensor extension).
"""

import importlib.util
import inspect
import json
import os
import pickle
import struct
import sys
import traceback
from pathlib import Path

import numpy as np

DTYPES = {
    "BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
    "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
    "FP16": np.float16, "FP32": np.float32, "FP64": np.float64,
}
NAMES = {np.dtype(v): k for k, v in DTYPES.items()}


def read_exact(stream, n):
    # A bytearray, so that arrays over it are writable: models may change inputs in place.
    data = bytearray(n)
    view, got = memoryview(data), 0
    while got < n:
        k = stream.readinto(view[got:])
        if not k:
            raise EOFError
        got += k
    return data


def read_message(stream):
    (n,) = struct.unpack("<I", read_exact(stream, 4))
    return read_exact(stream, n)


def write_message(stream, payload):
    stream.write(struct.pack("<I", len(payload)))
    stream.write(payload)
    stream.flush()


def decode(payload):
    view, pos, out = memoryview(payload), 0, {}
    (count,) = struct.unpack_from("<I", view, pos)
    pos += 4
    for _ in range(count):
        (n,) = struct.unpack_from("<H", view, pos)
        name = bytes(view[pos + 2:pos + 2 + n]).decode()
        pos += 2 + n
        dt_len = view[pos]
        datatype = bytes(view[pos + 1:pos + 1 + dt_len]).decode()
        pos += 1 + dt_len
        rank = view[pos]
        dims = struct.unpack_from(f"<{rank}Q", view, pos + 1)
        pos += 1 + 8 * rank
        (size,) = struct.unpack_from("<Q", view, pos)
        pos += 8
        raw = view[pos:pos + size]
        pos += size
        if datatype == "BYTES":
            items, at = [], 0
            while at < len(raw):
                (k,) = struct.unpack_from("<I", raw, at)
                items.append(bytes(raw[at + 4:at + 4 + k]))
                at += 4 + k
            out[name] = np.array(items, dtype=np.object_).reshape(dims)
        else:
            out[name] = np.frombuffer(raw, dtype=DTYPES[datatype]).reshape(dims)
    return out


def encode(tensors):
    parts = [struct.pack("<I", len(tensors))]
    for name, value in tensors.items():
        array = np.asarray(value)
        if array.dtype.kind in "OSU":
            datatype = "BYTES"
            items = [v if isinstance(v, bytes) else str(v).encode() for v in array.reshape(-1)]
            raw = b"".join(struct.pack("<I", len(v)) + v for v in items)
        else:
            if array.dtype not in NAMES:
                raise TypeError(f"output '{name}' has dtype {array.dtype}, which the protocol has no datatype for")
            datatype = NAMES[array.dtype]
            raw = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
        encoded = name.encode()
        parts += [struct.pack("<H", len(encoded)), encoded, struct.pack("<B", len(datatype)), datatype.encode(),
                  struct.pack("<B", array.ndim), struct.pack(f"<{array.ndim}Q", *array.shape),
                  struct.pack("<Q", len(raw)), raw]
    return b"".join(parts)


class SklearnModel:
    """The built-in model for a pickled scikit-learn estimator or pipeline (model.joblib or
    model.pkl): input `input` [batch, features] FP32; outputs `label` and, for classifiers with
    predict_proba, `probabilities` [batch, classes]."""

    def __init__(self, path):
        self.path = path

    def load(self):
        if self.path.suffix == ".joblib":
            import joblib
            self.estimator = joblib.load(self.path)
        else:
            with open(self.path, "rb") as f:
                self.estimator = pickle.load(f)

    def signature(self):
        features = getattr(self.estimator, "n_features_in_", -1)
        outputs = []
        label = np.asarray(getattr(self.estimator, "classes_", np.zeros(0, np.float64)))
        label_type = "INT64" if label.dtype.kind in "iu" else ("BYTES" if label.dtype.kind in "OSU" else "FP64")
        outputs.append({"name": "label", "datatype": label_type, "dims": [-1]})
        if hasattr(self.estimator, "predict_proba"):
            outputs.append({"name": "probabilities", "datatype": "FP64", "dims": [-1, len(label)]})
        return {"inputs": [{"name": "input", "datatype": "FP32", "dims": [-1, int(features)]}], "outputs": outputs}

    def predict(self, inputs):
        x = inputs["input"]
        out = {"label": np.asarray(self.estimator.predict(x))}
        if out["label"].dtype.kind in "iu":
            out["label"] = out["label"].astype(np.int64)
        elif out["label"].dtype.kind == "f":
            out["label"] = out["label"].astype(np.float64)
        if hasattr(self.estimator, "predict_proba"):
            out["probabilities"] = np.asarray(self.estimator.predict_proba(x), dtype=np.float64)
        return out


def checked(outputs):
    if not isinstance(outputs, dict):
        raise TypeError(f"predict() must return (or yield) a dict of arrays, not {type(outputs).__name__}")
    return outputs


def user_model(path):
    spec = importlib.util.spec_from_file_location("inferd_model", path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent))
    spec.loader.exec_module(module)
    classes = [c for _, c in inspect.getmembers(module, inspect.isclass)
               if c.__module__ == module.__name__ and callable(getattr(c, "predict", None))]
    if hasattr(module, "Model"):
        classes = [module.Model]
    if len(classes) != 1:
        raise TypeError(f"{path} must define one class with predict() (or one named Model); found "
                        f"{[c.__name__ for c in classes]}")
    return classes[0]()


def main():
    version_dir = Path(sys.argv[1])
    stdin = sys.stdin.buffer
    # The protocol gets a descriptor of its own; fd 1 becomes stderr, so whatever the model or
    # its native libraries print (C++ logs, subprocesses) cannot corrupt the replies.
    stdout = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        if (version_dir / "model.py").exists():
            model = user_model(version_dir / "model.py")
        else:
            pickled = [p for p in (version_dir / "model.joblib", version_dir / "model.pkl") if p.exists()]
            if not pickled:
                raise FileNotFoundError(f"{version_dir} has no model.py, model.joblib or model.pkl")
            model = SklearnModel(pickled[0])
        if hasattr(model, "load"):
            model.load()
        signature = model.signature() if hasattr(model, "signature") else None
        write_message(stdout, json.dumps({"ok": True, "signature": signature}).encode())
    except Exception:
        write_message(stdout, json.dumps({"ok": False, "error": traceback.format_exc(limit=5)}).encode())
        return
    while True:
        try:
            request = read_message(stdin)
        except EOFError:
            return
        try:
            outputs = model.predict(decode(request))
            if inspect.isgenerator(outputs):
                # A decoupled model: one message per response, then the end.
                for response in outputs:
                    write_message(stdout, b"\x02" + encode(checked(response)))
                write_message(stdout, b"\x03")
            else:
                write_message(stdout, b"\x00" + encode(checked(outputs)))
        except Exception:
            write_message(stdout, b"\x01" + traceback.format_exc(limit=5).encode())


if __name__ == "__main__":
    main()
