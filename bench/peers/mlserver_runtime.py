"""MLServer 1.7.1 custom runtime: serves the iris ONNX model with onnxruntime, like inferd.

- Adds GET /v2/models/{name}/config (Triton-style JSON) so perf_analyzer can read the model
  config; MLServer has no such route of its own.
- Returns outputs without a `parameters` object: perf_analyzer's C++ HTTP client rejects an
  output `parameters` that lacks `binary_data_size` (MLServer's NumpyCodec adds content_type).
MLServer's REST endpoint only accepts JSON tensors, so perf_analyzer needs
`--input-tensor-format json --output-tensor-format json` over HTTP. MLServer's gRPC service has
no ModelConfig either: bench/peers/mlserver_launch.py (used by start_mlserver.sh) adds it.

Used by bench/peers/start_mlserver.sh via model-settings.json:
    "implementation": "mlserver_runtime.OnnxRuntime", "parameters": {"uri": ".../model.onnx"}
"""

import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.handlers import custom_handler
from mlserver.types import InferenceRequest, InferenceResponse, ResponseOutput
from mlserver.utils import get_model_uri

_ORT_TO_V2 = {"tensor(float)": "FP32", "tensor(double)": "FP64", "tensor(int64)": "INT64",
              "tensor(int32)": "INT32", "tensor(string)": "BYTES", "tensor(bool)": "BOOL"}
_V2_TO_NP = {"FP32": np.float32, "FP64": np.float64, "INT64": np.int64, "INT32": np.int32,
             "BOOL": np.bool_}


# Batched like the Triton peer (max_batch_size 64): config dims leave out the leading batch dim.
MAX_BATCH_SIZE = 64


def triton_config(settings) -> dict:
    """Triton-style model config (JSON form) from the model-settings.json metadata."""
    def tensor(t):
        dims = [int(d) for d in (t.shape or [])][1:] or [1]
        return {"name": t.name, "data_type": "TYPE_" + t.datatype, "dims": dims}
    return {
        "name": settings.name,
        "platform": "onnxruntime_onnx",
        "backend": "mlserver",
        "max_batch_size": MAX_BATCH_SIZE,
        "input": [tensor(t) for t in settings.inputs or []],
        "output": [tensor(t) for t in settings.outputs or []],
    }


class OnnxRuntime(MLModel):
    async def load(self) -> bool:
        path = await get_model_uri(self._settings)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        self._session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        self._inputs = [(i.name, _ORT_TO_V2[i.type], i.shape) for i in self._session.get_inputs()]
        self._outputs = [(o.name, _ORT_TO_V2[o.type], o.shape) for o in self._session.get_outputs()]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        feeds = {}
        for inp in payload.inputs:
            arr = NumpyCodec.decode_input(inp)
            want = _V2_TO_NP.get(inp.datatype)
            feeds[inp.name] = arr.astype(want, copy=False) if want else arr
        names = [o[0] for o in self._outputs]
        if payload.outputs:
            names = [o.name for o in payload.outputs]
        results = self._session.run(names, feeds)
        outputs = []
        for name, arr in zip(names, results):
            arr = np.ascontiguousarray(arr)
            dt = {np.dtype(np.float32): "FP32", np.dtype(np.int64): "INT64", np.dtype(np.float64): "FP64",
                  np.dtype(np.int32): "INT32", np.dtype(np.bool_): "BOOL"}[arr.dtype]
            outputs.append(ResponseOutput(name=name, datatype=dt, shape=list(arr.shape),
                                          data=arr.reshape(-1).tolist()))
        return InferenceResponse(model_name=self.name, model_version=self.version, id=payload.id,
                                 outputs=outputs)

    def _config(self) -> dict:
        return triton_config(self.settings)

    @custom_handler(rest_path="/v2/models/{model_name}/config", rest_method="GET")
    async def model_config(self) -> dict:
        return self._config()

    @custom_handler(rest_path="/v2/models/{model_name}/versions/{model_version}/config", rest_method="GET")
    async def model_version_config(self) -> dict:
        return self._config()
