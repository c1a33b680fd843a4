"""The TensorRT backend: runner, CUDA helpers, engine builder and per-version precision plans.

Engines are built on the device that runs them (``slimsam-edge build``): export ships their ONNX
sources and build settings as the manifest's ``build_plan`` (:class:`~.plan.TensorRTPlan`).

Example:
    >>> BACKEND.name, BACKEND.converter.on_device
    ('tensorrt', True)
"""

from ...manifest_schema import record, text
from ..plugin import Backend
from .fingerprint import TIED_TO
from .plan import TensorRTPlan
from .runner import TensorRTRunner

#: what an engine's ``extra`` may hold (written by ``slimsam-edge build``): the runner checks the
#: TensorRT version and the fingerprint's machine keys before loading; the rest describes the build
ARTIFACT_EXTRA = {
    "tensorrt_version": text(runtime=True, limit=64),
    "fingerprint": record(keys=TIED_TO, runtime=True),
    "build": text(), "source": text(),
}

BACKEND = Backend(
    "tensorrt",
    runner=TensorRTRunner,
    suffixes=(".engine", ".plan"),
    converter=TensorRTPlan(),
    extra="tensorrt",
    distributions=("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt-cu11"),
    artifact_extra=ARTIFACT_EXTRA,
)
