"""``slimsam-edge eval [MODEL_OR_BUNDLE]``: SlimSAM's mIoU (point and box prompts) on labelled data.

Example:
    $ slimsam-edge eval bundle/ --data data/sa1b --backend openvino --limit 100
    $ slimsam-edge eval                      # the shipped reference model on held-out procedural data
    $ slimsam-edge eval model.safetensors --prompt point --json --out report.json
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import emit_json, handle_errors, progress_bar
from .options import (Backend, DecoderPrecisionOpt, JsonOpt, ModelTypeOpt, Precision, ThreadsOpt, TrustPickleOpt,
                      enum_value)


class PromptKind(str, Enum):
    point = "point"
    box = "box"
    both = "both"


@handle_errors
def eval_cmd(
    model_or_bundle: Annotated[Optional[Path], typer.Argument(
        metavar="MODEL_OR_BUNDLE",
        help="Bundle folder (with manifest.json) or PyTorch checkpoint; default: the shipped "
             "reference model slimsam_edge/assets/sam_mini.safetensors.")] = None,
    data: Annotated[Optional[Path], typer.Option(
        "--data", help="SA-1B folder, COCO instances .json, or COCO root folder; default: "
                       "64 held-out procedural images (seed 1001, 256 px).")] = None,
    image_dir: Annotated[Optional[Path], typer.Option(
        "--image-dir", help="COCO image folder (guessed when omitted).")] = None,
    prompt: Annotated[PromptKind, typer.Option(
        "--prompt", help="Prompt per annotation: one point, its box, or both side by side.")] = PromptKind.both,
    backend: Annotated[Optional[Backend], typer.Option(
        "--backend", help="Runtime for a bundle (default: the bundle's first); checkpoints run in torch.")] = None,
    precision: Annotated[Optional[Precision], typer.Option(
        "--precision", help="Artifact precision or run-time hint (bf16 on OpenVINO/torch).")] = None,
    decoder_precision: DecoderPrecisionOpt = None,
    threads: ThreadsOpt = None,
    limit: Annotated[Optional[int], typer.Option("--limit", min=1, help="Evaluate at most N images.")] = None,
    strict: Annotated[bool, typer.Option(
        "--strict", help="Stop at the first bad image or annotation instead of skipping it.")] = False,
    model_type: ModelTypeOpt = None,
    trust_pickle: TrustPickleOpt = False,
    out: Annotated[Optional[Path], typer.Option("--out", help="Also write the JSON report here.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Measure mIoU with SlimSAM's protocol: one prompt and one mask per annotation, IoU averaged
    per image, then over images; also per size bucket (small/medium/large)."""
    from rich.progress import (BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    from ..eval.run import run_eval

    columns = (TextColumn("eval {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn())
    with progress_bar(*columns, enabled=not json_out, stderr=True) as progress:
        report = run_eval(
            model_or_bundle, data=data, image_dir=image_dir, prompt=prompt.value,
            backend=backend.value if backend else None, precision=precision.value if precision else None,
            threads=threads, limit=limit, strict=strict, model_type=model_type, trust_pickle=trust_pickle,
            out=out, progress=progress, decoder_precision=enum_value(decoder_precision),
        )
    if json_out:
        emit_json(report)
        return
    _print(report)
    if out is not None:
        typer.echo(f"report written to {out}")


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _print(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    from ..data.records import SKIP_REASONS

    m, d = report["model"], report["data"]
    kinds = [k for k in ("point", "box") if report.get(k)]
    c = Console()
    dec = m.get("decoder_precision")
    ran = f"{m['backend']}/{m['precision']}" + (f", decoder {dec}" if dec not in (None, m["precision"]) else "")
    c.print(f"{m['kind']} {m['path']} ({m['model']}, {ran}) "
            f"on {d['source']}: {report['n_images']} images, {report['n_annotations']} annotations "
            f"in {report['seconds']:.1f} s")
    t = Table("mIoU", *[f"{k} prompt" for k in kinds], "annotations",
              caption="one prompt and one mask per annotation; IoU averaged per image, then over "
                      "images (size buckets: over annotations)")
    first = report[kinds[0]]
    t.add_row("all", *[_fmt(report[k]["miou"]) for k in kinds], str(first["n_annotations"]))
    for b in ("small", "medium", "large"):
        t.add_row(f"  {b}", *[_fmt(report[k]["buckets"][b]["miou"]) for k in kinds],
                  str(first["buckets"][b]["n"]))
    c.print(t)
    skipped = report.get("skipped") or {}
    if skipped:
        c.print("skipped: " + "; ".join(f"{n} {SKIP_REASONS.get(r, r)} [{r}]"
                                        for r, n in sorted(skipped.items())))
