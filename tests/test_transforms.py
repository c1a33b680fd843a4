"""The predictor's postprocessing (transforms.upscale_masks) against the plain path
(transforms.postprocess_masks, what the predictor ran before) and segment-anything's torch
postprocessing."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from slimsam_edge.transforms import ResizeLongestSide, lowres_crop, postprocess_masks, upscale_masks


def _logits(c: int, side: int, seed: int) -> np.ndarray:
    """Smooth random logits with many sign changes (boundaries everywhere), as a decoder's are."""
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((c, side // 8 + 1, side // 8 + 1)).astype(np.float32)
    return np.stack([cv2.resize(n, (side, side), interpolation=cv2.INTER_CUBIC) * 8 for n in noise])


def _same(logits: np.ndarray, want: np.ndarray) -> None:
    """The same logits up to float rounding (cv2's SIMD paths differ with the channel count)."""
    np.testing.assert_allclose(logits, want, rtol=1e-5, atol=1e-5)


def _same_masks(masks: np.ndarray, want: np.ndarray, threshold: float = 0.0) -> None:
    """The same binary masks except where the plain path's logit is within rounding of the threshold."""
    differ = masks != (want > threshold)
    assert not (differ & (np.abs(want - threshold) > 1e-5)).any()


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    u = np.logical_or(a, b).sum()
    return 1.0 if u == 0 else float(np.logical_and(a, b).sum() / u)


CASES = [  # (image size S, original (h, w))
    (1024, (1500, 2250)), (1024, (2250, 1500)), (1024, (1024, 1024)), (1024, (480, 640)),
    (256, (1500, 2250)), (256, (97, 255)), (256, (256, 256)), (256, (3, 1000)), (64, (30, 60)),
]


@pytest.mark.parametrize("size,hw", CASES)
@pytest.mark.parametrize("c", [1, 3])
def test_upscale_is_the_plain_path(size, hw, c):
    low = _logits(c, size // 4, seed=size + hw[0] + c)
    input_size = ResizeLongestSide(size).target_size(*hw)
    want = postprocess_masks(low, input_size, hw, size)
    logits = upscale_masks(low, input_size, hw, size, np.empty((c, *hw), np.float32))
    _same(logits, want)
    masks = upscale_masks(low, input_size, hw, size, np.empty((c, *hw), bool), threshold=0.0)
    _same_masks(masks, want)
    scratch = np.empty(hw, np.float32)  # reused across calls, as the predictor does
    for threshold in (-1.5, 2.0):
        masks = upscale_masks(low, input_size, hw, size, masks, threshold=threshold, scratch=scratch)
        _same_masks(masks, want, threshold)
    assert 0.1 < masks.mean() < 0.9  # boundaries everywhere: the comparison means something


def test_the_crop_covers_what_the_upsample_reads():
    # a low-res mask whose rows/cols past the crop are garbage gives the same result
    size, hw = 1024, (1500, 2250)
    input_size = ResizeLongestSide(size).target_size(*hw)
    rows, cols, f = lowres_crop(size // 4, input_size, size)
    assert (rows, cols, f) == (172, 256, 4)
    low = _logits(1, size // 4, seed=1)
    poisoned = low.copy()
    poisoned[:, rows:] = 1e6
    want = postprocess_masks(low, input_size, hw, size)
    _same(upscale_masks(poisoned, input_size, hw, size, np.empty((1, *hw), np.float32)), want)
    # the last row kept is read: the crop is as small as it can be
    poisoned[:, rows - 1] = 1e6
    assert not np.array_equal(postprocess_masks(poisoned, input_size, hw, size), want)


def test_a_low_res_side_that_does_not_divide_the_input_is_not_cropped():
    assert lowres_crop(100, (50, 64), 64) == (100, 100, 0)
    low = _logits(2, 100, seed=2)
    _same(upscale_masks(low, (50, 64), (80, 100), 64, np.empty((2, 80, 100), np.float32)),
          postprocess_masks(low, (50, 64), (80, 100), 64))


@pytest.mark.parametrize("hw", [(1500, 2250), (300, 200)])
def test_masks_agree_with_segment_anything_postprocessing(hw):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    size = 1024
    low = _logits(3, size // 4, seed=hw[0])
    input_size = ResizeLongestSide(size).target_size(*hw)
    t = F.interpolate(torch.from_numpy(low)[None], (size, size), mode="bilinear", align_corners=False)
    t = t[..., : input_size[0], : input_size[1]]
    ref = F.interpolate(t, hw, mode="bilinear", align_corners=False)[0].numpy()
    masks = upscale_masks(low, input_size, hw, size, np.empty((3, *hw), bool), threshold=0.0)
    for a, b in zip(masks, ref > 0):
        assert _iou(a, b) >= 0.99
        assert (a != b).mean() < 1e-3  # only pixels on the boundary differ


@pytest.mark.parametrize("f", [4, 2, 3])
def test_the_crop_is_exactly_the_rows_read(f):
    side = 64
    rng = np.random.default_rng(f)
    for h in range(1, side * f + 1):
        rows, cols, factor = lowres_crop(side, (h, side * f), side * f)
        assert factor == f and cols == side
        low = rng.standard_normal((side, 1)).astype(np.float32)
        want = cv2.resize(low, (f, side * f), interpolation=cv2.INTER_LINEAR)[:h]
        got = cv2.resize(low[:rows], (f, rows * f), interpolation=cv2.INTER_LINEAR)[:h]
        np.testing.assert_array_equal(got, want)
        if f % 2 == 0 and 1 < rows < side:  # one row less would change the last rows (odd f: the
            # last row read may have weight 0, kept anyway)
            got = cv2.resize(low[:rows - 1], (f, (rows - 1) * f), interpolation=cv2.INTER_LINEAR)[:h]
            assert got.shape != want.shape or not np.array_equal(got, want)


def test_an_output_cv2_cannot_write_into_still_gets_the_logits():
    low = _logits(2, 64, seed=4)
    want = postprocess_masks(low, (192, 256), (300, 400), 256)
    for out in (np.empty((2, 300, 400), np.float64), np.empty((2, 400, 300), np.float32).transpose(0, 2, 1)):
        _same(upscale_masks(low, (192, 256), (300, 400), 256, out), want)
