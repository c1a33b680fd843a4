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
    backend: Annotated[Optional[Backend], typer.Option("--backend", help="Runtime (default: the bundle's first).")] = None,
    precision: Annotated[Optional[Precision], typer.Option("--precision", help="Artifact precision or run-time hint (bf16 on OpenVINO).")] = None,
    multimask: Annotated[bool, typer.Option("--multimask/--single-mask", help="Predict 3 masks and keep the best scored (SAM's advice for a single point).")] = True,
    threads: ThreadsOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Segment one object in an image from point and/or box prompts."""
    import numpy as np

    from ..data.images import read_image
    from ..predictor import EdgePredictor
    from ..visualize import overlay_mask, write_png

    if not point and box is None:
        raise UsageError("no prompt given; pass at least one --point x,y[,label] or a --box x0,y0,x1,y1")
    coords, labels = [], []
    for p in point or []:
        vals = parse_floats(p, (2, 3), "--point")
        if len(vals) == 3 and vals[2] not in (0.0, 1.0):
            raise UsageError(f"--point {p!r}: label must be 1 (foreground) or 0 (background)")
        coords.append(vals[:2])
        labels.append(vals[2] if len(vals) == 3 else 1.0)
    box_vals = parse_floats(box, (4,), "--box") if box is not None else None
    if out.suffix.lower() != ".png":
        raise UsageError(f"--out {out}: must end in .png")
    rgb = read_image(image)
    predictor = EdgePredictor.from_bundle(
        bundle, backend=backend.value if backend else None,
        precision=precision.value if precision else None, threads=threads,
    )
    predictor.set_image(rgb)
    masks, scores, _ = predictor.predict(
        point_coords=np.array(coords) if coords else None,
        point_labels=np.array(labels) if labels else None,
        box=np.array(box_vals) if box_vals else None,
        multimask_output=multimask,
    )
    best = int(np.argmax(scores))
    mask = masks[best]
    overlay_path = out.with_name(out.stem + "_overlay.png")
    write_png(out, mask.astype(np.uint8) * 255)
    write_png(overlay_path, overlay_mask(rgb, mask, points=coords, labels=labels, box=box_vals)[..., ::-1])
    result = {
        "image": str(image), "mask": str(out), "overlay": str(overlay_path), "score": float(scores[best]),
        "area": int(mask.sum()), "image_size": list(rgb.shape[:2]),
        "timings_ms": {k: round(v * 1e3, 2) for k, v in predictor.timings.items()},
    }
    if json_out:
        emit_json(result)
    else:
        typer.echo(f"mask {out} (score {result['score']:.3f}, {result['area']} px), overlay {overlay_path}")
