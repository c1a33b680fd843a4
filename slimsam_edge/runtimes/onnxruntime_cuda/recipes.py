"""The CUDA backend's reduced precision: ONNX Runtime's fp16 graph, its own class and file.

``Backend`` sets ``backend`` on each recipe class it lists, so the CUDA backend subclasses the
onnxruntime recipe instead of sharing it, and writes its file beside the onnxruntime one.

Example:
    >>> OrtCudaFp16.precision, OrtCudaFp16.file_tag
    ('fp16', 'cuda-fp16')
"""

from __future__ import annotations

from ..onnxruntime.recipes import OrtFp16


class OrtCudaFp16(OrtFp16):
    """ONNX Runtime's fp16 graph (``onnx/<graph>.cuda-fp16.onnx``), run on the CUDA provider."""

    file_tag = "cuda-fp16"
