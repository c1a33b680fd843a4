"""The TensorRT backend: runner, CUDA helpers, engine builder and per-version precision plans.

Engines are built on the device that runs them (``slimsam-edge build``): export ships their ONNX
sources and build settings as the manifest's ``build_plan`` (:class:`~.plan.TensorRTPlan`).

Example:
    >>> BACKEND.name, BACKEND.converter.on_device
    ('tensorrt', True)
"""

from ..plugin import Backend
from .plan import TensorRTPlan
from .runner import TensorRTRunner

BACKEND = Backend(
    "tensorrt",
    runner=TensorRTRunner,
    suffixes=(".engine", ".plan"),
    converter=TensorRTPlan(),
    extra="tensorrt",
    distributions=("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt-cu11"),
)
