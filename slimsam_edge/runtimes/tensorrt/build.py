"""Build a TensorRT engine from an ONNX file, on the device that will run it (torch-free).

Works with TensorRT 10 (weakly typed builds: FP16/INT8 builder flags, entropy calibrator with a
cache file, layers pinned to FP32) and TensorRT 11 (strongly typed only: precision lives in the
ONNX, as FP16 casts or Q/DQ nodes). Asking TensorRT 11 for ``fp16``/``int8`` flags raises
:class:`~slimsam_edge.errors.UsageError` instead of building something else.

Illustration (not run as a doctest: it needs files or a model)::

    from slimsam_edge.runtimes.tensorrt.build import build_engine
    build_engine("decoder.onnx", "decoder.engine", fp16=True,
                 min_opt_max_shapes={"point_coords": ((1, 1, 2), (1, 5, 2), (1, 16, 2))},
                 timing_cache="trt.cache")
    # -> PosixPath('decoder.engine')
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ...errors import ExportError, RunnerError, UsageError
from ...fsutil import atomic_path, write_bytes_atomic
from .cuda import DeviceBuffer, cuda_check, import_cudart, import_tensorrt

log = logging.getLogger("slimsam_edge.tensorrt")

Shape = Sequence[int]
ShapeRange = tuple[Shape, Shape, Shape]
#: one (min, opt, max) for every dynamic axis, or one per axis index
AxisRanges = "tuple[int, int, int] | dict[int, tuple[int, int, int]]"

#: ONNX op types (as users name them) -> TensorRT LayerType member names
ONNX_TO_TRT_LAYER: dict[str, str] = {
    "LayerNormalization": "NORMALIZATION",
    "Softmax": "SOFTMAX",
    "MatMul": "MATRIX_MULTIPLY",
    "Gemm": "MATRIX_MULTIPLY",
    "ReduceMean": "REDUCE",
    "Einsum": "EINSUM",
    "Conv": "CONVOLUTION",
    "Pow": "ELEMENTWISE",
    "Sqrt": "UNARY",
    "Exp": "UNARY",
    "Erf": "UNARY",
}


def _layer_types(trt: Any, names: Iterable[str]) -> set[Any]:
    """Resolve ONNX op names or TensorRT LayerType names to ``trt.LayerType`` members."""
    found = set()
    for name in names:
        member = getattr(trt.LayerType, ONNX_TO_TRT_LAYER.get(name, str(name).upper()), None)
        if member is None:
            raise UsageError(
                f"unknown layer type {name!r} to pin to FP32; use one of "
                f"{', '.join(sorted(ONNX_TO_TRT_LAYER))} or a TensorRT LayerType name"
            )
        found.add(member)
    return found


@functools.lru_cache(maxsize=None)
def _logger_class(trt: Any) -> type:
    class CollectingLogger(trt.ILogger):
        """Forwards TensorRT messages to ``logging`` and keeps the errors for one-line reports."""

        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            level = int(severity)
            if level <= int(trt.ILogger.Severity.ERROR):
                self.errors.append(msg)
                log.error(msg)
            elif level == int(trt.ILogger.Severity.WARNING):
                log.warning(msg)
            else:
                log.debug(msg)

    return CollectingLogger


def _last_error(logger: Any, default: str) -> str:
    errors = getattr(logger, "errors", [])
    return (errors[-1].strip().splitlines() or [default])[0][:200] if errors else default


def _add_profile(trt: Any, builder: Any, network: Any, config: Any,
                 shapes: Mapping[str, ShapeRange]) -> Any:
    """Create the optimization profile; every dynamic input must have a (min, opt, max) range."""
    inputs = {network.get_input(i).name: network.get_input(i) for i in range(network.num_inputs)}
    unknown = sorted(set(shapes) - set(inputs))
    if unknown:
        raise UsageError(f"min/opt/max shapes name unknown inputs {unknown}; the inputs are {sorted(inputs)}")
    missing = [n for n, t in inputs.items() if any(d < 0 for d in t.shape) and n not in shapes]
    if missing:
        raise UsageError(
            f"inputs {missing} have dynamic axes; pass min/opt/max shapes for them "
            "(min_opt_max_shapes={name: (min, opt, max)})"
        )
    if not shapes:
        return None
    profile = builder.create_optimization_profile()
    for name, rng in shapes.items():
        if len(rng) != 3:
            raise UsageError(f"shapes of {name!r} must be (min, opt, max), got {rng!r}")
        declared = tuple(inputs[name].shape)
        for shape in rng:
            fits = len(shape) == len(declared) and all(d < 0 or d == s for d, s in zip(declared, shape))
            if not fits:
                raise UsageError(f"shape {tuple(shape)} for {name!r} does not fit its declared shape {declared}")
        if not all(a <= b <= c for a, b, c in zip(*rng)):
            raise UsageError(f"shapes of {name!r} must satisfy min <= opt <= max per axis, got {rng!r}")
        profile.set_shape(name, *(tuple(int(d) for d in s) for s in rng))
    config.add_optimization_profile(profile)
    return profile


def _pin_fp32(trt: Any, network: Any, types: set[Any]) -> int:
    """Set ``precision = float32`` on every float layer of ``types``; return how many were pinned."""
    floats = (trt.float32, trt.float16)
    pinned = 0
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.type not in types:
            continue
        outs = [layer.get_output(j) for j in range(layer.num_outputs)]
        if not outs or any(o.dtype not in floats for o in outs):
            continue
        layer.precision = trt.float32
        for j in range(layer.num_outputs):
            layer.set_output_type(j, trt.float32)
        pinned += 1
    return pinned


def _flag(trt: Any, name: str, why: str) -> Any:
    flag = getattr(trt.BuilderFlag, name, None)
    if flag is None:
        raise UsageError(
            f"TensorRT {trt.__version__} has no {name} builder flag (removed in TensorRT 11); {why}"
        )
    return flag


def build_engine(
    onnx_path: Path | str,
    engine_path: Path | str,
    *,
    fp16: bool = False,
    int8: bool = False,
    calibrator: Any = None,
    timing_cache: Path | str | None = None,
    min_opt_max_shapes: dict[str, ShapeRange] | None = None,
    fp32_layer_types: Sequence[str] = ("LayerNormalization", "Softmax"),
    workspace_gb: float = 2,
    strongly_typed: bool = False,
    dla_core: int | None = None,
    optimization_level: int | None = None,
    dynamic_range: "AxisRanges | None" = None,
) -> Path:
    """Parse ``onnx_path``, build a serialized engine and write it atomically to ``engine_path``.

    Arguments:
        fp16 / int8: TensorRT 10 weak-typing flags (TensorRT 11 refuses them: put the precision
            into the ONNX and pass ``strongly_typed=True``).
        calibrator: an ``EntropyCalibrator`` for INT8 without Q/DQ nodes (TensorRT 10 only).
        timing_cache: file loaded before and saved after the build (speeds up rebuilds).
        min_opt_max_shapes: ``{input: (min, opt, max)}`` for every input with a dynamic axis.
        fp32_layer_types: layers kept in FP32 when ``fp16``/``int8`` is on (ViT encoders need
            LayerNorm and Softmax in FP32, or FP16 engines give garbage masks).
        workspace_gb: builder workspace memory limit.
        strongly_typed: build a strongly typed network (precision exactly as in the ONNX).
        dla_core: build for this Jetson DLA core, with GPU fallback (needs fp16 or int8, or a
            strongly typed reduced graph).
        optimization_level: ``builder_optimization_level`` (0..5; None = TensorRT's default, 3).
        dynamic_range: (min, opt, max) for every dynamic axis of an input that
            ``min_opt_max_shapes`` leaves out, or ``{axis index: (min, opt, max)}`` (the low-res
            decoder: ``{0: prompt count, 1: point count}``).

    Raises:
        BackendUnavailableError: TensorRT / cuda-python is not installed.
        UsageError: a flag this TensorRT lacks, or missing/invalid shape ranges.
        ExportError: the ONNX cannot be parsed or the build fails (TensorRT's error included).

    Illustration (not run as a doctest: it needs files or a model)::

        build_engine("encoder.onnx", "encoder.engine", fp16=True)
        # -> PosixPath('encoder.engine')
    """
    trt = import_tensorrt()
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    _check_request(onnx_path, fp16=fp16, int8=int8, calibrator=calibrator, strongly_typed=strongly_typed,
                   dla_core=dla_core)
    logger = _logger_class(trt)()
    builder = trt.Builder(logger)
    network = _parse(trt, builder, logger, onnx_path, strongly_typed)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    if optimization_level is not None:
        config.builder_optimization_level = int(optimization_level)
    shapes = {**_dynamic_shapes(network, dynamic_range), **(min_opt_max_shapes or {})}
    profile = _add_profile(trt, builder, network, config, shapes)
    _set_precision(trt, network, config, profile, onnx_path, fp16=fp16, int8=int8, calibrator=calibrator,
                   fp32_layer_types=fp32_layer_types)
    if dla_core is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = int(dla_core)
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    cache_path = _load_timing_cache(config, timing_cache)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(
            f"{onnx_path}: TensorRT build failed ({_last_error(logger, 'see the log')}); "
            "check the shapes and precision flags"
        )
    with atomic_path(engine_path) as tmp:
        tmp.write_bytes(memoryview(serialized))
    if cache_path is not None:
        write_bytes_atomic(cache_path, memoryview(config.get_timing_cache().serialize()).tobytes())
    return engine_path


def _check_request(onnx_path: Path, *, fp16: bool, int8: bool, calibrator: Any, strongly_typed: bool,
                   dla_core: int | None) -> None:
    """Phase 1: refuse contradictory arguments before TensorRT does any work."""
    if not onnx_path.is_file():
        raise UsageError(f"{onnx_path}: ONNX file not found; export the graph first")
    if strongly_typed and (fp16 or int8):
        raise UsageError("strongly typed builds take precision from the ONNX; drop fp16/int8")
    if calibrator is not None and not int8:
        raise UsageError("a calibrator is only used for int8 builds; pass int8=True or drop the calibrator")
    if dla_core is not None and not (fp16 or int8 or strongly_typed):
        raise UsageError("DLA runs only fp16 or int8 layers; pass fp16=True or int8=True with dla_core")


def _dynamic_shapes(network: Any, dynamic_range: "AxisRanges | None") -> dict[str, ShapeRange]:
    """(min, opt, max) shapes of every input with a dynamic axis, each such axis set from
    ``dynamic_range``: one (min, opt, max) for every dynamic axis, or ``{axis: (min, opt, max)}``
    per axis index (the low-res decoder: axis 0 prompts, axis 1 points); a dynamic axis the dict
    leaves out is refused.

    Example:
        >>> class T:  # a parsed network input: point_coords with dynamic prompt and point axes
        ...     name, shape = "point_coords", (-1, -1, 2)
        >>> class N:
        ...     num_inputs = 1
        ...     get_input = staticmethod(lambda i: T)
        >>> _dynamic_shapes(N, {0: (1, 16, 64), 1: (1, 4, 16)})
        {'point_coords': ((1, 1, 2), (16, 4, 2), (64, 16, 2))}
    """
    if dynamic_range is None:
        return {}
    out: dict[str, ShapeRange] = {}
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        dims = tuple(tensor.shape)
        if not any(d < 0 for d in dims):
            continue
        ranges = {a: dynamic_range for a, d in enumerate(dims) if d < 0} if not isinstance(dynamic_range, dict) \
            else {a: dynamic_range.get(a) for a, d in enumerate(dims) if d < 0}
        missing = [a for a, r in ranges.items() if r is None]
        if missing:
            raise UsageError(f"{tensor.name}: no (min, opt, max) range for its dynamic axis {missing[0]}; "
                             "pass min_opt_max_shapes for it")
        out[tensor.name] = tuple(tuple(int(ranges[a][k]) if a in ranges else int(d)  # type: ignore[index]
                                       for a, d in enumerate(dims)) for k in range(3))  # type: ignore[assignment]
    return out


def _parse(trt: Any, builder: Any, logger: Any, onnx_path: Path, strongly_typed: bool) -> Any:
    """Phase 2: the network definition parsed from the ONNX file (explicit batch, typed if asked)."""
    flags = 0
    explicit = getattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH", None)
    if explicit is not None:
        flags |= 1 << int(explicit)
    if strongly_typed:
        typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
        if typed is not None:  # TensorRT 11 is always strongly typed and has no flag to set
            flags |= 1 << int(typed)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        first = (errors[0].strip().splitlines() or ["unknown error"])[0][:200] if errors else "unknown error"
        raise ExportError(f"{onnx_path}: TensorRT cannot parse it ({first}); re-export the ONNX (opset 17)")
    return network


def _set_precision(trt: Any, network: Any, config: Any, profile: Any, onnx_path: Path, *, fp16: bool,
                   int8: bool, calibrator: Any, fp32_layer_types: Sequence[str]) -> None:
    """Phase 3: FP16 / INT8 flags, the calibrator, and the layers pinned to FP32."""
    ask = "export a strongly typed ONNX (FP16 casts / Q/DQ nodes) and build with strongly_typed=True"
    if fp16:
        config.set_flag(_flag(trt, "FP16", ask))
    if int8:
        config.set_flag(_flag(trt, "INT8", ask))
        has_qdq = any(network.get_layer(i).type == trt.LayerType.QUANTIZE for i in range(network.num_layers))
        if calibrator is not None:
            config.int8_calibrator = calibrator
            if profile is not None:
                config.set_calibration_profile(profile)
        elif not has_qdq:
            raise UsageError(
                f"{onnx_path}: int8 needs Q/DQ nodes in the ONNX or a calibrator; pass "
                "calibrator=EntropyCalibrator(feeds, cache) or quantize the ONNX first"
            )
    if (fp16 or int8) and fp32_layer_types:
        config.set_flag(_flag(trt, "OBEY_PRECISION_CONSTRAINTS", ask))
        pinned = _pin_fp32(trt, network, _layer_types(trt, fp32_layer_types))
        log.info("pinned %d layers (%s) to FP32", pinned, ", ".join(fp32_layer_types))


def _load_timing_cache(config: Any, timing_cache: Path | str | None) -> Path | None:
    """Phase 4: hand a present timing cache to the builder (refused if from another device)."""
    if timing_cache is None:
        return None
    cache_path = Path(timing_cache)
    data = cache_path.read_bytes() if cache_path.is_file() else b""
    cache = config.create_timing_cache(data)
    if not config.set_timing_cache(cache, ignore_mismatch=False):
        raise UsageError(f"{cache_path}: timing cache is from another device or TensorRT; delete it")
    return cache_path


@functools.lru_cache(maxsize=None)
def _entropy_calibrator_class(trt: Any) -> type:
    base = getattr(trt, "IInt8EntropyCalibrator2", None)
    if base is None:
        raise UsageError(
            f"TensorRT {trt.__version__} has no INT8 calibrators (removed in TensorRT 11); quantize "
            "the ONNX with Q/DQ nodes and build it strongly typed"
        )

    class EntropyCalibrator(base):  # type: ignore[misc, valid-type]
        """INT8 entropy calibrator fed by an iterable of feed dicts, with a cache file.

        The same iterable that feeds accuracy checks feeds calibration (Polygraphy's pattern).
        A present cache file is used instead of running the feeds again.
        """

        def __init__(self, feeds: Iterable[Mapping[str, np.ndarray]], cache_file: Path | str,
                     *, batch_size: int = 1):
            base.__init__(self)
            self._feeds = iter(feeds)
            self.cache_file = Path(cache_file)
            self._batch_size = int(batch_size)
            self._cudart = import_cudart()
            self._buffers: dict[str, DeviceBuffer] = {}
            self.batches = 0

        def get_batch_size(self) -> int:
            return self._batch_size

        def get_batch(self, names: list[str], *_: Any) -> list[int] | None:
            try:
                feed = next(self._feeds)
            except StopIteration:
                return None
            missing = [n for n in names if n not in feed]
            if missing:
                raise RunnerError(f"calibration feed lacks inputs {missing}; it has {sorted(feed)}")
            h2d = self._cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
            ptrs = []
            for name in names:
                arr = np.ascontiguousarray(feed[name])
                buf = self._buffers.setdefault(name, DeviceBuffer(self._cudart))
                ptr = buf.ensure(arr.nbytes)
                cuda_check(self._cudart, self._cudart.cudaMemcpy(ptr, arr.ctypes.data, arr.nbytes, h2d),
                           "cudaMemcpy (calibration batch)")
                ptrs.append(ptr)
            self.batches += 1
            return ptrs

        def read_calibration_cache(self) -> bytes | None:
            return self.cache_file.read_bytes() if self.cache_file.is_file() else None

        def write_calibration_cache(self, cache: Any) -> None:
            write_bytes_atomic(self.cache_file, memoryview(cache).tobytes())

        def free(self) -> None:
            """Release the device buffers (call after the build)."""
            for buf in self._buffers.values():
                buf.free()
            self._buffers = {}

    return EntropyCalibrator


def entropy_calibrator_class() -> type:
    """The ``EntropyCalibrator`` class (a ``trt.IInt8EntropyCalibrator2`` subclass), built lazily.

    Illustration (not run as a doctest: it needs files or a model)::

        Calib = entropy_calibrator_class()
        calib = Calib(feeds, "encoder.calib")
        build_engine("encoder.onnx", "encoder.engine", int8=True, calibrator=calib)
    """
    return _entropy_calibrator_class(import_tensorrt())


def __getattr__(name: str) -> Any:
    # ``from slimsam_edge.runtimes.tensorrt.build import EntropyCalibrator`` imports TensorRT here.
    if name == "EntropyCalibrator":
        return entropy_calibrator_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
