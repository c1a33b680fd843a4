"""Which TensorRT build a precision needs, per TensorRT major version (a registry, no if/elif).

* TensorRT 10 (JetPack 6, x86): FP16 is a builder flag with LayerNorm/Softmax pinned to FP32;
  INT8 comes from the Q/DQ ONNX (explicit quantization, ``--precision int8`` export) or, for an
  ONNX without Q/DQ, from an entropy calibrator with a cache file.
* TensorRT 11: strongly typed only; the precision must already be in the ONNX (the fp16 graph or
  the Q/DQ graph of the bundle). Anything else is refused with the file to use instead.

Illustration (not run as a doctest: it needs files or a model)::

    build_engine_for("onnx/image_encoder.int8.onnx", "enc.engine", "int8")
    # -> (PosixPath('enc.engine'), {'tensorrt_version': '10.3.0', 'build': 'explicit int8 (Q/DQ ONNX)'})
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from ...errors import UsageError
from .cuda import import_tensorrt

FP32_LAYERS = ("LayerNormalization", "Softmax")


def onnx_facts(path: Path | str) -> dict[str, bool]:
    """``{"qdq": has Q/DQ nodes, "fp16": has float16 weights}`` of an ONNX file (no onnx import).

    Op type names and data types are plain protobuf fields, so a byte scan finds Q/DQ nodes; fp16
    needs the ``onnx`` package and is reported False without it.

    Illustration (not run as a doctest: it needs files or a model)::

        onnx_facts("onnx/image_encoder.int8.onnx")
        # -> {'qdq': True, 'fp16': False}
    """
    data = Path(path).read_bytes()
    fp16 = False
    try:
        import onnx

        model = onnx.load(str(path), load_external_data=False)
        fp16 = any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)
    except ImportError:
        pass
    return {"qdq": b"QuantizeLinear" in data, "fp16": fp16}


class EnginePrecision:
    """Build arguments of one precision; subclasses register in :data:`ENGINE_PRECISIONS`."""

    precision: ClassVar[str]

    def plan(self, major: int, facts: dict[str, bool], calibrator: Any) -> tuple[dict[str, Any], str]:
        raise NotImplementedError

    def source(self, major: int, sources: dict[str, str], dla: bool) -> tuple[str, bool]:
        """Which ONNX of a build plan's ``{precision: path}`` this TensorRT builds the precision from,
        and whether the build takes an implicit calibrator (the plan's calibration inputs)."""
        return sources["fp32"], False


ENGINE_PRECISIONS: dict[str, EnginePrecision] = {}


def _register(cls: type[EnginePrecision]) -> type[EnginePrecision]:
    ENGINE_PRECISIONS[cls.precision] = cls()
    return cls


@_register
class Fp32(EnginePrecision):
    precision = "fp32"

    def plan(self, major, facts, calibrator):
        if facts["qdq"] or facts["fp16"]:
            raise UsageError("an fp32 engine needs the fp32 ONNX (onnx/<graph>.onnx), not a reduced one")
        return ({"strongly_typed": True} if major >= 11 else {}), "fp32"


@_register
class Fp16(EnginePrecision):
    precision = "fp16"

    def source(self, major, sources, dla):
        # TensorRT 10: the fp16 flag on the fp32 graph; 11: the fp16 graph (plan() refuses the fp32 one)
        return (sources.get("fp16", sources["fp32"]) if major >= 11 else sources["fp32"]), False

    def plan(self, major, facts, calibrator):
        if major >= 11:
            if not facts["fp16"]:
                raise UsageError(
                    "TensorRT 11 builds strongly typed networks only: pass the fp16 ONNX "
                    "(onnx/<graph>.fp16.onnx from `slimsam-edge export --precision fp16`)")
            return {"strongly_typed": True}, "strongly typed fp16 ONNX"
        return ({"fp16": True, "fp32_layer_types": FP32_LAYERS},
                f"fp16 flag, {', '.join(FP32_LAYERS)} pinned to fp32")


@_register
class Int8(EnginePrecision):
    precision = "int8"

    def source(self, major, sources, dla):
        if dla and major < 11:  # DLA on TensorRT 10: implicit int8 from the fp32 graph + calibrator
            return sources["fp32"], True
        return sources.get("int8", sources["fp32"]), False

    def plan(self, major, facts, calibrator):
        if facts["qdq"]:
            if calibrator is not None:
                raise UsageError("the ONNX already holds Q/DQ scales; drop the calibrator")
            if major >= 11:
                return {"strongly_typed": True}, "strongly typed int8 (Q/DQ ONNX)"
            # the Q/DQ placement already keeps LayerNorm/Softmax in float: no pinning needed
            return {"int8": True, "fp32_layer_types": ()}, "explicit int8 (Q/DQ ONNX)"
        if major >= 11:
            raise UsageError(
                "TensorRT 11 has no INT8 calibrators: pass the Q/DQ ONNX "
                "(onnx/<graph>.int8.onnx from `slimsam-edge export --precision int8`)")
        if calibrator is None:
            raise UsageError(
                "int8 from an ONNX without Q/DQ needs a calibrator (EntropyCalibrator(feeds, cache_file)); "
                "or pass the Q/DQ ONNX from `slimsam-edge export --precision int8`")
        return ({"int8": True, "calibrator": calibrator, "fp32_layer_types": FP32_LAYERS},
                "implicit int8, entropy calibrator + cache")


def build_engine_for(onnx_path: Path | str, engine_path: Path | str, precision: str, *,
                     calibrator: Any = None, fp32_layers: tuple[str, ...] = FP32_LAYERS,
                     **build_kw: Any) -> tuple[Path, dict[str, Any]]:
    """Build an engine of ``precision`` the way this TensorRT version supports it.

    Arguments:
        onnx_path: the fp32, fp16 or Q/DQ int8 ONNX graph.
        precision: "fp32", "fp16" or "int8" (refused, never swapped, when the ONNX or this
            TensorRT cannot give it).
        calibrator: TensorRT 10 only, for int8 from an fp32 ONNX.
        fp32_layers: the layers a TensorRT 10 fp16 / implicit-int8 build pins to FP32 (the
            profile's ``[tensorrt] fp32_layers``).
        build_kw: passed to :func:`~slimsam_edge.runtimes.tensorrt.build.build_engine`
            (timing_cache, min_opt_max_shapes, workspace_gb, dla_core).

    Returns:
        the engine path and the artifact extras (``tensorrt_version`` checked at load, ``build``).

    Illustration (not run as a doctest: it needs files or a model)::

        build_engine_for("onnx/image_encoder.onnx", "enc.engine", "fp16",
                         timing_cache="trt.cache")
    """
    from .build import build_engine

    if precision not in ENGINE_PRECISIONS:
        raise UsageError(f"TensorRT precision {precision!r}: choose one of {', '.join(ENGINE_PRECISIONS)}")
    trt = import_tensorrt()
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise UsageError(f"{onnx_path}: ONNX file not found; export the graph first")
    major = int(str(trt.__version__).split(".")[0])
    kwargs, how = ENGINE_PRECISIONS[precision].plan(major, onnx_facts(onnx_path), calibrator)
    if kwargs.get("fp32_layer_types"):
        kwargs["fp32_layer_types"] = tuple(fp32_layers)
        how = how.replace(", ".join(FP32_LAYERS), ", ".join(fp32_layers))
    engine = build_engine(onnx_path, engine_path, **{**build_kw, **kwargs})
    return engine, {"tensorrt_version": str(trt.__version__), "build": how}
