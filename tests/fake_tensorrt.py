"""A TensorRT stand-in that really computes, for tests on machines without a GPU (not a test module).

``make_tensorrt(version)`` returns a module shaped like TensorRT 10/11's Python API (the parts
the project uses). Its parser reads the ONNX file, its builder "serializes" that ONNX with a header
(version, flags, strongly typed, DLA core, optimisation level, profile shapes), and its execution
context runs the ONNX with ONNX Runtime on the arrays the runner copied into fake device memory,
so ``build`` then ``verify`` give real numbers. ``fp16_collapse=True`` zeroes an encoder's
``image_embeddings`` in engines built with the FP16 flag (the known FP16 failure of SAM-family
encoders), to test that the accuracy gate refuses it. ``make_cudart`` is the matching
``cuda.bindings.runtime`` with host memory as "device" memory, device properties and a count.

Use the ``install`` helper (or the ``fake_trt`` fixture of conftest-style callers) to put both
into ``sys.modules``.
"""

from __future__ import annotations

import ctypes
import enum
import json
import sys
import types
from importlib.machinery import ModuleSpec
from typing import Any

import numpy as np

MAGIC = b"FAKE-ENGINE"

#: ONNX op type -> fake LayerType member
_LAYER_OF_OP = {
    "LayerNormalization": "NORMALIZATION", "Softmax": "SOFTMAX", "MatMul": "MATRIX_MULTIPLY",
    "Gemm": "MATRIX_MULTIPLY", "QuantizeLinear": "QUANTIZE", "DequantizeLinear": "DEQUANTIZE",
    "Conv": "CONVOLUTION", "ReduceMean": "REDUCE", "Cast": "CAST",
}
_ONNX_DTYPES = {1: "float32", 10: "float16", 7: "int64", 6: "int32", 9: "bool"}


def make_cudart(devices: tuple[tuple[str, int, int], ...] = (("NVIDIA Orin (fake)", 8, 7),),
                driver: bool = True) -> types.ModuleType:
    """cuda-python's runtime module over host memory; ``devices``: (name, major, minor) each."""

    class Err(enum.Enum):
        cudaSuccess = 0
        cudaErrorInvalidValue = 1
        cudaErrorNoDevice = 100
        cudaErrorInsufficientDriver = 35

    kinds = types.SimpleNamespace(cudaMemcpyHostToDevice=1, cudaMemcpyDeviceToHost=2)
    memory: dict[int, ctypes.Array] = {}

    def malloc(n: int):
        buf = ctypes.create_string_buffer(n)
        memory[ctypes.addressof(buf)] = buf
        return Err.cudaSuccess, ctypes.addressof(buf)

    def free(ptr: int):
        return (Err.cudaSuccess,) if memory.pop(ptr, None) is not None else (Err.cudaErrorInvalidValue,)

    def memcpy(dst: int, src: int, n: int, kind: int, stream: object = None):
        ctypes.memmove(dst, src, n)
        return (Err.cudaSuccess,)

    def count():
        if not driver:
            return Err.cudaErrorInsufficientDriver, 0
        return (Err.cudaSuccess, len(devices)) if devices else (Err.cudaErrorNoDevice, 0)

    def properties(i: int):
        if not 0 <= i < len(devices):
            return Err.cudaErrorInvalidValue, None
        name, major, minor = devices[i]
        return Err.cudaSuccess, types.SimpleNamespace(name=name.encode() + b"\x00" * 4, major=major, minor=minor)

    names = {Err.cudaErrorNoDevice: b"no CUDA-capable device is detected",
             Err.cudaErrorInsufficientDriver: b"CUDA driver version is insufficient for CUDA runtime version"}
    mod = types.ModuleType("cuda.bindings.runtime")
    mod.__dict__.update(
        cudaError_t=Err, cudaMemcpyKind=kinds, memory=memory,
        cudaGetErrorString=lambda e: (Err.cudaSuccess, names.get(e, b"invalid value")),
        cudaSetDevice=lambda i: (Err.cudaSuccess,), cudaMalloc=malloc, cudaFree=free,
        cudaStreamCreate=lambda: (Err.cudaSuccess, 7), cudaStreamDestroy=lambda s: (Err.cudaSuccess,),
        cudaStreamSynchronize=lambda s: (Err.cudaSuccess,), cudaMemcpyAsync=memcpy, cudaMemcpy=memcpy,
        cudaGetDeviceCount=count, cudaGetDeviceProperties=properties,
    )
    return mod


