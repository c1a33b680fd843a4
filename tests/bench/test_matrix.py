"""The runtime x precision matrix behind docs/results/precision.md (tiny model, few runs)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from slimsam_edge.bench.matrix import MatrixConfig, MatrixModel, machine_summary, render_markdown, run_matrix
from slimsam_edge.research.precision_report import ratio_to_baseline

from helpers import TINY_SPEC, tiny_sam

SMALL = replace(TINY_SPEC, encoder=replace(TINY_SPEC.encoder, img_size=128, window_size=4))


MODEL = MatrixModel("tiny @128", lambda: (tiny_sam(spec=SMALL), SMALL), trained=True, key="tiny-seed0",
                    pairs=(("onnxruntime", "fp32"), ("onnxruntime", "fp16"), ("openvino", "bf16")))


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    return MatrixConfig(workdir=str(tmp_path_factory.mktemp("matrix")), runs=1, warmup=0, prompts=2,
                        gate_images=2, image_hw=(96, 160), threads=1)


@pytest.fixture(scope="module")
def result(cfg):
    return run_matrix([MODEL], cfg)


def test_every_pair_gets_numbers_or_a_reason(result) -> None:
    rows = {(r["backend"], r["precision"]): r for r in result["models"][0]["rows"]}
    assert set(rows) == {("onnxruntime", "fp32"), ("onnxruntime", "fp16"), ("openvino", "bf16")}
    for key in (("onnxruntime", "fp32"), ("onnxruntime", "fp16")):
        assert rows[key]["encoder_p50_ms"] > 0 and rows[key]["decoder_p50_ms"] > 0
    fp16 = rows[("onnxruntime", "fp16")]
    assert 0.9 <= fp16["agreement"] <= 1.0 and 0.0 <= fp16["miou"] <= 1.0
    assert fp16["miou_fp32"] is not None and "agreement" not in rows[("onnxruntime", "fp32")]
    bf16 = rows[("openvino", "bf16")]
    if machine_summary()["supports_bf16"]:
        assert bf16["encoder_p50_ms"] > 0
    else:  # refused at run time, with the reason in the table instead of a number
        assert "bf16" in bf16["error"]
    assert set(result["models"][0]["export_s"]) == {"fp16", "bf16"}


def test_markdown_lists_every_row(result) -> None:
    md = render_markdown(result, command="python scripts/precision.py --models sam-mini", extra=["## more", "x"])
    assert md.count("| onnxruntime |") == 2 and "| openvino | bf16 |" in md
    assert "Regenerate: `python scripts/precision.py --models sam-mini`" in md and md.rstrip().endswith("x")
    assert "1 (reference)" in md


def test_ratio_prefers_bf16_then_fp32() -> None:
    rows = [{"backend": "openvino", "precision": "fp32", "encoder_p50_ms": 100.0},
            {"backend": "openvino", "precision": "bf16", "error": "no bf16"}]
    assert ratio_to_baseline(rows, 25.0) == (0.25, "openvino/fp32")
    rows[1] = {"backend": "openvino", "precision": "bf16", "encoder_p50_ms": 50.0}
    assert ratio_to_baseline(rows, 25.0) == (0.5, "openvino/bf16")
    assert ratio_to_baseline([], 1.0) == (None, "none")


def test_reuse_takes_the_same_bundles(result, cfg) -> None:
    from dataclasses import replace as dc_replace
    from pathlib import Path

    manifest = next(Path(cfg.workdir).glob("*/fp16/manifest.json"))
    before = manifest.stat().st_mtime_ns
    said: list[str] = []
    again = run_matrix([dc_replace(MODEL, pairs=(("onnxruntime", "fp16"),))], dc_replace(cfg, reuse=True), said.append)
    assert manifest.stat().st_mtime_ns == before and any("reusing" in m for m in said)
    first = {(r["backend"], r["precision"]): r for r in result["models"][0]["rows"]}
    assert again["models"][0]["rows"][0]["agreement"] == first[("onnxruntime", "fp16")]["agreement"]


def test_route_b_section_compares_windowed_and_mobilesam_with_plain() -> None:
    from slimsam_edge.research.precision_report import route_b_lines

    plain = {"name": "SlimSAM-77 architecture @1024, random weights", "rows": [
        {"backend": "openvino", "precision": "fp32", "encoder_p50_ms": 1000.0},
        {"backend": "openvino", "precision": "bf16", "error": "CPU does not support bf16"}]}
    windowed = {"name": "SlimSAM-77 all-windowed @1024 (route 7b), random weights", "rows": [
        {"backend": "openvino", "precision": "int8", "encoder_p50_ms": 300.0}]}
    result = {"models": [plain, windowed], "mobilesam": {"rows": [
        {"runtime": "openvino", "precision": "int8", "p50_ms": 400.0}, {"runtime": "onnxruntime", "error": "x"}]}}
    cost = [{"ratio": 0.77, "global_attention": g, "point": p, "kept": p / 0.6, "box": 0.5, "teacher_point": 0.6}
            for g, p in (("keep", 0.45), ("windowed", 0.42))]
    text = "\n".join(route_b_lines(result, cost, 100))
    assert "| all-windowed | openvino/int8 | 300.0 | 0.3 (of openvino/fp32) |" in text
    assert "| MobileSAM (TinyViT-5M, random weights) | openvino/int8 | 400.0 | 0.4 (of openvino/fp32) |" in text
    assert "| 0.77 | windowed | 0.4200 (70.0%) | 0.5000 |" in text and "100 steps per phase" in text
    assert route_b_lines({"models": []}, [], 100) == []
