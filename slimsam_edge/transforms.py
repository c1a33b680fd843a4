"""Numpy/cv2 pre- and post-processing equivalent to segment-anything's (no torch).

Example:
    >>> t = ResizeLongestSide(1024)
    >>> t.target_size(1500, 2250)
    (683, 1024)
    >>> t.apply_coords(np.array([[2250.0, 1500.0]]), (1500, 2250)).round(1).tolist()
    [[1024.0, 683.0]]
"""

from __future__ import annotations

import cv2
import numpy as np


class ResizeLongestSide:
    """Resize so the longest side equals ``length``; coordinates follow the same scaling."""

    def __init__(self, length: int):
        self.length = int(length)

    def target_size(self, h: int, w: int) -> tuple[int, int]:
        """SAM's resized (h, w), each side at least one pixel: SAM rounds a side thinner than
        1 : 2 x ``length`` to 0 and fails; here it keeps one row (or column), and coordinates and
        masks follow that size.

        Example:
            >>> ResizeLongestSide(256).target_size(1, 600), ResizeLongestSide(256).target_size(600, 2)
            ((1, 256), (256, 1))
        """
        scale = self.length / max(h, w)
        return max(1, int(h * scale + 0.5)), max(1, int(w * scale + 0.5))

    def apply_image(self, image: np.ndarray, mode: str = "sam") -> np.ndarray:
        """Resize an HxWxC uint8 image.

        ``mode="sam"`` reproduces segment-anything's resize (PIL's antialiased bilinear) to within
        one grey level; ``mode="fast"`` uses cv2 (INTER_AREA to shrink), several times faster on
        large photos, and close but not identical.
        """
        h, w = image.shape[:2]
        th, tw = self.target_size(h, w)
        if (th, tw) == (h, w):
            return image
        if mode == "fast":
            interp = cv2.INTER_AREA if th < h else cv2.INTER_LINEAR
            return cv2.resize(image, (tw, th), interpolation=interp)
        return resize_antialiased(image, th, tw)

    def apply_coords(self, coords: np.ndarray, original_size: tuple[int, int]) -> np.ndarray:
        h, w = original_size
        th, tw = self.target_size(h, w)
        out = np.array(coords, dtype=np.float64, copy=True)
        out[..., 0] *= tw / w
        out[..., 1] *= th / h
        return out

    def apply_boxes(self, boxes: np.ndarray, original_size: tuple[int, int]) -> np.ndarray:
        return self.apply_coords(np.asarray(boxes, dtype=np.float64).reshape(-1, 2, 2), original_size).reshape(-1, 4)


