"""Targets: :class:`DeviceProfile` (data in ``profiles/*.toml``, the one target table) and :func:`detect`.

Torch-free and runtime-free: detection reads /proc and package metadata, it imports nothing heavy.

Example:
    >>> from slimsam_edge.devices import default_profile, load_profile
    >>> load_profile("cpu").backends
    ('onnxruntime', 'openvino')
"""

from .profile import (
    CPU_FLAGS,
    KINDS,
    PRECISIONS,
    DeviceProfile,
    RuntimeDefaults,
    TensorRTSettings,
    default_profile,
    detect,
    list_profiles,
    load_profile,
)

__all__ = [
    "CPU_FLAGS",
    "KINDS",
    "PRECISIONS",
    "DeviceProfile",
    "RuntimeDefaults",
    "TensorRTSettings",
    "default_profile",
    "detect",
    "list_profiles",
    "load_profile",
]
