"""The ONNX Runtime backend: runner, ONNX files, fp16/int8 recipes, calibration reader.

Example:
    >>> BACKEND.name, BACKEND.suffixes, sorted(BACKEND._recipes)
    ('onnxruntime', ('.onnx',), ['fp16', 'int8'])
"""

from ...manifest_schema import count, text, texts
from ..plugin import RECIPE_EXTRA, Backend, OnnxAsIs
from .recipes import OrtFp16, OrtInt8, OrtPrecisionOptions
from .runner import OnnxRuntimeRunner

#: why ONNX Runtime has no bf16 precisions here (checked against ORT 1.32's CPU provider)
NO_BF16 = ("ONNX Runtime's CPU provider has no bf16 kernels for MatMul, Conv or attention on x86; its only bf16 "
           "option, mlas.enable_gemm_fastmath_arm64_bfloat16, is for Arm64 fp32 MatMuls and is not wired "
           "here; use --backend openvino")

#: what an ONNX Runtime artifact's ``extra`` may hold: descriptions its recipes write, nothing a
#: runner reads (providers come from the backend and ``--device``, never from the manifest)
ARTIFACT_EXTRA = {
    **RECIPE_EXTRA,
    "kept_fp32": texts(),  # fp16: op types kept in fp32
    "calibrate_method": text(), "excluded_ops": texts(), "excluded_nodes": texts(limit=100_000),
    "calibration_feeds": count(),  # int8
}

BACKEND = Backend(
    "onnxruntime",
    runner=OnnxRuntimeRunner,
    suffixes=(".onnx",),
    converter=OnnxAsIs(),
    recipes=(OrtFp16, OrtInt8),
    options=OrtPrecisionOptions,
    distributions=("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml"),
    cannot={"int8-bf16": NO_BF16, "bf16": NO_BF16},
    artifact_extra=ARTIFACT_EXTRA,
)
