"""ONNX files: atomic writes, with external data for graphs over 2 GB (needs ``onnx``, imported lazily).

Example:
    >>> external_files(Path("onnx/no_such_graph.onnx"))
    [PosixPath('onnx/no_such_graph.onnx')]
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ...fsutil import atomic_path

#: protobuf's message size limit: larger graphs keep their weights in an external file
TWO_GB = 2**31 - 1


def under_2gb(model: Any) -> bool:
    """True when ``model`` (an ``onnx.ModelProto``) serialises under 2 GB."""
    try:
        return model.ByteSize() <= TWO_GB
    except (ValueError, RuntimeError):  # protobuf refuses to size messages over 2 GB
        return False


def save_onnx(model: Any, out: Path, *, external: bool) -> list[Path]:
    """Write ``model`` to ``out`` atomically (plus ``out.data`` when ``external``); returns the files."""
    import onnx

    if not external:
        with atomic_path(out) as tmp:
            onnx.save(model, str(tmp))
        return [out]
    data_name = out.name + ".data"
    with atomic_path(out) as tmp:
        # external data is written beside the temporary graph, then moved with it
        tmp_data = tmp.with_name(tmp.name + ".data")
        onnx.save(model, str(tmp), save_as_external_data=True, all_tensors_to_one_file=True,
                  location=tmp_data.name, size_threshold=1024)
        _rewrite_location(tmp, tmp_data.name, data_name)
        os.replace(tmp_data, out.with_name(data_name))
    return [out, out.with_name(data_name)]


def _rewrite_location(graph_path: Path, old: str, new: str) -> None:
    import onnx

    model = onnx.load(str(graph_path), load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location" and entry.value == old:
                entry.value = new
    onnx.save(model, str(graph_path))


def external_files(onnx_path: Path) -> list[Path]:
    """The graph file plus its external data file, if it has one."""
    data = onnx_path.with_name(onnx_path.name + ".data")
    return [onnx_path] + ([data] if data.exists() else [])
