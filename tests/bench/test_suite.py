"""bench_suite on the sam-mini bundle: interleaved repeats pooled into one row per scenario, the
accuracy of the timed runtime, n/a with reasons (energy, peak, peers), ratios, outputs."""

from __future__ import annotations

import csv
import io
import json

import pytest

from slimsam_edge.bench.diff import diff_reports
from slimsam_edge.bench.harness import BenchConfig
from slimsam_edge.bench.render import COLUMNS, reasons, to_csv, to_markdown
from slimsam_edge.bench.suite import bench_suite, save_history
from slimsam_edge.errors import UsageError
from slimsam_edge.runtimes.tuning import RuntimeTuning

BASE = BenchConfig(bundle="", backend="", runs=2, prompts=2, warmup=0, image_hw=(96, 128), threads=1, points_per_side=4)


@pytest.fixture(scope="module")
def report(mini_bundle):
    seen = []
    rep = bench_suite([str(mini_bundle)], backends=["onnxruntime"], scenarios=("click", "everything"),
                      repeats=2, base=BASE, accuracy_limit=2, peak=False,
                      progress=lambda done, total, label: seen.append((done, total)))
    rep["_progress"] = seen
    return rep


def test_rows_pool_interleaved_repeats(report):
    rows = report["rows"]
    assert [(r["backend"], r["precision"], r["scenario"]) for r in rows] == [
        ("onnxruntime", "fp32", "click"), ("onnxruntime", "fp32", "everything")]
    # round-robin with a rotating start: click, everything, then everything, click
    assert report["protocol"]["order"] == [[0, 0], [1, 0], [1, 1], [0, 1]]
    click = rows[0]
    assert click["repeats"] == 2
    enc = click["stages"]["encoder"]
    assert enc["n"] == 4 and len(enc["repeat_p50_ms"]) == 2 and enc["spread_ms"] >= 0
    assert click["stages"]["decoder_plus_postprocess"]["n"] == 4
    assert click["counts"] == {"images": 4, "prompts": 4}
    assert rows[1]["stages"]["everything"]["n"] == 4 and rows[1]["counts"]["masks_median"] >= 0
    assert click["ratio"] == 1.0 and rows[1]["ratio"] == 1.0  # first of its own scenario
    assert report["_progress"][-1][0] == report["_progress"][-1][1]


def test_accuracy_of_the_timed_runtime_and_reasons(report):
    acc = report["rows"][0]["accuracy"]
    assert 0 < acc["point_miou"] <= 1 and 0 < acc["box_miou"] <= 1 and acc["images"] == 2
    assert acc["agreement_fp32"] == 1.0 and acc["data"] == "procedural held-out"
    eff = report["rows"][0]["efficiency"]
    assert eff["encoder_gmacs"] > 0 and eff["pct_of_peak"] is None and "no peak" in eff["reason"]
    assert "click scenario" in report["rows"][1]["efficiency"]["reason"]
    energy = report["rows"][0]["energy"]["per_image"]
    if energy["joules_per_item"] is None:  # no meter on this machine: a reason, never 0
        assert energy["reason"]
    json.dumps({k: v for k, v in report.items() if k != "_progress"}, allow_nan=False, default=str)


def test_outputs_and_diff_against_itself(report, tmp_path):
    rows = list(csv.reader(io.StringIO(to_csv(report))))
    assert rows[0] == list(COLUMNS) and len(rows) == 3
    md = to_markdown(report)
    assert md.startswith("| row |") and md.count("\n| ") == 2 and "Machine:" in md and "interleaved repeats" in md
    assert any("% of peak" in line for line in reasons(report))
    hist = tmp_path / "history.jsonl"
    save_history(hist, report)
    save_history(hist, report)
    lines = hist.read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[1])["schema"] == report["schema"]
    assert not diff_reports(json.loads(lines[0]), json.loads(lines[1])).regressions


def test_bad_subjects_are_refused(tmp_path):
    with pytest.raises(UsageError, match="at least one bundle"):
        bench_suite([])
    with pytest.raises(UsageError, match="not a bundle folder"):
        bench_suite([str(tmp_path)])


def test_video_scenario_through_the_pipeline(mini_bundle):
    from dataclasses import replace

    from slimsam_edge.bench.harness import bench_in_process

    cfg = replace(BASE, bundle=str(mini_bundle), backend="onnxruntime", scenario="video", runs=3, raw=True,
                  image_hw=(120, 160))
    res = bench_in_process(cfg)
    assert res["scenario"] == "video" and res["frame"]["n"] == 3 and len(res["raw_s"]["frame"]) == 3
    assert res["counts"]["frames"] == 3 and res["counts"]["dropped"] == 0 and res["counts"]["objects"] >= 1
    assert res["extra"]["fps"] > 0
    assert res["energy"]["per_frame"]["count"] == 3


