"""Targets: :class:`DeviceProfile` (data in ``profiles/*.toml``, the one target table) and :func:`detect`.

Torch-free and runtime-free: detection reads /proc and package metadata, it imports nothing heavy.

Example:
    >>> from slimsam_edge.devices import default_profile, load_profile
    >>> load_profile("cpu").backends
    ('onnxruntime', 'openvino')
"""

from .profile import (
    CPU_FLAG_NAMES,
    CPU_FLAGS,
    KINDS,
    PRECISION_PARTS,
    PRECISIONS,
    DeviceProfile,
    RuntimeDefaults,
    TensorRTSettings,
    default_profile,
    detect,
    detected,
    l4t_release,
    list_profiles,
    load_profile,
    machine_precisions,
    needs_bf16,
    quantized,
    why_not,
)

__all__ = [
    "CPU_FLAG_NAMES",
    "CPU_FLAGS",
    "KINDS",
    "PRECISION_PARTS",
    "PRECISIONS",
    "DeviceProfile",
    "RuntimeDefaults",
    "TensorRTSettings",
    "default_profile",
    "detect",
    "detected",
    "l4t_release",
    "list_profiles",
    "load_profile",
    "machine_precisions",
    "needs_bf16",
    "quantized",
    "why_not",
]
