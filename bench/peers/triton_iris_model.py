"""Triton python-backend model: runs the iris ONNX file (next to this file) with onnxruntime.

Installed by bench/peers/setup.sh as bench/.tools/triton_repo/iris/1/model.py.
"""

import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        self.session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])

    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "X").as_numpy()
            label, probs = self.session.run(["label", "probabilities"], {"X": x.astype(np.float32, copy=False)})
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor("label", label.astype(np.int64, copy=False)),
                pb_utils.Tensor("probabilities", probs.astype(np.float32, copy=False)),
            ]))
        return responses