def test_video_scenario_tracks_the_objects_it_is_asked_for(mini_bundle):
    """objects=1 is click-to-mask tracking (encoder + one prompt per frame); the clip has that many."""
    from dataclasses import replace

    from slimsam_edge.bench.harness import bench_in_process

    cfg = replace(BASE, bundle=str(mini_bundle), backend="onnxruntime", scenario="video", runs=2, image_hw=(120, 160))
    assert [bench_in_process(replace(cfg, objects=n))["counts"]["objects"] for n in (1, 2)] == [1, 2]


def test_video_scenario_runs_the_tuning_it_is_given(tiny_bundle):
    """The tuning reaches the predictor (OpenVINO's notes say what the encoder compiled with), the
    pipeline runs encode_requests encode threads, and the result records it."""
    from dataclasses import replace

    from slimsam_edge.bench.harness import bench_in_process

    cfg = replace(BASE, bundle=str(tiny_bundle), backend="openvino", scenario="video", runs=4, image_hw=(96, 128),
                  tuning=RuntimeTuning(hint="throughput", encoder_threads=1, decoder_threads=1, encode_requests=2))
    res = bench_in_process(cfg)
    assert res["tuning"] == {"hint": "throughput", "encoder_threads": 1, "decoder_threads": 1,
                             "encode_requests": 2, "streams": None}
    assert res["config"]["tuning"]["hint"] == "throughput" and res["extra"]["encoders"] == 2
    assert res["counts"]["frames"] == 4 and res["counts"]["dropped"] == 0
    assert any("PERFORMANCE_HINT=THROUGHPUT" in n and "infer requests: 2" in n for n in res["notes"])
    with pytest.raises(UsageError, match="onnxruntime has no performance hint"):
        bench_in_process(replace(cfg, backend="onnxruntime"))


def test_data_without_labels_is_refused_before_measuring(mini_bundle, tmp_path):
    import cv2
    import numpy as np

    folder = tmp_path / "photos"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.jpg"), np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(UsageError, match="accuracy needs labelled images"):
        bench_suite([str(mini_bundle)], data=str(folder), base=BASE, peak=False,
                    progress=lambda *a: pytest.fail("measured before refusing"))


# -- peers in reduced precision: `bench --peer NAME --precision int8`, `bench PEERBUNDLE --precision int8` --

@pytest.fixture(scope="module")
def peer_int8(tmp_path_factory):
    """MobileSAM's architecture at 64 px, ONNX Runtime fp32 + int8 (a quick calibration)."""
    from slimsam_edge.exporters.peer_export import export_peer
    from slimsam_edge.exporters.precision import PrecisionOptions

    return export_peer("mobilesam", tmp_path_factory.mktemp("peer") / "mobilesam", image_size=64,
                       backends=("onnxruntime",), precisions=("fp32", "int8"), validate=False, reference=False,
                       precision_options=PrecisionOptions(calib_images=2, gate_images=1, allow_accuracy_drop=True))


CLI_BENCH = ("--runs", "1", "--warmup", "0", "--prompts", "1", "--repeats", "1", "--image-size", "60x90",
             "--no-peak", "--energy", "none", "--threads", "1", "--json")


def test_a_peer_bundle_runs_in_int8_labelled_latency_only(peer_int8):
    from typer.testing import CliRunner

    from slimsam_edge.cli.app import app

    r = CliRunner().invoke(app, ["bench", str(peer_int8), "--backend", "onnxruntime", "--precision", "int8",
                                 *CLI_BENCH])
    assert r.exit_code == 0, r.output
    [row] = json.loads(r.stdout)["rows"]
    assert (row["backend"], row["precision"], row["peer"]) == ("onnxruntime", "int8", "mobilesam")
    assert "random weights: latency only" in row["accuracy"]["reason"]  # never an mIoU of random weights
    assert row["stages"]["encoder"]["n"] == 1


def test_bench_peer_exports_the_precisions_asked_for(peer_int8, monkeypatch):
    """``--peer mobilesam --precision int8``: the peer is exported with its int8 artifacts for the
    backends asked for (the export itself is the fixture's, copied: export_peer is tested apart)."""
    import shutil

    from typer.testing import CliRunner

    import slimsam_edge.exporters.peer_export as pe
    from slimsam_edge.cli.app import app

    asked = []

    def export(name, out, **kw):
        asked.append((name, kw["backends"], kw["precisions"]))
        shutil.copytree(peer_int8, out)
        return out

    monkeypatch.setattr(pe, "export_peer", export)
    r = CliRunner().invoke(app, ["bench", "--peer", "mobilesam", "--backend", "onnxruntime", "--precision", "int8",
                                 *CLI_BENCH])
    assert r.exit_code == 0, r.output
    assert asked == [("mobilesam", ("onnxruntime",), ("fp32", "int8"))]
    [row] = json.loads(r.stdout)["rows"]
    assert (row["model"], row["precision"], row["peer"]) == ("mobilesam (random weights)", "int8", "mobilesam")
