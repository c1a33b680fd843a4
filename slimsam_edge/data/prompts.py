"""Prompt points and boxes from masks, for training and evaluation (numpy/cv2 only, no torch).

Coordinates are ``(x, y)`` pixels of the mask's image, as SAM expects. Labels: 1 = foreground
(positive) point, 0 = background (negative) point.

Example:
    >>> import numpy as np
    >>> m = np.zeros((32, 32), bool); m[8:20, 4:28] = True
    >>> rng = np.random.default_rng(0)
    >>> x, y = random_point(m, rng); bool(m[int(y), int(x)])
    True
    >>> x0, y0, x1, y1 = noisy_box(m, rng); 0 <= x0 < x1 <= 32 and 0 <= y0 < y1 <= 32
    True
"""

from __future__ import annotations

import cv2
import numpy as np

from ..errors import DataError


def _mask(mask: np.ndarray) -> np.ndarray:
    m = np.asarray(mask)
    m = m if m.dtype == bool else m > 0
    if m.ndim != 2:
        raise DataError(f"mask has shape {m.shape}; expected a 2-D HxW mask")
    if not m.any():
        raise DataError("mask is empty; a prompt needs at least one pixel inside the mask")
    return m


def point_inside_mask(
    mask: np.ndarray, rng: np.random.Generator | None = None
) -> tuple[float, float]:
    """A prompt point ``(x, y)`` inside ``mask``, far from its border.

    Without ``rng``: the maximum of the distance transform (the image edge counts as border);
    among tied maxima, the one nearest their mean position (then the first in row-major order),
    so the result is deterministic and centred on plateaus. With ``rng``:
    a random pixel among those at least half the maximal distance from the border.

    Example:
        >>> import numpy as np
        >>> m = np.zeros((9, 9), bool); m[2:7, 1:8] = True
        >>> point_inside_mask(m)
        (4.0, 4.0)
    """
    m = _mask(mask)
    padded = np.pad(m.astype(np.uint8), 1)
    dist = cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
    if rng is None:
        ys, xs = np.nonzero(dist >= float(dist.max()) - 1e-6)
        i = int(np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2))
        y, x = ys[i], xs[i]
    else:
        ys, xs = np.nonzero(dist >= 0.5 * float(dist.max()))
        i = int(rng.integers(len(ys)))
        y, x = ys[i], xs[i]
    return (float(x), float(y))


def random_point(mask: np.ndarray, rng: np.random.Generator) -> tuple[float, float]:
    """A uniformly random foreground pixel ``(x, y)`` of ``mask``.

    Example:
        >>> import numpy as np
        >>> m = np.zeros((4, 4), bool); m[2, 3] = True
        >>> random_point(m, np.random.default_rng(1))
        (3.0, 2.0)
    """
    ys, xs = np.nonzero(_mask(mask))
    i = int(rng.integers(len(ys)))
    return (float(xs[i]), float(ys[i]))


def mask_box(mask: np.ndarray) -> tuple[float, float, float, float]:
    """The tight box ``(x0, y0, x1, y1)`` of ``mask``, ``x1 = x_max + 1`` (the data sets' convention).

    Example:
        >>> import numpy as np
        >>> m = np.zeros((8, 8), bool); m[2:5, 1:7] = True
        >>> mask_box(m)
        (1.0, 2.0, 7.0, 5.0)
    """
    ys, xs = np.nonzero(_mask(mask))
    return (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))


def noisy_box(
    mask: np.ndarray,
    rng: np.random.Generator | None = None,
    noise: float = 0.1,
    max_noise: float = 20.0,
) -> tuple[float, float, float, float]:
    """The mask's box with each coordinate moved by N(0, ``noise`` x side), clipped to ``[0, W]``.

    The shift is at most ``max_noise`` pixels (SAM's recipe); the box keeps positive size. With
    ``rng=None`` (or ``noise=0``) this is :func:`mask_box`.

    Example:
        >>> import numpy as np
        >>> m = np.zeros((64, 64), bool); m[10:30, 20:50] = True
        >>> noisy_box(m)
        (20.0, 10.0, 50.0, 30.0)
    """
    x0, y0, x1, y1 = mask_box(mask)
    if rng is None or noise <= 0:
        return (x0, y0, x1, y1)
    h, w = np.asarray(mask).shape
    sw, sh = x1 - x0, y1 - y0
    d = rng.normal(0.0, 1.0, 4) * noise * np.array([sw, sh, sw, sh])
    d = np.clip(d, -max_noise, max_noise)
    nx0, nx1 = float(np.clip(x0 + d[0], 0, w)), float(np.clip(x1 + d[2], 0, w))
    ny0, ny1 = float(np.clip(y0 + d[1], 0, h)), float(np.clip(y1 + d[3], 0, h))
    if nx1 - nx0 < 1:
        nx0, nx1 = x0, x1
    if ny1 - ny0 < 1:
        ny0, ny1 = y0, y1
    return (nx0, ny0, nx1, ny1)


def error_regions(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(false_negative, false_positive)`` bool maps of a predicted mask against the truth.

    Example:
        >>> import numpy as np
        >>> fn, fp = error_regions(np.array([[1, 1, 0]]), np.array([[0, 1, 1]]))
        >>> fn.astype(int).tolist(), fp.astype(int).tolist()
        ([[0, 0, 1]], [[1, 0, 0]])
    """
    p, g = np.asarray(pred) > 0, np.asarray(gt) > 0
    if p.shape != g.shape:
        raise DataError(f"prediction {p.shape} and ground truth {g.shape} differ in shape")
    return g & ~p, p & ~g


def corrective_point(
    pred: np.ndarray, gt: np.ndarray, rng: np.random.Generator | None = None
) -> tuple[tuple[float, float], int]:
    """The next click ``((x, y), label)`` from the larger error region of ``pred``.

    A false-negative region gives a positive point (label 1), a false-positive one a negative
    point (label 0). Without ``rng`` the point is the most interior pixel of the error region
    (deterministic, for evaluation); with ``rng`` a random pixel far from its border. If the
    prediction is perfect, a positive point inside ``gt`` is returned.

    Example:
        >>> import numpy as np
        >>> gt = np.zeros((16, 16), bool); gt[2:14, 2:14] = True
        >>> pred = gt.copy(); pred[2:14, 8:14] = False    # right half missed
        >>> (x, y), label = corrective_point(pred, gt)
        >>> label, bool(gt[int(y), int(x)] and not pred[int(y), int(x)])
        (1, True)
    """
    fn, fp = error_regions(pred, gt)
    n_fn, n_fp = int(np.count_nonzero(fn)), int(np.count_nonzero(fp))
    if n_fn == 0 and n_fp == 0:
        return point_inside_mask(_mask(gt), rng), 1
    region, label = (fn, 1) if n_fn >= n_fp else (fp, 0)
    return point_inside_mask(region, rng), label
