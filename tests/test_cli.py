from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from helpers import assert_one_line_error, photo
from slimsam_edge.cli.app import app

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args])




@pytest.fixture(scope="module")
def image_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "photo.jpg"
    cv2.imwrite(str(path), photo((300, 450), seed=2)[..., ::-1])
    return path


def test_help_does_not_import_torch():
    code = textwrap.dedent("""
        import sys
        from slimsam_edge.cli.app import app
        try:
            app(["--help"])
        except SystemExit:
            pass
        for cmd in ("info", "export", "build", "segment", "bench", "devices", "eval", "data", "compress", "demo", "train-reference", "verify"):
            try:
                app([cmd, "--help"])
            except SystemExit:
                pass
        print("TORCH" if "torch" in sys.modules else "NO-TORCH")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "NO-TORCH"
    libs = ("slimsam_edge.demo", "slimsam_edge.compress.job", "slimsam_edge.eval.run", "slimsam_edge.bench.suite",
            "slimsam_edge.apps.segment", "slimsam_edge.data.inspect")
    code = f"import sys, {', '.join(libs)}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"  # the commands' library calls import torch only when they run


def test_info_json(tiny_checkpoint):
    r = run("info", tiny_checkpoint, "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["model_type"] == "custom"
    assert [b["qkv_dim"] for b in data["encoder"]["blocks"]] == [64, 48, 32, 64]
    assert data["macs"]["image_encoder"]["attention"] > 0
    assert data["params"]["total"] > data["params"]["image_encoder"] > 0


def test_info_table_and_bundle(tiny_checkpoint, tiny_bundle):
    r = run("info", tiny_checkpoint)
    assert r.exit_code == 0 and "attention" in r.stdout and "mask decoder" in r.stdout
    r = run("info", tiny_bundle, "--json")
    assert r.exit_code == 0
    assert any("mask_decoder_lowres/openvino" in a for a in json.loads(r.stdout)["artifacts"])


def test_export_segment_bench_end_to_end(tmp_path, tiny_checkpoint, image_file):
    out = tmp_path / "bundle"
    r = run("export", tiny_checkpoint, "--target", "cpu", "--out", out, "--json")
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert all(v["ok"] for v in summary["validation"].values())
    mask = tmp_path / "mask.png"
    r = run("segment", image_file, "--bundle", out, "--point", "200,150", "--point", "50,40,0",
            "--box", "100,80,400,280", "--out", mask, "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    m = cv2.imread(str(mask), cv2.IMREAD_GRAYSCALE)
    assert m.shape == (300, 450) and set(np.unique(m)) <= {0, 255}
    assert int((m > 0).sum()) == res["area"]
    overlay = cv2.imread(res["overlay"])
    assert overlay.shape == (300, 450, 3)
    md, hist = tmp_path / "bench.md", tmp_path / "history.jsonl"
    r = run("bench", out, "--backend", "onnxruntime", "--backend", "openvino", "--runs", "2", "--repeats", "1",
            "--warmup", "1", "--prompts", "3", "--image-size", "300x450", "--no-accuracy", "--no-peak",
            "--energy", "none", "--md", md, "--save", hist, "--json")
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert [x["backend"] for x in rep["rows"]] == ["onnxruntime", "openvino"]
    for x in rep["rows"]:
        st = x["stages"]
        assert st["encoder"]["n"] == 2 and st["decoder"]["n"] == 3
        assert st["encoder"]["p50_ms"] > 0 and x["peak_rss_mb"] > 0 and x["cold_start_s"] > 0
        assert st["preprocess"]["p50_ms"] >= 0 and st["decoder_plus_postprocess"]["p99_ms"] > 0
        assert x["accuracy"]["reason"].startswith("accuracy was turned off")
    assert rep["machine"]["cores_logical"] >= 1 and rep["rows"][0]["ratio"] == 1.0
    assert md.read_text().startswith("| row |") and len(hist.read_text().splitlines()) == 1
    r = run("bench", "diff", hist, hist, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["regressions"] == 0


def test_bench_torch_backend_table(tiny_bundle):
    r = run("bench", tiny_bundle, "--backend", "torch", "--runs", "1", "--warmup", "0", "--repeats", "1",
            "--prompts", "2", "--image-size", "200x300", "--no-peak", "--energy", "none", "--accuracy-images", "2")
    assert r.exit_code == 0, r.output
    assert "torch/fp32" in r.stdout and "point mIoU" in r.stdout


# ---------------------------------------------------------------- bad input


def test_missing_corrupt_foreign_checkpoints(tmp_path):
    assert_one_line_error(run("info", tmp_path / "nope.pth"), "file not found")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    assert_one_line_error(run("export", bad, "--out", tmp_path / "b"), "cannot be read")
    assert not (tmp_path / "b").exists()
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "resnet.pth")
    assert_one_line_error(run("info", tmp_path / "resnet.pth"), "not a SAM-family checkpoint")


def test_model_type_errors(tiny_checkpoint):
    assert_one_line_error(run("info", tiny_checkpoint, "--model-type", "vit_q"), "unknown model type")
    assert_one_line_error(run("info", tiny_checkpoint, "--model-type", "vit_p77"), "do not match model type")


def test_pickle_needs_consent(tmp_path, tiny_model):
    torch.save(tiny_model, tmp_path / "whole.pth")
    assert_one_line_error(run("info", tmp_path / "whole.pth"), "--trust-pickle")
    assert run("info", tmp_path / "whole.pth", "--trust-pickle", "--json").exit_code == 0


def test_segment_bad_inputs(tmp_path, tiny_bundle, image_file):
    mask = tmp_path / "m.png"
    not_image = tmp_path / "x.png"
    not_image.write_bytes(b"definitely not a png")
    assert_one_line_error(run("segment", not_image, "--bundle", tiny_bundle, "--point", "1,1", "--out", mask), "decode")
    assert_one_line_error(run("segment", image_file, "--bundle", tiny_bundle, "--point", "5000,10", "--out", mask), "outside")
    assert_one_line_error(run("segment", image_file, "--bundle", tiny_bundle, "--point", "1,2,3,4", "--out", mask), "expected 2 or 3 numbers")
    assert_one_line_error(run("segment", image_file, "--bundle", tiny_bundle, "--box", "1,2,3", "--out", mask), "expected 4 numbers")
    assert_one_line_error(run("segment", image_file, "--bundle", tiny_bundle, "--out", mask), "no prompt")
    assert_one_line_error(run("segment", image_file, "--bundle", tiny_bundle, "--point", "10,10", "--backend", "tensorrt", "--out", mask), "no artifact image_encoder/tensorrt")
    assert not mask.exists()


def test_tampered_bundle_cli(tmp_path, tiny_bundle, image_file):
    copy = tmp_path / "b"
    shutil.copytree(tiny_bundle, copy)
    with open(copy / "openvino" / "image_encoder.bin", "r+b") as f:
        f.seek(100)
        f.write(b"\x00\x01\x02\x03")
    r = run("segment", image_file, "--bundle", copy, "--point", "10,10", "--out", tmp_path / "m.png")
    assert_one_line_error(r, "sha256")
    assert_one_line_error(run("bench", copy), "sha256")


def test_backend_not_installed_names_the_extra(tiny_bundle, tmp_path, image_file):
    code = textwrap.dedent(f"""
        import sys
        sys.modules["openvino"] = None  # as if the openvino extra were not installed
        from slimsam_edge.cli.app import app
        app(["segment", {str(image_file)!r}, "--bundle", {str(tiny_bundle)!r}, "--point", "10,10",
             "--backend", "openvino", "--out", {str(tmp_path / "m.png")!r}])
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 2
    assert "slimsam-edge[openvino]" in out.stderr and "Traceback" not in out.stderr


def test_debug_shows_traceback(tmp_path):
    r = runner.invoke(app, ["--debug", "info", str(tmp_path / "nope.pth")])
    assert r.exit_code != 0 and r.exception is not None


def test_demo_compresses_exports_evaluates_and_benches(tmp_path, tiny_checkpoint):
    import json

    out = tmp_path / "demo"
    r = runner.invoke(app, ["demo", "--out", str(out), "--checkpoint", str(tiny_checkpoint), "--images", "2",
                            "--compress-steps", "2", "--json"])
    assert r.exit_code == 0, r.output
    report = json.loads((out / "report.json").read_text())
    before, after = report["compress"]["encoder_params"]
    assert after < before
    assert set(report["eval"]) == {"teacher (torch)", "student (torch)", "bundle onnxruntime", "bundle openvino"}
    ev = report["eval"]
    # the student's bundle reproduces the student checkpoint's accuracy on the same data
    assert abs(ev["bundle onnxruntime"]["point_miou"] - ev["student (torch)"]["point_miou"]) <= 0.02
    assert {b["backend"] for b in report["bench"]} == {"torch", "onnxruntime", "openvino"}
    assert all(b["encoder_p50_ms"] > 0 for b in report["bench"])
    assert (out / "compressed" / "model.safetensors").is_file() and (out / "segment" / "overlay.png").is_file()
    assert "compressed with ratio 0.5" in (out / "report.md").read_text()


def test_bench_fast_resize_is_recorded(tiny_bundle):
    import json

    r = runner.invoke(app, ["bench", str(tiny_bundle), "--backend", "onnxruntime", "--runs", "1", "--warmup", "0",
                            "--prompts", "2", "--image-size", "300x450", "--resize", "fast", "--repeats", "1",
                            "--no-peak", "--no-accuracy", "--energy", "none", "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert rep["protocol"]["resize"] == "fast" and rep["rows"][0]["stages"]["preprocess"]["p50_ms"] > 0
    bad = runner.invoke(app, ["bench", str(tiny_bundle), "--resize", "cubic"])
    assert bad.exit_code == 2


def test_compress_command_forwards_one_request(tmp_path, monkeypatch):
    """`compress` turns its options into one CompressRequest and renders the report it gets back."""
    import slimsam_edge.compress.job as job

    seen = []
    report = {"model": str(tmp_path / "o" / "model.safetensors"), "elapsed_s": 90.0, "device": "cpu",
              "teacher": {"params": {"image_encoder": 4000}, "miou": {"point": 0.9, "box": 0.95}},
              "student": {"params": {"image_encoder": 1000}, "miou": {"point": 0.8, "box": 0.85},
                          "embed_dim": 24, "mlp_dims": [48], "head_dims": [6]},
              "best": {"step": 40, "miou": 0.81}}
    monkeypatch.setattr(job, "run_request", lambda req, quiet: seen.append((req, quiet)) or report)
    r = run("compress", "--out", tmp_path / "o", "--preset", "slimsam-77", "--steps", 7, "--lr", 3e-4,
            "--engine", "torch-pruning", "--device", "cpu", "--global-attention", "windowed")
    assert r.exit_code == 0, r.output
    (req, quiet), = seen
    assert (req.preset, req.ratio, req.target_params, req.device, quiet) == ("slimsam-77", None, None, "cpu", False)
    assert req.settings["steps"] == 7 and req.settings["lr"] == 3e-4 and req.settings["engine"] == "torch-pruning"
    assert req.settings["global_attention"] == "windowed" and req.settings["importance"] == "disturbed-taylor"
    assert "encoder 4,000 -> 1,000 params" in r.stdout and "1.5 min on cpu" in r.stdout
    assert "best validated step 40 (point mIoU 0.8100)" in r.stdout
    monkeypatch.setattr(job, "run_request", lambda req, quiet: None)  # another torchrun rank: silent
    r = run("compress", "--out", tmp_path / "o", "--ratio", 0.5)
    assert r.exit_code == 0 and r.stdout == ""


def test_compress_request_refuses_before_loading(tmp_path):
    from slimsam_edge.compress.job import CompressRequest
    from slimsam_edge.errors import UsageError

    with pytest.raises(UsageError, match="unknown compression settings: stepz"):
        CompressRequest(tmp_path, ratio=0.5, settings={"stepz": 3}).check()
    with pytest.raises(UsageError, match="unknown --engine 'fast'; choose slice or torch-pruning"):
        CompressRequest(tmp_path, ratio=0.5, settings={"engine": "fast"}).check()
    assert_one_line_error(run("compress", "--out", tmp_path, "--ratio", 0.5, "--engine", "fast"), "--engine")


def test_demo_command_prints_the_steps_and_renders_the_report(tmp_path, monkeypatch):
    """`demo` forwards its options to run_demo once and prints its Markdown (or JSON) report."""
    import slimsam_edge.demo as demo_mod

    calls = []

    def fake_run_demo(out, **kw):
        calls.append(kw)
        for i in range(1, 7):
            kw["progress"](i, 6, f"step {i}")
        return demo_mod.DemoReport("t.safetensors", str(out), bundle=str(out / "bundle"), seconds=2.0,
                                   eval={"teacher (torch)": {"point_miou": 0.5, "box_miou": 0.6, "images": 2,
                                                             "annotations": 5}},
                                   segment={"point": [1.0, 2.0], "mask": "m.png", "overlay": "o.png",
                                            "iou_with_ground_truth": 0.75})

    monkeypatch.setattr(demo_mod, "run_demo", fake_run_demo)
    out = tmp_path / "d"
    r = run("demo", "--out", out, "--images", 3, "--ratio", 0.77, "--compress-steps", 0)
    assert r.exit_code == 0, r.output
    assert {k: calls[0][k] for k in ("images", "ratio", "compress_steps", "quiet")} == \
        {"images": 3, "ratio": 0.77, "compress_steps": 0, "quiet": False}
    assert "6/6 step 6" in r.stderr and "| teacher (torch) | 0.5000 | 0.6000 | 2 | 5 |" in r.stdout
    assert r.stdout.rstrip().endswith(f"report: {out / 'report.md'}")
    r = run("demo", "--out", out, "--json")
    assert r.exit_code == 0 and "step" not in r.stderr and calls[1]["quiet"] is True
    assert json.loads(r.stdout)["segment"]["iou_with_ground_truth"] == 0.75


# ---------------------------------------------------------------- devices


def test_devices_lists_the_profiles():
    from slimsam_edge.devices import list_profiles

    r = run("devices", "--json")
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert [x["name"] for x in rows] == list_profiles()
    nx = next(x for x in rows if x["name"] == "jetson-orin-nx")
    assert nx["kind"] == "jetson" and nx["dla_cores"] == 1 and nx["backends"] == ["tensorrt", "onnxruntime"]
    table = run("devices")
    assert table.exit_code == 0 and "x86-gpu" in table.stdout and "intel-gpu" in table.stdout


def test_devices_detect_describes_this_machine():
    r = run("devices", "--detect", "--json")
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    m = rep["machine"]
    assert m["cores_logical"] >= 1 and "avx2" in m["cpu_flags"] and m["runtimes"]["onnxruntime"]
    assert m["runtime_devices"]["openvino"][0]["device"] == "CPU"
    assert rep["profile_that_fits"] == rep["profile"] == "cpu"  # no Jetson, no NVIDIA GPU here
    assert "fp32" in rep["precisions"] and ("bf16" in rep["precisions"]) == m["supports_bf16"]
    text = run("devices", "--detect")
    assert text.exit_code == 0 and "profile that fits" in text.stdout and "openvino device" in text.stdout


def test_devices_target_a_new_board_file(tmp_path):
    board = tmp_path / "my-board.toml"
    board.write_text('name = "my-board"\nkind = "jetson"\ndescription = "a board of mine"\n'
                     'backends = ["tensorrt"]\ndefault_precision = "fp16"\ndla_cores = 1\n'
                     '[precisions]\ntensorrt = ["fp32", "fp16"]\n[graphs]\ntensorrt = ["image_encoder"]\n'
                     '[tensorrt]\nworkspace_gb = 1\noptimization_level = 2\ndecoder_points = [1, 2, 4]\n'
                     'fp32_layers = []\n')
    r = run("devices", "--target", board, "--json")
    assert r.exit_code == 0, r.output
    (row,) = json.loads(r.stdout)
    assert row["name"] == "my-board" and row["tensorrt"]["decoder_points"] == [1, 2, 4] and row["source"] == str(board)
    r = run("devices", "--target", board, "--detect", "--json")
    assert json.loads(r.stdout)["profile"] == "my-board" and json.loads(r.stdout)["precisions"] == ["fp32", "fp16"]
    board.write_text(board.read_text().replace("optimization_level = 2", "optimisation_level = 2"))
    assert_one_line_error(run("devices", "--target", board), str(board), "'tensorrt.optimisation_level' is not a tensorrt key")
    board.write_text(board.read_text().replace('kind = "jetson"\n', ""))
    assert_one_line_error(run("devices", "--target", board), str(board), "missing key 'kind'")
    assert_one_line_error(run("devices", "--target", "toaster"), "unknown target 'toaster'", "x86-gpu")


def test_bench_runs_the_pair_picked_for_this_machine(tiny_bundle, image_file, tmp_path, monkeypatch):
    from slimsam_edge.devices import profile

    r = run("bench", tiny_bundle, "--runs", "1", "--warmup", "0", "--prompts", "1", "--image-size", "60x90",
            "--repeats", "1", "--no-peak", "--no-accuracy", "--energy", "none", "--json")
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert [(x["backend"], x["precision"]) for x in rep["rows"]] == [("onnxruntime", "fp32")]
    monkeypatch.setattr(profile, "_DETECTED", [{"supports_bf16": False, "cpu_model": "Fake CPU", "is_jetson": False}])
    assert_one_line_error(run("bench", tiny_bundle, "--precision", "bf16"), "bf16 needs a CPU with AVX512_BF16",
                          "Fake CPU has none")
    assert_one_line_error(run("segment", image_file, "--bundle", tiny_bundle, "--out", tmp_path / "m.png",
                              "--point", "1,1", "--precision", "bf16"), "bf16 needs a CPU")


# -- slimsam-edge build (TensorRT stand-in of tests/fake_tensorrt.py) ---------------------------

@pytest.fixture(scope="module")
def jetson_cli_bundle(tmp_path_factory, tiny_checkpoint):
    folder = tmp_path_factory.mktemp("jetson")
    here = os.getcwd()
    os.chdir(folder)  # a relative --out, as users type it
    try:
        r = run("export", tiny_checkpoint, "--target", "jetson-orin-nano", "--out", "b", "--no-simplify",
                "--calib-images", "16", "--gate-images", "2", "--allow-accuracy-drop")  # tiny random model: int8 agreement varies by CPU
    finally:
        os.chdir(here)
    out = folder / "b"
    assert r.exit_code == 0, r.output
    assert "tensorrt engines are built on the device" in r.output
    return out


def test_build_command_json_and_text(jetson_cli_bundle, tmp_path, monkeypatch):
    import fake_tensorrt
    import slimsam_edge.devices as devices

    copy = tmp_path / "b"
    shutil.copytree(jetson_cli_bundle, copy)
    monkeypatch.setattr(devices, "detect", lambda *a, **k: {"is_jetson": False, "jetson_release": None})
    fake_tensorrt.install(monkeypatch, "10.3.0", devices=(("NVIDIA RTX A2000", 8, 6),))
    r = run("build", copy, "--precision", "fp16", "--json")
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["precision"] == "fp16" and report["verification"]["passed"]
    assert report["fingerprint"]["gpu"] == "NVIDIA RTX A2000" and len(report["engines"]) == 2
    assert all((copy / e["path"]).is_file() for e in report["engines"])
    r = run("build", copy, "--precision", "fp32")
    assert r.exit_code == 0, r.output
    assert "built 2 fp32 engine(s)" in r.output and "NVIDIA RTX A2000 (sm 8.6), TensorRT 10.3.0" in r.output


def test_build_command_bad_input(jetson_cli_bundle, tiny_bundle, tmp_path, monkeypatch):
    import slimsam_edge.devices as devices

    monkeypatch.setattr(devices, "detect", lambda *a, **k: {"is_jetson": False, "jetson_release": None})
    assert_one_line_error(run("build", tiny_bundle), "has no TensorRT build plan", "export --target")
    assert_one_line_error(run("build", jetson_cli_bundle, "--precision", "bf16"), "TensorRT engines are fp32, fp16 or int8")
    assert_one_line_error(run("build", jetson_cli_bundle, "--precision", "fp16", "--dla", "0"),
                          "target jetson-orin-nano has no DLA cores")
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    assert_one_line_error(run("build", jetson_cli_bundle, "--precision", "fp16"),
                          "needs TensorRT, which is not installed", "slimsam-edge[tensorrt]")
    assert not (jetson_cli_bundle / "engines").exists() or not list((jetson_cli_bundle / "engines").glob("*.engine"))


def test_verify_passes_on_a_fresh_bundle(tiny_bundle):
    r = run("verify", tiny_bundle, "--backend", "onnxruntime")
    assert r.exit_code == 0, r.output
    assert "verified: onnxruntime/fp32" in r.stdout and "end to end" in r.stdout and "FAILED" not in r.stdout
    assert r.stdout.count(" ok ") == 8  # 5 graphs + 3 decoders end to end
    j = run("verify", tiny_bundle, "--json")
    assert j.exit_code == 0, j.output
    data = json.loads(j.stdout)
    assert data["passed"] and {c["precision"] for c in data["checks"]} == {"fp32"}
    assert all(c["value"] >= 0.99 for c in data["checks"])


def test_verify_fails_when_a_reference_output_is_doctored(tmp_path, tiny_bundle):
    """The npz rewritten with one output changed and rehashed: only the agreement check catches it."""
    from helpers import doctor_reference

    copy = tmp_path / "b"
    shutil.copytree(tiny_bundle, copy)
    doctor_reference(copy, "mask_decoder_lowres/1-point/out/low_res_masks", lambda a: -a)
    r = run("verify", copy, "--backend", "onnxruntime")
    line = assert_one_line_error(r, "below the gate", "mask_decoder_lowres/onnxruntime/fp32 mask_iou", "re-export")
    assert "FAILED" in r.stdout and "image_encoder/onnxruntime" not in line
    j = run("verify", copy, "--backend", "onnxruntime", "--json")
    assert j.exit_code == 2 and json.loads(j.stdout)["passed"] is False


def test_verify_refuses_a_tampered_reference_file(tmp_path, tiny_bundle):
    from helpers import doctor_reference

    copy = tmp_path / "b"
    shutil.copytree(tiny_bundle, copy)
    doctor_reference(copy, "image_encoder/0/in/image", lambda a: a + 1, rehash=False)
    assert_one_line_error(run("verify", copy), "reference/io.npz was modified", "re-export")


def test_verify_bad_input_is_one_line(tmp_path, tiny_bundle, monkeypatch):
    from slimsam_edge.runtimes import get_backend

    assert_one_line_error(run("verify", tiny_bundle, "--precision", "int8"),
                          "/int8 artifacts", "it holds", "onnxruntime/fp32")
    copy = tmp_path / "old"
    shutil.copytree(tiny_bundle, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["reference"], manifest["files"] = {}, {}  # as written before bundles carried reference I/O
    (copy / "manifest.json").write_text(json.dumps(manifest))
    assert_one_line_error(run("verify", copy), "no reference I/O", "re-export the bundle")
    monkeypatch.setattr(get_backend("openvino").runner, "available", classmethod(lambda cls: False))
    assert_one_line_error(run("verify", tiny_bundle, "--backend", "openvino"), "not installed", "slimsam-edge[openvino]")


def test_verify_command_does_not_import_torch(tiny_bundle):
    code = textwrap.dedent(f"""
        import sys
        from slimsam_edge.cli.app import app
        try:
            app(["verify", {str(tiny_bundle)!r}, "--backend", "onnxruntime", "--json"])
        except SystemExit as e:
            assert e.code in (0, None), e.code
        print("TORCH" if "torch" in sys.modules else "NO-TORCH", file=sys.stderr)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout)["passed"] is True
    assert out.stderr.strip().splitlines()[-1] == "NO-TORCH"


def test_verify_failure_says_rebuild_only_for_on_device_backends():
    """The hint after a failed verify follows the failing backend's converter (built on the device:
    `slimsam-edge build`; exported: re-export), not a backend name written into the command."""
    from slimsam_edge.cli.verify import remedy
    from slimsam_edge.deploy.verify import Check, VerifyReport

    def check(backend: str, value: float) -> Check:
        return Check(f"image_encoder/{backend}/fp16", "graph", "image_encoder", backend, "fp16", "cosine",
                     value, 0.99, 2)

    assert "slimsam-edge build" in remedy(VerifyReport("b", [check("tensorrt", 0.5)]))
    assert "re-export" in remedy(VerifyReport("b", [check("onnxruntime", 0.5), check("tensorrt", 1.0)]))


def test_segment_everything_writes_coco_rle_and_overlay(tmp_path, tiny_bundle):
    """`segment --everything`: a JSON list of SAM-style records with COCO RLE (pycocotools decodes
    them), an overlay PNG beside it, nothing left half-written."""
    from pycocotools import mask as mask_utils

    image = tmp_path / "small.png"
    cv2.imwrite(str(image), photo((60, 80), seed=4)[..., ::-1])
    out = tmp_path / "res" / "masks.json"
    r = run("segment", image, "--bundle", tiny_bundle, "--everything", "--out", out, "--points-per-side", "3",
            "--pred-iou-thresh", "0", "--stability-thresh", "0", "--min-area", "5", "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    records = json.loads(out.read_text())
    assert res["count"] == len(records) > 0 and res["points_per_side"] == 3
    overlay = cv2.imread(res["overlay"])
    assert res["overlay"] == str(out.with_name("masks_overlay.png")) and overlay.shape == (60, 80, 3)
    for rec in records:
        assert set(rec) == {"segmentation", "area", "bbox", "predicted_iou", "point_coords", "stability_score", "crop_box"}
        seg = {"size": rec["segmentation"]["size"], "counts": rec["segmentation"]["counts"].encode()}
        assert rec["segmentation"]["size"] == [60, 80] and int(mask_utils.area(seg)) == rec["area"] > 0
    assert sorted(p.name for p in out.parent.iterdir()) == ["masks.json", "masks_overlay.png"]


def test_segment_everything_bad_inputs(tmp_path, tiny_bundle, image_file):
    out = tmp_path / "masks.json"
    not_image = tmp_path / "x.png"
    not_image.write_bytes(b"definitely not a png")
    base = ("segment", image_file, "--bundle", tiny_bundle, "--out", out)
    assert_one_line_error(run("segment", not_image, "--bundle", tiny_bundle, "--everything", "--out", out), "decode")
    assert_one_line_error(run("segment", tmp_path / "nope.jpg", "--bundle", tiny_bundle, "--everything", "--out", out), "not found")
    assert_one_line_error(run(*base, "--everything", "--point", "10,10"), "--everything", "drop --point/--box")
    assert_one_line_error(run(*base, "--everything", "--box", "1,1,20,20"), "drop --point/--box")
    assert_one_line_error(run(*base, "--everything", "--pred-iou-thresh", "1.5"), "--pred-iou-thresh must be in [0, 1]")
    assert_one_line_error(run(*base, "--everything", "--stability-thresh", "-0.2"), "--stability-thresh must be in [0, 1]")
    assert_one_line_error(run(*base, "--everything", "--points-per-side", "0"), "--points-per-side must be a whole number >= 1")
    assert_one_line_error(run(*base, "--everything", "--min-area", "-3"), "--min-area must be a number of pixels >= 0")
    assert_one_line_error(run(*base, "--point", "10,10", "--points-per-side", "8"), "apply only with --everything")
    assert_one_line_error(run("segment", image_file, "--bundle", tiny_bundle, "--everything", "--out", tmp_path / "m.png"), "must end in .json")
    assert not out.exists()


def test_data_video_writes_a_clip_and_refuses_bad_flags(tmp_path):
    from slimsam_edge.data.synth_video import VideoDataset

    out = tmp_path / "clip"
    result = run("data", "video", "--out", out, "--frames", "4", "--size", "64x96", "--objects", "2",
                 "--no-mp4", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["frames"] == 4 and summary["size"] == [64, 96] and summary["mp4"] is None
    ds = VideoDataset(out)
    assert len(ds) == 4 and ds.object_ids == [1, 2] and ds[3].image.shape == (64, 96, 3)
    (tmp_path / "file").write_text("x")
    for args, fragment in ((["--size", "12x400"], "--size"), (["--size", "big"], "--size"),
                           (["--frames", "0"], "--frames"), (["--objects", "99"], "--objects"),
                           (["--out", tmp_path / "file"], "--out")):
        flags = ["--out", tmp_path / "x", *args] if args[0] != "--out" else args
        assert_one_line_error(run("data", "video", *flags), fragment)


def test_video_tracks_prompted_objects_and_refuses_bad_input(tmp_path, tiny_bundle):
    """`video`: one object per --point/--box, an mp4 and one JSON line per frame; bad input in one line."""
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(4):
        cv2.imwrite(str(frames / f"{i:03d}.png"), np.roll(photo((60, 80), seed=5), 2 * i, axis=1)[..., ::-1])
    out, masks = tmp_path / "out" / "o.mp4", tmp_path / "out" / "m.jsonl"
    r = run("video", frames, "--bundle", tiny_bundle, "--out", out, "--masks", masks, "--point", "40,30",
            "--box", "5,5,30,40", "--backend", "onnxruntime", "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["frames_done"] == 4 and res["dropped"] == 0 and sorted(res["objects"]) == ["1", "2"]
    lines = [json.loads(line) for line in masks.read_text().splitlines()]
    assert [[o["id"] for o in rec["objects"]] for rec in lines] == [[1, 2]] * 4
    assert sorted(p.name for p in out.parent.iterdir()) == ["m.jsonl", "o.mp4"]
    r = run("video", frames, "--bundle", tiny_bundle, "--out", out, "--point", "40,30", "--max-frames", "2")
    assert r.exit_code == 0 and "2 frames -> " in r.stdout and "fps" in r.stdout, r.output

    base = ("video", frames, "--bundle", tiny_bundle, "--out", tmp_path / "bad.mp4")
    assert_one_line_error(run(*base, "--point", "90,10"), "--point 90,10", "outside the 80x60 frame")
    assert_one_line_error(run(*base, "--point", "10,10,0"), "label is 1")
    assert_one_line_error(run(*base, "--everything", "--box", "1,1,9,9"), "--everything", "drop --point")
    assert_one_line_error(run(*base), "no prompt given")
    assert_one_line_error(run("video", tmp_path / "none.mp4", "--bundle", tiny_bundle, "--out", out, "--point", "1,1"),
                          "none.mp4 not found")
    assert_one_line_error(run("video", frames, "--bundle", tiny_bundle, "--out", masks / "o.mp4", "--point", "1,1"),
                          "cannot be written")
    assert not (tmp_path / "bad.mp4").exists()


def test_eval_video_reports_scores_and_refuses_bad_input(tmp_path, tiny_bundle):
    from slimsam_edge.data.synth_video import ProceduralVideo, write_video_dataset

    result = run("eval-video", "--bundle", tiny_bundle, "--backend", "onnxruntime", "--frames", "4",
                 "--size", "64x96", "--objects", "2", "--seed", "3", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["frames"] == 4 and set(report["objects"]) <= {"1", "2"} and report["fps"] > 0
    assert report["video"] == {"generated": True, "seed": 3, "frames": 4, "size": [64, 96], "objects": 2}
    clip = tmp_path / "clip"
    write_video_dataset(ProceduralVideo(seed=3, frames=4, size=(64, 96), objects=2), clip, mp4=False)
    text = run("eval-video", clip, "--bundle", tiny_bundle, "--backend", "onnxruntime")
    assert text.exit_code == 0 and "overall: J" in text.stdout and "fps [onnxruntime/fp32]" in text.stdout
    assert json.loads(run("eval-video", clip, "--bundle", tiny_bundle, "--backend", "onnxruntime",
                          "--json").stdout)["J"] == report["J"]  # the same clip read back from disk
    assert_one_line_error(run("eval-video", clip, "--bundle", tiny_bundle, "--frames", "8"), "--frames", "drop VIDEO_DIR")
    assert_one_line_error(run("eval-video", tmp_path / "nope", "--bundle", tiny_bundle), "nope")
    assert_one_line_error(run("eval-video", "--bundle", tiny_bundle, "--size", "big"), "--size")
    assert_one_line_error(run("eval-video", "--bundle", tmp_path / "nobundle"), "nobundle")


def test_video_source_that_cannot_open_says_one_line_without_native_logs(tmp_path, tiny_bundle):
    """OpenCV and FFmpeg print their own warnings (to the stderr file descriptor) when a camera or a
    stream does not open: the process's stderr is still the one line; --debug lets them through."""
    import subprocess
    import sys

    for source in ("99", "rtsp://127.0.0.1:9/none"):
        cmd = [sys.executable, "-m", "slimsam_edge", "video", source, "--bundle", str(tiny_bundle),
               "--point", "1,1", "--out", str(tmp_path / "o.mp4")]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env={**os.environ, "SLIMSAM_EDGE_DEBUG": ""})
        assert r.returncode == 2, r.stderr
        assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: ") and "cannot be opened" in r.stderr, r.stderr
    assert not (tmp_path / "o.mp4").exists()


def test_bench_bad_input_is_one_line(tiny_bundle, tmp_path):
    assert_one_line_error(run("bench", tiny_bundle, "--peer", "sam-z"), "unknown peer 'sam-z'",
                          "mobilesam, sam-b, efficientvit-sam-l0")
    assert_one_line_error(run("bench"), "at least one bundle")
    assert_one_line_error(run("bench", tmp_path), "not a bundle folder")
    assert_one_line_error(run("bench", "diff", tmp_path / "a.json"), "needs two reports")
    report = tmp_path / "r.json"
    report.write_text('{"results": []}')
    assert_one_line_error(run("bench", "diff", report, report), "not a bench report")
    from slimsam_edge.data.synth_video import MAX_OBJECTS

    assert_one_line_error(run("bench", tiny_bundle, "--scenario", "video", "--objects", str(MAX_OBJECTS + 1)),
                          "--objects", f"less than or equal to {MAX_OBJECTS}")
    assert not list(tmp_path.glob("*.tmp*"))


def test_video_tuning_options_run_and_refuse_bad_values(tmp_path, tiny_bundle):
    """`video --hint --encoder-threads --decoder-threads --encode-requests`: the JSON records the
    tuning; bad values end in one line, exit 2."""
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        cv2.imwrite(str(frames / f"{i:03d}.png"), np.roll(photo((60, 80), seed=5), 2 * i, axis=1)[..., ::-1])
    base = ("video", frames, "--bundle", tiny_bundle, "--out", tmp_path / "o.mp4", "--point", "40,30")
    r = run(*base, "--backend", "openvino", "--hint", "throughput", "--encoder-threads", "1", "--decoder-threads", "1",
            "--encode-requests", "2", "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["frames_done"] == 3 and res["tuning"] == {"hint": "throughput", "encoder_threads": 1,
                                                          "decoder_threads": 1, "encode_requests": 2, "streams": None}
    bad = ("video", frames, "--bundle", tiny_bundle, "--out", tmp_path / "bad.mp4", "--point", "40,30")
    assert_one_line_error(run(*bad, "--backend", "onnxruntime", "--hint", "latency"), "onnxruntime has no performance hint")
    assert_one_line_error(run(*bad, "--hint", "fast"), "--hint")
    assert_one_line_error(run(*bad, "--encode-requests", "0"), "--encode-requests")
    assert_one_line_error(run(*bad, "--encoder-threads", "0"), "--encoder-threads", "at least 1")
    assert not (tmp_path / "bad.mp4").exists()
