"""Read and write the SA-1B layout: ``name.jpg`` next to ``name.json``.

The JSON holds ``{"image": {"image_id", "width", "height", "file_name"}, "annotations": [{"id",
"segmentation": {"size": [h, w], "counts": str}, "bbox": [x, y, w, h], "area", "point_coords":
[[x, y]], ...}]}``. Bad items are skipped and counted in ``.skipped`` (one warning per reason), or
raise :class:`~slimsam_edge.errors.DataError` with ``strict=True``.

Illustration (not run as a doctest: it needs files or a model)::

    ds = SA1BDataset("sa1b/", split="val")
    for sample in ds:
        image, masks = sample.load_image(), sample.masks
    ds.skipped
    # -> {'missing_json': 1}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import cv2
import numpy as np

from ..errors import DataError, ImageError
from ..fsutil import atomic_path, write_text_atomic
from .images import list_images, read_image
from .prompts import point_inside_mask
from .records import Annotation, Sample, SkipReport, xywh_to_xyxy
from .rle import check_rle, compressed, decode_rle, encode_mask, require_pycocotools
from .splits import select_split


def _parse_points(value: object) -> list[tuple[float, float]] | None:
    if not isinstance(value, list) or not value:
        return None
    points = []
    for p in value:
        if isinstance(p, (list, tuple)) and len(p) == 2 and all(isinstance(v, (int, float)) for v in p):
            points.append((float(p[0]), float(p[1])))
    return points or None


def parse_annotation(entry: object, image_hw: tuple[int, int] | None) -> Annotation:
    """Turn one SA-1B annotation entry into an :class:`Annotation` (mask decoded lazily).

    Raises ValueError describing what is wrong (corrupt RLE, size mismatch, ...).

    Example:
        >>> ann = parse_annotation({"id": 1, "segmentation": {"size": [5, 4], "counts": "62304"},
        ...                         "bbox": [1, 1, 2, 2]}, (5, 4))
        >>> ann.bbox_xyxy, ann.area
        ((1.0, 1.0, 3.0, 3.0), 4)
    """
    if not isinstance(entry, dict):
        raise ValueError("annotation is not a JSON object")
    seg = entry.get("segmentation")
    if not isinstance(seg, dict):
        raise ValueError("annotation has no RLE 'segmentation' object")
    hw, area = check_rle(seg)
    if image_hw is not None and hw != tuple(image_hw):
        raise LookupError(f"mask size {hw[0]}x{hw[1]} differs from image size {image_hw[0]}x{image_hw[1]}")
    if area == 0:
        raise ValueError("mask is empty")
    rle = {"size": list(hw), "counts": seg["counts"]}
    bbox = entry.get("bbox")
    if isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox):
        box = xywh_to_xyxy(bbox)
    else:
        box = xywh_to_xyxy(require_pycocotools().toBbox(compressed(rle)).tolist())
    return Annotation(
        lambda: decode_rle(rle),
        box,
        point_coords=_parse_points(entry.get("point_coords")),
        area=area,
        id=entry.get("id"),
        extra={"shape": entry["shape"]} if "shape" in entry else None,
    )


class SA1BDataset:
    """Iterate an SA-1B style folder (``name.<img>`` + ``name.json``, searched recursively).

    Arguments:
        folder: the folder.
        strict: raise DataError at the first bad item instead of skipping it.
        limit: stop after this many items (of the split).
        split: ``None`` (everything) or a name from ``fractions`` (default train 0.9 / val 0.1).
        seed: split seed.
        fractions: split fractions.
        decode_images: decode each image while iterating (checks it, fills ``Sample.image``).

    ``len()`` is the number of image/JSON pairs selected; items found bad while iterating are
    skipped, so a pass can yield fewer. ``.skipped`` holds the counts of the latest pass.

    Illustration (not run as a doctest: it needs files or a model)::

        ds = SA1BDataset("data/sa1b", strict=False, split="train")
        len(ds), next(iter(ds)).annotations[0].bbox_xyxy
        # -> (90, (12.0, 40.0, 96.0, 130.0))
    """

    layout = "sa1b"

    def __init__(
        self,
        folder: Path | str,
        *,
        strict: bool = False,
        limit: int | None = None,
        split: str | None = None,
        seed: int = 0,
        fractions: Mapping[str, float] | None = None,
        decode_images: bool = True,
    ):
        self.root = Path(folder)
        if not self.root.is_dir():
            raise DataError(f"SA-1B folder {self.root} does not exist or is not a folder")
        self.strict = strict
        self.decode_images = decode_images
        self.report = SkipReport(strict=strict, source=str(self.root))
        images = list_images(self.root)
        by_key = {(p.parent, p.stem): p for p in images}
        jsons = {(p.parent, p.stem): p for p in self.root.rglob("*.json") if not p.name.startswith(".")}
        self._missing_json = [p for k, p in by_key.items() if k not in jsons]
        self._missing_image = [p for k, p in jsons.items() if k not in by_key]
        pairs = [(by_key[k], jsons[k]) for k in by_key if k in jsons]
        if not pairs:
            raise DataError(
                f"no SA-1B items in {self.root}: no image has a same-name .json next to it; "
                "expected name.jpg + name.json"
            )
        pairs = select_split(pairs, split, seed=seed, fractions=fractions, key=lambda p: p[0].name)
        if limit is not None:
            if limit < 0:
                raise DataError(f"limit must be >= 0, got {limit}")
            pairs = pairs[:limit]
        self._pairs = pairs
        if strict:
            self._report_pairing()

    def __len__(self) -> int:
        return len(self._pairs)

    @property
    def skipped(self) -> dict[str, int]:
        """Skip counts per reason, for the latest pass."""
        return dict(self.report.counts)

    @property
    def image_paths(self) -> list[Path]:
        """The selected image paths."""
        return [img for img, _ in self._pairs]

    def _report_pairing(self) -> None:
        for p in self._missing_json:
            self.report.skip("missing_json", p, f"no {p.stem}.json next to it")
        for p in self._missing_image:
            self.report.skip("missing_image", p, f"no image named {p.stem}.<jpg|png|...> next to it")

    def __iter__(self) -> Iterator[Sample]:
        self.report.reset()
        self._report_pairing()
        for image_path, json_path in self._pairs:
            sample = self._load(image_path, json_path)
            if sample is not None:
                yield sample

    def _load(self, image_path: Path, json_path: Path) -> Sample | None:
        try:
            doc = json.loads(json_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as err:
            self.report.skip("bad_json", json_path, f"cannot parse JSON ({err})")
            return None
        if not isinstance(doc, dict) or not isinstance(doc.get("annotations", []), list):
            self.report.skip("bad_json", json_path, "expected an object with an 'annotations' list")
            return None
        info = doc.get("image") if isinstance(doc.get("image"), dict) else {}
        image = None
        if self.decode_images:
            try:
                image = read_image(image_path)
            except ImageError as err:
                self.report.skip("bad_image", image_path, str(err).split(": ", 1)[-1])
                return None
        hw = None
        if image is not None:
            hw = (int(image.shape[0]), int(image.shape[1]))
            declared = (info.get("height"), info.get("width"))
            if all(isinstance(v, int) for v in declared) and declared != hw:
                self.report.skip(
                    "size_mismatch", json_path,
                    f"JSON says {declared[0]}x{declared[1]} but the image is {hw[0]}x{hw[1]}",
                )
                return None
        elif isinstance(info.get("height"), int) and isinstance(info.get("width"), int):
            hw = (info["height"], info["width"])
        annotations = []
        for i, entry in enumerate(doc.get("annotations", [])):
            where = f"{json_path} annotation #{i}"
            try:
                annotations.append(parse_annotation(entry, hw))
            except LookupError as err:
                self.report.skip("size_mismatch", where, str(err))
            except ValueError as err:
                self.report.skip("corrupt_rle", where, str(err))
        if not annotations:
            self.report.skip("empty_annotations", json_path, "no usable annotation")
            return None
        return Sample(image_path, annotations, image_id=info.get("image_id", image_path.stem), image=image)


def iter_sa1b(
    folder: Path | str,
    *,
    strict: bool = False,
    limit: int | None = None,
    split: str | None = None,
    seed: int = 0,
) -> Iterator[Sample]:
    """Iterate the samples of an SA-1B folder (see :class:`SA1BDataset` for skip counts).

    Illustration (not run as a doctest: it needs files or a model)::

        for s in iter_sa1b("data/sa1b", limit=2):
            print(s.image_id, len(s.annotations))
    """
    yield from SA1BDataset(folder, strict=strict, limit=limit, split=split, seed=seed)


def mask_bbox_xywh(mask: np.ndarray) -> list[float]:
    """Tight ``[x, y, w, h]`` box of a mask (COCO convention: ``w = x_max - x_min + 1``).

    Example:
        >>> import numpy as np
        >>> m = np.zeros((5, 5), bool); m[1:3, 2:5] = True
        >>> mask_bbox_xywh(m)
        [2.0, 1.0, 3.0, 2.0]
    """
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        return [0.0, 0.0, 0.0, 0.0]
    return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]


def write_sa1b_sample(
    folder: Path | str,
    stem: str,
    image_rgb: np.ndarray,
    masks: Sequence[np.ndarray],
    point_coords: Sequence[Sequence[tuple[float, float]]] | None = None,
    *,
    image_id: int | str | None = None,
    extra: Sequence[Mapping[str, object]] | None = None,
) -> Path:
    """Write ``stem.png`` and ``stem.json`` (SA-1B layout) atomically; return the JSON path.

    ``point_coords[i]`` lists the prompt points of mask ``i``; by default each mask gets the
    point farthest from its border. ``extra[i]`` adds fields to annotation ``i``.

    Example:
        >>> import numpy as np, tempfile
        >>> m = np.zeros((8, 8), bool); m[2:6, 2:6] = True
        >>> p = write_sa1b_sample(tempfile.mkdtemp(), "s0", np.zeros((8, 8, 3), np.uint8), [m])
        >>> p.name
        's0.json'
    """
    image_rgb = np.asarray(image_rgb)
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8:
        raise DataError(f"image has shape {image_rgb.shape} {image_rgb.dtype}; expected HxWx3 uint8 RGB")
    h, w = image_rgb.shape[:2]
    if point_coords is not None and len(point_coords) != len(masks):
        raise DataError(f"{len(point_coords)} point lists for {len(masks)} masks; pass one per mask")
    folder = Path(folder)
    annotations = []
    for i, mask in enumerate(masks):
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (h, w):
            raise DataError(f"mask {i} has shape {mask.shape}; expected the image size {(h, w)}")
        if not mask.any():
            raise DataError(f"mask {i} is empty; drop empty masks before writing")
        points = point_coords[i] if point_coords is not None else [point_inside_mask(mask)]
        entry: dict[str, object] = {
            "id": i,
            "segmentation": encode_mask(mask),
            "bbox": mask_bbox_xywh(mask),
            "area": int(np.count_nonzero(mask)),
            "point_coords": [[float(x), float(y)] for x, y in points],
        }
        if extra is not None:
            entry.update(extra[i])
        annotations.append(entry)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise DataError(f"cannot encode {stem}.png")
    with atomic_path(folder / f"{stem}.png") as tmp:
        tmp.write_bytes(buf.tobytes())
    doc = {
        "image": {"image_id": stem if image_id is None else image_id, "width": int(w), "height": int(h),
                  "file_name": f"{stem}.png"},
        "annotations": annotations,
    }
    return write_text_atomic(folder / f"{stem}.json", json.dumps(doc, separators=(",", ":")))
