"""OpenVINO's reduced-precision recipes: FP16 IR, the bf16 inference hint, NNCF int8.

Example:
    >>> OvBf16.runner_precision, OvInt8.requires
    ('bf16', ('nncf', 'openvino'))
"""

from __future__ import annotations

from ...bundle import Artifact
from ..plugin import BuildContext, Recipe


class OvFp16(Recipe):
    precision = "fp16"

    def build(self, ctx: BuildContext) -> Artifact:
        from .quantize import ir_fp16

        files = ir_fp16(ctx.root / ctx.fp32.path, ctx.root / "openvino" / f"{ctx.graph}.fp16.xml")
        return self._artifact(ctx, files, {"method": "IR with compress_to_fp16 (weights fp16)"})


class OvBf16(Recipe):
    """No new file: the fp32 IR with OpenVINO's bf16 inference precision hint."""

    precision, runner_precision = "bf16", "bf16"

    def build(self, ctx: BuildContext) -> Artifact:
        files = [ctx.root / f for f in ctx.fp32.files]
        return self._artifact(ctx, files, {"method": "fp32 IR + INFERENCE_PRECISION_HINT=bf16"})


class OvInt8(Recipe):
    precision, calibrated, runner_precision = "int8", True, "int8"
    requires = ("nncf", "openvino")

    def build(self, ctx: BuildContext) -> Artifact:
        from .quantize import quantize_int8_nncf

        o = ctx.options  # NncfOptions
        files = quantize_int8_nncf(ctx.root / ctx.fp32.path, ctx.root / "openvino" / f"{ctx.graph}.int8.xml",
                                   ctx.feeds or [], options=o)
        return self._artifact(ctx, files, {
            "method": "NNCF post-training quantization, model_type=TRANSFORMER",
            "subset_size": min(o.subset_size, len(ctx.feeds or [])), "ignored_types": list(o.ignored_types),
            "ignored_names": list(o.ignored_names),
        })
