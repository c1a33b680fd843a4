"""Segment everything (apps/everything.py): the numpy pieces equal segment-anything's torch ones, and
the whole MaskGenerator on an ONNX bundle agrees with SamAutomaticMaskGenerator on the same weights."""

from __future__ import annotations

import numpy as np
import pytest

from slimsam_edge.apps import everything as ev
from slimsam_edge.apps.everything import MaskGenerator
from slimsam_edge.data import rle as rle_mod
from slimsam_edge.errors import ImageError, UsageError

torch = pytest.importorskip("torch")
amg = pytest.importorskip("segment_anything.utils.amg")


def _random_masks(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, h, w), bool)
    for m in masks[1:]:  # the first stays empty
        x0, y0 = rng.integers(0, w - 2), rng.integers(0, h - 2)
        m[y0:rng.integers(y0 + 1, h + 1), x0:rng.integers(x0 + 1, w + 1)] = True
        m ^= rng.random((h, w)) < 0.05
    return masks


# ---------------------------------------------------------------------------------- pieces
@pytest.mark.parametrize("size,layers,ratio", [((480, 640), 2, 512 / 1500), ((101, 37), 1, 0.3), ((64, 64), 0, 0.5)])
def test_crop_boxes_and_grids_equal_sams(size, layers, ratio) -> None:
    assert ev.crop_boxes(size, layers, ratio) == amg.generate_crop_boxes(size, layers, ratio)
    for ours, theirs in zip(ev.layer_point_grids(12, layers, 2), amg.build_all_layer_point_grids(12, layers, 2)):
        np.testing.assert_allclose(ours, theirs)


def test_boxes_stability_rle_equal_sams() -> None:
    masks = _random_masks(12, 23, 31)
    np.testing.assert_array_equal(ev.masks_to_boxes(masks), amg.batched_mask_to_box(torch.from_numpy(masks)).numpy())
    rles = rle_mod.masks_to_rle(masks)
    assert rles == amg.mask_to_rle_pytorch(torch.from_numpy(masks))
    for m, rle in zip(masks, rles):
        np.testing.assert_array_equal(rle_mod.rle_to_mask(rle), m)
        assert rle_mod.rle_area(rle) == m.sum()
    logits = np.random.default_rng(1).normal(0, 2, (9, 17, 13)).astype(np.float32)
    logits[0] = -5.0  # empty at both thresholds: NaN, kept by no threshold
    ours = ev.stability_score(logits, 0.0, 1.0)
    theirs = amg.calculate_stability_score(torch.from_numpy(logits), 0.0, 1.0).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)
    assert np.isnan(ours[0]) and not (ours[0] >= 0.0)


def test_coco_rle_string_equals_pycocotools() -> None:
    mask_utils = pytest.importorskip("pycocotools.mask")
    from slimsam_edge.data.rle import counts_from_string

    for m in _random_masks(8, 40, 29, seed=3):
        rle = rle_mod.masks_to_rle(m[None])[0]
        ref = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))["counts"].decode()
        assert rle_mod.counts_to_string(rle["counts"]) == ref == rle_mod.coco_rle(rle)["counts"]
        assert counts_from_string(ref).tolist() == rle["counts"]
    big = [70000, 3, 1, 120000, 5]  # multi-group values and negative deltas
    assert counts_from_string(rle_mod.counts_to_string(big)).tolist() == big


def test_coco_rle_without_pycocotools(monkeypatch) -> None:
    import sys

    rle = rle_mod.masks_to_rle(_random_masks(3, 21, 17, seed=5)[2][None])[0]
    with_lib = rle_mod.coco_rle(rle)
    monkeypatch.setitem(sys.modules, "pycocotools", None)
    assert rle_mod.coco_rle(rle) == with_lib


def test_box_nms_equals_torchvision() -> None:
    tv = pytest.importorskip("torchvision.ops")
    rng = np.random.default_rng(2)
    xy = rng.integers(0, 50, (60, 2))
    boxes = np.concatenate([xy, xy + rng.integers(1, 30, (60, 2))], axis=1).astype(np.float64)
    scores = rng.random(60)
    for thresh in (0.3, 0.7, 0.95):
        theirs = tv.nms(torch.from_numpy(boxes), torch.from_numpy(scores), thresh).numpy()  # float64 both
        assert ev.box_nms(boxes, scores, thresh).tolist() == theirs.tolist()


def test_near_crop_edge_and_small_regions_equal_sams() -> None:
    boxes = np.array([[0, 0, 40, 40], [60, 60, 95, 95], [10, 10, 30, 30], [85, 0, 100, 20]])
    crop, image = [100, 0, 200, 100], [0, 0, 200, 300]
    theirs = amg.is_box_near_crop_edge(torch.from_numpy(boxes), crop, image).numpy()
    assert ev.near_crop_edge(boxes, crop, image).tolist() == theirs.tolist()
    for m in _random_masks(6, 30, 30, seed=4)[1:]:
        for mode in ("holes", "islands"):
            for area in (2, 5, 1000):
                ours, changed = ev.remove_small_regions(m, area, mode)
                ref, ref_changed = amg.remove_small_regions(m, area, mode)
                assert changed == ref_changed
                np.testing.assert_array_equal(ours, ref)


