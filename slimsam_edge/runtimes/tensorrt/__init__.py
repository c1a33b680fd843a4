"""The TensorRT backend: runner, CUDA helpers, engine builder and per-version precision plans.

Engines are built on the device that runs them, so export has no converter for it here.

Example:
    >>> BACKEND.name, BACKEND.converter is None
    ('tensorrt', True)
"""

from ..plugin import Backend
from .runner import TensorRTRunner

BACKEND = Backend(
    "tensorrt",
    runner=TensorRTRunner,
    suffixes=(".engine", ".plan"),
    extra="tensorrt",
    distributions=("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt-cu11"),
    no_converter="TensorRT engines are built on the device that runs them, which export does not do yet",
)
