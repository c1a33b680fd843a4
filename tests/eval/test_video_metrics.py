"""J and F (DAVIS definitions) on hand-computed cases, a brute-force cross-check, VideoScores."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from slimsam_edge.eval.video_metrics import (
    VideoScores,
    boundary_f,
    boundary_map,
    region_j,
    tolerance_px,
)
from slimsam_edge.errors import UsageError


def square(hw=(240, 320), top=80, left=100, side=60) -> np.ndarray:
    m = np.zeros(hw, bool)
    m[top:top + side, left:left + side] = True
    return m


def test_identical_masks_score_one():
    m = square()
    assert region_j(m, m) == 1.0 and boundary_f(m, m) == 1.0
    assert region_j(m.astype(np.uint8) * 255, m) == 1.0  # values > 0 are inside


def test_shifted_square_has_the_known_iou():
    gt = square(side=60)
    assert region_j(np.roll(gt, 6, axis=1), gt) == pytest.approx(54 * 60 / (66 * 60))
    assert region_j(np.roll(np.roll(gt, 10, axis=0), 10, axis=1), gt) == pytest.approx(50 * 50 / (2 * 3600 - 2500))
    assert region_j(np.roll(gt, 100, axis=1), gt) == 0.0


def test_boundary_tolerance_is_davis_default_and_a_small_shift_is_forgiven():
    assert tolerance_px((240, 320)) == 4  # ceil(0.008 * 400)
    gt = square()
    assert boundary_f(np.roll(gt, 1, axis=1), gt) == 1.0
    assert boundary_f(np.roll(gt, 4, axis=0), gt) == 1.0
    far = boundary_f(np.roll(gt, 20, axis=0), gt)
    assert 0 < far < 1  # the vertical sides still overlap in part
    assert boundary_f(np.roll(gt, 150, axis=1), gt) == 0.0


def test_boundary_of_a_half_plane_by_hand():
    # rows [0, r) inside: the boundary is row r - 1 only (DAVIS compares right/down/diagonal)
    gt = np.zeros((40, 40), bool)
    gt[:10] = True
    assert np.array_equal(np.argwhere(boundary_map(gt))[:, 0], np.full(40, 9))
    for d, want in ((1, 1.0), (2, 1.0), (3, 0.0)):  # a 2-pixel tolerance
        pred = np.zeros_like(gt)
        pred[:10 + d] = True
        assert boundary_f(pred, gt, bound_th=2) == want
    # a 10-row step in the right half: 40 + 10 boundary pixels, of which 20 + 2 lie within 2 px of
    # the truth (the left half and the step's first two rows); 20 + 2 of the truth's 40 are matched
    pred = gt.copy()
    pred[:20, 20:] = True
    p, r = 22 / 50, 22 / 40
    assert boundary_f(pred, gt, bound_th=2) == pytest.approx(2 * p * r / (p + r))


def test_empty_conventions():
    empty, m = np.zeros((50, 60), bool), square((50, 60), 10, 10, 20)
    assert region_j(empty, empty) == 1.0 and boundary_f(empty, empty) == 1.0
    assert region_j(empty, m) == 0.0 and boundary_f(empty, m) == 0.0
    assert region_j(m, empty) == 0.0 and boundary_f(m, empty) == 0.0


def _brute_force_f(pred, gt, tol):
    """F with exact Euclidean distances to the other boundary (independent of the dilation)."""
    pb, gb = boundary_map(pred), boundary_map(gt)

    def near(b):  # distance of every pixel to the nearest pixel of boundary b
        return cv2.distanceTransform((~b).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)

    p = np.mean(near(gb)[pb] <= tol + 1e-6)
    r = np.mean(near(pb)[gb] <= tol + 1e-6)
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


@pytest.mark.parametrize("seed", range(4))
def test_boundary_f_matches_a_brute_force_definition(seed):
    from slimsam_edge.data.procedural import generate_sample

    _, masks = generate_sample(seed, (96, 128))
    gt = masks[0]
    rng = np.random.default_rng(seed)
    pred = np.roll(gt, tuple(rng.integers(-6, 7, 2)), axis=(0, 1))
    pred = cv2.dilate(pred.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    assert boundary_f(pred, gt, bound_th=3) == pytest.approx(_brute_force_f(pred, gt, 3))


def test_shape_mismatch_and_bad_threshold_are_usage_errors():
    with pytest.raises(UsageError, match="one shape"):
        region_j(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(UsageError, match="one shape"):
        boundary_f(np.zeros((4, 4, 1)), np.zeros((4, 4)))
    with pytest.raises(UsageError, match="bound_th"):
        boundary_f(np.zeros((4, 4)), np.zeros((4, 4)), bound_th=0)


def test_video_scores_average_frames_per_object_then_objects():
    gt = square((60, 80), 10, 10, 20)
    half = gt.copy()
    half[:, 20:] = False  # left half of the square
    scores = VideoScores()
    assert scores.summary() == {"objects": {}, "J": None, "F": None, "JF": None}
    assert scores.add(0, 1, gt, gt) == (1.0, 1.0)
    j, f = scores.add(1, 1, half, gt)
    assert j == pytest.approx(0.5) and 0 < f < 1
    scores.add(0, 2, np.zeros_like(gt), gt)
    scores.add(1, 2, np.zeros_like(gt), np.zeros_like(gt))  # absent in both: DAVIS counts 1.0
    s = scores.summary()
    assert s["objects"][1] == {"J": pytest.approx(0.75), "F": pytest.approx((1 + f) / 2),
                               "JF": pytest.approx((0.75 + (1 + f) / 2) / 2), "frames": 2}
    assert s["objects"][2]["J"] == 0.5 and s["objects"][2]["F"] == 0.5
    assert s["J"] == pytest.approx((0.75 + 0.5) / 2)
    assert s["JF"] == pytest.approx((s["J"] + s["F"]) / 2)
    assert len(scores) == 4
    with pytest.raises(UsageError, match="already scored"):
        scores.add(1, 2, gt, gt)
