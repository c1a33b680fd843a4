"""Numpy/cv2 pre- and post-processing equivalent to segment-anything's (no torch).

Example:
    >>> t = ResizeLongestSide(1024)
    >>> t.target_size(1500, 2250)
    (683, 1024)
    >>> t.apply_coords(np.array([[2250.0, 1500.0]]), (1500, 2250)).round(1).tolist()
    [[1024.0, 682.7]]
"""

from __future__ import annotations

import cv2
import numpy as np


class ResizeLongestSide:
    """Resize so the longest side equals ``length``; coordinates follow the same scaling."""

    def __init__(self, length: int):
        self.length = int(length)

    def target_size(self, h: int, w: int) -> tuple[int, int]:
        scale = self.length / max(h, w)
        return int(h * scale + 0.5), int(w * scale + 0.5)

    def apply_image(self, image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        th, tw = self.target_size(h, w)
        if (th, tw) == (h, w):
            return image
        # INTER_AREA when shrinking approximates PIL's antialiased bilinear used by SAM
        interp = cv2.INTER_AREA if th < h else cv2.INTER_LINEAR
        return cv2.resize(image, (tw, th), interpolation=interp)

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


def postprocess_masks(
    low_res: np.ndarray, input_size: tuple[int, int], original_size: tuple[int, int], img_size: int
) -> np.ndarray:
    """Low-res logits (C x L x L) → logits at the original image size (C x H x W).

    Same two bilinear steps as SAM (up to the padded input size, crop the padding, resize to the
    original size), done with cv2 on only the masks that are returned.
    """
    c = low_res.shape[0]
    hwc = np.ascontiguousarray(low_res.transpose(1, 2, 0), dtype=np.float32)
    up = cv2.resize(hwc, (img_size, img_size), interpolation=cv2.INTER_LINEAR)
    up = up.reshape(img_size, img_size, c)[: input_size[0], : input_size[1]]
    oh, ow = original_size
    out = cv2.resize(np.ascontiguousarray(up), (ow, oh), interpolation=cv2.INTER_LINEAR)
    return out.reshape(oh, ow, c).transpose(2, 0, 1)
