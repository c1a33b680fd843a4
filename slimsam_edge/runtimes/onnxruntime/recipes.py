"""ONNX Runtime's reduced-precision recipes: an fp16 graph and a static QDQ int8 graph.

Example:
    >>> OrtInt8.calibrated, OrtPrecisionOptions().int8.calibrate_method
    (True, 'minmax')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ...bundle import Artifact
from ..plugin import BuildContext, Recipe
from .quantize import FP16_KEEP_FP32, OrtInt8Options


@dataclass(frozen=True)
class OrtPrecisionOptions:
    """ONNX Runtime's precision settings (``PrecisionOptions.backend_options["onnxruntime"]``).

    Arguments:
        fp16_keep_fp32: ONNX op types kept in fp32 in fp16 graphs.
        int8: static INT8 settings (exclusions, calibration method).
    """

    fp16_keep_fp32: tuple[str, ...] = FP16_KEEP_FP32
    int8: OrtInt8Options = field(default_factory=OrtInt8Options)


class OrtFp16(Recipe):
    precision = "fp16"
    #: the written file is ``onnx/<graph>.<file_tag>.onnx`` (a subclass of another backend sets its own)
    file_tag: ClassVar[str] = "fp16"

    def build(self, ctx: BuildContext) -> Artifact:
        from .quantize import to_fp16

        keep = ctx.options.fp16_keep_fp32
        files = to_fp16(ctx.onnx, ctx.root / "onnx" / f"{ctx.graph}.{self.file_tag}.onnx", keep_fp32_ops=keep)
        return self._artifact(ctx, files, {"method": "float16 weights+compute, fp32 I/O", "kept_fp32": list(keep)})


class OrtInt8(Recipe):
    precision, calibrated = "int8", True

    def build(self, ctx: BuildContext) -> Artifact:
        from .quantize import quantize_int8_static

        o = ctx.options.int8
        files = quantize_int8_static(ctx.onnx, ctx.root / "onnx" / f"{ctx.graph}.int8.onnx", ctx.feeds or [], options=o)
        return self._artifact(ctx, files, {
            "method": "static QDQ, symmetric s8 activations + s8 per-channel weights" if o.per_channel
            else "static QDQ, symmetric s8 activations + weights",
            "calibrate_method": o.calibrate_method, "excluded_ops": list(o.exclude_ops),
            "excluded_nodes": list(o.exclude_nodes), "calibration_feeds": len(ctx.feeds or []),
        })
