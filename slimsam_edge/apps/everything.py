"""Segment everything: segment-anything's automatic mask generator on an :class:`EdgePredictor`.

Torch-free (numpy + cv2; pycocotools when installed). The behaviour follows segment-anything's
``SamAutomaticMaskGenerator``: a grid of single foreground points per crop layer is sent to the
decoder in batches (three masks per point), masks whose predicted IoU or stability score is too
low are dropped, as are masks touching a crop's inner edge; duplicates are removed by greedy box
non-maximum suppression, first within each crop, then across crops (smaller crops preferred);
optionally small holes and islands are removed. Masks travel as run-length encodings (column-major
counts, as COCO) between stages, so memory holds at most one batch of full-size masks.

Example:
    >>> grid = point_grid(2)
    >>> grid.tolist()
    [[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]]
    >>> boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]], float)
    >>> box_nms(boxes, np.array([0.9, 0.95, 0.5]), 0.7).tolist()
    [1, 2]
"""

from __future__ import annotations

import math
from itertools import product
from typing import Any, Callable, Sequence

import numpy as np

from ..data.rle import coco_rle, masks_to_rle, rle_area, rle_to_mask
from ..errors import UsageError
from ..limits import MAX_POINTS_PER_SIDE

OUTPUT_MODES = ("coco_rle", "binary_mask", "uncompressed_rle")
#: masks whose box lies within this many pixels of a crop's inner edge are dropped (SAM's value)
EDGE_TOLERANCE = 20.0


# ---------------------------------------------------------------------------------- grids, crops
def point_grid(n_per_side: int) -> np.ndarray:
    """``n*n x 2`` points (x, y) in [0, 1], cell centres of an ``n x n`` grid, row by row.

    Example:
        >>> point_grid(1).tolist()
        [[0.5, 0.5]]
    """
    side = (np.arange(n_per_side) + 0.5) / n_per_side
    xs, ys = np.meshgrid(side, side)
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


def layer_point_grids(n_per_side: int, n_layers: int, downscale: int) -> list[np.ndarray]:
    """One normalised grid per crop layer; layer ``i`` has ``int(n / downscale**i)`` points a side.

    Example:
        >>> [len(g) for g in layer_point_grids(8, 2, 2)]
        [64, 16, 4]
    """
    return [point_grid(int(n_per_side / downscale**i)) for i in range(n_layers + 1)]


def crop_boxes(image_hw: tuple[int, int], n_layers: int, overlap_ratio: float) -> tuple[list[list[int]], list[int]]:
    """Crop boxes ``[x0, y0, x1, y1]`` and their layer: the whole image, then ``(2**i)**2`` overlapping
    crops in layer ``i`` (the overlap is ``overlap_ratio`` of the short side, halved per layer).

    Example:
        >>> boxes, layers = crop_boxes((100, 200), 1, 0.25)
        >>> boxes[0], len(boxes), layers
        ([0, 0, 200, 100], 5, [0, 1, 1, 1, 1])
        >>> boxes[1:3]
        [[0, 0, 113, 63], [0, 38, 113, 100]]
    """
    h, w = image_hw
    boxes, layers = [[0, 0, w, h]], [0]
    for i in range(n_layers):
        per_side = 2 ** (i + 1)
        overlap = int(overlap_ratio * min(h, w) * 2 / per_side)
        cw = math.ceil((overlap * (per_side - 1) + w) / per_side)
        ch = math.ceil((overlap * (per_side - 1) + h) / per_side)
        xs = [int((cw - overlap) * k) for k in range(per_side)]
        ys = [int((ch - overlap) * k) for k in range(per_side)]
        for x0, y0 in product(xs, ys):
            boxes.append([x0, y0, min(x0 + cw, w), min(y0 + ch, h)])
            layers.append(i + 1)
    return boxes, layers


# ---------------------------------------------------------------------------------- mask scores
def stability_score(logits: np.ndarray, threshold: float, offset: float) -> np.ndarray:
    """IoU of the masks thresholded at ``threshold + offset`` and ``threshold - offset`` (N x H x W
    logits -> N scores; the first mask lies inside the second, so it is a ratio of counts). An
    empty looser mask gives NaN, which no threshold keeps.

    Example:
        >>> logits = np.array([[[3.0, 0.5, -0.5, -3.0]]])
        >>> stability_score(logits, 0.0, 1.0).tolist()
        [0.3333333333333333]
    """
    inner = (logits > threshold + offset).sum(axis=(-2, -1))
    outer = (logits > threshold - offset).sum(axis=(-2, -1))
    with np.errstate(divide="ignore", invalid="ignore"):
        return inner / outer


