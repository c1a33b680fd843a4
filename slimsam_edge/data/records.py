"""Records shared by every data reader: :class:`Annotation`, :class:`Sample`, :class:`SkipReport`.

An annotation's mask may be given as an array or as a zero-argument callable that decodes it on
first access (readers decode RLE lazily, so iterating a folder does not hold every mask).

Example:
    >>> import numpy as np
    >>> m = np.zeros((4, 4), bool); m[1:3, 1:3] = True
    >>> ann = Annotation(m, xywh_to_xyxy((1, 1, 2, 2)), point_coords=[(1.0, 1.0)], area=4, id=7)
    >>> ann.bbox_xyxy, int(ann.mask.sum())
    ((1.0, 1.0, 3.0, 3.0), 4)
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..errors import DataError

BBox = tuple[float, float, float, float]


def xywh_to_xyxy(box: Sequence[float]) -> BBox:
    """Convert a COCO/SA-1B ``[x, y, w, h]`` box to ``(x0, y0, x1, y1)``.

    Example:
        >>> xywh_to_xyxy([10, 20, 5, 8])
        (10.0, 20.0, 15.0, 28.0)
    """
    if len(box) != 4:
        raise DataError(f"bbox {list(box)!r} has {len(box)} numbers; expected [x, y, w, h]")
    x, y, w, h = (float(v) for v in box)
    return (x, y, x + w, y + h)


class Annotation:
    """One instance: a boolean ``HxW`` mask, its box, optional prompt points, area and id.

    Arguments:
        mask: ``HxW`` boolean array, or a callable returning it (decoded once, then cached).
        bbox_xyxy: ``(x0, y0, x1, y1)`` in pixels of the original image.
        point_coords: prompt points ``[(x, y), ...]`` inside the mask, or ``None``.
        area: mask area in pixels of the original image.
        id: the annotation id of the source data set.
        extra: other fields of the source annotation worth keeping (e.g. ``shape``).

    Example:
        >>> import numpy as np
        >>> ann = Annotation(lambda: np.ones((2, 2), bool), (0.0, 0.0, 2.0, 2.0), area=4)
        >>> ann.mask_loaded, int(ann.mask.sum()), ann.mask_loaded
        (False, 4, True)
    """

    __slots__ = ("_mask", "_decode", "bbox_xyxy", "point_coords", "area", "id", "extra")

    def __init__(
        self,
        mask: np.ndarray | Callable[[], np.ndarray],
        bbox_xyxy: BBox,
        point_coords: list[tuple[float, float]] | None = None,
        area: int = 0,
        id: int | str | None = None,  # noqa: A002 - the data sets call it "id"
        extra: dict | None = None,
    ):
        if callable(mask):
            self._mask, self._decode = None, mask
        else:
            self._mask, self._decode = np.asarray(mask, dtype=bool), None
        self.bbox_xyxy = tuple(float(v) for v in bbox_xyxy)
        self.point_coords = (
            None if point_coords is None else [(float(x), float(y)) for x, y in point_coords]
        )
        self.area = int(area)
        self.id = id
        self.extra = dict(extra or {})

    @property
    def mask(self) -> np.ndarray:
        """The ``HxW`` boolean mask (decoded on first access)."""
        if self._mask is None:
            self._mask = np.asarray(self._decode(), dtype=bool)  # type: ignore[misc]
            self._decode = None
        return self._mask

    @property
    def mask_loaded(self) -> bool:
        """Whether the mask is held in memory already."""
        return self._mask is not None

    def __repr__(self) -> str:
        return (
            f"Annotation(id={self.id!r}, bbox_xyxy={self.bbox_xyxy}, area={self.area}, "
            f"point_coords={self.point_coords}, mask_loaded={self.mask_loaded})"
        )


@dataclass
class Sample:
    """One image with its annotations.

    ``image`` holds the decoded RGB array when the reader already decoded it (readers check
    every image) or for in-memory data; :meth:`load_image` returns it, or reads ``image_path``.

    Example:
        >>> import numpy as np
        >>> s = Sample(None, [], image_id="x", image=np.zeros((2, 2, 3), np.uint8))
        >>> s.load_image().shape, s.height, s.width
        ((2, 2, 3), 2, 2)
    """

    image_path: Path | None
    annotations: list[Annotation]
    image_id: int | str | None = None
    image: np.ndarray | None = field(default=None, repr=False)

    def load_image(self) -> np.ndarray:
        """Return the ``HxWx3`` uint8 RGB image (decoding ``image_path`` if not held)."""
        if self.image is not None:
            return self.image
        if self.image_path is None:
            raise DataError(f"sample {self.image_id!r} has neither an image nor an image path")
        from .images import read_image

        return read_image(self.image_path)

    @property
    def height(self) -> int | None:
        """Image height when the image is held, else ``None``."""
        return None if self.image is None else int(self.image.shape[0])

    @property
    def width(self) -> int | None:
        """Image width when the image is held, else ``None``."""
        return None if self.image is None else int(self.image.shape[1])

    @property
    def masks(self) -> list[np.ndarray]:
        """All annotation masks (decodes them)."""
        return [a.mask for a in self.annotations]


class DataSkipWarning(UserWarning):
    """Emitted once per reason when a reader skips bad items."""


#: What each skip reason counts, for messages and reports.
SKIP_REASONS: dict[str, str] = {
    "missing_json": "image(s) without their .json annotation file",
    "missing_image": "annotation(s) or .json file(s) whose image is missing",
    "bad_json": "unreadable or malformed JSON file(s)",
    "bad_image": "undecodable image(s)",
    "empty_annotations": "image(s) with no usable annotation",
    "corrupt_rle": "annotation(s) with a corrupt or unusable segmentation",
    "size_mismatch": "item(s) whose mask size disagrees with the image size",
    "orphan_annotation": "annotation(s) whose image_id is not listed in 'images'",
    "crowd": "crowd annotation(s) (iscrowd=1) left out",
}
#: Reasons that are a choice, not a defect: counted, never warned about, never strict errors.
NOT_DEFECTS = frozenset({"crowd"})


class SkipReport:
    """Counts skipped items per reason; warns once per reason, or raises in strict mode.

    Example:
        >>> r = SkipReport(strict=False, source="data/")
        >>> import warnings
        >>> with warnings.catch_warnings(record=True):
        ...     r.skip("missing_json", "a.jpg", "no a.json next to it")
        ...     r.skip("missing_json", "b.jpg", "no b.json next to it")
        >>> r.counts
        {'missing_json': 2}
    """

    def __init__(self, *, strict: bool = False, source: str = ""):
        self.strict = strict
        self.source = source
        self.counts: dict[str, int] = {}
        self._warned: set[str] = set()

    def reset(self) -> None:
        """Clear the counts (a new pass over the data); reasons already warned stay silent."""
        self.counts = {}

    def skip(self, reason: str, item: object, detail: str) -> None:
        """Record that ``item`` was skipped for ``reason``; raise DataError in strict mode."""
        defect = reason not in NOT_DEFECTS
        if self.strict and defect:
            raise DataError(
                f"{item}: {detail}; fix or remove it, or run without strict mode to skip bad items"
            )
        self.counts[reason] = self.counts.get(reason, 0) + 1
        if defect and reason not in self._warned:
            self._warned.add(reason)
            where = f" in {self.source}" if self.source else ""
            warnings.warn(
                f"skipping {SKIP_REASONS.get(reason, reason)}{where} (first: {item}: {detail}); "
                "the final count is in the reader's .skipped; use strict mode to stop instead",
                DataSkipWarning,
                stacklevel=3,
            )

    @property
    def total(self) -> int:
        """Number of defects skipped (choices such as crowd exclusion not included)."""
        return sum(n for r, n in self.counts.items() if r not in NOT_DEFECTS)
