"""What each ``compress --embedding-target`` is worth before any training: the teacher's mask decoder
on each target at a smaller input size (``python scripts/embedding_targets.py``).

For each size S it scores, on the held-out procedural images (eval's protocol, through torch):

- ``teacher``: the teacher at its own size T (the reference every "kept" divides by);
- ``regridded``: the teacher moved to S (:func:`~slimsam_edge.models.regrid.resample_model`: position
  tables interpolated, no training) — the target of ``--embedding-target regridded``;
- ``resized``: the teacher's embedding at T resized to S's grid, read by the decoder at S — the target
  of ``--embedding-target teacher`` (SlimSAM's).

A student that matched its target exactly would score about that target's row; a target its own
decoder reads badly caps what the encoder phases can reach.

Example:
    >>> from slimsam_edge.models.build import build_sam, random_init_
    >>> from slimsam_edge.models.spec import PRESETS
    >>> sam = random_init_(build_sam(PRESETS["sam_mini"]), seed=0).eval()
    >>> r = score_targets(sam, PRESETS["sam_mini"], [128], images=1)
    >>> sorted(r["sizes"]["128"]), r["teacher"]["n_images"]
    (['regridded', 'resized'], 1)
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from ..fsutil import write_text_atomic


def _score(sam: Any, images: int) -> dict[str, Any]:
    from ..eval.evaluate import evaluate_sam

    r = evaluate_sam(sam, n_images=images)
    return {"point": round(r["point"]["miou"], 4), "box": round(r["box"]["miou"], 4), "n_images": r["n_images"],
            "point_small": round(r["point"]["buckets"]["small"]["miou"], 4)}


def _resized_teacher(teacher_encoder: Any, grid: int, img_size: int) -> Any:
    """An image encoder for input size ``img_size`` that returns the teacher's embedding (at its own size)
    resized to ``grid``."""
    from torch import nn

    from ..models.regrid import resize_embedding, resize_input

    class Resized(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.teacher_encoder, self.img_size = teacher_encoder, img_size

        def forward(self, x: Any) -> Any:
            return resize_embedding(self.teacher_encoder(resize_input(x, self.teacher_encoder.img_size)), grid)

    return Resized()


def score_targets(teacher: Any, spec: Any, sizes: Sequence[int], images: int = 64) -> dict[str, Any]:
    """``{"teacher": scores at T, "sizes": {S: {"regridded": scores, "resized": scores}}}``: point / box mIoU
    (and the small-object point bucket) on ``images`` held-out procedural images."""
    from ..models.regrid import resample_model

    out: dict[str, Any] = {"teacher_size": spec.image_size, "teacher": _score(teacher, images), "sizes": {}}
    for size in sizes:
        moved, _ = resample_model(teacher, spec, size)
        row = {"regridded": _score(moved.eval(), images)}
        grid = moved.prompt_encoder.image_embedding_size[0]
        reader = copy.deepcopy(moved)  # the prompt encoder and decoder at S (moved is the teacher at S = T)
        reader.image_encoder = _resized_teacher(teacher.image_encoder, grid, size)
        row["resized"] = _score(reader.eval(), images)
        out["sizes"][str(size)] = row
    return out


def render(result: dict[str, Any], command: str) -> str:
    """The markdown table of :func:`score_targets`' ``result``.

    Example:
        >>> r = {"teacher_size": 256, "teacher": {"point": 0.9, "box": 0.9, "n_images": 4, "point_small": 0.8},
        ...      "sizes": {"160": {"regridded": {"point": 0.81, "box": 0.8, "point_small": 0.7},
        ...                        "resized": {"point": 0.72, "box": 0.7, "point_small": 0.6}}}}
        >>> print(render(r, "python scripts/embedding_targets.py").splitlines()[-1])
        | 160 | 0.72 (0.7), 80.0 % | 0.81 (0.8), 90.0 % |
    """
    t = result["teacher"]
    lines = [f"`{command}`: the teacher's decoder on each embedding target, no training; point (box) mIoU on "
             f"{t['n_images']} held-out procedural images, kept = point / the teacher's {t['point']} at "
             f"{result['teacher_size']} px.", "",
             "| student input (px) | `teacher` target: the teacher's embedding resized | `regridded` target: the teacher moved to this size |",
             "|---|---|---|"]
    for size, row in result["sizes"].items():
        cells = [f"{row[k]['point']} ({row[k]['box']}), "
                 + (f"{100 * row[k]['point'] / t['point']:.1f} %" if t["point"] else "–")
                 for k in ("resized", "regridded")]
        lines.append(f"| {size} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command-line entry (``python scripts/embedding_targets.py --help``)."""
    from ..assets import require_reference_model
    from ..errors import UsageError
    from ..models.io import load_model
    from ..models.regrid import check_image_size

    ap = argparse.ArgumentParser(description="the teacher's decoder on each compress --embedding-target")
    ap.add_argument("--sizes", type=int, nargs="+", default=[192, 160, 128])
    ap.add_argument("--images", type=int, default=64, help="held-out procedural images")
    ap.add_argument("--json", type=Path, default=None, help="also write the result here")
    a = ap.parse_args(argv)
    teacher, spec = load_model(require_reference_model())
    if a.images < 1:
        ap.error(f"--images must be at least 1, got {a.images}")
    for size in a.sizes:  # before any scoring: one line naming the sizes that work (exit 2)
        try:
            check_image_size(spec.encoder, size)
        except UsageError as err:
            ap.error(str(err).replace("--image-size", "--sizes", 1))
    t0 = time.perf_counter()
    result = score_targets(teacher, spec, a.sizes, a.images)
    result["elapsed_s"] = round(time.perf_counter() - t0, 1)
    print(render(result, "python scripts/embedding_targets.py " + " ".join(sys.argv[1:] if argv is None else argv)))
    if a.json is not None:
        write_text_atomic(a.json, json.dumps(result, indent=1))
    return result
