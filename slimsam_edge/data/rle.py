"""COCO run-length encoding: validation (pure numpy), decoding and encoding (pycocotools), and the
numpy-only uncompressed run lengths with their COCO counts string (segment everything).

pycocotools' C decoder trusts its input: a corrupt counts string can write past the mask buffer.
Every RLE is therefore parsed and checked here first (the counts must add up to ``h*w``), which
also yields the mask area without decoding. pycocotools is imported only when a mask is decoded
or encoded.

Example:
    >>> import numpy as np
    >>> m = np.zeros((5, 4), bool); m[1:3, 1:3] = True
    >>> rle = encode_mask(m)
    >>> rle
    {'size': [5, 4], 'counts': '62304'}
    >>> check_rle({'size': [5, 4], 'counts': '62304'})
    ((5, 4), 4)
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from ..errors import DataError

_INSTALL_HINT = "pip install 'slimsam-edge[data]'"


def require_pycocotools() -> Any:
    """Return ``pycocotools.mask``, or raise DataError telling how to install it.

    Example:
        >>> require_pycocotools().__name__
        'pycocotools.mask'
    """
    try:
        from pycocotools import mask as mask_utils
    except ImportError as err:
        raise DataError(
            f"reading or writing RLE masks needs pycocotools, which is not installed; "
            f"run: {_INSTALL_HINT}"
        ) from err
    return mask_utils


def counts_from_string(counts: str | bytes) -> np.ndarray:
    """Parse a compressed COCO counts string into run lengths (int64); ValueError if malformed.

    Vectorised port of pycocotools' ``rleFrString`` (6-bit groups, sign bit, delta coding of the
    runs from the fourth on).

    Example:
        >>> counts_from_string("62304").tolist()
        [6, 2, 3, 2, 7]
    """
    raw = counts.encode("ascii") if isinstance(counts, str) else bytes(counts)
    if not raw:
        return np.zeros(0, np.int64)
    c = np.frombuffer(raw, dtype=np.uint8).astype(np.int64) - 48
    if c.min() < 0 or c.max() > 63:
        raise ValueError("counts string holds characters outside the RLE alphabet")
    ends = (c & 0x20) == 0
    if not ends[-1]:
        raise ValueError("counts string is truncated")
    group = np.concatenate(([0], np.cumsum(ends)[:-1]))
    starts = np.flatnonzero(np.concatenate(([True], ends[:-1])))
    k = np.arange(c.size) - starts[group]
    if k.max() > 8:
        raise ValueError("counts string holds an oversized run")
    x = np.add.reduceat((c & 0x1F) << (5 * k), starts)
    last = np.flatnonzero(ends)
    negative = (c[last] & 0x10) != 0
    x = np.where(negative, x - (np.int64(1) << (5 * (k[last] + 1))), x)
    runs = x.copy()
    if runs.size > 3:  # runs[i] += runs[i-2] for i > 2, i.e. cumulative sums along each parity
        runs[3::2] = np.cumsum(np.concatenate(([x[1]], x[3::2])))[1:]
    if runs.size > 4:
        runs[4::2] = np.cumsum(np.concatenate(([x[2]], x[4::2])))[1:]
    return runs


def _size(rle: dict) -> tuple[int, int]:
    size = rle.get("size") if isinstance(rle, dict) else None
    if (
        not isinstance(size, (list, tuple))
        or len(size) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)
    ):
        raise ValueError(f"RLE 'size' is {size!r}; expected [height, width] of positive integers")
    return int(size[0]), int(size[1])


def check_rle(rle: dict) -> tuple[tuple[int, int], int]:
    """Validate a compressed (str counts) or uncompressed (int list) RLE; return ``((h, w), area)``.

    Raises ValueError saying what is wrong.

    Example:
        >>> check_rle({"size": [2, 2], "counts": [1, 2, 1]})
        ((2, 2), 2)
    """
    h, w = _size(rle)
    counts = rle.get("counts")
    if isinstance(counts, (str, bytes)):
        runs = counts_from_string(counts)
    elif isinstance(counts, list) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in counts
    ):
        runs = np.asarray(counts, dtype=np.int64)
    else:
        raise ValueError("RLE 'counts' is neither a string nor a list of integers")
    if runs.size and runs.min() < 0:
        raise ValueError("RLE has a negative run length")
    total = int(runs.sum())
    if total != h * w:
        raise ValueError(f"RLE runs cover {total} pixels, but size {h}x{w} has {h * w}")
    return (h, w), int(runs[1::2].sum())


def compressed(rle: dict) -> dict:
    """Return a pycocotools-ready compressed RLE (``counts`` as bytes) from a checked RLE.

    Example:
        >>> compressed({"size": [2, 2], "counts": "0400"})["counts"]
        b'0400'
    """
    h, w = _size(rle)
    counts = rle["counts"]
    if isinstance(counts, list):
        return require_pycocotools().frPyObjects({"size": [h, w], "counts": counts}, h, w)
    return {"size": [h, w], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}


def decode_rle(rle: dict) -> np.ndarray:
    """Decode a (checked) RLE into an ``HxW`` bool mask with pycocotools.

    Example:
        >>> int(decode_rle({"size": [5, 4], "counts": "62304"}).sum())
        4
    """
    mask = require_pycocotools().decode(compressed(rle))
    return np.ascontiguousarray(mask, dtype=bool)


def encode_mask(mask: np.ndarray) -> dict:
    """Encode an ``HxW`` mask into a JSON-ready compressed RLE ``{"size": [h, w], "counts": str}``.

    Example:
        >>> import numpy as np
        >>> encode_mask(np.ones((2, 2), bool))
        {'size': [2, 2], 'counts': '04'}
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise DataError(f"mask has shape {mask.shape}; expected a 2-D HxW mask")
    rle = require_pycocotools().encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def polygons_to_rle(polygons: list, height: int, width: int) -> dict:
    """Rasterise COCO polygons (``[[x0, y0, x1, y1, ...], ...]``) into one compressed RLE.

    Parts with fewer than three points or non-finite numbers raise ValueError (pycocotools would
    read a 4-number part as a box).

    Example:
        >>> rle_area_bbox(polygons_to_rle([[0, 0, 4, 0, 4, 4, 0, 4]], 8, 8))[0]
        16
    """
    if not isinstance(polygons, list) or not polygons:
        raise ValueError("polygon segmentation is empty")
    parts = []
    for part in polygons:
        if not isinstance(part, list) or len(part) < 6 or len(part) % 2:
            raise ValueError("a polygon part has fewer than 3 points or an odd number of values")
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in part):
            raise ValueError("a polygon part holds a non-numeric or non-finite value")
        parts.append([float(v) for v in part])
    mask_utils = require_pycocotools()
    return mask_utils.merge(mask_utils.frPyObjects(parts, height, width))


