"""``slimsam-edge export CKPT --target cpu --out DIR``: validated ONNX + OpenVINO bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import UsageError
from .common import emit_json, handle_errors
from .options import JsonOpt, ModelTypeOpt, Precision, TrustPickleOpt


@handle_errors
def export(
    out: Annotated[Path, typer.Option("--out", "-o", help="Bundle folder to write (replaced atomically).")],
    checkpoint: Annotated[Optional[Path], typer.Argument(help="SAM / SlimSAM checkpoint or our .safetensors (default: the shipped sam-mini)")] = None,
    target: Annotated[str, typer.Option("--target", help="Export target: cpu | onnx.")] = "cpu",
    precision: Annotated[Precision, typer.Option("--precision", help="Artifact precision.")] = Precision.fp32,
    model_type: ModelTypeOpt = None,
    trust_pickle: TrustPickleOpt = False,
    validate: Annotated[bool, typer.Option("--validate/--no-validate", help="Compare every artifact with PyTorch.")] = True,
    simplify: Annotated[bool, typer.Option("--simplify/--no-simplify", help="Run onnxsim.")] = True,
    random_init: Annotated[bool, typer.Option("--random-init", help="No checkpoint: random weights of --model-type (for latency measurements of an architecture).")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Export encoder and decoders to ONNX (+ OpenVINO IR), validate them, write a bundle."""
    from ..exporters.targets import get_target

    tgt = get_target(target)
    if precision.value not in tgt.precisions:
        raise UsageError(
            f"precision {precision.value} is not available for target {target} (supported: "
            f"{', '.join(tgt.precisions)}); bf16 is a run-time choice: export fp32, then use "
            "--precision bf16 in bench/segment with the openvino backend"
        )
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a folder; pick a folder path")
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from ..exporters.bundle_export import export_bundle

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  disable=json_out, transient=True) as bar:
        task = bar.add_task("load model", total=None)
        sam, spec, model_id = _model(checkpoint, model_type, trust_pickle, random_init)
        manifest = export_bundle(
            sam, spec, out, target=tgt.name, model_id=model_id, validate=validate,
            simplify=simplify, progress=lambda msg: bar.update(task, description=msg),
        )
    summary = {
        "bundle": str(out), "model_type": spec.model_type, "target": tgt.name,
        "artifacts": [f"{a.graph}/{a.backend}/{a.precision}" for a in manifest.artifacts],
        "validation": manifest.validation, "notes": manifest.notes,
    }
    if json_out:
        emit_json(summary)
        return
    typer.echo(f"wrote bundle {out} ({spec.model_type}, target {tgt.name}, {len(manifest.artifacts)} artifacts)")
    for key, v in manifest.validation.items():
        diffs = ", ".join(f"{k} {d:.2g}" for k, d in v["max_abs_diff"].items())
        ious = ", ".join(f"{k} {d:.4f}" for k, d in v["min_mask_iou"].items())
        typer.echo(f"  validated {key}: {v['cases']} cases, max |diff| {diffs}" + (f"; min mask IoU {ious}" if ious else ""))
    for note in manifest.notes:
        typer.echo(f"  note: {note}")


def _model(checkpoint: Path | None, model_type: str | None, trust_pickle: bool, random_init: bool):
    """Load the checkpoint, the shipped reference model, or random weights of a model type."""
    from ..models.io import load_model

    if random_init:
        if checkpoint is not None or model_type is None:
            raise UsageError("--random-init takes --model-type and no checkpoint")
        from ..models.build import build_sam
        from ..models.spec import preset

        spec = preset(model_type)
        return build_sam(spec), spec, f"{model_type}-random"
    if checkpoint is None:
        from ..assets import require_reference_model

        checkpoint = require_reference_model()
    sam, spec = load_model(checkpoint, model_type=model_type, trust_pickle=trust_pickle)
    return sam, spec, checkpoint.stem
