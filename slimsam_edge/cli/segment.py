"""``slimsam-edge segment IMAGE --bundle DIR --point x,y[,label] --box x0,y0,x1,y1 --out mask.png``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import UsageError
from .common import emit_json, handle_errors, parse_floats
from .options import Backend, BundleOpt, JsonOpt, Precision, ThreadsOpt


@handle_errors
def segment(
    image: Annotated[Path, typer.Argument(help="Image to segment (jpg/png/bmp/webp).")],
    bundle: BundleOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="Mask PNG to write; an overlay PNG is written beside it.")],
    point: Annotated[Optional[list[str]], typer.Option("--point", "-p", help="x,y[,label] in image pixels; label 1 = foreground (default), 0 = background. Repeatable.")] = None,
    box: Annotated[Optional[str], typer.Option("--box", help="x0,y0,x1,y1 in image pixels.")] = None,
    backend: Annotated[Optional[Backend], typer.Option("--backend", help="Runtime (default: picked for this machine: the detected profile's first backend the bundle holds and that is installed).")] = None,
    precision: Annotated[Optional[Precision], typer.Option("--precision", help="Artifact precision or run-time hint (bf16 on OpenVINO; refused on a CPU without BF16); default: the detected profile's precision when the bundle has it, else fp32.")] = None,
    multimask: Annotated[bool, typer.Option("--multimask/--single-mask", help="Predict 3 masks and keep the best scored (SAM's advice for a single point).")] = True,
    threads: ThreadsOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Segment one object in an image from point and/or box prompts."""
    from ..apps.segment import segment_file

    coords, labels = [], []
    for p in point or []:
        vals = parse_floats(p, (2, 3), "--point")
        if len(vals) == 3 and vals[2] not in (0.0, 1.0):
            raise UsageError(f"--point {p!r}: label must be 1 (foreground) or 0 (background)")
        coords.append(vals[:2])
        labels.append(vals[2] if len(vals) == 3 else 1.0)
    box_vals = parse_floats(box, (4,), "--box") if box is not None else None
    result = segment_file(image, bundle, out, points=coords, labels=labels, box=box_vals,
                          backend=backend.value if backend else None,
                          precision=precision.value if precision else None, threads=threads, multimask=multimask)
    if json_out:
        emit_json(result)
    else:
        typer.echo(f"mask {out} (score {result['score']:.3f}, {result['area']} px), overlay {result['overlay']} "
                   f"[{result['backend']}/{result['precision']}]")
