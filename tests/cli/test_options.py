"""``--decoder-precision`` (one option of cli/options.py) on segment, eval and bench: passed to
EdgePredictor.from_bundle, reported where it differs, refused in one line (exit 2) where the bundle
or the CPU lacks it.

A copy of the shipped sam-mini bundle whose ONNX Runtime fp32 files are also listed as ``int8``
artifacts stands in for a bundle with another decoder precision (what is tested is the wiring)."""

from __future__ import annotations

import dataclasses
import json
import shutil

import cv2
import pytest
from typer.testing import CliRunner

from helpers import assert_one_line_error, photo
from slimsam_edge.bundle import Artifact, load_bundle, write_manifest
from slimsam_edge.cli.app import app

NO_BF16 = {"supports_bf16": False, "cpu_model": "Fake CPU without BF16", "is_jetson": False}
WITH_BF16 = dict(NO_BF16, supports_bf16=True, cpu_model="Fake CPU with BF16")
BENCH = ("--runs", "1", "--warmup", "0", "--prompts", "1", "--repeats", "1", "--image-size", "60x90", "--no-peak",
         "--no-accuracy", "--energy", "none", "--threads", "1")


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def int8_listed(tmp_path_factory, mini_bundle):
    """sam-mini's bundle with its ONNX Runtime fp32 files listed as int8 artifacts too."""
    root = tmp_path_factory.mktemp("dec") / "b"
    shutil.copytree(mini_bundle, root)
    m = load_bundle(root).manifest
    extra = [Artifact.from_files(root, a.graph, a.backend, "int8", a.path, [f for f in a.files if f != a.path])
             for a in m.artifacts if a.backend == "onnxruntime" and a.precision == "fp32"]
    write_manifest(root, dataclasses.replace(m, artifacts=[*m.artifacts, *extra]))
    return root


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "photo.png"
    cv2.imwrite(str(path), photo((60, 90), seed=2)[..., ::-1])
    return path


def _machine(monkeypatch, info: dict) -> None:
    from slimsam_edge.devices import profile

    monkeypatch.setattr(profile, "_DETECTED", [info])


def test_segment_eval_bench_run_and_report_the_decoder_precision(int8_listed, image, tmp_path):
    r = run("segment", image, "--bundle", int8_listed, "--out", tmp_path / "m.png", "--point", "40,30",
            "--backend", "onnxruntime", "--precision", "fp32", "--decoder-precision", "int8", "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert (res["precision"], res["decoder_precision"]) == ("fp32", "int8")
    r = run("segment", image, "--bundle", int8_listed, "--out", tmp_path / "e.json", "--everything",
            "--points-per-side", "2", "--backend", "onnxruntime", "--decoder-precision", "int8")
    assert r.exit_code == 0 and "[onnxruntime/fp32, decoder int8]" in r.stdout, r.output

    r = run("eval", int8_listed, "--backend", "onnxruntime", "--decoder-precision", "int8", "--limit", "1", "--json")
    assert r.exit_code == 0, r.output
    model = json.loads(r.stdout)["model"]
    assert (model["precision"], model["decoder_precision"]) == ("fp32", "int8")

    r = run("bench", int8_listed, "--backend", "onnxruntime", "--precision", "fp32", "--precision", "int8",
            "--decoder-precision", "int8", *BENCH, "--json")
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    rows = {row["precision"]: row for row in rep["rows"]}
    assert rows["fp32"]["decoder_precision"] == "int8" and rows["fp32"]["label"].endswith("onnxruntime/fp32 (decoder int8)")
    assert rows["int8"]["decoder_precision"] == "int8" and "decoder" not in rows["int8"]["label"]  # the same: said once
    assert rep["protocol"]["decoder_precision"] == "int8"


def test_the_default_decoder_precision_is_the_encoders(int8_listed, image, tmp_path):
    r = run("segment", image, "--bundle", int8_listed, "--out", tmp_path / "m.png", "--point", "40,30",
            "--backend", "onnxruntime", "--precision", "int8", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["decoder_precision"] == "int8"


def test_a_decoder_precision_the_bundle_lacks_is_refused(mini_bundle, image, tmp_path, monkeypatch):
    _machine(monkeypatch, NO_BF16)
    for precision, fragment in (("fp16", "fp16"), ("bf16", "bf16 needs a CPU with AVX512_BF16")):
        args = ("--backend", "onnxruntime", "--decoder-precision", precision)
        assert_one_line_error(run("segment", image, "--bundle", mini_bundle, "--out", tmp_path / "m.png",
                                  "--point", "1,1", *args), fragment)
        assert_one_line_error(run("eval", mini_bundle, "--limit", "1", *args), fragment)
        assert_one_line_error(run("bench", mini_bundle, *args, *BENCH), fragment)
    assert not list(tmp_path.iterdir())  # refused before anything was written
    assert_one_line_error(run("bench", mini_bundle, "--decoder-precision", "int4", *BENCH), "int4")
    assert_one_line_error(run("eval", mini_bundle / "model.safetensors", "--decoder-precision", "fp32",
                              "--limit", "1"), "--decoder-precision applies to bundles")


def test_bf16_decoder_on_a_bf16_machine(tiny_bundle, mini_bundle, image, tmp_path, monkeypatch):
    """A faked BF16 CPU: OpenVINO's decoder opens with the bf16 hint behind the fp32 encoder (here
    the hint's capability check is faked too: the real CPU computes in f32); ONNX Runtime has no bf16
    and says so."""
    import slimsam_edge.runtimes.openvino.runner as ov_runner

    pytest.importorskip("openvino")
    _machine(monkeypatch, WITH_BF16)
    monkeypatch.setitem(ov_runner.PRECISION_HINTS, "bf16", ("f32", ()))
    r = run("segment", image, "--bundle", tiny_bundle, "--out", tmp_path / "m.png", "--point", "40,30",
            "--backend", "openvino", "--precision", "fp32", "--decoder-precision", "bf16", "--json")
    assert r.exit_code == 0, r.output
    assert (json.loads(r.stdout)["precision"], json.loads(r.stdout)["decoder_precision"]) == ("fp32", "bf16")
    assert_one_line_error(run("segment", image, "--bundle", mini_bundle, "--out", tmp_path / "o.png", "--point",
                              "1,1", "--backend", "onnxruntime", "--decoder-precision", "bf16"),
                          "onnxruntime cannot run bf16")
