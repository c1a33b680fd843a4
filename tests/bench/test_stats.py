"""Latency statistics and the SingleStream protocol."""

from __future__ import annotations

import pytest

from slimsam_edge.bench.stats import latency_stats, single_stream, spread_ms
from slimsam_edge.errors import UsageError


def test_latency_stats_percentiles():
    s = latency_stats([i / 1000 for i in range(1, 101)])  # 1..100 ms
    assert s["n"] == 100 and s["min_ms"] == 1.0 and s["max_ms"] == 100.0
    assert s["p50_ms"] == pytest.approx(50.5) and s["p90_ms"] == pytest.approx(90.1)
    assert s["p99_ms"] == pytest.approx(99.01) and s["mean_ms"] == pytest.approx(50.5)
    assert latency_stats([]) == {"n": 0}
    assert spread_ms([5.0]) == 0.0 and spread_ms([5.0, 7.5, 6.0]) == 2.5


def test_single_stream_meets_both_minimums_on_a_fake_clock():
    now = [0.0]

    def query(dt=0.1):
        now[0] += dt
        return dt

    lat = single_stream(query, min_queries=5, min_duration_s=1.0, clock=lambda: now[0])
    assert len(lat) in (10, 11) and sum(lat) >= 1.0 - 1e-9   # duration bound
    now[0] = 0.0
    assert len(single_stream(query, min_queries=30, min_duration_s=1.0, clock=lambda: now[0])) == 30
    now[0] = 0.0
    assert len(single_stream(query, min_queries=2, min_duration_s=100.0, max_queries=7,
                             clock=lambda: now[0])) == 7
    for bad in ({"min_queries": 0, "min_duration_s": 1.0}, {"min_queries": 1, "min_duration_s": float("nan")},
                {"min_queries": 5, "min_duration_s": 1.0, "max_queries": 4}):
        with pytest.raises(UsageError):
            single_stream(query, **bad)
