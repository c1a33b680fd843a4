"""Mask overlays and PNG writing (numpy + cv2; atomic writes).

Example:
    >>> import numpy as np
    >>> img = np.zeros((4, 4, 3), np.uint8); m = np.eye(4, dtype=bool)
    >>> overlay_mask(img, m).shape
    (4, 4, 3)
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

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
