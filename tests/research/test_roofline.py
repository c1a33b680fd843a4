"""The compute floor that bounds exact global-attention routes (issue 5, route 7a)."""

from __future__ import annotations

import pytest

from slimsam_edge.research.roofline import attention_floor, encoder_floor_ratio, encoder_ms, exact_route_bound
from slimsam_edge.models.spec import PRESETS

RATES = {"threads": 2, "gemm_size": 2048, "gemm_gflops": 116.0, "exp_per_s": 2.0e9}


def _report(plain_rows, windowed_rows):
    return {"models": [{"name": "SlimSAM-77 architecture @1024, random weights", "rows": plain_rows},
                       {"name": "SlimSAM-77 all-windowed @1024 (route 7b), random weights", "rows": windowed_rows}]}


def _row(backend, precision, ms):
    return {"backend": backend, "precision": precision, "encoder_p50_ms": ms}


def test_floor_counts_both_matmuls_and_one_exp_per_score():
    f = attention_floor(heads=2, tokens=10, head_dim=3, gemm_gflops=1.0, exp_per_s=1e6)
    assert f["exps"] == 200 and f["flops"] == 4 * 200 * 3
    assert f["matmul_ms"] == pytest.approx(2400 / 1e9 * 1e3)
    assert f["floor_ms"] == pytest.approx(f["matmul_ms"] + 200 / 1e6 * 1e3)
    with pytest.raises(ValueError):
        attention_floor(heads=0, tokens=10, head_dim=3, gemm_gflops=1.0, exp_per_s=1.0)


def test_bound_on_slimsam77_uses_the_bf16_baseline_when_it_ran():
    spec = PRESETS["vit_p77"].encoder
    report = _report([_row("openvino", "fp32", 2200.0), _row("openvino", "bf16", 1000.0)],
                     [_row("openvino", "fp32", 600.0), _row("openvino", "bf16", None)])
    b = exact_route_bound(report, spec, spec.global_attn_indexes[0], RATES)
    assert b["baseline"] == "openvino/bf16" and b["plain_ms"] == 1000.0 and b["rest_ms"] == 600.0
    assert b["floor_ratio"] == encoder_floor_ratio(rest_ms=600.0, floor_block_ms=b["floor_ms"], blocks=4, plain_ms=1000.0)
    assert b["exps"] == 12 * 4096 * 4096
    text = "\n".join(b["lines"])
    assert f"**{b['floor_ratio']}x** of plain" in text and "17x smaller" in text


def test_bound_without_encoder_rows_says_so():
    spec = PRESETS["vit_p77"].encoder
    b = exact_route_bound({}, spec, 2, RATES, source="missing.json")
    assert "floor_ratio" not in b and "No plain and all-windowed SlimSAM-77 rows in missing.json" in b["lines"][-1]
    assert encoder_ms({"models": []}, "x") is None