def masks_to_boxes(masks: np.ndarray) -> np.ndarray:
    """``x0, y0, x1, y1`` around each of N x H x W masks; inclusive pixel indices as SAM's
    (a one-pixel mask at (x, y) gives ``[x, y, x, y]``); ``[0, 0, 0, 0]`` for an empty mask.

    Example:
        >>> m = np.zeros((2, 4, 5), bool); m[0, 1:3, 2:5] = True
        >>> masks_to_boxes(m).tolist()
        [[2, 1, 4, 2], [0, 0, 0, 0]]
    """
    n, h, w = masks.shape
    if n == 0:
        return np.zeros((0, 4), np.int64)
    rows, cols = masks.any(axis=2), masks.any(axis=1)
    nonempty = rows.any(axis=1)
    top, bottom = rows.argmax(axis=1), h - 1 - rows[:, ::-1].argmax(axis=1)
    left, right = cols.argmax(axis=1), w - 1 - cols[:, ::-1].argmax(axis=1)
    return np.stack([left, top, right, bottom], axis=1) * nonempty[:, None]


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one ``xyxy`` box with many (areas as ``(x1-x0)*(y1-y0)``, as torchvision; NaN when
    both are degenerate).

    Example:
        >>> box_iou(np.array([0, 0, 2, 2.]), np.array([[1, 1, 3, 3.], [0, 0, 2, 2.]])).round(3).tolist()
        [0.143, 1.0]
    """
    lt = np.maximum(box[:2], boxes[:, :2])
    rb = np.minimum(box[2:], boxes[:, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=1)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / (area + areas - inter)


def box_nms(boxes: np.ndarray, scores: np.ndarray, iou_thresh: float) -> np.ndarray:
    """Greedy non-maximum suppression: indices kept, best score first; a box is dropped when its
    IoU with a kept, better box exceeds ``iou_thresh``. Ties keep the earlier box.

    Example:
        >>> box_nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist()
        []
    """
    boxes = np.asarray(boxes, np.float64)
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    keep = []
    while order.size:
        i, order = order[0], order[1:]
        keep.append(i)
        if order.size:
            order = order[~(box_iou(boxes[i], boxes[order]) > iou_thresh)]
    return np.asarray(keep, np.int64)


def near_crop_edge(boxes: np.ndarray, crop_box: Sequence[int], image_box: Sequence[int],
                   atol: float = EDGE_TOLERANCE) -> np.ndarray:
    """Which boxes (crop frame) lie within ``atol`` of an edge of the crop that is not an edge of
    the image: such masks are cut by the crop and are left to a larger crop.

    Example:
        >>> near_crop_edge(np.array([[0, 0, 40, 40], [60, 60, 95, 95]]), [0, 0, 100, 100], [0, 0, 200, 200]).tolist()
        [False, True]
    """
    x0, y0 = crop_box[0], crop_box[1]
    b = boxes.astype(np.float64) + np.array([x0, y0, x0, y0], np.float64)
    at_crop = np.abs(b - np.asarray(crop_box, np.float64)) <= atol
    at_image = np.abs(b - np.asarray(image_box, np.float64)) <= atol
    return (at_crop & ~at_image).any(axis=1)


def remove_small_regions(mask: np.ndarray, min_area: float, mode: str) -> tuple[np.ndarray, bool]:
    """Fill holes (``mode="holes"``) or drop islands (``"islands"``) smaller than ``min_area``
    (8-connected); returns ``(mask, changed)``. When every island is small, the largest stays.

    Example:
        >>> m = np.ones((5, 5), bool); m[2, 2] = False
        >>> filled, changed = remove_small_regions(m, 2, "holes")
        >>> bool(filled.all()), changed
        (True, True)
    """
    import cv2

    holes = mode == "holes"
    work = (mask ^ holes).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(work, connectivity=8)
    sizes = stats[1:, cv2.CC_STAT_AREA]
    small = np.flatnonzero(sizes < min_area) + 1
    if small.size == 0:
        return mask, False
    if holes:  # label 0 is the mask itself; the small non-mask regions join it
        return np.isin(labels, np.concatenate(([0], small))), True
    big = np.setdiff1d(np.arange(1, n), small)
    if big.size == 0:
        big = np.array([int(np.argmax(sizes)) + 1])
    return np.isin(labels, big), True


# ---------------------------------------------------------------------------------- decoder calls
def _predict_batch(predictor: Any, points: np.ndarray, labels: np.ndarray, multimask_output: bool,
                   return_logits: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """B prompts of N points each -> (masks B x C x H x W, scores B x C, low-res B x C x L x L).

    One decoder call through ``predictor.predict_batch`` where the predictor has it (issue 17
    item 1); otherwise one :meth:`EdgePredictor.predict` call per prompt, stacked (the fallback:
    same results, B decoder calls).
    """
    batch = getattr(predictor, "predict_batch", None)
    if batch is not None:
        masks, scores, low_res = batch(points=points, labels=labels, multimask_output=multimask_output,
                                       return_logits=return_logits)
        return np.asarray(masks), np.asarray(scores), np.asarray(low_res)
    # fallback: one decoder call per prompt (predictors without predict_batch)
    outs = [predictor.predict(point_coords=p, point_labels=lab, multimask_output=multimask_output,
                              return_logits=return_logits) for p, lab in zip(points, labels)]
    return tuple(np.stack([o[k] for o in outs]) for k in range(3))  # type: ignore[return-value]


# ---------------------------------------------------------------------------------- generator
class _Masks:
    """Column store of the candidate masks of one stage (RLEs, not pixels)."""

    FIELDS = ("rles", "boxes", "iou", "points", "stability", "crop_boxes")

    def __init__(self, **cols: Any):
        self.cols = {k: cols.get(k, []) for k in self.FIELDS}

    def __len__(self) -> int:
        return len(self.cols["rles"])

    def take(self, idx: np.ndarray) -> "_Masks":
        return _Masks(**{k: [v[i] for i in idx] for k, v in self.cols.items()})

    def extend(self, other: "_Masks") -> None:
        for k in self.FIELDS:
            self.cols[k] = list(self.cols[k]) + list(other.cols[k])


def _check(name: str, value: float, lo: float, hi: float, *, open_lo: bool = False) -> None:
    ok = (lo < value if open_lo else lo <= value) and value <= hi
    if not ok or isinstance(value, bool):
        left = "(" if open_lo else "["
        raise UsageError(f"{name} must be in {left}{lo:g}, {hi:g}], got {value!r}")


class MaskGenerator:
    """Masks for everything in an image (segment-anything's ``SamAutomaticMaskGenerator``).

    Arguments (SAM's names and defaults):
        predictor: an :class:`~slimsam_edge.predictor.EdgePredictor` (or anything with its
            ``set_image`` / ``predict`` and optionally ``predict_batch``, ``mask_threshold``).
        points_per_side: grid points per side of the whole image (layer 0).
        points_per_batch: prompts per decoder call (memory: 3 full-size float masks each).
        pred_iou_thresh: keep masks whose predicted IoU exceeds this (0 disables), in [0, 1].
        stability_score_thresh: keep masks whose stability score reaches this (0 disables), in [0, 1].
        stability_score_offset: logit shift of the stability score's two thresholds (>= 0).
        box_nms_thresh: box IoU above which a lower-scored mask of the same crop is dropped.
        crop_n_layers: extra layers of crops (layer i: ``(2**i)**2`` crops, each encoded again).
        crop_nms_thresh: box IoU above which duplicates across crops are dropped.
        crop_overlap_ratio: overlap of first-layer crops, as a fraction of the short side.
        crop_n_points_downscale_factor: points per side shrink by this factor per layer.
        min_mask_region_area: fill holes and drop islands smaller than this (pixels; 0 = off).
        output_mode: "coco_rle" (compressed, JSON-ready), "binary_mask" (H x W bool) or
            "uncompressed_rle".
        progress: optional ``callback(done_points, total_points)`` after each decoder batch.

    Raises:
        UsageError: a setting out of range (one line naming it).

    Example:
        >>> MaskGenerator(None, pred_iou_thresh=1.5)
        Traceback (most recent call last):
        ...
        slimsam_edge.errors.UsageError: pred_iou_thresh must be in [0, 1], got 1.5
    """

    def __init__(
        self,
        predictor: Any,
        *,
        points_per_side: int = 32,
        points_per_batch: int = 64,
        pred_iou_thresh: float = 0.88,
        stability_score_thresh: float = 0.95,
        stability_score_offset: float = 1.0,
        box_nms_thresh: float = 0.7,
        crop_n_layers: int = 0,
        crop_nms_thresh: float = 0.7,
        crop_overlap_ratio: float = 512 / 1500,
        crop_n_points_downscale_factor: int = 1,
        min_mask_region_area: float = 0,
        output_mode: str = "coco_rle",
        progress: Callable[[int, int], None] | None = None,
    ):
        for name, value in (("points_per_side", points_per_side), ("points_per_batch", points_per_batch),
                            ("crop_n_points_downscale_factor", crop_n_points_downscale_factor)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise UsageError(f"{name} must be a whole number >= 1, got {value!r}")
        if points_per_side > MAX_POINTS_PER_SIDE:
            raise UsageError(f"points_per_side must be at most {MAX_POINTS_PER_SIDE} (a {MAX_POINTS_PER_SIDE}^2 grid "
                             f"per crop), got {points_per_side}; SAM uses 32")
        if not isinstance(crop_n_layers, (int, np.integer)) or crop_n_layers < 0:
            raise UsageError(f"crop_n_layers must be a whole number >= 0, got {crop_n_layers!r}")
        for name, value in (("pred_iou_thresh", pred_iou_thresh), ("stability_score_thresh", stability_score_thresh),
                            ("box_nms_thresh", box_nms_thresh), ("crop_nms_thresh", crop_nms_thresh)):
            _check(name, value, 0.0, 1.0)
        _check("crop_overlap_ratio", crop_overlap_ratio, 0.0, 1.0)
        if not (stability_score_offset >= 0 and math.isfinite(stability_score_offset)):
            raise UsageError(f"stability_score_offset must be a finite number >= 0, got {stability_score_offset!r}")
        if not (min_mask_region_area >= 0 and math.isfinite(min_mask_region_area)):
            raise UsageError(f"min_mask_region_area must be a number of pixels >= 0, got {min_mask_region_area!r}")
        if output_mode not in OUTPUT_MODES:
            raise UsageError(f"output_mode must be one of {', '.join(OUTPUT_MODES)}, got {output_mode!r}")
        last = int(points_per_side / crop_n_points_downscale_factor**crop_n_layers)
        if last < 1:
            raise UsageError(f"crop layer {crop_n_layers} would have no points ({points_per_side} per side / "
                             f"{crop_n_points_downscale_factor}**{crop_n_layers}); use fewer crop layers")
        self.predictor = predictor
        self.grids = layer_point_grids(int(points_per_side), int(crop_n_layers), int(crop_n_points_downscale_factor))
        self.points_per_batch = int(points_per_batch)
        self.pred_iou_thresh = float(pred_iou_thresh)
        self.stability_score_thresh = float(stability_score_thresh)
        self.stability_score_offset = float(stability_score_offset)
        self.box_nms_thresh = float(box_nms_thresh)
        self.crop_n_layers = int(crop_n_layers)
        self.crop_nms_thresh = float(crop_nms_thresh)
        self.crop_overlap_ratio = float(crop_overlap_ratio)
        self.min_mask_region_area = float(min_mask_region_area)
        self.output_mode = output_mode
        self.progress = progress

    # ------------------------------------------------------------------ public
    def generate(self, image: np.ndarray) -> list[dict[str, Any]]:
        """Masks of everything in ``image`` (H x W x 3 uint8 RGB), as SAM's records: segmentation,
        area, bbox (XYWH), predicted_iou, point_coords, stability_score, crop_box (XYWH).

        Raises:
            ImageError: ``image`` is not an H x W x 3 uint8 array.
        """
        from ..errors import ImageError

        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.size == 0:
            raise ImageError(f"expected an HxWx3 image array, got shape {getattr(image, 'shape', None)}")
        data = self._generate(image)
        if self.min_mask_region_area > 0 and len(data):
            data = self._clean_small_regions(data)
        records = []
        for k in range(len(data)):
            rle = data.cols["rles"][k]
            if self.output_mode == "coco_rle":
                seg: Any = coco_rle(rle)
            elif self.output_mode == "binary_mask":
                seg = rle_to_mask(rle)
            else:
                seg = rle
            x0, y0, x1, y1 = (float(v) for v in data.cols["boxes"][k])
            cx0, cy0, cx1, cy1 = data.cols["crop_boxes"][k]
            records.append({
                "segmentation": seg,
                "area": rle_area(rle),
                "bbox": [x0, y0, x1 - x0, y1 - y0],
                "predicted_iou": float(data.cols["iou"][k]),
                "point_coords": [[float(v) for v in data.cols["points"][k]]],
                "stability_score": float(data.cols["stability"][k]),
                "crop_box": [float(cx0), float(cy0), float(cx1 - cx0), float(cy1 - cy0)],
            })
        return records

    # ------------------------------------------------------------------ stages
    def _generate(self, image: np.ndarray) -> _Masks:
        h, w = image.shape[:2]
        boxes, layers = crop_boxes((h, w), self.crop_n_layers, self.crop_overlap_ratio)
        total = sum(len(self.grids[layer]) for layer in layers)
        done = [0, total]
        data = _Masks()
        for box, layer in zip(boxes, layers):
            data.extend(self._process_crop(image, box, layer, done))
        if len(boxes) > 1 and len(data):  # duplicates across crops: prefer the smaller crop
            crops = np.asarray(data.cols["crop_boxes"], np.float64)
            scores = 1.0 / ((crops[:, 2] - crops[:, 0]) * (crops[:, 3] - crops[:, 1]))
            data = data.take(box_nms(np.asarray(data.cols["boxes"]), scores, self.crop_nms_thresh))
        return data

    def _process_crop(self, image: np.ndarray, crop: list[int], layer: int, done: list[int]) -> _Masks:
        x0, y0, x1, y1 = crop
        self.predictor.set_image(np.ascontiguousarray(image[y0:y1, x0:x1]))
        points = self.grids[layer] * np.array([[x1 - x0, y1 - y0]], np.float64)
        data = _Masks()
        for start in range(0, len(points), self.points_per_batch):
            batch = points[start:start + self.points_per_batch]
            data.extend(self._process_batch(batch, crop, image.shape[:2]))
            done[0] += len(batch)
            if self.progress is not None:
                self.progress(done[0], done[1])
        self.predictor.reset_image()
        if not len(data):
            return data
        data = data.take(box_nms(np.asarray(data.cols["boxes"]), np.asarray(data.cols["iou"]), self.box_nms_thresh))
        shift = np.array([x0, y0, x0, y0])
        data.cols["boxes"] = [np.asarray(b) + shift for b in data.cols["boxes"]]
        data.cols["points"] = [np.asarray(p) + shift[:2] for p in data.cols["points"]]
        data.cols["crop_boxes"] = [list(crop)] * len(data)
        return data

    def _process_batch(self, points: np.ndarray, crop: list[int], image_hw: tuple[int, int]) -> _Masks:
        logits, iou, _ = _predict_batch(self.predictor, points[:, None, :], np.ones((len(points), 1)),
                                        multimask_output=True, return_logits=True)
        per_point = logits.shape[1]
        logits = logits.reshape(-1, *logits.shape[2:])
        iou = np.asarray(iou, np.float64).reshape(-1)
        pts = np.repeat(points, per_point, axis=0)
        keep = np.flatnonzero(iou > self.pred_iou_thresh) if self.pred_iou_thresh > 0 else np.arange(iou.size)
        logits, iou, pts = logits[keep], iou[keep], pts[keep]
        threshold = float(getattr(self.predictor, "mask_threshold", 0.0))
        stability = stability_score(logits, threshold, self.stability_score_offset)
        if self.stability_score_thresh > 0:
            keep = np.flatnonzero(stability >= self.stability_score_thresh)
            logits, iou, pts, stability = logits[keep], iou[keep], pts[keep], stability[keep]
        masks = logits > threshold
        del logits
        boxes = masks_to_boxes(masks)
        oh, ow = image_hw
        keep = np.flatnonzero(~near_crop_edge(boxes, crop, [0, 0, ow, oh]))
        masks, boxes, iou, pts, stability = masks[keep], boxes[keep], iou[keep], pts[keep], stability[keep]
        return _Masks(rles=masks_to_rle(_uncrop(masks, crop, oh, ow)), boxes=list(boxes), iou=list(iou),
                      points=list(pts), stability=list(stability), crop_boxes=[list(crop)] * len(keep))

    def _clean_small_regions(self, data: _Masks) -> _Masks:
        """Fill small holes, drop small islands; NMS again preferring untouched masks."""
        cleaned, scores = [], []
        for rle in data.cols["rles"]:
            mask = rle_to_mask(rle)
            mask, filled = remove_small_regions(mask, self.min_mask_region_area, "holes")
            mask, dropped = remove_small_regions(mask, self.min_mask_region_area, "islands")
            cleaned.append(mask)
            scores.append(0.0 if (filled or dropped) else 1.0)
        boxes = masks_to_boxes(np.stack(cleaned))
        keep = box_nms(boxes, np.asarray(scores), max(self.box_nms_thresh, self.crop_nms_thresh))
        for i in keep:
            if scores[i] == 0.0:
                data.cols["rles"][i] = masks_to_rle(cleaned[i][None])[0]
                data.cols["boxes"][i] = boxes[i]
        return data.take(keep)


def _uncrop(masks: np.ndarray, crop: list[int], h: int, w: int) -> np.ndarray:
    """Place crop-frame masks into the full image (zeros outside the crop)."""
    x0, y0, x1, y1 = crop
    if (x0, y0, x1, y1) == (0, 0, w, h):
        return masks
    full = np.zeros((masks.shape[0], h, w), bool)
    full[:, y0:y1, x0:x1] = masks
    return full