def _read(ptr: int, dtype: np.dtype, shape: tuple) -> np.ndarray:
    n = int(np.prod(shape)) * np.dtype(dtype).itemsize
    return np.frombuffer(ctypes.string_at(ptr, n), dtype=dtype).reshape(shape).copy()


def make_tensorrt(version: str = "10.3.0", *, fp16_collapse: bool = False) -> types.ModuleType:
    """A TRT-like module whose engines run the ONNX they were built from (with ONNX Runtime)."""
    import onnx

    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    major = int(version.split(".")[0])
    trt.float32, trt.float16, trt.int64, trt.int32, trt.bool = "float32", "float16", "int64", "int32", "bool"
    trt.nptype = lambda t: {"float32": np.float32, "float16": np.float16, "int64": np.int64,
                            "int32": np.int32, "bool": np.bool_}[t]
    trt.TensorIOMode = enum.Enum("TensorIOMode", "INPUT OUTPUT")
    trt.LayerType = enum.Enum("LayerType", "NORMALIZATION SOFTMAX MATRIX_MULTIPLY ELEMENTWISE QUANTIZE "
                                           "DEQUANTIZE CONVOLUTION REDUCE CAST UNARY EINSUM")
    flags = "OBEY_PRECISION_CONSTRAINTS GPU_FALLBACK" + (" FP16 INT8" if major < 11 else "")
    trt.BuilderFlag = enum.Enum("BuilderFlag", flags)
    trt.NetworkDefinitionCreationFlag = enum.IntEnum("NDCF", {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1})
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="workspace")
    trt.DeviceType = types.SimpleNamespace(DLA="dla", GPU="gpu")
    trt.builds: list[dict] = []  # every build's header, for assertions

    class ILogger:
        Severity = enum.IntEnum("Severity", {"INTERNAL_ERROR": 0, "ERROR": 1, "WARNING": 2, "INFO": 3})

        def __init__(self) -> None:
            pass

    class Logger(ILogger):
        WARNING = 2

        def __init__(self, level: int = 2) -> None:
            pass

    class Tensor:
        def __init__(self, name: str, shape: tuple, dtype: str = "float32") -> None:
            self.name, self.shape, self.dtype = name, tuple(shape), dtype

    class Layer:
        def __init__(self, type_: object, dtype: str = "float32") -> None:
            self.type, self.num_outputs, self.precision = type_, 1, None
            self.outputs = [Tensor("o", (1,), dtype)]
            self.output_types: dict[int, str] = {}

        def get_output(self, j: int) -> Tensor:
            return self.outputs[j]

        def set_output_type(self, j: int, t: str) -> None:
            self.output_types[j] = t

    class Network:
        def __init__(self, flags: int) -> None:
            self.flags, self.inputs, self.layers, self.onnx = flags, [], [], b""

        num_inputs = property(lambda self: len(self.inputs))
        num_layers = property(lambda self: len(self.layers))
        get_input = lambda self, i: self.inputs[i]  # noqa: E731
        get_layer = lambda self, i: self.layers[i]  # noqa: E731

    class OnnxParser:
        def __init__(self, network: Network, logger: object) -> None:
            self.network, self.errors = network, []

        num_errors = property(lambda self: len(self.errors))
        get_error = lambda self, i: self.errors[i]  # noqa: E731

        def parse_from_file(self, path: str) -> bool:
            try:
                model = onnx.load(path)
            except Exception as err:  # noqa: BLE001 - TensorRT reports, never raises
                self.errors.append(f"ModelImporter: failed to parse {path}: {err}")
                return False
            self.network.onnx = model.SerializeToString()
            consts = {t.name for t in model.graph.initializer}
            for i in model.graph.input:
                if i.name in consts:
                    continue
                dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in i.type.tensor_type.shape.dim)
                self.network.inputs.append(Tensor(i.name, dims, _ONNX_DTYPES.get(i.type.tensor_type.elem_type, "?")))
            for node in model.graph.node:
                kind = getattr(trt.LayerType, _LAYER_OF_OP.get(node.op_type, "ELEMENTWISE"))
                dtype = "float32"
                if node.op_type == "Cast":
                    dtype = _ONNX_DTYPES.get(next(a.i for a in node.attribute if a.name == "to"), "?")
                self.network.layers.append(Layer(kind, dtype))
            return True

    class Profile:
        def __init__(self) -> None:
            self.shapes: dict[str, tuple] = {}

        def set_shape(self, name: str, mn: tuple, opt: tuple, mx: tuple) -> None:
            self.shapes[name] = (tuple(mn), tuple(opt), tuple(mx))

    class Cache:
        def __init__(self, data: bytes) -> None:
            self.data = data

        def serialize(self) -> bytes:
            return self.data + b"+"

    class Config:
        def __init__(self) -> None:
            self.flags, self.profiles, self.cache, self.pool = set(), [], None, {}
            self.int8_calibrator = None
            self.default_device_type = trt.DeviceType.GPU
            self.DLA_core = -1
            self.builder_optimization_level = 3

        def set_memory_pool_limit(self, pool: str, n: int) -> None:
            self.pool[pool] = n

        def set_flag(self, flag: object) -> None:
            self.flags.add(flag)

        def add_optimization_profile(self, p: Profile) -> int:
            self.profiles.append(p)
            return 0

        def set_calibration_profile(self, p: Profile) -> None:
            self.calibration_profile = p

        def create_timing_cache(self, data: bytes) -> Cache:
            return Cache(data)

        def set_timing_cache(self, cache: Cache, ignore_mismatch: bool) -> bool:
            self.cache = cache
            return True

        def get_timing_cache(self) -> Cache:
            return self.cache

    class Builder:
        last: "Builder | None" = None

        def __init__(self, logger: object) -> None:
            Builder.last = self

        def create_network(self, flags: int) -> Network:
            self.network = Network(flags)
            return self.network

        def create_builder_config(self) -> Config:
            self.config = Config()
            return self.config

        def create_optimization_profile(self) -> Profile:
            return Profile()

        def build_serialized_network(self, network: Network, config: Config) -> bytes:
            calib = config.int8_calibrator
            batches = 0
            if calib is not None:  # an implicit-int8 build reads the calibration feeds
                names = [t.name for t in network.inputs]
                while calib.get_batch(names) is not None:
                    batches += 1
                calib.write_calibration_cache(b"fake calibration cache")
            header = {
                "version": version, "flags": sorted(f.name for f in config.flags),
                "strongly_typed": bool(network.flags & 2), "dla_core": config.DLA_core
                if config.default_device_type == trt.DeviceType.DLA else None,
                "optimization_level": config.builder_optimization_level,
                "workspace": config.pool.get("workspace"), "calibration_batches": batches,
                "profiles": [{k: [list(s) for s in v] for k, v in p.shapes.items()} for p in config.profiles],
                "pinned": sum(1 for layer in network.layers if layer.precision == "float32"),
            }
            trt.builds.append(header)
            return MAGIC + b" " + json.dumps(header).encode() + b"\n" + network.onnx

    class Engine:
        def __init__(self, header: dict, onnx_bytes: bytes) -> None:
            import onnxruntime as ort

            self.header = header
            self.session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
            model = onnx.load_from_string(onnx_bytes)
            consts = {t.name for t in model.graph.initializer}
            self.io: dict[str, tuple[Any, str, tuple]] = {}
            for mode, values in ((trt.TensorIOMode.INPUT, model.graph.input), (trt.TensorIOMode.OUTPUT, model.graph.output)):
                for v in values:
                    if v.name in consts:
                        continue
                    t = v.type.tensor_type
                    dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim)
                    self.io[v.name] = (mode, _ONNX_DTYPES[t.elem_type], dims)
            self.names = list(self.io)

        num_io_tensors = property(lambda self: len(self.names))

        def get_tensor_name(self, i: int) -> str:
            return self.names[i]

        def get_tensor_mode(self, name: str):
            return self.io[name][0]

        def get_tensor_dtype(self, name: str) -> str:
            return self.io[name][1]

        def get_tensor_shape(self, name: str) -> tuple:
            return self.io[name][2]

        def get_tensor_profile_shape(self, name: str, profile: int) -> list:
            return [tuple(s) for s in self.header["profiles"][profile][name]]

        def create_execution_context(self) -> "Context":
            return Context(self)

    class Context:
        def __init__(self, engine: Engine) -> None:
            self.engine, self.shapes, self.addr = engine, {}, {}
            self.outputs: dict[str, np.ndarray] | None = None
            ranges = engine.header["profiles"][0] if engine.header["profiles"] else {}
            self.ranges = {k: (tuple(v[0]), tuple(v[2])) for k, v in ranges.items()}

        def set_input_shape(self, name: str, shape: tuple) -> bool:
            declared = self.engine.io[name][2]
            lo, hi = self.ranges.get(name, (declared, declared))
            if len(shape) != len(declared) or not all(a <= s <= b for a, s, b in zip(lo, shape, hi)):
                return False
            self.shapes[name], self.outputs = tuple(shape), None
            return True

        def set_tensor_address(self, name: str, ptr: int) -> bool:
            self.addr[name], self.outputs = ptr, None if self.engine.io[name][0] == trt.TensorIOMode.INPUT else self.outputs
            return True

        def _run(self) -> dict[str, np.ndarray]:
            if self.outputs is None:
                e = self.engine
                feed = {n: _read(self.addr[n], np.dtype(trt.nptype(e.io[n][1])), self.shapes[n])
                        for n, (mode, _, _) in e.io.items() if mode == trt.TensorIOMode.INPUT}
                names = [o.name for o in e.session.get_outputs()]
                out = dict(zip(names, e.session.run(names, feed)))
                if "FP16" in e.header["flags"]:
                    out = {k: v.astype(np.float16).astype(v.dtype) if v.dtype == np.float32 else v
                           for k, v in out.items()}
                    if fp16_collapse and "image_embeddings" in out:
                        out["image_embeddings"] = np.zeros_like(out["image_embeddings"])
                self.outputs = out
            return self.outputs

        def get_tensor_shape(self, name: str) -> tuple:
            if self.engine.io[name][0] == trt.TensorIOMode.INPUT:
                return self.shapes[name]
            return tuple(self._run()[name].shape)

        def execute_async_v3(self, stream: int) -> bool:
            for name, value in self._run().items():
                arr = np.ascontiguousarray(value.astype(trt.nptype(self.engine.io[name][1])))
                ctypes.memmove(self.addr[name], arr.ctypes.data, arr.nbytes)
            return True

    class Runtime:
        def __init__(self, logger: object) -> None:
            self.DLA_core = -1

        def deserialize_cuda_engine(self, data: bytes):
            head, _, body = bytes(data).partition(b"\n")
            if not head.startswith(MAGIC + b" {"):
                return None
            header = json.loads(head[len(MAGIC) + 1:])
            if header["version"].split(".")[:2] != version.split(".")[:2]:
                return None  # TensorRT refuses engines of another version
            return Engine(header, body)

    class IInt8EntropyCalibrator2:
        def __init__(self) -> None:
            pass

    trt.__dict__.update(ILogger=ILogger, Logger=Logger, Runtime=Runtime, Builder=Builder, OnnxParser=OnnxParser)
    if major < 11:
        trt.IInt8EntropyCalibrator2 = IInt8EntropyCalibrator2
    return trt


def install(monkeypatch: Any, version: str = "10.3.0", *, fp16_collapse: bool = False,
            devices: tuple[tuple[str, int, int], ...] = (("NVIDIA Orin (fake)", 8, 7),),
            driver: bool = True) -> tuple[types.ModuleType, types.ModuleType]:
    """Put a fake ``tensorrt`` and ``cuda.bindings.runtime`` into ``sys.modules`` (undone by ``monkeypatch``)."""
    trt, cudart = make_tensorrt(version, fp16_collapse=fp16_collapse), make_cudart(devices, driver)
    trt.__spec__ = ModuleSpec("tensorrt", None)
    cudart.__spec__ = ModuleSpec("cuda.bindings.runtime", None)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", cudart)
    return trt, cudart
