"""The threads report on the tiny bundle: every configuration measured in interleaved rounds, the
page and its JSON (counts and fields only; nothing asserts on a time)."""

from __future__ import annotations

import json

from slimsam_edge.research import threads_report
from slimsam_edge.research.threads_report import CONFIGS, measure_model, reading, render


def test_measure_model_runs_each_configuration_and_the_page_tables_them(tiny_bundle, capsys):
    configs = [c for c in CONFIGS if c.name in ("latency", "throughput-x2", "split-2/1")]
    res = measure_model("sam-mini", tiny_bundle, configs, rounds=2, frames=2, image_hw=(64, 96))
    assert [r["name"] for r in res["configs"]] == ["latency", "throughput-x2", "split-2/1"]
    for r in res["configs"]:
        assert r["frames"] == 4 and len(r["fps_rounds"]) == 2 and r["fps"] > 0
        assert 0 < r["latency_p50_ms"] <= r["latency_p95_ms"]
    by = {r["name"]: r for r in res["configs"]}
    assert "PERFORMANCE_HINT=THROUGHPUT" in by["throughput-x2"]["compiled"]
    assert "INFERENCE_NUM_THREADS=2" in by["split-2/1"]["compiled"]
    assert by["throughput-x2"]["tuning"]["encode_requests"] == 2
    # the rounds rotate the order: round 1 starts with the first configuration, round 2 with the second
    log = [ln.split(": ")[0].split()[-1] for ln in capsys.readouterr().err.splitlines() if " round " in ln]
    assert log == ["latency", "throughput-x2", "split-2/1", "throughput-x2", "split-2/1", "latency"]
    result = {"machine": {"cpu": "Test CPU", "cores": 2, "isa": ["avx2"], "supports_bf16": False},
              "loadavg_start": "1.00", "loadavg_end": "2.00", "elapsed_s": 60.0, "image_hw": [64, 96],
              "models": [res]}
    result["reading"] = reading(result)
    md = render(result, "python scripts/threads.py")
    assert "`python scripts/threads.py`" in md and "flags: avx2" in md
    assert md.count("| throughput-x2 | throughput | default | default | 2 |") == 1
    assert "| latency | latency | default | default | 1 |" in md and "1.00x" in md
    assert "LATENCY baseline" in md and "Round-to-round spread" in md
    json.dumps(result)  # JSON-ready


def test_main_refuses_bad_arguments_in_one_line(tmp_path):
    import pytest

    from slimsam_edge.errors import UsageError

    with pytest.raises(UsageError, match="--image-size is HxW"):
        threads_report.main(["--image-size", "big", "--workdir", str(tmp_path)])
