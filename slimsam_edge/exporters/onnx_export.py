"""Export a graph to ONNX (atomically), simplify it with onnxsim when that succeeds.

Every file records in its ``metadata_props`` which model and graph it is and how a client feeds it
(:func:`~slimsam_edge.models.graph_spec.onnx_metadata`: image size, the coordinate frame of the
prompts, the ``mask_input`` size, pixel mean / std, the slimsam-edge version), so a graph copied
out of its bundle still tells a SAM-ONNX client that a 256-px model takes points in the 256 frame.

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
from ..models.graph_spec import ONNX_SPECS, OnnxSpec, onnx_metadata
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
    model_id: str | None = None,
) -> tuple[Path, list[str]]:
    """Export ``graph`` of ``sam`` to ``out``; returns the written files' paths and notes.

    Graphs over 2 GB are written with external data (``out`` + ``.data``). onnxsim runs when the
    graph is under 2 GB; when it fails a warning is recorded and the unsimplified graph is kept.
    ``model_id`` goes into the file's metadata (default: the model's spec type).
    """
    import onnx

    spec = ONNX_SPECS[graph] if isinstance(graph, str) else graph
    out = Path(out)
    notes: list[str] = []
    module = make_wrapper(sam, spec)
    example = module.example_inputs(3) if "point_coords" in spec.inputs else module.example_inputs()
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
    set_metadata(model, graph_metadata(sam, spec.name, model_id))
    save_onnx(model, out, external=size > TWO_GB)
    return out, notes


def graph_metadata(sam: torch.nn.Module, graph: str, model_id: str | None = None) -> dict[str, str]:
    """The ONNX metadata of ``graph`` of ``sam`` (:func:`~slimsam_edge.models.graph_spec.onnx_metadata`).

    Example:
        >>> from slimsam_edge.models.build import build_sam
        >>> from slimsam_edge.models.spec import PRESETS
        >>> meta = graph_metadata(build_sam(PRESETS["sam_mini"]), "mask_decoder", "mini")
        >>> meta["model_id"], meta["long_side"], meta["mask_input_size"]
        ('mini', '256', '[64, 64]')
    """
    from .. import __version__

    spec = getattr(sam, "spec", None)
    return onnx_metadata(
        graph, model_id=model_id or (spec.model_type if spec is not None else "unknown"),
        image_size=int(sam.image_encoder.img_size), mask_input_side=int(sam.prompt_encoder.mask_input_size[0]),
        pixel_mean=[round(v, 4) for v in sam.pixel_mean.flatten().tolist()],
        pixel_std=[round(v, 4) for v in sam.pixel_std.flatten().tolist()], version=__version__,
    )


def set_metadata(model, meta: dict[str, str]) -> None:
    """Replace ``model``'s (an ``onnx.ModelProto``) ``metadata_props`` entries named in ``meta``."""
    kept = [(p.key, p.value) for p in model.metadata_props if p.key not in meta]
    del model.metadata_props[:]
    for key, value in [*kept, *meta.items()]:
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


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
