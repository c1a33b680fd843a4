"""What export ships for TensorRT: the ONNX sources of the engines ``slimsam-edge build`` makes on the device.

* fp32 ONNX graphs (the encoder; the low-res decoder, whose only dynamic axis is the point count);
  TensorRT 10 builds fp32 and fp16 engines (fp16 flag + layers pinned to FP32) from them;
* the fp16 ONNX (TensorRT 11 is strongly typed: the precision must be in the graph);
* the Q/DQ int8 ONNX (explicit quantization, TensorRT 10 and 11), made by ONNX Runtime's static
  quantization, and the encoder's calibration inputs (implicit calibrator, e.g. DLA builds).

Example:
    >>> from slimsam_edge.devices import load_profile
    >>> TensorRTPlan().settings(load_profile("jetson-orin-nano"))["decoder_points"]
    [1, 4, 16]
"""

from __future__ import annotations

from typing import Any

from ...errors import UsageError
from ..plugin import OnDeviceBuild


class TensorRTPlan(OnDeviceBuild):
    """Engines are built on the device; export ships their ONNX sources and build settings."""

    describe = "ship the ONNX source of the TensorRT engine"
    source_backend = "onnxruntime"
    calibrated = ("int8",)

    def settings(self, profile: Any) -> dict[str, Any]:
        settings = getattr(profile, "tensorrt", None)
        if settings is None:
            raise UsageError(f"device profile {profile.source}: missing table [tensorrt] (workspace_gb, "
                             "optimization_level, decoder_points, fp32_layers); a tensorrt target needs it")
        return settings.to_dict()
