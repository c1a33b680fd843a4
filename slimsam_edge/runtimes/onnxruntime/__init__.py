"""The ONNX Runtime backend: runner, ONNX files, fp16/int8 recipes, calibration reader.

Example:
    >>> BACKEND.name, BACKEND.suffixes, sorted(BACKEND._recipes)
    ('onnxruntime', ('.onnx',), ['fp16', 'int8'])
"""

from ..plugin import Backend, OnnxAsIs
from .recipes import OrtFp16, OrtInt8, OrtPrecisionOptions
from .runner import OnnxRuntimeRunner

#: why ONNX Runtime has no bf16 precisions here (checked against ORT 1.32's CPU provider)
NO_BF16 = ("ONNX Runtime's CPU provider has no bf16 kernels for MatMul, Conv or attention on x86; its only bf16 "
           "option, mlas.enable_gemm_fastmath_arm64_bfloat16, is for Arm64 fp32 MatMuls and is not wired "
           "here; use --backend openvino")

BACKEND = Backend(
    "onnxruntime",
    runner=OnnxRuntimeRunner,
    suffixes=(".onnx",),
    converter=OnnxAsIs(),
    recipes=(OrtFp16, OrtInt8),
    options=OrtPrecisionOptions,
    distributions=("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml"),
    cannot={"int8-bf16": NO_BF16, "bf16": NO_BF16},
)
