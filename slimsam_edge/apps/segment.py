"""Segment one object in an image file from point and/or box prompts: ``slimsam-edge segment``'s job.

Torch-free: the bundle runs through :class:`~slimsam_edge.predictor.EdgePredictor`. The mask PNG
and an overlay PNG beside it (``<name>_overlay.png``) are written atomically.

Illustration (not run as a doctest: it needs files or a model)::

    result = segment_file("photo.jpg", "bundle/", "mask.png", points=[(500, 375)])
    result["overlay"], result["score"] > 0.5
    # -> ('mask_overlay.png', True)
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator, Sequence

from ..errors import UsageError


def segment_file(
    image: Path | str,
    bundle: Path | str,
    out: Path | str,
    *,
    points: Sequence[Sequence[float]] = (),
    labels: Sequence[float] | None = None,
    box: Sequence[float] | None = None,
    backend: str | None = None,
    precision: str | None = None,
    threads: int | None = None,
    multimask: bool = True,
    decoder_precision: str | None = None,
) -> dict[str, Any]:
    """Segment ``image`` with a bundle; keep the best-scored mask; write it and an overlay.

    Arguments:
        image: image file (jpg/png/bmp/webp).
        bundle: bundle folder.
        out: mask PNG to write (must end in ``.png``); the overlay goes beside it.
        points: ``(x, y)`` prompts in image pixels; ``labels``: 1 foreground (default), 0 background.
        box: ``(x0, y0, x1, y1)`` in image pixels.
        backend, precision, threads: as :meth:`EdgePredictor.from_bundle` (``None``: picked for
            this machine; a precision it cannot run is refused).
        multimask: predict 3 masks and keep the best scored (SAM's advice for a single point).
        decoder_precision: the decoder's precision when it differs from the encoder's
            (:meth:`EdgePredictor.from_bundle`; ``None``: the encoder's).

    Returns:
        ``{"image", "mask", "overlay", "score", "area", "image_size", "backend", "precision",
        "decoder_precision", "timings_ms"}`` (backend and precisions: what ran).

    Raises:
        UsageError: no prompt, a label other than 0/1, or ``out`` not a .png.

    Example:
        >>> segment_file("photo.jpg", "bundle/", "mask.png")
        Traceback (most recent call last):
        ...
        slimsam_edge.errors.UsageError: no prompt given; pass at least one --point x,y[,label] or a --box x0,y0,x1,y1
    """
    import numpy as np

    from ..predictor import EdgePredictor
    from ..visualize import overlay_mask, write_png

    coords = [list(p[:2]) for p in points]
    labels = [1.0] * len(coords) if labels is None else list(labels)
    if not coords and box is None:
        raise UsageError("no prompt given; pass at least one --point x,y[,label] or a --box x0,y0,x1,y1")
    if any(lab not in (0.0, 1.0) for lab in labels):
        raise UsageError(f"point labels must be 1 (foreground) or 0 (background), got {labels}")
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise UsageError(f"--out {out}: must end in .png")
    overlay_path = _check_outputs(out)
    rgb = _read_image(image)
    predictor = EdgePredictor.from_bundle(bundle, backend=backend, precision=precision, threads=threads,
                                          decoder_precision=decoder_precision)
    predictor.set_image(rgb)
    masks, scores, _ = predictor.predict(
        point_coords=np.array(coords) if coords else None,
        point_labels=np.array(labels) if labels else None,
        box=np.array(box) if box else None,
        multimask_output=multimask,
    )
    best = int(np.argmax(scores))
    mask = masks[best]
    overlay = overlay_mask(rgb, mask, points=coords, labels=labels, box=box)[..., ::-1]
    with _written_together(out, overlay_path) as (tmp_mask, tmp_overlay):
        write_png(tmp_mask, mask.astype(np.uint8) * 255)
        write_png(tmp_overlay, overlay)
    return {
        "image": str(image), "mask": str(out), "overlay": str(overlay_path), "score": float(scores[best]),
        "area": int(mask.sum()), "image_size": list(rgb.shape[:2]),
        "backend": predictor.backend, "precision": predictor.precision,
        "decoder_precision": predictor.decoder_precision,
        "timings_ms": {k: round(v * 1e3, 2) for k, v in predictor.timings.items()},
    }


def segment_everything_file(
    image: Path | str,
    bundle: Path | str,
    out: Path | str,
    *,
    backend: str | None = None,
    precision: str | None = None,
    threads: int | None = None,
    progress: Any = None,
    decoder_precision: str | None = None,
    **settings: Any,
) -> dict[str, Any]:
    """Segment everything in ``image`` with a bundle; write the masks as a JSON list of COCO-RLE
    records (segment-anything's keys) and an overlay PNG beside it (``<name>_overlay.png``).

    Arguments:
        image, bundle, backend, precision, threads, decoder_precision: as :func:`segment_file`.
        out: JSON file to write (must end in ``.json``).
        progress: optional ``callback(done_points, total_points)``.
        settings: :class:`~slimsam_edge.apps.everything.MaskGenerator` settings
            (``points_per_side``, ``pred_iou_thresh``, ``stability_score_thresh``,
            ``min_mask_region_area``, ...); checked before the bundle is opened.

    Returns:
        ``{"image", "masks", "overlay", "count", "image_size", "backend", "precision",
        "decoder_precision", "points_per_side", "seconds"}``.

    Raises:
        UsageError: ``out`` not a .json, or a setting out of range.

    Example:
        >>> segment_everything_file("photo.jpg", "bundle/", "masks.png")
        Traceback (most recent call last):
        ...
        slimsam_edge.errors.UsageError: --out masks.png: must end in .json (the masks are written as a COCO-RLE list)
    """
    import time

    import numpy as np

    from ..fsutil import write_text_atomic
    from ..predictor import EdgePredictor
    from ..safeio import json_dumps
    from ..visualize import overlay_masks, write_png
    from ..data.rle import coco_rle, rle_to_mask
    from .everything import MaskGenerator

    out = Path(out)
    if out.suffix.lower() != ".json":
        raise UsageError(f"--out {out}: must end in .json (the masks are written as a COCO-RLE list)")
    overlay_path = _check_outputs(out)
    generator = MaskGenerator(None, output_mode="uncompressed_rle", progress=progress, **settings)
    rgb = _read_image(image)
    generator.predictor = EdgePredictor.from_bundle(bundle, backend=backend, precision=precision, threads=threads,
                                                    decoder_precision=decoder_precision)
    t0 = time.perf_counter()
    records = generator.generate(rgb)
    seconds = time.perf_counter() - t0
    raw = [r["segmentation"] for r in records]
    for r in records:
        r["segmentation"] = coco_rle(r["segmentation"])
    order = np.argsort([-r["area"] for r in records], kind="stable")  # small masks drawn on top
    overlay = overlay_masks(rgb, (rle_to_mask(raw[i]) for i in order), count=len(records))
    with _written_together(out, overlay_path) as (tmp_json, tmp_overlay):
        write_text_atomic(tmp_json, json_dumps(records))
        write_png(tmp_overlay, overlay[..., ::-1])
    predictor = generator.predictor
    return {
        "image": str(image), "masks": str(out), "overlay": str(overlay_path), "count": len(records),
        "image_size": list(rgb.shape[:2]), "backend": predictor.backend, "precision": predictor.precision,
        "decoder_precision": predictor.decoder_precision, "points_per_side": int(np.sqrt(len(generator.grids[0]))), "seconds": round(seconds, 3),
    }


def _check_outputs(out: Path) -> Path:
    """Refuse, before any work, an ``out`` or overlay path that cannot be written; the overlay's path."""
    from ..safeio import require_output_path

    overlay_path = out.with_name(out.stem + "_overlay.png")
    require_output_path(out, "--out")
    require_output_path(overlay_path, "the overlay (written beside --out)")
    return overlay_path


def _read_image(image: Path | str) -> Any:
    """The image as RGB; a FIFO or device refused without opening it, libpng's own lines silenced."""
    from ..data.images import read_image
    from ..errors import ImageError
    from ..safeio import native_stderr_silenced, require_regular_file

    if Path(image).exists():
        require_regular_file(image, "image", error=ImageError)
    with native_stderr_silenced():
        return read_image(image)


@contextlib.contextmanager
def _written_together(*dests: Path) -> Iterator[tuple[Path, ...]]:
    """Temporary paths for several outputs, renamed onto ``dests`` only when the block wrote them
    all: a failure on the second (the overlay) leaves neither, never a mask without its overlay."""
    from ..fsutil import atomic_path

    with contextlib.ExitStack() as stack:
        yield tuple(stack.enter_context(atomic_path(d)) for d in dests)
