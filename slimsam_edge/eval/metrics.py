"""Mask metrics without torch: IoU and SlimSAM-style mIoU with size buckets.

mIoU follows SlimSAM's evaluation: the IoU of each annotation is averaged within its image, then
the per-image means are averaged over images. Size buckets use COCO's thresholds on the mask area
in pixels of the original image (small < 32², medium < 96², large otherwise); a bucket's mIoU is
the mean over the annotations that fall in it.

Example:
    >>> import numpy as np
    >>> gt = np.zeros((8, 8), bool); gt[:4] = True
    >>> acc = MiouAccumulator()
    >>> _ = acc.add_image([gt], [gt])
    >>> _ = acc.add_image([np.zeros_like(gt), gt], [gt, gt])
    >>> acc.summary()["miou"]
    0.75
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import DataError

SMALL_AREA = 32**2
MEDIUM_AREA = 96**2
BUCKETS = ("small", "medium", "large")


def _as_bool(mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask)
    return mask if mask.dtype == bool else mask > 0


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two same-shape masks; 1.0 when both are empty.

    Non-boolean arrays count values > 0 as inside (SAM's logits threshold is 0).

    Example:
        >>> import numpy as np
        >>> a = np.array([[1, 1, 0, 0]], bool); b = np.array([[0, 1, 1, 0]], bool)
        >>> round(mask_iou(a, b), 4), mask_iou(np.zeros((2, 2)), np.zeros((2, 2)))
        (0.3333, 1.0)
    """
    a, b = _as_bool(a), _as_bool(b)
    if a.shape != b.shape:
        raise DataError(
            f"mask shapes differ: {a.shape} vs {b.shape}; resize the prediction to the image size"
        )
    union = int(np.count_nonzero(a | b))
    if union == 0:
        return 1.0
    return int(np.count_nonzero(a & b)) / union


def batch_iou(preds: Sequence[np.ndarray] | np.ndarray, gts: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """IoU of each prediction with its ground truth: ``(N, H, W)`` x ``(N, H, W)`` -> ``(N,)`` float64.

    Example:
        >>> import numpy as np
        >>> p = np.zeros((2, 2, 2), bool); p[0, 0] = True
        >>> g = np.zeros((2, 2, 2), bool); g[0] = True
        >>> batch_iou(p, g).tolist()
        [0.5, 1.0]
    """
    p = _as_bool(np.asarray(preds))
    g = _as_bool(np.asarray(gts))
    if p.shape != g.shape or p.ndim != 3:
        raise DataError(
            f"prediction stack {p.shape} and ground-truth stack {g.shape} must both be (N, H, W)"
        )
    p2, g2 = p.reshape(len(p), -1), g.reshape(len(g), -1)
    inter = np.count_nonzero(p2 & g2, axis=1).astype(np.float64)
    union = np.count_nonzero(p2 | g2, axis=1).astype(np.float64)
    return np.divide(inter, union, out=np.ones_like(inter), where=union > 0)


def size_bucket(area: float, small: float = SMALL_AREA, medium: float = MEDIUM_AREA) -> str:
    """COCO size bucket of a mask area in original-image pixels.

    Example:
        >>> size_bucket(100), size_bucket(32 ** 2), size_bucket(96 ** 2)
        ('small', 'medium', 'large')
    """
    return "small" if area < small else "medium" if area < medium else "large"


class MiouAccumulator:
    """Accumulate IoUs image by image; :meth:`summary` gives mIoU, counts and size buckets.

    Arguments:
        small, medium: bucket thresholds in original-image pixels (COCO: 32², 96²).

    Example:
        >>> acc = MiouAccumulator()
        >>> acc.add_ious([1.0, 0.5], areas=[100, 20000])
        >>> s = acc.summary(); s["miou"], s["buckets"]["small"], s["n_annotations"]
        (0.75, {'miou': 1.0, 'n': 1}, 2)
    """

    def __init__(self, small: float = SMALL_AREA, medium: float = MEDIUM_AREA):
        self.small, self.medium = float(small), float(medium)
        self.image_mious: list[float] = []
        self.n_annotations = 0
        self._bucket_sum = {b: 0.0 for b in BUCKETS}
        self._bucket_n = {b: 0 for b in BUCKETS}

    def add_ious(self, ious: Sequence[float] | np.ndarray, areas: Sequence[float] | None = None) -> None:
        """Add one image given its annotations' IoUs and (optionally) their original areas.

        An image without annotations is ignored. Without ``areas`` no bucket is updated.
        """
        values = np.asarray(ious, dtype=np.float64).reshape(-1)
        if values.size == 0:
            return
        if areas is not None and len(areas) != values.size:
            raise DataError(f"{values.size} IoUs but {len(areas)} areas; pass one area per mask")
        self.image_mious.append(float(values.mean()))
        self.n_annotations += int(values.size)
        for i, iou in enumerate(values.tolist()):
            if areas is not None:
                bucket = size_bucket(float(areas[i]), self.small, self.medium)
                self._bucket_sum[bucket] += iou
                self._bucket_n[bucket] += 1

    def add_image(
        self,
        preds: Sequence[np.ndarray],
        gts: Sequence[np.ndarray],
        areas: Sequence[float] | None = None,
    ) -> np.ndarray:
        """Add one image's predicted and ground-truth masks (same order); return their IoUs.

        ``areas`` are the ground-truth areas in original-image pixels, for when masks are
        compared at another resolution; by default each ground truth's pixel count is used.
        """
        if len(preds) != len(gts):
            raise DataError(f"{len(preds)} predictions for {len(gts)} ground-truth masks")
        ious = np.array([mask_iou(p, g) for p, g in zip(preds, gts)], dtype=np.float64)
        if areas is None:
            areas = [int(np.count_nonzero(_as_bool(g))) for g in gts]
        self.add_ious(ious, areas)
        return ious

    @property
    def n_images(self) -> int:
        """Images added with at least one annotation."""
        return len(self.image_mious)

    def summary(self) -> dict:
        """JSON-ready results: ``miou``, ``n_images``, ``n_annotations``, ``buckets`` (None if no data).

        Example:
            >>> MiouAccumulator().summary()["miou"] is None
            True
        """
        buckets = {
            b: {
                "miou": (self._bucket_sum[b] / self._bucket_n[b]) if self._bucket_n[b] else None,
                "n": self._bucket_n[b],
            }
            for b in BUCKETS
        }
        return {
            "miou": float(np.mean(self.image_mious)) if self.image_mious else None,
            "n_images": self.n_images,
            "n_annotations": self.n_annotations,
            "buckets": buckets,
        }
