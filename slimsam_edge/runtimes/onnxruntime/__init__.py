"""The ONNX Runtime backend: runner, ONNX files, fp16/int8 recipes, calibration reader.

Example:
    >>> BACKEND.name, BACKEND.suffixes, sorted(BACKEND._recipes)
    ('onnxruntime', ('.onnx',), ['fp16', 'int8'])
"""

from ..plugin import Backend, OnnxAsIs
from .recipes import OrtFp16, OrtInt8, OrtPrecisionOptions
from .runner import OnnxRuntimeRunner

BACKEND = Backend(
    "onnxruntime",
    runner=OnnxRuntimeRunner,
    suffixes=(".onnx",),
    converter=OnnxAsIs(),
    recipes=(OrtFp16, OrtInt8),
    options=OrtPrecisionOptions,
    distributions=("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml"),
)
