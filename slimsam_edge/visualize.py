"""Mask overlays and PNG writing (numpy + cv2; atomic writes).

Example:
    >>> import numpy as np
    >>> img = np.zeros((4, 4, 3), np.uint8); m = np.eye(4, dtype=bool)
    >>> overlay_mask(img, m).shape
    (4, 4, 3)
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np

from .errors import ImageError
from .fsutil import write_bytes_atomic


def overlay_mask(
    image_rgb: np.ndarray,
    mask: np.ndarray,
    *,
    color: tuple[int, int, int] = (30, 144, 255),
    alpha: float = 0.5,
    points: Sequence[Sequence[float]] = (),
    labels: Sequence[float] = (),
    box: Sequence[float] | None = None,
) -> np.ndarray:
    """Blend ``mask`` over an RGB image, outline it, and draw the prompts (RGB out)."""
    out = image_rgb.copy()
    m = mask.astype(bool)
    out[m] = (out[m] * (1 - alpha) + np.asarray(color) * alpha).astype(np.uint8)
    contours, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    thick = max(1, round(max(out.shape[:2]) / 400))
    cv2.drawContours(out, contours, -1, (255, 255, 255), thick)
    for (x, y), lab in zip(points, labels):
        c = (0, 220, 0) if lab == 1 else (220, 0, 0)
        cv2.circle(out, (int(round(x)), int(round(y))), 3 * thick + 2, c, -1)
    if box is not None:
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        cv2.rectangle(out, (x0, y0), (x1, y1), (0, 220, 0), thick)
    return out


def write_png(path: Path | str, array: np.ndarray) -> Path:
    """Encode ``array`` (HxW or HxWx3 BGR) as PNG and write it atomically."""
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(array))
    if not ok:
        raise ImageError(f"cannot encode PNG for {path}")
    return write_bytes_atomic(path, buf.tobytes())


def mask_colors(n: int) -> np.ndarray:
    """``n`` distinct, bright RGB colours (hues spaced by the golden ratio), ``n x 3`` uint8.

    Example:
        >>> c = mask_colors(3)
        >>> c.shape, len({tuple(v) for v in c.tolist()})
        ((3, 3), 3)
    """
    hues = (np.arange(n) * 0.618033988749895 % 1.0 * 180).astype(np.uint8)
    hsv = np.stack([hues, np.full(n, 200, np.uint8), np.full(n, 235, np.uint8)], axis=1)
    return cv2.cvtColor(hsv[None], cv2.COLOR_HSV2RGB)[0]


def overlay_masks(image_rgb: np.ndarray, masks: Sequence[np.ndarray] | Iterable[np.ndarray], *,
                  alpha: float = 0.5, count: int | None = None) -> np.ndarray:
    """Blend many masks over an RGB image, each in its own colour (:func:`mask_colors`) with a
    white outline, in the order given (later masks on top). ``masks`` may be a generator (one
    decoded mask in memory at a time); ``count`` sizes the palette when it is one.

    Example:
        >>> img = np.zeros((20, 20, 3), np.uint8)
        >>> a = np.zeros((20, 20), bool); a[2:9, 2:9] = True
        >>> out = overlay_masks(img, [a, a[::-1, ::-1]])
        >>> out.shape, bool((out[5, 5] != out[14, 14]).any()), out[5, 5].tolist() != [0, 0, 0]
        ((20, 20, 3), True, True)
    """
    if count is None:
        masks = list(masks)
        count = len(masks)
    colors = mask_colors(max(count, 1))
    out = image_rgb.copy()
    thick = max(1, round(max(out.shape[:2]) / 600))
    for k, mask in enumerate(masks):
        m = np.asarray(mask, dtype=bool)
        out[m] = (out[m] * (1 - alpha) + colors[k % len(colors)] * alpha).astype(np.uint8)
        contours, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, (255, 255, 255), thick)
    return out
