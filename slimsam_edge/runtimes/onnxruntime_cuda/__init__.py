"""ONNX Runtime's CUDA execution provider as its own backend (``pip install 'slimsam-edge[gpu]'``).

The bundle's ONNX graphs run as they are (``OnnxAsIs``) on an NVIDIA GPU without TensorRT: the
``x86-gpu`` profile's choice where no engine is built. Its fp16 artifact is ONNX Runtime's fp16
graph (:class:`OrtCudaFp16`).

Example:
    >>> BACKEND.name, BACKEND.extra, sorted(BACKEND._recipes), BACKEND.recipe("fp16").backend
    ('onnxruntime-cuda', 'gpu', ['fp16'], 'onnxruntime-cuda')
"""

from ..onnxruntime import ARTIFACT_EXTRA
from ..onnxruntime.recipes import OrtPrecisionOptions
from ..plugin import Backend, OnnxAsIs
from .recipes import OrtCudaFp16
from .runner import GPU_DISTRIBUTION, OnnxRuntimeCudaRunner

BACKEND = Backend(
    "onnxruntime-cuda",
    runner=OnnxRuntimeCudaRunner,
    # its artifact is the exported ONNX graph itself: validated with the CPU build where no GPU is
    converter=OnnxAsIs(validate_with="onnxruntime"),
    recipes=(OrtCudaFp16,),
    options=OrtPrecisionOptions,
    extra="gpu",
    distributions=(GPU_DISTRIBUTION,),
    artifact_extra=ARTIFACT_EXTRA,  # the onnxruntime recipes' descriptions; its providers are its own
)
