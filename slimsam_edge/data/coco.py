"""Read a COCO instances JSON (``images`` + ``annotations``) into :class:`Sample` records.

Segmentations may be polygons, uncompressed RLE (``counts`` list) or compressed RLE
(``counts`` string). Crowd annotations (``iscrowd=1``) are left out unless
``include_crowd=True``. Bad items are skipped and counted in ``.skipped`` (one warning per
reason), or raise :class:`~slimsam_edge.errors.DataError` with ``strict=True``.

Illustration (not run as a doctest: it needs files or a model)::

    ds = CocoDataset("coco/annotations/instances_val2017.json")
    sample = next(iter(ds)); sample.annotations[0].bbox_xyxy
    # -> (473.07, 395.93, 511.5, 474.41)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator, Mapping

from ..errors import DataError, ImageError
from .images import read_image
from .records import Annotation, Sample, SkipReport, xywh_to_xyxy
from .rle import check_rle, compressed, decode_rle, polygons_to_rle, rle_area_bbox
from .splits import select_split


def find_image_dir(annotation_file: Path, file_names: list[str]) -> Path:
    """Guess the image folder of a COCO JSON: the first candidate holding one of its first images.

    Candidates: ``<root>/images``, ``<root>/<split>`` (``instances_val2017.json`` ->
    ``val2017``), ``<root>/images/<split>``, ``<json dir>/images``, ``<json dir>``, where
    ``<root>`` is the JSON's grand-parent when the JSON lives in an ``annotations/`` folder.
    Raises DataError when no candidate holds any of them.

    Illustration (not run as a doctest: it needs files or a model)::

        find_image_dir(Path("coco/annotations/instances_val2017.json"), ["a.jpg"])
        # -> PosixPath('coco/val2017')
    """
    here = annotation_file.parent
    root = here.parent if here.name == "annotations" else here
    split = annotation_file.stem.split("instances_", 1)[-1]
    candidates = [root / "images", root / split, root / "images" / split, here / "images", here]
    if not file_names:
        return here
    for folder in dict.fromkeys(candidates):
        if folder.is_dir() and any((folder / name).is_file() for name in file_names[:5]):
            return folder
    looked = ", ".join(str(c) for c in dict.fromkeys(candidates))
    raise DataError(
        f"cannot find the images of {annotation_file} (looked in {looked}); pass the image folder"
    )


def parse_segmentation(seg: object, height: int, width: int) -> tuple[dict, int]:
    """Validate a COCO segmentation; return a compressed RLE for decoding and the pixel area.

    Raises ValueError (corrupt) or LookupError (size differs from the image).

    Illustration (not run as a doctest: it needs files or a model)::

        rle, area = parse_segmentation({"size": [2, 2], "counts": [1, 2, 1]}, 2, 2)
        area
        # -> 2
    """
    if isinstance(seg, list):
        rle = polygons_to_rle(seg, height, width)
        (h, w), area = check_rle({"size": list(rle["size"]), "counts": rle["counts"]})
        return rle, area
    if isinstance(seg, dict):
        (h, w), area = check_rle(seg)
        if (h, w) != (height, width):
            raise LookupError(f"RLE size {h}x{w} differs from image size {height}x{width}")
        return compressed(seg), area
    raise ValueError("segmentation is neither a polygon list nor an RLE object")


class CocoDataset:
    """Iterate the images of a COCO instances JSON with their instance masks.

    Arguments:
        annotation_file: the ``instances_*.json`` file.
        image_dir: folder the ``file_name`` entries are relative to (guessed when ``None``,
            see :func:`find_image_dir`).
        strict: raise DataError at the first bad item instead of skipping it.
        include_crowd: keep ``iscrowd=1`` annotations.
        limit, split, seed, fractions: select a subset (see :mod:`slimsam_edge.data.splits`).
        decode_images: decode each image while iterating (checks it, fills ``Sample.image``).

    Illustration (not run as a doctest: it needs files or a model)::

        ds = CocoDataset("instances_val.json", image_dir="val/")
        len(ds), ds.skipped
        # -> (5000, {})
    """

    layout = "coco"

    def __init__(
        self,
        annotation_file: Path | str,
        image_dir: Path | str | None = None,
        *,
        strict: bool = False,
        include_crowd: bool = False,
        limit: int | None = None,
        split: str | None = None,
        seed: int = 0,
        fractions: Mapping[str, float] | None = None,
        decode_images: bool = True,
    ):
        self.annotation_file = Path(annotation_file)
        self.root = self.annotation_file
        try:
            doc = json.loads(self.annotation_file.read_text(encoding="utf-8"))
        except FileNotFoundError as err:
            raise DataError(
                f"COCO annotation file {self.annotation_file} not found; check the path"
            ) from err
        except (OSError, UnicodeDecodeError, ValueError) as err:
            raise DataError(
                f"cannot parse COCO annotation file {self.annotation_file}: {err}; is it valid JSON?"
            ) from err
        if not isinstance(doc, dict) or not isinstance(doc.get("images"), list) or not isinstance(
            doc.get("annotations"), list
        ):
            raise DataError(
                f"{self.annotation_file} is not a COCO instances file: expected 'images' and "
                "'annotations' lists"
            )
        self.strict, self.include_crowd, self.decode_images = strict, include_crowd, decode_images
        self.report = SkipReport(strict=strict, source=str(self.annotation_file))
        images = [
            im for im in doc["images"] if isinstance(im, dict) and "id" in im and "file_name" in im
        ]
        self._bad_image_entries = len(doc["images"]) - len(images)
        names = [str(im["file_name"]) for im in images]
        self.image_dir = (
            Path(image_dir) if image_dir is not None else find_image_dir(self.annotation_file, names)
        )
        if image_dir is not None and not self.image_dir.is_dir():
            raise DataError(f"image folder {self.image_dir} does not exist; check --image-dir")
        self._by_image: dict[object, list[dict]] = {im["id"]: [] for im in images}
        self._orphans = []
        for i, ann in enumerate(doc["annotations"]):
            target = self._by_image.get(ann.get("image_id")) if isinstance(ann, dict) else None
            if target is None:
                self._orphans.append(i)
            else:
                target.append(ann)
        images = select_split(
            images, split, seed=seed, fractions=fractions, key=lambda im: str(im["file_name"])
        )
        if limit is not None:
            if limit < 0:
                raise DataError(f"limit must be >= 0, got {limit}")
            images = images[:limit]
        self._images = images
        if strict:
            self._report_structure()

    def __len__(self) -> int:
        return len(self._images)

    @property
    def skipped(self) -> dict[str, int]:
        """Skip counts per reason, for the latest pass."""
        return dict(self.report.counts)

    @property
    def image_paths(self) -> list[Path]:
        """The selected image paths."""
        return [self.image_dir / str(im["file_name"]) for im in self._images]

    def _report_structure(self) -> None:
        for _ in range(self._bad_image_entries):
            self.report.skip(
                "bad_json", self.annotation_file, "an 'images' entry lacks 'id' or 'file_name'"
            )
        for i in self._orphans:
            where = f"{self.annotation_file} annotation #{i}"
            self.report.skip("orphan_annotation", where, "unknown image_id")

    def __iter__(self) -> Iterator[Sample]:
        self.report.reset()
        self._report_structure()
        for info in self._images:
            sample = self._load(info)
            if sample is not None:
                yield sample

    def _load(self, info: dict) -> Sample | None:
        path = self.image_dir / str(info["file_name"])
        if not path.is_file():
            self.report.skip("missing_image", path, "file not found (is the image folder right?)")
            return None
        image = None
        if self.decode_images:
            try:
                image = read_image(path)
            except ImageError as err:
                self.report.skip("bad_image", path, str(err).split(": ", 1)[-1])
                return None
        declared = (info.get("height"), info.get("width"))
        if image is not None:
            hw = (int(image.shape[0]), int(image.shape[1]))
            if all(isinstance(v, int) for v in declared) and declared != hw:
                self.report.skip(
                    "size_mismatch", path,
                    f"JSON says {declared[0]}x{declared[1]}, the image is {hw[0]}x{hw[1]}",
                )
                return None
        elif all(isinstance(v, int) and v > 0 for v in declared):
            hw = (int(declared[0]), int(declared[1]))  # type: ignore[arg-type]
        else:
            self.report.skip("bad_json", path, "image entry lacks integer 'height'/'width'")
            return None
        annotations = []
        for ann in self._by_image.get(info["id"], []):
            annotation = self._annotation(ann, hw)
            if annotation is not None:
                annotations.append(annotation)
        if not annotations:
            self.report.skip("empty_annotations", path, "no usable annotation")
            return None
        return Sample(path, annotations, image_id=info["id"], image=image)

    def _annotation(self, ann: dict, hw: tuple[int, int]) -> Annotation | None:
        where = f"{self.annotation_file} annotation id={ann.get('id')!r}"
        if ann.get("iscrowd") and not self.include_crowd:
            self.report.skip("crowd", where, "crowd annotation")
            return None
        try:
            rle, area = parse_segmentation(ann.get("segmentation"), *hw)
            if area == 0:
                raise ValueError("mask is empty")
        except LookupError as err:
            self.report.skip("size_mismatch", where, str(err))
            return None
        except ValueError as err:
            self.report.skip("corrupt_rle", where, str(err))
            return None
        bbox = ann.get("bbox")
        if isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox):
            box = xywh_to_xyxy(bbox)
        else:
            box = xywh_to_xyxy(rle_area_bbox(rle)[1])
        extra = {"category_id": ann["category_id"]} if "category_id" in ann else None
        return Annotation(lambda: decode_rle(rle), box, None, area, ann.get("id"), extra=extra)
