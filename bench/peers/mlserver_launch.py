"""Runs the `mlserver` CLI with one addition: the gRPC ModelConfig RPC, which perf_analyzer calls
before it starts and MLServer 1.7.1 does not implement ("Method not found!").

    python bench/peers/mlserver_launch.py start DIR        # same arguments as `mlserver`

The config comes from mlserver_runtime.triton_config (the same JSON as the REST config route
that runtime adds), encoded with tritonclient's model_config_pb2 loaded on its own (importing
tritonclient.grpc next to MLServer's protos clashes: both define the `inference` package).
Inference, metadata and everything else stay MLServer's own.
"""

import importlib.util
import sys
import sysconfig
from pathlib import Path

import grpc
from google.protobuf import json_format
from mlserver.cli import main
from mlserver.grpc import server as grpc_server

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mlserver_runtime import triton_config  # noqa: E402

_spec = importlib.util.spec_from_file_location(
    "_triton_model_config_pb2",
    Path(sysconfig.get_paths()["purelib"]) / "tritonclient" / "grpc" / "model_config_pb2.py")
model_config_pb2 = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(model_config_pb2)

_METHOD = "/inference.GRPCInferenceService/ModelConfig"


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _parse_request(data: bytes):
    """ModelConfigRequest {string name = 1; string version = 2;}"""
    fields, i = {}, 0
    while i < len(data):
        key, shift = 0, 0
        while True:
            b = data[i]; i += 1
            key |= (b & 0x7F) << shift; shift += 7
            if not b & 0x80:
                break
        if key & 7 != 2:
            raise ValueError("unexpected wire type")
        n, shift = 0, 0
        while True:
            b = data[i]; i += 1
            n |= (b & 0x7F) << shift; shift += 7
            if not b & 0x80:
                break
        fields[key >> 3] = data[i:i + n].decode(); i += n
    return fields.get(1, ""), fields.get(2) or None


def _config_handler(registry):
    async def model_config(request: bytes, context) -> bytes:
        name, version = _parse_request(request)
        try:
            model = await registry.get_model(name, version)
        except Exception as e:  # ModelNotFound
            await context.abort(grpc.StatusCode.NOT_FOUND, str(e))
        cfg = json_format.ParseDict(triton_config(model.settings), model_config_pb2.ModelConfig())
        body = cfg.SerializeToString()
        return b"\x0a" + _varint(len(body)) + body  # ModelConfigResponse {ModelConfig config = 1;}
    return model_config


class _ConfigRpc(grpc.GenericRpcHandler):
    def __init__(self, registry):
        self._handler = grpc.unary_unary_rpc_method_handler(_config_handler(registry))

    def service(self, handler_call_details):
        return self._handler if handler_call_details.method == _METHOD else None


_create_server = grpc_server.GRPCServer._create_server


def _create_server_with_config(self):
    server = _create_server(self)
    server.add_generic_rpc_handlers((_ConfigRpc(self._data_plane._model_registry),))
    return server


grpc_server.GRPCServer._create_server = _create_server_with_config

if __name__ == "__main__":
    sys.argv[0] = "mlserver"
    sys.exit(main())
