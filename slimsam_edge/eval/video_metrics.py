"""DAVIS-style video segmentation scores: region similarity J and boundary accuracy F.

- **J** (``region_j``): the IoU of the predicted and ground-truth masks; 1.0 when both are empty.
- **F** (``boundary_f``): the F-measure of the two masks' boundaries, a boundary pixel counting as
  matched when the other boundary passes within ``ceil(bound_th * image diagonal)`` pixels
  (``bound_th`` >= 1 is a pixel count). Boundaries are DAVIS's: a pixel whose right, lower or
  lower-right neighbour differs. Conventions as DAVIS: no boundary on either side -> 1.0; only one
  side empty -> precision or recall 0, so F = 0. (As in DAVIS, a mask covering the whole frame has
  no boundary.)
- ``VideoScores`` collects J and F per object and frame; an object's score is its mean over the
  frames added, the overall score the mean over objects (every object weighs the same, as in
  DAVIS). Which frames to add is the caller's choice (DAVIS leaves out the prompted first frame).

The masks are ``HxW`` arrays; values > 0 are inside. Boundaries are dilated with OpenCV using the
disk of points within the tolerance radius.

Example:
    >>> gt = np.zeros((40, 40), bool); gt[10:30, 10:30] = True
    >>> pred = np.roll(gt, 1, axis=1)  # one pixel to the right
    >>> round(region_j(pred, gt), 3), boundary_f(pred, gt)
    (0.905, 1.0)
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from ..errors import UsageError
from .metrics import mask_iou

#: DAVIS's boundary tolerance: a fraction of the image diagonal
BOUND_TH = 0.008


def region_j(pred: np.ndarray, gt: np.ndarray) -> float:
    """Region similarity J: IoU of ``pred`` and ``gt`` (1.0 when both are empty).

    Example:
        >>> a = np.zeros((4, 4), bool); a[:2] = True
        >>> region_j(a, a), region_j(a, ~a), region_j(np.zeros((4, 4)), np.zeros((4, 4)))
        (1.0, 0.0, 1.0)
    """
    return mask_iou(_mask(pred, np.shape(gt)), _mask(gt, np.shape(pred)))


def _mask(mask: np.ndarray, other_shape: tuple) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2 or mask.shape != tuple(other_shape):
        raise UsageError(f"masks must be two HxW arrays of one shape, got {'x'.join(map(str, mask.shape))} "
                         f"and {'x'.join(map(str, other_shape))}")
    return mask > 0


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """DAVIS's boundary of a mask: pixels whose right, lower or lower-right neighbour differs.

    Example:
        >>> m = np.zeros((4, 5), bool); m[1:3, 1:4] = True
        >>> boundary_map(m).astype(int)
        array([[1, 1, 1, 1, 0],
               [1, 0, 0, 1, 0],
               [1, 1, 1, 1, 0],
               [0, 0, 0, 0, 0]])
    """
    seg = np.asarray(mask) > 0
    right, down, diag = (np.zeros_like(seg) for _ in range(3))
    right[:, :-1], down[:-1, :], diag[:-1, :-1] = seg[:, 1:], seg[1:, :], seg[1:, 1:]
    edge = (seg ^ right) | (seg ^ down) | (seg ^ diag)
    edge[-1, :] = seg[-1, :] ^ right[-1, :]  # the last row and column compare along the border only
    edge[:, -1] = seg[:, -1] ^ down[:, -1]
    edge[-1, -1] = False
    return edge


def tolerance_px(shape: tuple, bound_th: float = BOUND_TH) -> int:
    """The boundary tolerance in pixels for an image of ``shape``: ``ceil(bound_th * diagonal)``,
    or ``bound_th`` itself when it is >= 1.

    Example:
        >>> tolerance_px((240, 320)), tolerance_px((480, 854)), tolerance_px((10, 10), 2)
        (4, 8, 2)
    """
    if bound_th >= 1:
        return int(round(bound_th))
    return int(math.ceil(bound_th * math.hypot(shape[0], shape[1])))


def _disk(radius: int) -> np.ndarray:
    r = np.arange(-radius, radius + 1)
    return ((r[:, None] ** 2 + r[None, :] ** 2) <= radius**2).astype(np.uint8)


def boundary_f(pred: np.ndarray, gt: np.ndarray, bound_th: float = BOUND_TH) -> float:
    """Boundary accuracy F (DAVIS): F-measure of boundary precision and recall within a tolerance.

    ``bound_th`` < 1 is a fraction of the image diagonal (DAVIS's 0.008: 4 px at 240x320), >= 1 a
    number of pixels. No boundary in either mask -> 1.0; in only one -> 0.0.

    Example:
        >>> gt = np.zeros((60, 60), bool); gt[20:40, 20:40] = True  # tolerance 1 px
        >>> boundary_f(np.roll(gt, 1, axis=0), gt), round(boundary_f(np.roll(gt, 10, axis=0), gt), 3)
        (1.0, 0.325)
    """
    if bound_th <= 0:
        raise UsageError(f"bound_th must be > 0, got {bound_th}")
    pred_b = boundary_map(_mask(pred, np.shape(gt)))
    gt_b = boundary_map(_mask(gt, np.shape(pred)))
    n_pred, n_gt = int(np.count_nonzero(pred_b)), int(np.count_nonzero(gt_b))
    if n_pred == 0 or n_gt == 0:
        return 1.0 if n_pred == n_gt else 0.0
    disk = _disk(tolerance_px(gt_b.shape, bound_th))
    pred_near = cv2.dilate(pred_b.view(np.uint8), disk).view(bool)
    gt_near = cv2.dilate(gt_b.view(np.uint8), disk).view(bool)
    precision = np.count_nonzero(pred_b & gt_near) / n_pred
    recall = np.count_nonzero(gt_b & pred_near) / n_gt
    if precision + recall == 0:
        return 0.0
    return float(2 * precision * recall / (precision + recall))


class VideoScores:
    """J and F per object and frame; ``summary()`` gives per-object and overall means.

    Example:
        >>> gt = np.zeros((20, 20), bool); gt[5:15, 5:15] = True
        >>> scores = VideoScores()
        >>> scores.add(0, 1, gt, gt)
        (1.0, 1.0)
        >>> _ = scores.add(1, 1, np.zeros_like(gt), gt)
        >>> _ = scores.add(0, 2, gt, gt)
        >>> s = scores.summary()
        >>> s["objects"][1], s["J"], s["JF"]
        ({'J': 0.5, 'F': 0.5, 'JF': 0.5, 'frames': 2}, 0.75, 0.75)
    """

    def __init__(self, bound_th: float = BOUND_TH):
        if bound_th <= 0:
            raise UsageError(f"bound_th must be > 0, got {bound_th}")
        self.bound_th = bound_th
        self._scores: dict[int, dict[int, tuple[float, float]]] = {}

    def add(self, frame: int, obj_id: int, pred: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
        """Score object ``obj_id`` on ``frame``; returns ``(J, F)``. A frame scored twice for one
        object is a UsageError."""
        per_object = self._scores.setdefault(int(obj_id), {})
        if int(frame) in per_object:
            raise UsageError(f"frame {frame} of object {obj_id} is already scored; add each frame once")
        j, f = region_j(pred, gt), boundary_f(pred, gt, self.bound_th)
        per_object[int(frame)] = (j, f)
        return j, f

    def __len__(self) -> int:
        return sum(len(v) for v in self._scores.values())

    def summary(self) -> dict:
        """``{"objects": {id: {"J", "F", "JF", "frames"}}, "J", "F", "JF"}``; overall scores are
        means over objects of the per-object means (None when nothing was added)."""
        objects = {}
        for obj_id in sorted(self._scores):
            values = np.array(list(self._scores[obj_id].values()), np.float64)
            j, f = (float(v) for v in values.mean(0))
            objects[obj_id] = {"J": j, "F": f, "JF": (j + f) / 2, "frames": len(values)}
        if not objects:
            return {"objects": {}, "J": None, "F": None, "JF": None}
        j = float(np.mean([o["J"] for o in objects.values()]))
        f = float(np.mean([o["F"] for o in objects.values()]))
        return {"objects": objects, "J": j, "F": f, "JF": (j + f) / 2}
