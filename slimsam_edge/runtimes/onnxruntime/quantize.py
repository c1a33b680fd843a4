"""ONNX Runtime reduced precision: FP16 graphs, static INT8 (QDQ) and dynamic INT8 (baseline).

* FP16: ``onnxruntime.transformers.float16`` with fp32 inputs/outputs and a block list of ops kept
  in fp32 (LayerNorm parts, Softmax, ... -- see :data:`FP16_KEEP_FP32`).
* Static INT8: ``quant_pre_process`` first, then ``quantize_static`` in QDQ format with symmetric
  int8 activations and weights and per-channel weights (S8S8, the format TensorRT consumes too);
  nodes of :data:`INT8_EXCLUDE_OPS` (and node-name globs) stay in float.
* Dynamic INT8: weights only, a baseline for comparison (no calibration).

Illustration (not run as a doctest: it needs files or a model)::

    to_fp16("encoder.onnx", "encoder.fp16.onnx")
    quantize_int8_static("encoder.onnx", "encoder.int8.onnx", feeds)
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from ...errors import ExportError, UsageError
from .onnx_files import save_onnx, under_2gb

#: ops kept in fp32 in FP16 graphs (LayerNorm and its decomposed parts, Softmax, reductions)
FP16_KEEP_FP32: tuple[str, ...] = (
    "LayerNormalization", "Softmax", "ReduceMean", "Pow", "Sqrt", "Div", "Erf", "Resize",
)
#: op types left unquantized by static INT8 (LayerNorm parts, Softmax, GELU's Erf, ...)
INT8_EXCLUDE_OPS: tuple[str, ...] = (
    "LayerNormalization", "Softmax", "ReduceMean", "Pow", "Sqrt", "Div", "Erf", "Sub",
)


@dataclass(frozen=True)
class OrtInt8Options:
    """Static INT8 settings.

    Arguments:
        exclude_ops: op types left in float.
        exclude_nodes: node-name globs left in float (e.g. ``"/mask_decoder/*"``).
        per_channel: per-channel weight scales.
        calibrate_method: "minmax", "entropy" or "percentile" (ONNX Runtime's calibrators).
        float_attention: keep MatMuls of two activations (attention scores, attention x values,
            the decoder's mask product) in float.
        float_positional: keep the nodes feeding Sin/Cos (random-Fourier positional encoding of
            prompts) in float; quantizing them scrambles the prompt positions.
        op_types: op types quantized (and calibrated): the weight-carrying ones by default, so
            calibration does not watch every elementwise tensor (at 1024 px the default, all op
            types, ran out of 24 GB); elementwise ops stay float.
    """

    exclude_ops: tuple[str, ...] = INT8_EXCLUDE_OPS
    exclude_nodes: tuple[str, ...] = ()
    per_channel: bool = True
    calibrate_method: str = "minmax"
    float_attention: bool = True
    float_positional: bool = True
    op_types: tuple[str, ...] = ("MatMul", "Gemm", "Conv")


def _load(path: Path) -> Any:
    import onnx

    return onnx.load(str(path))


def _write(model: Any, out: Path) -> list[Path]:
    return save_onnx(model, out, external=not under_2gb(model))


def to_fp16(src: Path | str, out: Path | str, *, keep_fp32_ops: Sequence[str] = FP16_KEEP_FP32) -> list[Path]:
    """Convert an fp32 ONNX graph to fp16 weights/compute with fp32 I/O; returns the written files.

    Illustration (not run as a doctest: it needs files or a model)::

        to_fp16("onnx/image_encoder.onnx", "onnx/image_encoder.fp16.onnx")
        # -> [PosixPath('onnx/image_encoder.fp16.onnx')]
    """
    from onnxruntime.transformers import float16

    block = list(dict.fromkeys([*float16.DEFAULT_OP_BLOCK_LIST, *keep_fp32_ops]))
    try:
        model = float16.convert_float_to_float16(_load(Path(src)), keep_io_types=True, op_block_list=block)
    except Exception as err:  # the converter raises plain exceptions on odd graphs
        raise ExportError(f"{src}: fp16 conversion failed ({type(err).__name__}: {str(err)[:160]})") from err
    return _write(model, Path(out))


def _nodes_to_exclude(model: Any, opts: OrtInt8Options) -> list[str]:
    """Names of the nodes left in float: by op type, name glob, attention and positional rules."""
    nodes = list(model.graph.node)
    consts = {t.name for t in model.graph.initializer}
    consts |= {o for n in nodes if n.op_type == "Constant" for o in n.output}
    producer = {o: n for n in nodes for o in n.output}
    ops = set(opts.exclude_ops)
    out = {n.name for n in nodes if n.op_type in ops or any(fnmatch.fnmatchcase(n.name, g) for g in opts.exclude_nodes)}
    if opts.float_attention:
        out |= {n.name for n in nodes if n.op_type == "MatMul" and not (set(n.input) & consts)}
    if opts.float_positional:
        frontier = [i for n in nodes if n.op_type in ("Sin", "Cos") for i in n.input]
        for _ in range(3):  # a few hops back: coords @ gaussian, * 2pi, ...
            found = [producer[i] for i in frontier if i in producer]
            out |= {n.name for n in found if n.op_type in ("MatMul", "Gemm", "Mul", "Add", "Sub")}
            frontier = [i for n in found for i in n.input]
    return sorted(out)


_METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}


_CWD_LOCK = threading.Lock()


@contextlib.contextmanager
def _working_dir(folder: str) -> Any:
    """Run a block in ``folder``: ONNX Runtime's symbolic shape inference writes
    ``sym_shape_infer_temp.onnx`` (+ its data) into the current directory when it gives up; this
    keeps that litter in our temporary folder, not in the user's. The working directory is
    process-wide, so quantizations take turns."""
    with _CWD_LOCK:
        before = os.getcwd()
        os.chdir(folder)
        try:
            yield
        finally:
            os.chdir(before)


def quantize_int8_static(src: Path | str, out: Path | str, feeds: Iterable[dict], *,
                         options: OrtInt8Options | None = None) -> list[Path]:
    """QDQ INT8 (S8S8, symmetric, per-channel weights) calibrated on ``feeds``.

    Arguments:
        src: fp32 ONNX graph.
        out: the quantized graph to write (atomically).
        feeds: a re-iterable of feed dicts (:mod:`slimsam_edge.calibration`).
        options: exclusions and calibration method.

    Illustration (not run as a doctest: it needs files or a model)::

        quantize_int8_static("onnx/image_encoder.onnx", "onnx/image_encoder.int8.onnx",
                             encoder_feeds(images, image_size=256, pixel_mean=m, pixel_std=s))
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from .calibration import ort_data_reader

    opts = options or OrtInt8Options()
    if opts.calibrate_method not in _METHODS:
        raise UsageError(f"calibrate_method {opts.calibrate_method!r}: choose one of {', '.join(_METHODS)}")
    src, out = Path(src), Path(out)
    with tempfile.TemporaryDirectory(prefix=".quant.", dir=out.parent) as tmp:
        pre, q = Path(tmp) / "pre.onnx", Path(tmp) / "q.onnx"
        src_abs, pre_abs = str(src.resolve()), str(pre.resolve())  # resolved before the chdir below
        try:
            with _working_dir(tmp):
                quant_pre_process(src_abs, pre_abs, skip_symbolic_shape=False)
        except Exception as err:  # symbolic shape inference fails on some graphs; ORT's own optimizer still runs
            try:
                quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
            except Exception:
                raise ExportError(f"{src}: quant_pre_process failed ({type(err).__name__}: {str(err)[:160]})") from err
        model = _load(pre)
        names = [i.name for i in model.graph.input]
        try:
            quantize_static(
                str(pre), str(q), ort_data_reader(feeds, names),
                quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8, per_channel=opts.per_channel,
                nodes_to_exclude=_nodes_to_exclude(model, opts),
                calibrate_method=getattr(CalibrationMethod, _METHODS[opts.calibrate_method]),
                op_types_to_quantize=list(opts.op_types),
                extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
            )
        except Exception as err:
            raise ExportError(f"{src}: static int8 quantization failed ({type(err).__name__}: {str(err)[:160]})") from err
        return _write(_load(q), out)


def quantize_int8_dynamic(src: Path | str, out: Path | str) -> list[Path]:
    """Weight-only dynamic INT8 (activations quantized at run time): a baseline, not an export choice.

    Illustration (not run as a doctest: it needs files or a model)::

        quantize_int8_dynamic("onnx/image_encoder.onnx", "/tmp/encoder.dyn.onnx")
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    src, out = Path(src), Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".quant.", dir=out.parent) as tmp:
        pre, q = Path(tmp) / "pre.onnx", Path(tmp) / "q.onnx"
        try:
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
            # MatMul/Gemm only: SAM's convolutions take computed weights that dynamic mode rejects
            quantize_dynamic(str(pre), str(q), weight_type=QuantType.QInt8, per_channel=True,
                             op_types_to_quantize=["MatMul", "Gemm"])
        except Exception as err:
            raise ExportError(f"{src}: dynamic int8 quantization failed ({type(err).__name__}: {str(err)[:160]})") from err
        return _write(_load(q), out)
