"""ONNX → OpenVINO IR (.xml + .bin), written atomically as a pair: the OpenVINO converter.

Illustration (not run as a doctest: it needs files or a model)::

    onnx_to_ir("bundle/onnx/image_encoder.onnx", "bundle/openvino/image_encoder.xml")
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from ...errors import BackendUnavailableError, ExportError
from ..plugin import Converter


def save_ir(model: Any, xml_out: Path, *, compress_to_fp16: bool = False) -> list[Path]:
    """Write an ``ov.Model`` as ``[xml, bin]`` atomically (bin first: an xml never points at nothing)."""
    import openvino as ov

    xml_out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".ir.", dir=xml_out.parent) as tmp:
        tmp_xml = Path(tmp) / xml_out.name
        ov.save_model(model, str(tmp_xml), compress_to_fp16=compress_to_fp16)
        bin_out = xml_out.with_suffix(".bin")
        os.replace(tmp_xml.with_suffix(".bin"), bin_out)
        os.replace(tmp_xml, xml_out)
    return [xml_out, bin_out]


def onnx_to_ir(onnx_path: Path | str, xml_out: Path | str, *, compress_to_fp16: bool = False) -> list[Path]:
    """Convert an ONNX graph to OpenVINO IR; returns ``[xml, bin]``."""
    try:
        import openvino as ov
    except ImportError:
        raise BackendUnavailableError(
            "OpenVINO is not installed; pip install 'slimsam-edge[openvino]' or pick --backend onnxruntime"
        ) from None
    try:
        model = ov.convert_model(str(onnx_path))
    except Exception as err:  # OpenVINO raises its own exception types
        raise ExportError(f"OpenVINO could not convert {onnx_path}: {str(err).splitlines()[0]}") from err
    return save_ir(model, Path(xml_out), compress_to_fp16=compress_to_fp16)


class IrConverter(Converter):
    """``<bundle>/openvino/<graph>.xml`` + ``.bin`` from the fp32 ONNX graph."""

    describe = "convert to OpenVINO IR"

    def convert(self, onnx_files: list[Path], root: Path, graph: str) -> list[Path]:
        return onnx_to_ir(onnx_files[0], root / "openvino" / f"{graph}.xml")