# ---------------------------------------------------------------------------------- whole generator
def _match(ours: list[dict], theirs: list[dict], thresh: float = 0.9) -> list[tuple[int, int, float]]:
    """Greedy 1:1 matching of binary masks by IoU, best pairs first; pairs with IoU >= thresh.
    Only masks of the same prompt (grid point and crop) pair up: random weights give many
    near-identical masks from different points, and the comparison is of the same prediction."""
    if not ours or not theirs:
        return []
    a = np.stack([r["segmentation"].ravel() for r in ours]).astype(np.float64)
    b = np.stack([r["segmentation"].ravel() for r in theirs]).astype(np.float64)
    inter = a @ b.T
    iou = inter / np.maximum(a.sum(1)[:, None] + b.sum(1)[None] - inter, 1)
    key = [[(tuple(np.round(r["point_coords"][0], 3)), tuple(r["crop_box"])) for r in side] for side in (ours, theirs)]
    iou *= np.array([[ka == kb for kb in key[1]] for ka in key[0]])
    pairs, used_a, used_b = [], set(), set()
    for flat in np.argsort(-iou, axis=None, kind="stable"):
        i, j = divmod(int(flat), iou.shape[1])
        if iou[i, j] < thresh:
            break
        if i not in used_a and j not in used_b:
            used_a.add(i), used_b.add(j), pairs.append((i, j, float(iou[i, j])))
    return pairs


def _agree(predictor, sam, image, *, min_fraction: float, count_margin: int, **settings) -> list[dict]:
    from segment_anything import SamAutomaticMaskGenerator

    ours = MaskGenerator(predictor, output_mode="binary_mask", **settings).generate(image)
    theirs = SamAutomaticMaskGenerator(sam, output_mode="binary_mask", **settings).generate(image)
    assert len(theirs) > 0
    pairs = _match(ours, theirs)
    assert abs(len(ours) - len(theirs)) <= count_margin, (len(ours), len(theirs))
    assert len(pairs) >= min_fraction * max(len(ours), len(theirs)), (len(pairs), len(ours), len(theirs))
    for i, j, _ in pairs:  # matched masks (same prompt) have the same scores
        a, b = ours[i], theirs[j]
        assert a["predicted_iou"] == pytest.approx(b["predicted_iou"], abs=2e-3)
        assert a["stability_score"] == pytest.approx(b["stability_score"], abs=0.02)
    assert set(ours[0]) == set(theirs[0])
    return ours


class _Batched:
    """An EdgePredictor with a ``predict_batch`` (as issue 17 item 1 adds): counts its calls."""

    def __init__(self, predictor):
        self.inner, self.calls = predictor, []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def predict_batch(self, points=None, labels=None, boxes=None, mask_input=None, multimask_output=True,
                      return_logits=False):
        self.calls.append(len(points))
        outs = [self.inner.predict(point_coords=p, point_labels=lab, multimask_output=multimask_output,
                                   return_logits=return_logits) for p, lab in zip(points, labels)]
        return tuple(np.stack([o[k] for o in outs]) for k in range(3))


@pytest.fixture(scope="module")
def tiny_onnx(tiny_bundle):
    from slimsam_edge.predictor import EdgePredictor

    return EdgePredictor.from_bundle(tiny_bundle, backend="onnxruntime")


@pytest.mark.parametrize("extra", [{}, dict(crop_n_layers=1), dict(min_mask_region_area=30)])
def test_tiny_random_weights_agree_with_segment_anything(tiny_onnx, tiny_model, extra) -> None:
    """Random weights: masks are large and their scores low, so filters and NMS are opened (IoU and
    stability thresholds 0, NMS 1.0) and every decoder mask is compared: with exact-ish ONNX logits
    all of them must match (>= 0.97: ORT vs torch logits differ by ~1e-5, a pixel or a crop-edge
    decision may flip)."""
    from helpers import photo

    image = photo((72, 96), 1)
    ours = _agree(tiny_onnx, tiny_model, image, min_fraction=0.97, count_margin=2, points_per_side=4,
                  pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=1.0, crop_nms_thresh=1.0,
                  **extra)
    assert len(ours) >= 40 if "crop_n_layers" not in extra else len(ours) >= 48


def test_predict_batch_is_used_when_present(tiny_onnx) -> None:
    from helpers import photo

    image = photo((72, 96), 1)
    settings = dict(points_per_side=4, points_per_batch=5, pred_iou_thresh=0.0, stability_score_thresh=0.0,
                    box_nms_thresh=1.0, output_mode="uncompressed_rle")
    batched = _Batched(tiny_onnx)
    seen = []
    with_batch = MaskGenerator(batched, progress=lambda d, t: seen.append((d, t)), **settings).generate(image)
    assert batched.calls == [5, 5, 5, 1]  # 16 grid points in batches of 5
    assert seen == [(5, 16), (10, 16), (15, 16), (16, 16)]
    assert with_batch == MaskGenerator(tiny_onnx, **settings).generate(image)  # the per-prompt fallback


