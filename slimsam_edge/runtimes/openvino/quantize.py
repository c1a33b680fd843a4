"""OpenVINO reduced precision: FP16 IR (``compress_to_fp16``) and INT8 with NNCF.

NNCF runs post-training quantization with ``model_type=TRANSFORMER`` (SmoothQuant, bias
correction) on the calibration feeds; an ignored scope keeps sensitive op types in float.

Illustration (not run as a doctest: it needs files or a model)::

    quantize_int8_nncf("openvino/image_encoder.xml", "openvino/image_encoder.int8.xml", feeds)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from ...errors import BackendUnavailableError, ExportError, UsageError
from .convert import save_ir

#: OpenVINO op types NNCF leaves in float by default (softmax of attention, layer norm parts)
NNCF_IGNORED_TYPES: tuple[str, ...] = ("Softmax", "MVN", "Power", "Sqrt", "Divide")


@dataclass(frozen=True)
class NncfOptions:
    """NNCF settings.

    Arguments:
        ignored_types: OpenVINO op types left unquantized.
        ignored_names: node names left unquantized (regular expressions, NNCF's ``patterns``).
        subset_size: at most this many calibration feeds (NNCF's ``subset_size``).
        fast_bias_correction: NNCF's faster bias correction.
        float_attention: leave MatMuls of two activations (attention scores and values) in float,
            as ONNX Runtime's int8 does: quantized, they break OpenVINO's fused attention subgraph
            (SlimSAM-77 @1024 on an AMX CPU, int8-bf16: 3641 ms with int8 attention, 2306 ms without,
            bf16 2631 ms; the softmax then runs unfused on 12 x 4096 x 4096 scores).
    """

    ignored_types: tuple[str, ...] = NNCF_IGNORED_TYPES
    ignored_names: tuple[str, ...] = ()
    subset_size: int = 300
    fast_bias_correction: bool = True
    float_attention: bool = True


_PASS_THROUGH = ("Convert", "Transpose", "Reshape", "Unsqueeze", "Squeeze", "FakeQuantize")


def _from_constant(output: Any, depth: int = 4) -> bool:
    """Whether a port's value comes from a Constant through a few layout / dtype ops (a weight);
    their data input is the first (the others are shapes, orders, ranges)."""
    node = output.get_node()
    if node.get_type_name() == "Constant":
        return True
    if depth == 0 or node.get_type_name() not in _PASS_THROUGH:
        return False
    return _from_constant(node.input(0).get_source_output(), depth - 1)


def activation_matmuls(model: Any) -> list[str]:
    """Names of the MatMuls of ``model`` (an ``ov.Model``) whose two inputs are both activations.

    Illustration (not run as a doctest: it needs files or a model)::

        activation_matmuls(ov.Core().read_model("openvino/image_encoder.xml"))[:2]
        # -> ['/image_encoder/blocks.0/attn/MatMul', '/image_encoder/blocks.0/attn/MatMul_1']
    """
    return [op.get_friendly_name() for op in model.get_ops() if op.get_type_name() == "MatMul"
            and not any(_from_constant(i.get_source_output()) for i in op.inputs())]


def ir_fp16(model_path: Path | str, xml_out: Path | str) -> list[Path]:
    """FP16-compressed IR of an fp32 IR (or ONNX) file; returns ``[xml, bin]``.

    Illustration (not run as a doctest: it needs files or a model)::

        ir_fp16("openvino/image_encoder.xml", "openvino/image_encoder.fp16.xml")
    """
    try:
        import openvino as ov
    except ImportError:
        raise BackendUnavailableError("OpenVINO is not installed; pip install 'slimsam-edge[openvino]'") from None
    try:
        model = ov.Core().read_model(str(model_path))
    except RuntimeError as err:
        raise ExportError(f"{model_path}: OpenVINO cannot read it ({str(err).strip().splitlines()[-1][:160]})") from err
    return save_ir(model, Path(xml_out), compress_to_fp16=True)


def quantize_int8_nncf(model_path: Path | str, xml_out: Path | str, feeds: Iterable[dict], *,
                       options: NncfOptions | None = None) -> list[Path]:
    """INT8 IR from an fp32 IR or ONNX file, calibrated on ``feeds``; returns ``[xml, bin]``.

    Raises:
        BackendUnavailableError: NNCF or OpenVINO is not installed.
        ExportError: NNCF failed (its message included).

    Illustration (not run as a doctest: it needs files or a model)::

        quantize_int8_nncf("openvino/image_encoder.xml", "openvino/image_encoder.int8.xml",
                           feeds, options=NncfOptions(subset_size=64))
    """
    try:
        import nncf
        import openvino as ov
    except ImportError as err:
        raise BackendUnavailableError(
            f"OpenVINO INT8 needs nncf and openvino ({err}); pip install 'slimsam-edge[export,openvino]'"
        ) from None
    from .calibration import nncf_dataset

    opts = options or NncfOptions()
    if opts.subset_size < 1:
        raise UsageError(f"subset_size must be >= 1, got {opts.subset_size}")
    model = ov.Core().read_model(str(model_path))
    names = [next(iter(sorted(p.get_names(), key=lambda n: n.startswith("/"))), "") for p in model.inputs]
    present = {op.get_type_name() for op in model.get_ops()}
    scope = nncf.IgnoredScope(types=[t for t in opts.ignored_types if t in present],
                              names=activation_matmuls(model) if opts.float_attention else [],
                              patterns=list(opts.ignored_names), validate=False)
    try:
        quantized = nncf.quantize(
            model, nncf_dataset(feeds, names), model_type=nncf.ModelType.TRANSFORMER,
            preset=nncf.QuantizationPreset.MIXED, subset_size=opts.subset_size,
            fast_bias_correction=opts.fast_bias_correction, ignored_scope=scope,
        )
    except Exception as err:  # NNCF raises many kinds
        raise ExportError(f"{model_path}: NNCF quantization failed ({type(err).__name__}: {str(err)[:160]})") from err
    return save_ir(quantized, Path(xml_out), compress_to_fp16=False)
