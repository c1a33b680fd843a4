"""The speed report: routes joined with their analogues' accuracy, goals, page, plot and the
command's flow (the measurements themselves are faked: the real run takes an hour)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slimsam_edge.research import speed_report as sr


def _bench_row(model, backend, precision, enc, dec, peer=None):
    return {"model": model, "peer": peer, "backend": backend, "precision": precision, "scenario": "click",
            "stages": {"encoder": {"p50_ms": enc}, "decoder_plus_postprocess": {"p50_ms": dec}}}


BENCH = [
    _bench_row("p77-1024-keep", "openvino", "fp32", 1000.0, 40.0),
    _bench_row("p77-768-windowed", "openvino", "int8", 90.0, 20.0),
    _bench_row("p77-512-windowed", "openvino", "int8", 40.0, 10.0),
    _bench_row("mobilesam (random weights)", "openvino", "fp32", 400.0, 30.0, peer="mobilesam"),
    _bench_row("mobilesam (random weights)", "openvino", "int8", 200.0, 30.0, peer="mobilesam"),
]
ACCURACY = [
    {"size": 256, "attention": "teacher", "backend": "openvino", "precision": "fp32", "point_miou": 0.8, "box_miou": 0.9},
    {"size": 256, "attention": "keep", "backend": "openvino", "precision": "fp32", "point_miou": 0.76, "box_miou": 0.8},
    {"size": 192, "attention": "windowed", "backend": "openvino", "precision": "int8", "point_miou": 0.72,
     "box_miou": 0.8},
    {"size": 128, "attention": "windowed", "backend": "openvino", "precision": "int8", "point_miou": 0.6,
     "box_miou": 0.7},
]


def test_join_maps_each_route_to_its_quarter_size_analogue_and_checks_both_goals():
    routes = {r["label"]: r for r in sr.join(BENCH, ACCURACY)}
    assert set(routes) == {"1024 px keep openvino/fp32", "768 px windowed openvino/int8",
                           "512 px windowed openvino/int8"}
    r768 = routes["768 px windowed openvino/int8"]
    assert r768["ratio"] == pytest.approx(90 / 200) and r768["kept"] == pytest.approx(0.9) and r768["meets"]
    assert r768["click_fps"] == pytest.approx(1000 / 110, abs=0.01)
    r512 = routes["512 px windowed openvino/int8"]  # fast but keeps 75 %: not both goals
    assert r512["kept"] == pytest.approx(0.75) and not r512["meets"]
    assert routes["1024 px keep openvino/fp32"]["ratio"] == pytest.approx(5.0)
    assert sr.pick_best(list(routes.values()))["label"] == "768 px windowed openvino/int8"


def test_a_route_without_its_analogue_has_no_kept_and_never_meets():
    routes = sr.join(BENCH, ACCURACY[:1])
    assert all(r["kept"] is None and not r["meets"] for r in routes)
    assert sr.pick_best(routes) is None


def test_runnable_refuses_bf16_without_bf16_and_keeps_it_with():
    ok, refused = sr.runnable(sr.PAIRS, {"supports_bf16": False, "cpu_model": "Old CPU"})
    assert ("openvino", "bf16") not in ok and ("openvino", "int8") in ok
    assert {(x["backend"], x["precision"]) for x in refused} == {("openvino", "bf16"), ("openvino", "int8-bf16")}
    assert all("Old CPU" in x["reason"] for x in refused)
    assert sr.runnable(sr.PAIRS, {"supports_bf16": True}) == (list(sr.PAIRS), [])


def _result(routes, video=()):
    return {"command": "python scripts/speed.py", "elapsed_s": 600.0,
            "machine": {"cpu": "Test CPU", "cores": 2, "isa": ["avx2"], "supports_bf16": False},
            "loadavg_start": "0.5", "loadavg_end": "0.7", "image": "720x1280", "repeats": 3,
            "settings": {"ratio": 0.5, "steps": 40, "lr": 1e-3}, "images": 1000, "accuracy_images": 64,
            "routes": routes, "mobilesam": [{"backend": "openvino", "precision": "int8", "encoder_ms": 200.0,
                                             "decoder_post_ms": 30.0}],
            "mobilesam_best": {"label": "openvino/int8", "encoder_ms": 200.0},
            "refused": [{"backend": "openvino", "precision": "bf16", "reason": "bf16 needs a CPU with BF16"}],
            "accuracy": ACCURACY, "video": list(video)}


def test_page_lists_goals_routes_mobilesam_refusals_and_analogues(tmp_path):
    video = [{"label": "768 px windowed openvino/int8", "fps": 7.5, "frame_p50_ms": 250.0, "objects": 3,
              "click_fps": 9.09}]
    md = sr.render(_result(sr.join(BENCH, ACCURACY), video))
    assert "**Encoder <= 0.5x MobileSAM's best with >= 88 % kept: met** by 1 route(s)" in md
    assert "| 768 px windowed openvino/int8 | 90.0 | 0.45x | 20.0 | 9.1 | 0.7200 | 90.0% | yes |" in md
    assert "| openvino/int8 | 200.0 | 30.0 |" in md
    assert "- openvino/bf16: bf16 needs a CPU with BF16" in md
    assert "| mini-128-windowed | openvino/int8 | 0.6000 | 0.7000 |" in md
    assert "| teacher (sam-mini) | openvino/fp32 |" in md
    assert "7.5 fps through the video pipeline" in md and "has no BF16" in md
    png = sr.plot(_result(sr.join(BENCH, ACCURACY)), tmp_path / "speed" / "routes.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_goal_line_says_not_met_and_names_what_came_closest():
    acc = [dict(a, point_miou=a["point_miou"] * 0.9) if a["attention"] != "teacher" else a for a in ACCURACY]
    line = sr.goal_lines(_result(sr.join(BENCH, acc)))[0]
    assert "not met** in this run" in line and "768 px windowed openvino/int8 keeps the most: 81.0%" in line


def test_main_measures_joins_and_writes_page_json_and_plot(tmp_path, monkeypatch):
    seen = {}

    def latency(a, ok, base):
        seen["pairs"], seen["runs"] = list(ok), base.runs
        return {"rows": BENCH, "loadavg_start": "0.1", "loadavg_end": "0.2", "peer": str(tmp_path / "peer"),
                "bundles": {"768-windowed": str(tmp_path / "b768"), "512-windowed": str(tmp_path / "b512"),
                            "1024-keep": str(tmp_path / "b1024")}}

    def students(sizes, attentions, *args, compress=True):
        seen["mini_sizes"] = list(sizes)
        return {}

    monkeypatch.setattr(sr, "measure_latency", latency)
    monkeypatch.setattr(sr, "students", students)
    monkeypatch.setattr(sr, "measure_accuracy", lambda minis, ok, limit, say: ACCURACY)
    def video_rows(routes, best, p77, peer, base, repeats, objects):
        seen["objects"] = objects
        return [{"label": sr.pick_best(routes)["label"], "fps": 5.0, "frame_p50_ms": 300.0, "objects": objects,
                 "click_fps": 9.0}]

    monkeypatch.setattr(sr, "video_rows", video_rows)
    out = tmp_path / "docs" / "speed.md"
    result = sr.main(["--out", str(out), "--runs", "2", "--sizes", "1024", "768", "512"])
    assert seen["mini_sizes"] == [256, 192, 128] and seen["runs"] == 2
    assert ("openvino", "int8") in seen["pairs"]
    assert result["mobilesam_best"]["label"] == "openvino/int8"
    assert json.loads(out.with_suffix(".json").read_text())["routes"][0]["label"] == "512 px windowed openvino/int8"
    assert seen["objects"] == 1  # the click-to-mask tracking: encoder + one prompt per frame
    assert "5.0 fps through the video pipeline (frame latency p50 300.0 ms, 1 object tracked per frame)" in out.read_text()
    assert (tmp_path / "docs" / "speed" / "routes.png").is_file() and "](speed/routes.png)" in out.read_text()
    other = out.with_name("speed-s240.md")  # another page name: its plot beside it, linked by that name
    other.with_suffix(".json").write_text(out.with_suffix(".json").read_text())
    sr.main(["--render-only", "--out", str(other)])
    assert (tmp_path / "docs" / "speed-s240" / "routes.png").is_file() and "](speed-s240/routes.png)" in other.read_text()
    assert not list(Path(out.parent).glob("*.tmp*"))


@pytest.mark.parametrize("size, says", [(1000, "not a multiple of the patch size 16"),
                                        (1040, "larger than the teacher's input 1024 px"),
                                        (528, "--image-size 132 is not a multiple of the patch size 16; sizes that work for this 256 px")])
def test_a_size_either_model_cannot_run_is_refused_before_any_work(size, says, capsys, monkeypatch):
    monkeypatch.setattr(sr, "measure_latency", lambda *a: pytest.fail("measured a refused size"))
    with pytest.raises(SystemExit) as err:
        sr.main(["--sizes", "768", str(size)])
    assert err.value.code == 2 and says in capsys.readouterr().err


def test_latency_only_times_and_stops_before_students(tmp_path, monkeypatch):
    monkeypatch.setattr(sr, "measure_latency", lambda a, ok, base: {"rows": BENCH})
    monkeypatch.setattr(sr, "students", lambda *a: pytest.fail("compressed students with --latency-only"))
    out = tmp_path / "speed.md"
    assert sr.main(["--latency-only", "--out", str(out)]) == {"rows": BENCH}
    assert not out.exists()


def test_no_compress_uses_only_finished_analogues(tmp_path, monkeypatch):
    from slimsam_edge.research import resolution_report

    settings = {"ratio": 0.5, "steps": 40, "lr": 1e-3, "eval_images": 16}
    done = tmp_path / "students" / "mini-192-windowed"
    done.mkdir(parents=True)
    (done / "model.safetensors").write_bytes(b"weights")
    from slimsam_edge.compress.pipeline import CompressConfig

    job = {"steps": 40, "lr": 1e-3, "eval_images": 16, "global_attention": "windowed", "image_size": 192}
    (done / "report.json").write_text(json.dumps({"config": CompressConfig(ratio=0.5, **job).identity()}))
    assert resolution_report.finished_run(done, {**settings, "global_attention": "windowed"}, 192)
    assert not resolution_report.finished_run(done, {**settings, "steps": 80, "global_attention": "windowed"}, 192)
    compressed, exported = [], []
    monkeypatch.setattr(resolution_report, "compress_run", lambda size, *a, name=None: compressed.append(name))
    monkeypatch.setattr(sr, "_export_int8", lambda load, key, out, reuse, say, calib_images=16: exported.append(out.name) or out)
    said = []
    got = sr.students([192, 128], ["windowed"], tmp_path / "students", tmp_path / "work", settings, 10, None, True,
                      said.append, compress=False)
    assert compressed == ["mini-192-windowed"] and sorted(got) == [(192, "windowed"), (256, "teacher")]
    assert exported == ["sam-mini", "mini-192-windowed"]
    assert any("mini-128-windowed: not compressed with these settings" in m for m in said)


def test_render_only_recomputes_from_the_json_and_names_the_timing_run(tmp_path):
    out = tmp_path / "speed.md"
    result = _result([], video=[{"label": "MobileSAM openvino/int8", "fps": 2.0, "frame_p50_ms": 900.0,
                                 "objects": 3}])
    result.update({"latency_rows": BENCH, "latency_command": "python scripts/speed.py --latency-only"})
    out.with_suffix(".json").write_text(json.dumps(result))
    got = sr.main(["--render-only", "--out", str(out)])
    assert got["routes"][0]["label"] == "512 px windowed openvino/int8"
    md = out.read_text()
    assert "with the timings of an earlier `python scripts/speed.py --latency-only`" in md
    assert "MobileSAM openvino/int8:** 2.0 fps" in md and "serial encoder + one prompt: 4.3 fps" in md


def test_decoder_steps_reach_the_analogues_settings_and_the_page(tmp_path, monkeypatch):
    from slimsam_edge.research import resolution_report

    seen = {}
    monkeypatch.setattr(sr, "measure_latency", lambda a, ok, base: {
        "rows": BENCH, "loadavg_start": "0.1", "loadavg_end": "0.2", "peer": str(tmp_path / "peer"), "bundles": {}})
    monkeypatch.setattr(sr, "students", lambda sizes, attentions, sdir, wdir, settings, *a, compress=True:
                        seen.setdefault("settings", settings) and {})
    monkeypatch.setattr(sr, "measure_accuracy", lambda minis, ok, limit, say: ACCURACY)
    monkeypatch.setattr(sr, "video_rows", lambda *a: [])
    out = tmp_path / "speed.md"
    sr.main(["--out", str(out), "--decoder-steps", "200", "--steps", "240", "--decoder-trains", "encoder+decoder"])
    assert seen["settings"]["decoder_steps"] == 200 and seen["settings"]["decoder_lr"] == 1e-4
    assert seen["settings"]["decoder_trains"] == "encoder+decoder"
    assert "then (`--decoder-steps`) the encoder and mask decoder tuned on the teacher's masks for 200 steps" in out.read_text()
    # a run finished without the decoder phase is not an analogue of these settings (it is continued)
    done = tmp_path / "mini-192"
    done.mkdir()
    (done / "model.safetensors").write_bytes(b"w")
    from slimsam_edge.compress.pipeline import CompressConfig

    plain = {"ratio": 0.5, "steps": 240, "lr": 1e-3, "eval_images": 16}
    (done / "report.json").write_text(json.dumps({"config": CompressConfig(image_size=192, **plain).identity()}))
    assert resolution_report.finished_run(done, plain, 192)
    assert not resolution_report.finished_run(done, seen["settings"], 192)
