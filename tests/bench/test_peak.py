"""The machine peak behind bench's % of peak: measured (small), cached by fingerprint, refused when
the cache is not a peak file."""

from __future__ import annotations

import json

import pytest

from slimsam_edge.bench.peak import PEAK_SCHEMA, cached_peak, fingerprint, measure_peak
from slimsam_edge.errors import UsageError

INFO = {"cpu_model": "Test CPU", "cpu_flags": {"avx2": True}, "cores_logical": 2, "memory_total_gb": 8.0,
        "machine": "x86_64", "runtimes": {}, "supports_bf16": False}


def test_small_measurement_has_rates_and_reasons():
    peak = measure_peak(INFO, threads=1, n=128, reps=1)
    assert peak["schema"] == PEAK_SCHEMA and peak["fingerprint"] == fingerprint(INFO, 1)
    assert peak["gemm_gflops"]["fp32"] > 0 and peak["memory_gbps"] > 0
    assert peak["gemm_gflops"]["bf16"] is None and "no BF16" in peak["why_none"]["bf16"]
    assert peak["gemm_gflops"]["int8"] is None or peak["gemm_gflops"]["int8"] > 0
    json.dumps(peak, allow_nan=False)


def test_cache_is_reused_only_for_the_same_fingerprint(tmp_path):
    calls = []

    def fake(info, threads=None, progress=None):
        calls.append(threads)
        return {"schema": PEAK_SCHEMA, "fingerprint": fingerprint(info, threads), "gemm_gflops": {"fp32": 10.0 + len(calls)}}

    cache = tmp_path / "peak.json"
    first = cached_peak(cache, INFO, threads=2, measure=fake)
    again = cached_peak(cache, INFO, threads=2, measure=fake)
    assert (first["cached"], again["cached"]) == (False, True) and calls == [2]
    assert again["gemm_gflops"] == first["gemm_gflops"]
    other = cached_peak(cache, {**INFO, "cpu_model": "Another CPU"}, threads=2, measure=fake)
    assert other["cached"] is False and calls == [2, 2]
    assert json.loads(cache.read_text())["gemm_gflops"]["fp32"] == 12.0  # rewritten for the new machine
    assert cached_peak(None, INFO, measure=fake)["cached"] is False and not list(tmp_path.glob("*.tmp*"))


@pytest.mark.parametrize("content", ["not json", json.dumps({"schema": "other"}), json.dumps([1, 2])])
def test_a_cache_that_is_not_a_peak_file_is_refused(tmp_path, content):
    cache = tmp_path / "peak.json"
    cache.write_text(content)
    with pytest.raises(UsageError, match="--peak-cache"):
        cached_peak(cache, INFO, measure=lambda *a, **k: pytest.fail("measured"))
    with pytest.raises(UsageError, match="not a peak file"):
        cached_peak(tmp_path, INFO, measure=lambda *a, **k: pytest.fail("measured"))
