"""The ONNX Runtime runner pinned to the CUDA execution provider (CPU only for ops CUDA lacks).

``RunnerOptions.device`` is ``"cuda"`` or ``"cuda:N"`` (the default ``"cpu"`` of
:class:`~slimsam_edge.runtimes.RunnerOptions` means "not chosen" and becomes ``cuda:0``). TF32 is
off unless ``extra["provider_options"]`` turns it on, so an fp32 graph computes in fp32 and
agrees with the export's validation. A session whose first provider is not CUDA (ONNX Runtime
falls back to CPU when the CUDA / cuDNN libraries do not load) is refused in one line instead of
running slowly on the CPU under a GPU backend's name.

Example:
    >>> cuda_device("cpu"), cuda_device("cuda"), cuda_device("cuda:1")
    ('cuda:0', 'cuda:0', 'cuda:1')
    >>> cuda_device("GPU")
    Traceback (most recent call last):
    ...
    slimsam_edge.errors.UsageError: onnxruntime-cuda runs on device 'cuda' or 'cuda:N', not 'GPU'; use --backend onnxruntime for other devices
"""

from __future__ import annotations

import re
from dataclasses import replace
from importlib import metadata
from typing import Any, ClassVar

from ...errors import UsageError
from ..onnxruntime.runner import OnnxRuntimeRunner

#: the pip distribution that ships ONNX Runtime with the CUDA execution provider
GPU_DISTRIBUTION = "onnxruntime-gpu"
CUDA_EP = "CUDAExecutionProvider"


def cuda_device(device: str) -> str:
    """The CUDA device string for ``device`` ("cpu", the unset default, means ``cuda:0``)."""
    d = device.strip().lower()
    if d in ("cpu", "cuda"):
        return "cuda:0"
    if re.fullmatch(r"cuda:\d+", d):
        return d
    raise UsageError(f"onnxruntime-cuda runs on device 'cuda' or 'cuda:N', not {device!r}; "
                     "use --backend onnxruntime for other devices")


def cuda_provider_listed() -> bool:
    """True when onnxruntime-gpu is installed and its module lists the CUDA provider (no session).

    Example:
        >>> isinstance(cuda_provider_listed(), bool)
        True
    """
    try:
        metadata.distribution(GPU_DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return False
    try:
        import onnxruntime
    except ImportError:
        return False
    return CUDA_EP in onnxruntime.get_available_providers()


class OnnxRuntimeCudaRunner(OnnxRuntimeRunner):
    """ONNX Runtime with ``CUDAExecutionProvider`` (``device_id`` from ``cuda:N``), then CPU."""

    #: CUDA provider options set unless the caller gives them (fp32 graphs compute in fp32)
    cuda_defaults: ClassVar[dict[str, str]] = {"use_tf32": "0"}

    def __init__(self, artifact: Any, options: Any = None):
        super().__init__(artifact, options)
        if self.options.extra.get("providers") is not None:
            raise UsageError("onnxruntime-cuda chooses its providers (CUDA, then CPU); drop extra['providers'] "
                             "or use --backend onnxruntime")
        self.options = replace(self.options, device=cuda_device(self.options.device))

    @classmethod
    def available(cls) -> bool:
        return cuda_provider_listed()

    def _providers(self, ort: Any) -> tuple[list[str], list[dict[str, Any]]]:
        providers, provider_options = super()._providers(ort)
        for key, value in self.cuda_defaults.items():
            provider_options[0].setdefault(key, value)
        return providers, provider_options
