"""``slimsam-edge demo``: the main job end to end on the built-in model and data.

sam-mini (shipped) → SlimSAM compression (a short schedule) → validated cpu bundle of the compressed
model → mIoU of the teacher (PyTorch) and of the student through PyTorch, ONNX Runtime and OpenVINO
on held-out procedural data → one segmented image → latency per backend. Everything lands in
``--out`` with a JSON and a Markdown report (:func:`slimsam_edge.demo.run_demo`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import emit_json, handle_errors
from .options import JsonOpt


@handle_errors
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for every artifact and the report.")] = Path("demo-output"),
    checkpoint: Annotated[Optional[Path], typer.Option("--checkpoint", help="Model to use (default: the shipped sam-mini).")] = None,
    images: Annotated[int, typer.Option("--images", min=1, help="Held-out procedural images to evaluate on.")] = 32,
    ratio: Annotated[float, typer.Option("--ratio", help="Pruning ratio of the compression step.")] = 0.5,
    compress_steps: Annotated[int, typer.Option("--compress-steps", min=0, help="Distillation steps per phase (0: skip compression, export the teacher).")] = 40,
    json_out: JsonOpt = False,
) -> None:
    """Run compress → export → eval → segment → bench on the built-in model and data; print where it all is."""
    from rich.console import Console

    from ..demo import run_demo
    from ..errors import UsageError

    if not 0.0 < ratio < 1.0:  # also NaN: checked before the held-out data is written
        raise UsageError(f"--ratio {ratio}: the pruning ratio must be between 0 and 1 (exclusive), e.g. 0.5")
    if checkpoint is not None and not checkpoint.is_file():
        raise UsageError(f"--checkpoint {checkpoint}: file not found; pass a checkpoint file or drop the flag")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a folder; pick a folder path")

    console = Console(stderr=True, quiet=json_out)
    report = run_demo(out, checkpoint=checkpoint, images=images, ratio=ratio, compress_steps=compress_steps,
                      quiet=json_out, progress=lambda step, steps, what: console.print(f"[bold]{step}/{steps}[/] {what}"))
    if json_out:
        emit_json(report.to_dict())
        return
    typer.echo(report.markdown())
    typer.echo(f"artifacts in {out}/ (compressed/, bundle/, data/, segment/, video/), report: {out / 'report.md'}")
