"""Latency statistics and the SingleStream protocol.

Example:
    >>> latency_stats([0.010, 0.012, 0.011])["p50_ms"]
    11.0
    >>> spread_ms([11.0, 12.5, 11.4])
    1.5
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

import numpy as np

from ..errors import UsageError


def latency_stats(seconds: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99/mean/min/max in milliseconds, and the sample count."""
    if not seconds:
        return {"n": 0}
    ms = np.asarray(seconds, dtype=np.float64) * 1e3
    return {
        "n": int(ms.size),
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p90_ms": round(float(np.percentile(ms, 90)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "mean_ms": round(float(ms.mean()), 3),
        "min_ms": round(float(ms.min()), 3),
        "max_ms": round(float(ms.max()), 3),
    }


def spread_ms(repeat_p50s: Sequence[float]) -> float:
    """How far one configuration's p50 moved between interleaved repeats (max - min, ms): the
    noise a difference between two reports must exceed to count (``bench diff``). 0 for one repeat."""
    if len(repeat_p50s) < 2:
        return 0.0
    return round(float(max(repeat_p50s) - min(repeat_p50s)), 3)


def single_stream(query: Callable[[], float], *, min_queries: int, min_duration_s: float,
                  max_queries: int | None = None, clock: Callable[[], float] = time.perf_counter,
                  tick: Callable[[], None] | None = None) -> list[float]:
    """MLPerf's SingleStream: one query at a time until at least ``min_queries`` queries AND
    ``min_duration_s`` seconds have run (``max_queries`` caps a very fast query). ``query()``
    returns its own latency in seconds; the list of latencies is returned.

    Example:
        >>> t = [0.0]
        >>> def query():
        ...     t[0] += 0.25
        ...     return 0.25
        >>> len(single_stream(query, min_queries=3, min_duration_s=2.0, clock=lambda: t[0]))
        8
        >>> len(single_stream(query, min_queries=3, min_duration_s=0.0, clock=lambda: t[0]))
        3
    """
    if min_queries < 1:
        raise UsageError(f"--min-queries {min_queries}: must be at least 1")
    if not np.isfinite(min_duration_s) or min_duration_s < 0:
        raise UsageError(f"--duration {min_duration_s}: must be a finite number of seconds >= 0")
    if max_queries is not None and max_queries < min_queries:
        raise UsageError(f"at most {max_queries} queries cannot reach --min-queries {min_queries}")
    out: list[float] = []
    t0 = clock()
    while len(out) < min_queries or clock() - t0 < min_duration_s:
        if max_queries is not None and len(out) >= max_queries:
            break
        out.append(float(query()))
        if tick:
            tick()
    return out
