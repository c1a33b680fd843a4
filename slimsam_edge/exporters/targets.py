"""Export targets: which graphs go to which backends for a ``--target``. A registry, no if/elif.

Example:
    >>> TARGETS["cpu"].backends
    ('onnxruntime', 'openvino')
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UsageError


@dataclass(frozen=True)
class Target:
    """What ``slimsam-edge export --target NAME`` writes.

    Arguments:
        name: target name.
        backends: runtimes to produce artifacts for (ONNX Runtime always reads the ONNX files).
        graphs: per backend, the graphs it gets.
        precisions: precisions this target can produce.
        description: one line for ``--help``.
    """

    name: str
    backends: tuple[str, ...]
    graphs: dict[str, tuple[str, ...]]
    precisions: tuple[str, ...]
    description: str


_ALL = ("image_encoder", "mask_decoder", "mask_decoder_lowres")
_RUNTIME = ("image_encoder", "mask_decoder_lowres")

TARGETS: dict[str, Target] = {
    "cpu": Target(
        name="cpu",
        backends=("onnxruntime", "openvino"),
        graphs={"onnxruntime": _ALL, "openvino": _RUNTIME},
        precisions=("fp32",),
        description="x86/ARM CPU: ONNX Runtime graphs + OpenVINO IR (bf16 hint at run time where supported)",
    ),
    "onnx": Target(
        name="onnx",
        backends=("onnxruntime",),
        graphs={"onnxruntime": _ALL},
        precisions=("fp32",),
        description="ONNX graphs only (ONNX Runtime on any device)",
    ),
}


def get_target(name: str) -> Target:
    try:
        return TARGETS[name]
    except KeyError:
        raise UsageError(
            f"unknown or not yet supported target {name!r}; available: {', '.join(TARGETS)} "
            "(jetson/x86 TensorRT bundles build engines on the device and are not available yet)"
        ) from None
