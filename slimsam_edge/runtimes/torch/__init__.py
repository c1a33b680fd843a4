"""The PyTorch reference backend (eager; needs the ``export`` extra, never used by edge apps).

Example:
    >>> BACKEND.name, BACKEND.extra, BACKEND.auto
    ('torch', 'export', False)
"""

from ..plugin import Backend
from .runner import TorchRunner

BACKEND = Backend(
    "torch",
    runner=TorchRunner,
    suffixes=(".pth", ".pt", ".safetensors"),
    extra="export",
    no_converter="the torch backend runs the bundle's model.safetensors (written by every export)",
    auto=False,  # the reference: run on request only (it imports torch)
    artifact_extra={},  # its artifacts carry no extra: any key is refused
)
