"""ONNX → OpenVINO IR (.xml + .bin), written atomically as a pair.

Example:
    >>> onnx_to_ir("bundle/onnx/image_encoder.onnx", "bundle/openvino/image_encoder.xml")  # doctest: +SKIP
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..errors import BackendUnavailableError, ExportError


def onnx_to_ir(onnx_path: Path | str, xml_out: Path | str, *, compress_to_fp16: bool = False) -> list[Path]:
    """Convert an ONNX graph to OpenVINO IR; returns ``[xml, bin]``."""
    try:
        import openvino as ov
    except ImportError:
        raise BackendUnavailableError(
            "OpenVINO is not installed; pip install 'slimsam-edge[openvino]' or pick --backend onnxruntime"
        ) from None
    xml_out = Path(xml_out)
    xml_out.parent.mkdir(parents=True, exist_ok=True)
    try:
        model = ov.convert_model(str(onnx_path))
    except Exception as err:  # OpenVINO raises its own exception types
        raise ExportError(f"OpenVINO could not convert {onnx_path}: {str(err).splitlines()[0]}") from err
    tmp_dir = Path(tempfile.mkdtemp(prefix=".ir.", dir=xml_out.parent))
    try:
        tmp_xml = tmp_dir / xml_out.name
        ov.save_model(model, str(tmp_xml), compress_to_fp16=compress_to_fp16)
        bin_out = xml_out.with_suffix(".bin")
        os.replace(tmp_xml.with_suffix(".bin"), bin_out)  # bin first: an xml never points at nothing
        os.replace(tmp_xml, xml_out)
    finally:
        for f in tmp_dir.glob("*"):
            f.unlink()
        tmp_dir.rmdir()
    return [xml_out, bin_out]
