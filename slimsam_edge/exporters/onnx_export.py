"""Export a graph to ONNX (atomically), simplify it with onnxsim when that succeeds.

Illustration (not run as a doctest: it needs files or a model)::

    from slimsam_edge.models.build import build_sam
    export_onnx(build_sam(PRESETS["sam_mini"]), "image_encoder", "out/image_encoder.onnx")
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import torch

from ..errors import ExportError
from ..fsutil import atomic_path
from ..models.graph_spec import ONNX_SPECS, OnnxSpec
from ..models.graphs import make_wrapper
from ..runtimes.onnxruntime.onnx_files import TWO_GB, save_onnx, under_2gb
from .attention import finalize_onnx

log = logging.getLogger(__name__)

def export_onnx(
    sam: torch.nn.Module,
    graph: str | OnnxSpec,
    out: Path | str,
    *,
    simplify: bool = True,
    opset: int | None = None,
) -> tuple[Path, list[str]]:
    """Export ``graph`` of ``sam`` to ``out``; returns the written files' paths and notes.

    Graphs over 2 GB are written with external data (``out`` + ``.data``). onnxsim runs when the
    graph is under 2 GB; when it fails a warning is recorded and the unsimplified graph is kept.
    """
    import onnx

    spec = ONNX_SPECS[graph] if isinstance(graph, str) else graph
    out = Path(out)
    notes: list[str] = []
    module = make_wrapper(sam, spec)
    example = module.example_inputs(3) if spec.name != "image_encoder" else module.example_inputs()
    with atomic_path(out.with_suffix(".raw.onnx"), suffix=".onnx") as raw:
        try:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    module, example, str(raw), input_names=list(spec.inputs),
                    output_names=list(spec.outputs), opset_version=opset or spec.opset,
                    dynamic_axes=spec.dynamic_axes or None, dynamo=False, do_constant_folding=True,
                )
        except Exception as err:  # exporter failures are many types; report them as one
            raise ExportError(f"ONNX export of {spec.name} failed: {type(err).__name__}: {err}") from err
        model = onnx.load(str(raw), load_external_data=True)
        finalize_onnx(model)  # ORT's fused attention (--attention ort_mha): blank its optional inputs
        for leftover in raw.parent.glob(raw.name + "*.data"):
            leftover.unlink()
    out.with_suffix(".raw.onnx").unlink(missing_ok=True)  # in memory now; keep only the final graph
    size = model.ByteSize() if under_2gb(model) else TWO_GB + 1
    if simplify and size <= TWO_GB:
        model, note = _simplify(model, spec.name)
        if note:
            notes.append(note)
    elif simplify:
        notes.append(f"{spec.name}: over 2 GB, onnxsim skipped; written with external data")
    save_onnx(model, out, external=size > TWO_GB)
    return out, notes


def _simplify(model, name: str):
    try:
        import onnxsim
    except ImportError:
        return model, f"{name}: onnxsim not installed, graph not simplified (pip install onnxsim)"
    try:
        simplified, ok = onnxsim.simplify(model)
    except Exception as err:  # onnxsim raises many kinds; keep the valid unsimplified graph
        msg = f"{name}: onnxsim failed ({type(err).__name__}: {str(err)[:120]}); kept the unsimplified graph"
        log.warning(msg)
        return model, msg
    if not ok:
        msg = f"{name}: onnxsim could not verify the simplified graph; kept the unsimplified graph"
        log.warning(msg)
        return model, msg
    return simplified, None