def rle_area_bbox(rle: dict) -> tuple[int, tuple[float, float, float, float]]:
    """Area and ``xywh`` box of a compressed RLE (pycocotools).

    Example:
        >>> rle_area_bbox({"size": [5, 4], "counts": b"62304"})
        (4, (1.0, 1.0, 2.0, 2.0))
    """
    mask_utils = require_pycocotools()
    box = mask_utils.toBbox(rle)
    return int(mask_utils.area(rle)), tuple(float(v) for v in box)  # type: ignore[return-value]


# -- uncompressed run lengths and their COCO string, numpy only (segment everything keeps masks so)
def masks_to_rle(masks: np.ndarray) -> list[dict[str, Any]]:
    """Uncompressed COCO RLEs (column-major run lengths starting with a 0-run) of N x H x W masks.

    Example:
        >>> m = np.zeros((1, 2, 3), bool); m[0, 1, 1:] = True
        >>> masks_to_rle(m)
        [{'size': [2, 3], 'counts': [3, 1, 1, 1]}]
    """
    n, h, w = masks.shape
    flat = masks.transpose(0, 2, 1).reshape(n, h * w)
    out = []
    for row in flat:
        change = np.flatnonzero(row[1:] != row[:-1]) + 1
        edges = np.concatenate(([0], change, [h * w]))
        counts = np.diff(edges).tolist()
        if row.size and row[0]:
            counts.insert(0, 0)
        out.append({"size": [h, w], "counts": counts})
    return out


def rle_to_mask(rle: dict[str, Any]) -> np.ndarray:
    """Decode an uncompressed RLE into an ``H x W`` bool mask.

    Example:
        >>> rle_to_mask({"size": [2, 3], "counts": [3, 1, 1, 1]}).astype(int).tolist()
        [[0, 0, 0], [0, 1, 1]]
    """
    h, w = rle["size"]
    counts = np.asarray(rle["counts"], np.int64)
    values = np.arange(counts.size) % 2 == 1
    return np.repeat(values, counts).reshape(w, h).T


def rle_area(rle: dict[str, Any]) -> int:
    """Foreground pixels of an uncompressed RLE.

    Example:
        >>> rle_area({"size": [2, 3], "counts": [3, 1, 1, 1]})
        2
    """
    return int(sum(rle["counts"][1::2]))


def counts_to_string(counts: Sequence[int]) -> str:
    """COCO's compressed counts string of run lengths (the inverse of
    :func:`slimsam_edge.data.rle.counts_from_string`): runs from the fourth on are stored as the
    difference to the run two before, each value in 5-bit groups with a continuation bit, offset 48.

    Example:
        >>> counts_to_string([6, 2, 3, 2, 7])
        '62304'
    """
    out = []
    for i, value in enumerate(counts):
        x = int(value) - (int(counts[i - 2]) if i > 2 else 0)
        while True:
            c = x & 0x1F
            x >>= 5
            more = x != -1 if c & 0x10 else x != 0
            out.append(chr(c + (0x20 if more else 0) + 48))
            if not more:
                break
    return "".join(out)


def coco_rle(rle: dict[str, Any]) -> dict[str, Any]:
    """Compressed, JSON-ready COCO RLE (``counts`` a str) of an uncompressed one; pycocotools when
    installed, else :func:`counts_to_string` (the same bytes).

    Example:
        >>> coco_rle({"size": [5, 4], "counts": [6, 2, 3, 2, 7]})
        {'size': [5, 4], 'counts': '62304'}
    """
    h, w = rle["size"]
    try:
        from pycocotools import mask as mask_utils
    except ImportError:
        return {"size": [h, w], "counts": counts_to_string(rle["counts"])}
    enc = mask_utils.frPyObjects({"size": [h, w], "counts": list(rle["counts"])}, h, w)
    return {"size": [h, w], "counts": enc["counts"].decode("ascii")}
