"""Export targets: which graphs go to which backends for a ``--target``. A registry, no if/elif.

Example:
    >>> TARGETS["cpu"].backends
    ('onnxruntime', 'openvino')
    >>> TARGETS["cpu"].precisions["bf16"]
    ('openvino',)
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
        precisions: precision -> the backends that get artifacts of it (fp32 always: it is the
            reference every reduced precision is gated against).
        description: one line for ``--help``.
    """

    name: str
    backends: tuple[str, ...]
    graphs: dict[str, tuple[str, ...]]
    precisions: dict[str, tuple[str, ...]]
    description: str


_ALL = ("image_encoder", "mask_decoder", "mask_decoder_lowres")
_RUNTIME = ("image_encoder", "mask_decoder_lowres")

TARGETS: dict[str, Target] = {
    "cpu": Target(
        name="cpu",
        backends=("onnxruntime", "openvino"),
        graphs={"onnxruntime": _ALL, "openvino": _RUNTIME},
        precisions={
            "fp32": ("onnxruntime", "openvino"),
            "fp16": ("onnxruntime", "openvino"),  # ORT fp16 graph; OpenVINO FP16-compressed IR
            "bf16": ("openvino",),  # the fp32 IR with OpenVINO's bf16 inference hint
            "int8": ("onnxruntime", "openvino"),  # ORT static QDQ (TensorRT reads it too); NNCF
        },
        description="x86/ARM CPU: ONNX Runtime graphs + OpenVINO IR (fp32, fp16, bf16 hint, int8)",
    ),
    "onnx": Target(
        name="onnx",
        backends=("onnxruntime",),
        graphs={"onnxruntime": _ALL},
        precisions={"fp32": ("onnxruntime",), "fp16": ("onnxruntime",), "int8": ("onnxruntime",)},
        description="ONNX graphs only (ONNX Runtime on any device; int8 is QDQ, TensorRT reads it)",
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


def check_precision(target: Target, precision: str) -> tuple[str, ...]:
    """The backends that get ``precision`` artifacts; refuses a precision the target lacks.

    Example:
        >>> check_precision(TARGETS["onnx"], "bf16")
        Traceback (most recent call last):
        ...
        slimsam_edge.errors.UsageError: precision bf16 is not available for target onnx (supported: fp32, fp16, int8); bf16 is an OpenVINO hint: use --target cpu
    """
    if precision not in target.precisions:
        hint = "; bf16 is an OpenVINO hint: use --target cpu" if precision == "bf16" else ""
        raise UsageError(
            f"precision {precision} is not available for target {target.name} (supported: "
            f"{', '.join(target.precisions)}){hint}"
        )
    return target.precisions[precision]
