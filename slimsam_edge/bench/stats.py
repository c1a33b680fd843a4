"""Latency statistics.

Example:
    >>> latency_stats([0.010, 0.012, 0.011])["p50_ms"]
    11.0
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


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