def test_sam_mini_agrees_with_segment_anything(mini_bundle) -> None:
    """The shipped sam-mini through ONNX Runtime vs segment-anything on the bundle's own weights.

    At least 80 % of the masks match 1:1 with IoU >= 0.9 and the counts differ by at most 2: the
    ONNX and torch logits differ slightly, so a mask whose predicted IoU or stability sits at a
    threshold, or two near-equal boxes in NMS, can go either way (each such flip costs one mask on
    each side); on a dozen masks that allows two flips. (Measured: 12 of 12 match.) The thresholds
    are lowered from SAM's 0.88 / 0.95 (4 masks on this image) to keep a dozen; crop layers and
    small-region cleanup are compared on the tiny model (cheaper)."""
    from helpers import photo

    from slimsam_edge.models.io import load_model
    from slimsam_edge.predictor import EdgePredictor

    sam, _ = load_model(mini_bundle / "model.safetensors")
    predictor = EdgePredictor.from_bundle(mini_bundle, backend="onnxruntime")
    ours = _agree(predictor, sam, photo((96, 128), 1), min_fraction=0.8, count_margin=2, points_per_side=8,
                  pred_iou_thresh=0.5, stability_score_thresh=0.8)
    assert len(ours) >= 8


def test_output_modes_and_records(tiny_onnx) -> None:
    from helpers import photo

    image = photo((40, 52), 2)
    settings = dict(points_per_side=3, pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=1.0)
    coco = MaskGenerator(tiny_onnx, **settings).generate(image)
    binary = MaskGenerator(tiny_onnx, output_mode="binary_mask", **settings).generate(image)
    assert len(coco) == len(binary) > 0
    mask_utils = pytest.importorskip("pycocotools.mask")
    for c, b in zip(coco, binary):
        assert isinstance(c["segmentation"]["counts"], str) and c["segmentation"]["size"] == [40, 52]
        seg = {"size": c["segmentation"]["size"], "counts": c["segmentation"]["counts"].encode()}
        np.testing.assert_array_equal(mask_utils.decode(seg).astype(bool), b["segmentation"])
        assert c["area"] == b["segmentation"].sum() == int(mask_utils.area(seg))
        x, y, w, h = c["bbox"]
        ys, xs = np.nonzero(b["segmentation"])
        assert [x, y, x + w, y + h] == [xs.min(), ys.min(), xs.max(), ys.max()]
        assert c["crop_box"] == [0.0, 0.0, 52.0, 40.0]


@pytest.mark.parametrize("kwargs,fragment", [
    (dict(pred_iou_thresh=1.5), "pred_iou_thresh must be in [0, 1]"),
    (dict(stability_score_thresh=-0.1), "stability_score_thresh must be in [0, 1]"),
    (dict(box_nms_thresh=float("nan")), "box_nms_thresh must be in [0, 1]"),
    (dict(points_per_side=0), "points_per_side must be a whole number >= 1"),
    (dict(points_per_side=10**12), "points_per_side must be at most 256"),  # the library, not only the CLI
    (dict(points_per_batch=2.5), "points_per_batch must be a whole number >= 1"),
    (dict(crop_n_layers=-1), "crop_n_layers must be a whole number >= 0"),
    (dict(min_mask_region_area=-1), "min_mask_region_area must be a number of pixels >= 0"),
    (dict(output_mode="png"), "output_mode must be one of coco_rle, binary_mask, uncompressed_rle"),
    (dict(points_per_side=4, crop_n_layers=3, crop_n_points_downscale_factor=2), "would have no points"),
])
def test_settings_out_of_range_are_one_line_usage_errors(kwargs, fragment) -> None:
    with pytest.raises(UsageError) as err:
        MaskGenerator(None, **kwargs)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_bad_image_is_refused(tiny_onnx) -> None:
    with pytest.raises(ImageError, match="expected an HxWx3 image array"):
        MaskGenerator(tiny_onnx).generate(np.zeros((10, 10), np.uint8))


def test_small_region_cleanup_fills_holes_and_drops_islands(tiny_onnx) -> None:
    import cv2
    from helpers import photo

    image = photo((72, 96), 1)
    settings = dict(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=1.0,
                    output_mode="binary_mask")
    raw = MaskGenerator(tiny_onnx, **settings).generate(image)
    clean = MaskGenerator(tiny_onnx, min_mask_region_area=30, **settings).generate(image)
    assert {r["segmentation"].tobytes() for r in clean} != {r["segmentation"].tobytes() for r in raw}
    for rec in clean:
        m = rec["segmentation"]
        for part in (m, ~m):  # islands of the mask, holes (regions of the rest)
            _, _, stats, _ = cv2.connectedComponentsWithStats(part.astype(np.uint8), connectivity=8)
            sizes = stats[1:, cv2.CC_STAT_AREA]
            assert part is not m or len(sizes) == 1 or sizes.min() >= 30
            assert part is m or sizes.size == 0 or sizes.min() >= 30
        x, y, w, h = rec["bbox"]
        ys, xs = np.nonzero(m)
        assert [x, y, x + w, y + h] == [xs.min(), ys.min(), xs.max(), ys.max()] and rec["area"] == m.sum()