def normalize_and_pad(
    image: np.ndarray, size: int, mean: tuple[float, ...], std: tuple[float, ...]
) -> np.ndarray:
    """HxWx3 uint8 (already resized) → 1x3xSxS float32, normalised, zero-padded bottom/right."""
    h, w = image.shape[:2]
    out = np.zeros((1, 3, size, size), dtype=np.float32)
    x = (image.astype(np.float32) - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    out[0, :, :h, :w] = x.transpose(2, 0, 1)
    return out


def preprocess(
    image: np.ndarray, size: int, mean: tuple[float, ...], std: tuple[float, ...], resize: str = "sam"
) -> tuple[np.ndarray, tuple[int, int]]:
    """The model input of an HxWx3 uint8 RGB image, exactly as :class:`EdgePredictor` makes it.

    Returns ``(x, input_size)``: the 1x3xSxS float32 tensor and the resized (h, w) before padding.
    Calibration feeds use this too, so quantization sees the runtime's inputs.

    Example:
        >>> x, hw = preprocess(np.zeros((30, 60, 3), np.uint8), 64, (0, 0, 0), (1, 1, 1))
        >>> x.shape, hw
        ((1, 3, 64, 64), (32, 64))
    """
    resized = ResizeLongestSide(size).apply_image(np.ascontiguousarray(image), resize)
    return normalize_and_pad(resized, size, mean, std), (int(resized.shape[0]), int(resized.shape[1]))


def postprocess_masks(
    low_res: np.ndarray, input_size: tuple[int, int], original_size: tuple[int, int], img_size: int
) -> np.ndarray:
    """Low-res logits (C x L x L) → logits at the original image size (C x H x W), SAM's steps one
    to one: all C masks upsampled (channel-last) to the padded SxS input, the padding cropped, resized
    to the original size. The plain reference: :class:`EdgePredictor` runs :func:`upscale_masks`, the
    same logits for less work (tests and scripts/bench_decoder.py compare the two).

    Example:
        >>> low = np.zeros((3, 16, 16), np.float32); low[:, 4:8, 4:8] = 5.0
        >>> up = postprocess_masks(low, (48, 64), (96, 128), 64)
        >>> up.shape, bool(up[0, 40, 40] > 0), bool(up[0, 90, 120] > 0)
        ((3, 96, 128), True, False)
    """
    c = low_res.shape[0]
    hwc = np.ascontiguousarray(low_res.transpose(1, 2, 0), dtype=np.float32)
    up = cv2.resize(hwc, (img_size, img_size), interpolation=cv2.INTER_LINEAR)
    up = up.reshape(img_size, img_size, c)[: input_size[0], : input_size[1]]
    oh, ow = original_size
    out = cv2.resize(np.ascontiguousarray(up), (ow, oh), interpolation=cv2.INTER_LINEAR)
    return out.reshape(oh, ow, c).transpose(2, 0, 1)


def lowres_crop(side: int, input_size: tuple[int, int], img_size: int) -> tuple[int, int, int]:
    """``(rows, cols, factor)``: the top-left part of an LxL low-res mask (L = ``side``) that
    SAM's first upsample (by ``factor`` = S / L, to the padded SxS input) reads for the unpadded
    ``input_size`` region, and the factor; upsampling only that part by the same factor gives the
    same pixels there (bilinear, half-pixel centres: output row y reads rows floor((y + 0.5) / f -
    0.5) and the one below). Without an integer factor: (L, L, 0), no crop.

    Example:
        >>> lowres_crop(256, (683, 1024), 1024)   # a 1500x2250 photo: 172 of 256 rows
        (172, 256, 4)
        >>> lowres_crop(256, (1024, 1024), 1024), lowres_crop(100, (50, 64), 64)
        ((256, 256, 4), (100, 100, 0))
    """
    f, rem = divmod(int(img_size), int(side))
    if rem or f == 0:
        return side, side, 0
    # the last output row n - 1 reads low-res row floor((2n - 1 - f) / 2f) and the next one
    return tuple(min(side, (2 * int(n) - 1 - f) // (2 * f) + 2) for n in input_size) + (f,)  # type: ignore[return-value]


def upscale_masks(
    low_res: np.ndarray, input_size: tuple[int, int], original_size: tuple[int, int], img_size: int,
    out: np.ndarray, *, threshold: float | None = None, scratch: np.ndarray | None = None,
) -> np.ndarray:
    """SAM's postprocessing of C low-res logits (C x L x L) into ``out`` (C x H x W), the least work
    for the same result as upsampling to SxS, cropping the padding and resizing to (H, W): only the
    low-res part the unpadded region reads is upsampled (:func:`lowres_crop`), each mask is resized
    on its own straight into ``out`` (a channel-last resize of C masks and the transpose back cost
    several times more), and binary masks are thresholded from one reused float plane.

    Arguments:
        out: float32 C x H x W (logits) or bool C x H x W (``threshold`` given: logit > threshold).
        scratch: an H x W float32 plane reused across calls for binary masks (made when ``None``).

    Returns ``out``.

    Example:
        >>> low = np.zeros((1, 16, 16), np.float32); low[0, 4:8, 4:8] = 5.0
        >>> masks = upscale_masks(low, (48, 64), (96, 128), 64, np.empty((1, 96, 128), bool), threshold=0.0)
        >>> int(masks.sum()), bool(masks[0, 40, 40])
        (1764, True)
    """
    h, w = int(input_size[0]), int(input_size[1])
    oh, ow = int(original_size[0]), int(original_size[1])
    rows, cols, f = lowres_crop(low_res.shape[-1], (h, w), img_size)
    up_size = (cols * f, rows * f) if f else (img_size, img_size)
    if threshold is not None and scratch is None:
        scratch = np.empty((oh, ow), np.float32)
    # cv2 writes straight into a C-contiguous float32 plane; any other ``out`` gets a copy
    direct = out.dtype == np.float32 and all(out[c].flags.c_contiguous for c in range(out.shape[0]))
    for c in range(low_res.shape[0]):
        part = np.asarray(low_res[c, :rows, :cols], dtype=np.float32)
        up = cv2.resize(part, up_size, interpolation=cv2.INTER_LINEAR)[:h, :w]
        dst = scratch if threshold is not None else out[c] if direct else None
        res = cv2.resize(up, (ow, oh), dst=dst, interpolation=cv2.INTER_LINEAR)
        if threshold is not None:
            np.greater(res, threshold, out=out[c])
        elif not direct:
            out[c] = res
    return out


def _bilinear_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Source indices and weights of PIL's antialiased bilinear filter (support grows when shrinking)."""
    scale = in_size / out_size
    support = max(scale, 1.0)
    centers = (np.arange(out_size) + 0.5) * scale
    lo = np.maximum((centers - support + 0.5).astype(np.int64), 0)
    hi = np.minimum((centers + support + 0.5).astype(np.int64), in_size)
    idx = lo[:, None] + np.arange(int((hi - lo).max()))[None, :]
    wt = np.clip(1.0 - np.abs((idx - centers[:, None] + 0.5) / support), 0.0, None)
    wt[idx >= hi[:, None]] = 0.0
    wt /= wt.sum(axis=1, keepdims=True)
    return np.minimum(idx, in_size - 1), wt.astype(np.float32)


def _resample_rows(a: np.ndarray, out_len: int) -> np.ndarray:
    idx, wt = _bilinear_taps(a.shape[0], out_len)
    acc = np.zeros((out_len,) + a.shape[1:], np.float32)
    tmp = np.empty_like(acc)
    for k in range(idx.shape[1]):
        np.multiply(a[idx[:, k]], wt[:, k].reshape((-1,) + (1,) * (a.ndim - 1)), out=tmp)
        acc += tmp
    acc += 0.5  # PIL rounds half up and stores 8-bit between the two passes
    np.floor(acc, out=acc)
    np.clip(acc, 0, 255, out=acc)
    return acc.astype(np.uint8)


def resize_antialiased(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """PIL-compatible antialiased bilinear resize of a uint8 HxW[xC] image (horizontal pass first)."""
    out = image
    if width != image.shape[1]:
        t = np.ascontiguousarray(np.swapaxes(out, 0, 1))
        out = np.ascontiguousarray(np.swapaxes(_resample_rows(t, width), 0, 1))
    if height != image.shape[0]:
        out = _resample_rows(out, height)
    return out
