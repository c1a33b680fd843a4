"""OpenVINO's devices and what they can do, for ``slimsam-edge devices --detect``.

Example:
    >>> [d["device"] for d in describe_devices()][:1]
    ['CPU']
"""

from __future__ import annotations

from typing import Any


def describe_devices() -> list[dict[str, Any]]:
    """``[{"device", "name", "capabilities"}]`` for each device OpenVINO sees (imports it here)."""
    import openvino as ov

    core = ov.Core()
    found = []
    for device in core.available_devices:
        def prop(key: str, default: Any) -> Any:
            try:
                return core.get_property(device, key)
            except Exception:  # noqa: BLE001 - a plugin without the property
                return default

        found.append({"device": device, "name": str(prop("FULL_DEVICE_NAME", device)),
                      "capabilities": [str(c) for c in prop("OPTIMIZATION_CAPABILITIES", [])]})
    return found
