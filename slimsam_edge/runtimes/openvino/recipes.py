"""OpenVINO's reduced-precision recipes: FP16 IR, the bf16 inference hint, NNCF int8, and NNCF int8
with the bf16 hint (its unquantized ops in bf16).

Example:
    >>> OvBf16.runner_precision, OvInt8.requires, OvInt8Bf16.runner_precision
    ('bf16', ('nncf', 'openvino'), 'int8-bf16')
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
    """The NNCF int8 IR; the ops NNCF did not quantize run in fp32 (the hint is set explicitly)."""

    precision, calibrated, runner_precision = "int8", True, "int8"
    requires = ("nncf", "openvino")
    #: the IR's file tag and what its unquantized ops compute in (said in the artifact's method)
    tag, other_ops = "int8", "f32"

    def build(self, ctx: BuildContext) -> Artifact:
        from .quantize import quantize_int8_nncf

        o = ctx.options  # NncfOptions
        files = quantize_int8_nncf(ctx.root / ctx.fp32.path, ctx.root / "openvino" / f"{ctx.graph}.{self.tag}.xml",
                                   ctx.feeds or [], options=o)
        return self._artifact(ctx, files, {
            "method": "NNCF post-training quantization, model_type=TRANSFORMER; unquantized ops: "
                      f"INFERENCE_PRECISION_HINT={self.other_ops}",
            "subset_size": min(o.subset_size, len(ctx.feeds or [])), "ignored_types": list(o.ignored_types),
            "ignored_names": list(o.ignored_names),
        })


class OvInt8Bf16(OvInt8):
    """The NNCF int8 IR with INFERENCE_PRECISION_HINT=bf16: int8 where NNCF quantized, bf16 elsewhere
    (on AMX CPUs OpenVINO runs both kinds of matmul on AMX tiles). Needs a CPU with BF16. Its own IR
    file, so a bundle may hold int8 and int8-bf16 side by side; a decoder left unquantized is the fp32
    IR with the bf16 hint (the bf16 decoder)."""

    precision, runner_precision = "int8-bf16", "int8-bf16"
    tag, other_ops = "int8-bf16", "bf16"

    def keep_unquantized(self, ctx: BuildContext, why: str) -> Artifact:
        art = self._artifact(ctx, [ctx.root / f for f in ctx.fp32.files],
                             {"method": f"fp32 graph + INFERENCE_PRECISION_HINT=bf16: {why}"})
        art.extra["precision_hint"] = "bf16"
        return art
