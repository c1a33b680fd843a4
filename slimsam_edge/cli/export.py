"""``slimsam-edge export CKPT --target cpu|onnx|board.toml --precision fp32|fp16|bf16|int8|int8-bf16 --out DIR``.

Writes a validated bundle with each of the target's backends' artifacts; a reduced precision adds its artifacts next to the
fp32 ones after calibration (int8) and the accuracy gate (agreement with fp32 on held-out images).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import UsageError
from .common import emit_json, handle_errors, progress_bar
from .options import JsonOpt, ModelTypeOpt, Precision, TargetOpt, TrustPickleOpt


@handle_errors
def export(
    out: Annotated[Path, typer.Option("--out", "-o", help="Bundle folder to write (replaced atomically).")],
    checkpoint: Annotated[Optional[Path], typer.Argument(help="SAM / SlimSAM checkpoint or our .safetensors (default: the shipped sam-mini)")] = None,
    target: TargetOpt = "cpu",
    precision: Annotated[Precision, typer.Option("--precision", help="Artifact precision (fp32 artifacts are always kept as the reference).")] = Precision.fp32,
    calib_data: Annotated[Optional[Path], typer.Option("--calib-data", help="int8: folder of calibration images (an SA-1B folder works); default: procedural images.")] = None,
    calib_images: Annotated[int, typer.Option("--calib-images", min=1, max=512, help="int8: number of calibration images.")] = 64,
    int8_decoder: Annotated[bool, typer.Option("--int8-decoder", help="int8: quantize the mask decoder too (default: int8 encoder, fp32 decoder; the decoder's int8 form costs agreement for little time).")] = False,
    allow_accuracy_drop: Annotated[bool, typer.Option("--allow-accuracy-drop", help="Keep reduced-precision artifacts that fail the accuracy gate (numbers are recorded).")] = False,
    gate_images: Annotated[int, typer.Option("--gate-images", min=1, help="Held-out images for the accuracy gate.")] = 8,
    accuracy_threshold: Annotated[Optional[float], typer.Option("--accuracy-threshold", min=0.0, help="Minimum mask-IoU agreement with fp32 (default 0.99 fp16/bf16, 0.95 int8/int8-bf16).")] = None,
    model_type: ModelTypeOpt = None,
    trust_pickle: TrustPickleOpt = False,
    validate: Annotated[bool, typer.Option("--validate/--no-validate", help="Compare every artifact with PyTorch.")] = True,
    simplify: Annotated[bool, typer.Option("--simplify/--no-simplify", help="Run onnxsim.")] = True,
    attention: Annotated[str, typer.Option("--attention", help="Exact formulation of the encoder's global attention: plain | pad16 | headmajor | sdpa | rows1 | rows8, or ort_mha | ort_mha_pad16 (ONNX Runtime's fused attention; --target onnx); validated against plain, see docs/results/attention.md.")] = "plain",
    random_init: Annotated[bool, typer.Option("--random-init", help="No checkpoint: random weights of --model-type (for latency measurements of an architecture).")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Export encoder and decoders for a target (ONNX, + OpenVINO IR for cpu), validate them, write a bundle."""
    from ..devices import quantized
    from ..exporters.attention import get_variant
    from ..exporters.bundle_export import precision_backends, resolve_target
    from ..exporters.precision import PrecisionOptions

    tgt = resolve_target(target)
    precision_backends(tgt, precision.value)  # refuses a precision or package the target lacks, up front
    get_variant(attention)  # an unknown name: one line, before loading anything
    calibrated = quantized(precision.value)  # int8, int8-bf16
    if int8_decoder and not calibrated:
        raise UsageError(f"--int8-decoder is used by --precision int8 / int8-bf16 only, not {precision.value}; drop it")
    if calib_data is not None and not calibrated:
        raise UsageError(f"--calib-data is used by --precision int8 / int8-bf16 only, not {precision.value}; drop it")
    if calibrated:
        from ..calibration import calibration_images

        calibration_images(calib_data, calib_images)  # too few images: fail before the slow part
    options = PrecisionOptions(calib_data=calib_data, calib_images=calib_images, gate_images=gate_images,
                               threshold=accuracy_threshold, allow_accuracy_drop=allow_accuracy_drop,
                               int8_decoder=int8_decoder)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a folder; pick a folder path")
    from rich.progress import SpinnerColumn, TextColumn, TimeElapsedColumn

    from ..exporters.bundle_export import export_bundle

    with progress_bar(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                      enabled=not json_out, stderr=True) as update:
        sam, spec, model_id = _model(checkpoint, model_type, trust_pickle, random_init)
        manifest = export_bundle(
            sam, spec, out, target=tgt, precision=precision.value, precision_options=options,
            model_id=model_id, validate=validate,
            simplify=simplify, progress=lambda msg: update(0, None, msg), attention=attention,
        )
    summary = {
        "bundle": str(out), "model_type": spec.model_type, "target": tgt.name,
        "artifacts": [f"{a.graph}/{a.backend}/{a.precision}" for a in manifest.artifacts],
        "validation": manifest.validation, "accuracy": manifest.accuracy, "notes": manifest.notes,
    }
    if json_out:
        emit_json(summary)
        return
    typer.echo(f"wrote bundle {out} ({spec.model_type}, target {tgt.name}, {len(manifest.artifacts)} artifacts)")
    for key, v in manifest.validation.items():
        diffs = ", ".join(f"{k} {d:.2g}" for k, d in v["max_abs_diff"].items())
        ious = ", ".join(f"{k} {d:.4f}" for k, d in v["min_mask_iou"].items())
        typer.echo(f"  validated {key}: {v['cases']} cases, max |diff| {diffs}" + (f"; min mask IoU {ious}" if ious else ""))
    for key, a in manifest.accuracy.items():
        if not a.get("measured"):
            typer.echo(f"  accuracy {key}: not measured here")
            continue
        miou = f", mIoU {a['miou']:.4f} (fp32 {a['miou_reference']:.4f})" if a.get("miou") is not None else ""
        verdict = "passed" if a["passed"] else "BELOW the gate, kept (--allow-accuracy-drop)"
        typer.echo(f"  accuracy {key}: agreement with fp32 {a['agreement']:.4f} (gate {a['threshold']:g}, "
                   f"{verdict}){miou}")
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
