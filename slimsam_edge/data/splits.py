"""Deterministic train/val splits: the same items and seed give the same split in any order.

Items are sorted by a name key, then permuted with ``np.random.default_rng(seed)`` and cut into
consecutive parts by the cumulative fractions.

Example:
    >>> parts = split_items([f"img{i}" for i in range(10)], {"train": 0.8, "val": 0.2}, seed=1)
    >>> len(parts["train"]), len(parts["val"])
    (8, 2)
    >>> parts == split_items([f"img{i}" for i in reversed(range(10))], {"train": 0.8, "val": 0.2}, seed=1)
    True
"""

from __future__ import annotations

import math
from pathlib import PurePath
from typing import Any, Callable, Mapping, Sequence, TypeVar

import numpy as np

from ..errors import UsageError

T = TypeVar("T")

DEFAULT_FRACTIONS: dict[str, float] = {"train": 0.9, "val": 0.1}


def name_key(item: Any) -> tuple[str, str]:
    """Default sort key: a path's file name first (stable when the folder moves), then its text.

    Example:
        >>> from pathlib import Path
        >>> name_key(Path("/data/x/a.jpg"))
        ('a.jpg', '/data/x/a.jpg')
    """
    if isinstance(item, PurePath):
        return (item.name, item.as_posix())
    return (str(item), repr(item))


def check_fractions(fractions: Mapping[str, float]) -> dict[str, float]:
    """Validate split fractions (each in (0, 1], sum <= 1); return them as a plain dict.

    Example:
        >>> check_fractions({"train": 0.9, "val": 0.1})
        {'train': 0.9, 'val': 0.1}
    """
    if not fractions:
        raise UsageError("no split fractions given; pass e.g. {'train': 0.9, 'val': 0.1}")
    out: dict[str, float] = {}
    for name, frac in fractions.items():
        value = float(frac)
        if not math.isfinite(value) or not 0.0 < value <= 1.0:
            raise UsageError(f"split fraction {name}={frac!r} must be in (0, 1]")
        out[str(name)] = value
    if sum(out.values()) > 1.0 + 1e-9:
        raise UsageError(f"split fractions {out} add up to more than 1; lower them")
    return out


def split_items(
    items: Sequence[T],
    fractions: Mapping[str, float] | None = None,
    seed: int = 0,
    key: Callable[[T], Any] = name_key,
) -> dict[str, list[T]]:
    """Split ``items`` into named parts by ``fractions``, deterministically for a given ``seed``.

    Part sizes are ``round(cumulative_fraction * n)`` differences, so fractions adding up to 1
    use every item; smaller sums leave the rest out. The result does not depend on the order of
    ``items`` (they are sorted by ``key`` first).

    Example:
        >>> split_items(["a", "b", "c", "d"], {"train": 0.5, "val": 0.5}, seed=0)["val"]
        ['b', 'd']
    """
    parts = check_fractions(DEFAULT_FRACTIONS if fractions is None else fractions)
    ordered = sorted(items, key=key)
    order = np.random.default_rng(seed).permutation(len(ordered))
    shuffled = [ordered[i] for i in order]
    n = len(shuffled)
    result: dict[str, list[T]] = {}
    cumulative, start = 0.0, 0
    for name, frac in parts.items():
        cumulative += frac
        stop = min(n, math.floor(cumulative * n + 0.5))
        result[name] = shuffled[start:stop]
        start = stop
    return result


def select_split(
    items: Sequence[T],
    split: str | None,
    *,
    seed: int = 0,
    fractions: Mapping[str, float] | None = None,
    key: Callable[[T], Any] = name_key,
) -> list[T]:
    """Return the ``split`` part of ``items``, sorted by ``key`` (all items when ``split`` is None).

    Example:
        >>> select_split(list("abcdefghij"), "val", seed=0)
        ['b']
    """
    if split is None:
        return list(items)
    parts = split_items(items, fractions, seed=seed, key=key)
    if split not in parts:
        raise UsageError(f"unknown split {split!r}; choose one of {', '.join(parts)}")
    return sorted(parts[split], key=key)
