"""The resolution report's page (fake measurements: the real ones take an hour)."""

from __future__ import annotations

from slimsam_edge.research.resolution_report import render


def test_render_tables_share_of_teacher_and_speed_ratios():
    result = {
        "machine": {"cpu": "Test CPU", "cores": 2, "isa": ["avx512_bf16", "amx_bf16"], "supports_bf16": True},
        "loadavg_start": "1.0", "loadavg_end": "2.0", "elapsed_s": 120.0,
        "miou": {"teacher": {"image_size": 256, "point": 0.8, "box": 0.9, "n_images": 64},
                 "settings": {"ratio": 0.5, "steps": 40, "lr": 1e-3}, "images": 1000,
                 "runs": [{"image_size": 256, "window": 8, "point": 0.72, "box": 0.8, "encoder_params": 1000,
                           "elapsed_s": 60.0},
                          {"image_size": 128, "window": 4, "point": 0.6, "box": 0.7, "encoder_params": 1000,
                           "elapsed_s": 30.0}]},
        "speed": {"runs": 3, "threads": None, "image_hw": [1500, 2250],
                  "rows": [{"image_size": s, "grid": s // 16, "window": w, "precision": p, "encoder_p50_ms": ms}
                           for s, w, p, ms in [(1024, 14, "fp32", 1000.0), (1024, 14, "bf16", 500.0),
                                               (512, 8, "fp32", 200.0), (512, 8, "bf16", 125.0)]]},
    }
    md = render(result, "python scripts/resolution.py")
    assert "`python scripts/resolution.py`" in md and "avx512_bf16, amx_bf16" in md
    assert "| 128 | 4 | 1,000 | 0.5 | 0.6000 | 0.7000 | 75.0% | 87.5% |" in md
    assert "| 512 | 32x32 | 8 | 200.0 | 125.0 | 0.20x | 0.25x |" in md


def test_speed_table_on_a_cpu_without_bf16_has_fp32_columns_and_says_why_bf16_is_missing():
    result = {
        "machine": {"cpu": "AVX2 CPU", "cores": 2, "isa": ["avx2"], "supports_bf16": False},
        "loadavg_start": "0.1", "loadavg_end": "0.2", "elapsed_s": 60.0,
        "speed": {"runs": 3, "threads": None, "image_hw": [720, 1280], "precisions": ["fp32"],
                  "refused": {"bf16": "bf16 needs a CPU with AVX512_BF16, AMX or Arm BF16"},
                  "rows": [{"image_size": s, "grid": s // 16, "window": w, "precision": "fp32", "encoder_p50_ms": ms}
                           for s, w, ms in [(1024, 14, 800.0), (512, 8, 100.0)]]},
    }
    md = render(result, "python scripts/resolution.py --mini-sizes")
    assert "| input size | token grid | window | fp32 p50 ms | fp32 vs 1024 |" in md
    assert "| 512 | 32x32 | 8 | 100.0 | 0.12x |" in md
    assert "Not timed here: bf16 (bf16 needs a CPU with AVX512_BF16" in md


def test_a_run_without_timings_points_at_the_speed_report():
    result = {"machine": {"cpu": "C", "cores": 2, "isa": [], "supports_bf16": False}, "loadavg_start": "0",
              "loadavg_end": "0", "elapsed_s": 6.0}
    assert "`python scripts/speed.py` ([speed.md](speed.md))" in render(result, "python scripts/resolution.py --speed-sizes")
