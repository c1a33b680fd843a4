"""``slimsam-edge segment IMAGE --bundle DIR --point x,y[,label] --box x0,y0,x1,y1 --out mask.png``, or
``slimsam-edge segment IMAGE --bundle DIR --everything --out masks.json`` (every object: COCO-RLE list)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import UsageError
from ..limits import MAX_POINTS_PER_SIDE
from .common import emit_json, handle_errors, parse_floats
from .options import (Backend, BundleOpt, DecoderPrecisionOpt, JsonOpt, Precision, ThreadsOpt,
                      enum_value)


@handle_errors
def segment(
    image: Annotated[Path, typer.Argument(help="Image to segment (jpg/png/bmp/webp).")],
    bundle: BundleOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="Mask PNG to write (masks JSON with --everything); an overlay PNG is written beside it.")],
    point: Annotated[Optional[list[str]], typer.Option("--point", "-p", help="x,y[,label] in image pixels; label 1 = foreground (default), 0 = background. Repeatable.")] = None,
    box: Annotated[Optional[str], typer.Option("--box", help="x0,y0,x1,y1 in image pixels.")] = None,
    backend: Annotated[Optional[Backend], typer.Option("--backend", help="Runtime (default: picked for this machine: the detected profile's first backend the bundle holds and that is installed).")] = None,
    precision: Annotated[Optional[Precision], typer.Option("--precision", help="Artifact precision or run-time hint (bf16 on OpenVINO; refused on a CPU without BF16); default: the detected profile's precision when the bundle has it, else fp32.")] = None,
    decoder_precision: DecoderPrecisionOpt = None,
    multimask: Annotated[bool, typer.Option("--multimask/--single-mask", help="Predict 3 masks and keep the best scored (SAM's advice for a single point).")] = True,
    everything: Annotated[bool, typer.Option("--everything", help="Segment every object (a grid of point prompts, SAM's automatic mask generator); --out is a .json COCO-RLE list.")] = False,
    points_per_side: Annotated[Optional[int], typer.Option("--points-per-side", max=MAX_POINTS_PER_SIDE, help="With --everything: grid points per side (default 32).")] = None,
    pred_iou_thresh: Annotated[Optional[float], typer.Option("--pred-iou-thresh", help="With --everything: keep masks whose predicted IoU exceeds this, 0..1 (default 0.88).")] = None,
    stability_thresh: Annotated[Optional[float], typer.Option("--stability-thresh", help="With --everything: keep masks whose stability score reaches this, 0..1 (default 0.95).")] = None,
    min_area: Annotated[Optional[float], typer.Option("--min-area", help="With --everything: fill holes and drop islands smaller than this many pixels (default 0: off).")] = None,
    threads: ThreadsOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Segment one object in an image from point and/or box prompts, or every object (--everything)."""
    from ..apps.segment import segment_file

    values = (points_per_side, pred_iou_thresh, stability_thresh, min_area)
    settings = {k: v for k, v in zip(_FLAGS, values) if v is not None}
    if everything:
        if point or box is not None:
            raise UsageError("--everything segments the whole image from a grid of points; drop --point/--box, "
                             "or drop --everything to segment one object")
        _everything(image, bundle, out, settings, backend=backend.value if backend else None,
                    precision=precision.value if precision else None,
                    decoder_precision=enum_value(decoder_precision), threads=threads, json_out=json_out)
        return
    if settings:
        raise UsageError("--points-per-side, --pred-iou-thresh, --stability-thresh and --min-area apply only "
                         "with --everything")
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
                          precision=precision.value if precision else None,
                          decoder_precision=enum_value(decoder_precision), threads=threads, multimask=multimask)
    if json_out:
        emit_json(result)
    else:
        typer.echo(f"mask {out} (score {result['score']:.3f}, {result['area']} px), overlay {result['overlay']} "
                   f"[{_ran(result)}]")


def _ran(result: dict) -> str:
    """``backend/precision`` that ran, and the decoder's precision where it differs.

    Example:
        >>> _ran({"backend": "openvino", "precision": "int8", "decoder_precision": "bf16"})
        'openvino/int8, decoder bf16'
        >>> _ran({"backend": "onnxruntime", "precision": "fp32", "decoder_precision": "fp32"})
        'onnxruntime/fp32'
    """
    ran = f"{result['backend']}/{result['precision']}"
    dec = result.get("decoder_precision")
    return ran if dec in (None, result["precision"]) else f"{ran}, decoder {dec}"


#: MaskGenerator setting -> its flag here (errors name the flag)
_FLAGS = {"points_per_side": "--points-per-side", "pred_iou_thresh": "--pred-iou-thresh",
          "stability_score_thresh": "--stability-thresh", "min_mask_region_area": "--min-area"}


def _everything(image: Path, bundle: Path, out: Path, settings: dict, *, backend: str | None,
                precision: str | None, decoder_precision: str | None, threads: int | None, json_out: bool) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

    from ..apps.everything import MaskGenerator
    from ..apps.segment import segment_everything_file
    from .common import progress_bar

    try:
        MaskGenerator(None, **settings)
    except UsageError as err:
        message = str(err)
        for name, flag in _FLAGS.items():
            message = message.replace(name, flag)
        raise UsageError(message) from None
    with progress_bar(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      enabled=not json_out, stderr=True) as update:
        result = segment_everything_file(
            image, bundle, out, backend=backend, precision=precision, decoder_precision=decoder_precision,
            threads=threads,
            progress=lambda done, total: update(done, total, "points"), **settings)
    if json_out:
        emit_json(result)
    else:
        typer.echo(f"{result['count']} masks {out}, overlay {result['overlay']} ({result['seconds']:.1f} s) "
                   f"[{_ran(result)}]")
