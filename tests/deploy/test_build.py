"""``slimsam-edge build`` against the TensorRT stand-in (tests/fake_tensorrt.py), whose engines run
the ONNX they were built from: builds, fingerprints, the accuracy gate and every refusal."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import fake_tensorrt
from slimsam_edge.bundle import load_bundle
from slimsam_edge.deploy.build import build_bundle
from slimsam_edge.errors import (
    AccuracyGateError,
    BackendUnavailableError,
    BundleError,
    UnsupportedOnThisMachineError,
    UsageError,
)

ORIN = ("Orin (nvgpu)", 8, 7)
NANO = {"is_jetson": True, "jetson_model": "NVIDIA Jetson Orin Nano Developer Kit", "jetson_release": "# R36 (release), REVISION: 4.0"}
AGX = {**NANO, "jetson_model": "NVIDIA Jetson AGX Orin Developer Kit"}
X86 = {"is_jetson": False, "jetson_model": None, "jetson_release": None}


@pytest.fixture(scope="module")
def jetson_bundle(tmp_path_factory, tiny_model) -> Path:
    from slimsam_edge.exporters.bundle_export import export_bundle
    from slimsam_edge.exporters.precision import PrecisionOptions

    out = tmp_path_factory.mktemp("jetson") / "b"
    export_bundle(tiny_model, tiny_model.spec, out, target="jetson-orin-nano", simplify=False, model_id="tiny",
                  precision_options=PrecisionOptions(calib_images=16, gate_images=2, allow_accuracy_drop=True))
    return out


@pytest.fixture()
def bundle(jetson_bundle: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "b"
    shutil.copytree(jetson_bundle, copy)
    return copy


@pytest.fixture()
def machine(monkeypatch: pytest.MonkeyPatch):
    """``machine(info, version=..., **fake)``: this machine as detect() sees it, with a fake TensorRT."""
    import slimsam_edge.devices as devices

    def setup(info: dict = NANO, version: str | None = "10.3.0", **kw):
        from slimsam_edge.deploy import verify

        monkeypatch.setattr(devices, "detect", lambda *a, **k: dict(info))
        # the fake runs an int8 "engine" as ONNX Runtime's Q/DQ graph of a tiny random model, whose
        # agreement with fp32 depends on the CPU (0.93 on AVX2 without VNNI): these tests check the
        # build, so int8 is held to what any CPU gives (a broken engine still fails, see below)
        monkeypatch.setitem(verify.DEFAULT_THRESHOLDS, "int8", 0.8)
        if version is None:
            return None, None
        return fake_tensorrt.install(monkeypatch, version, devices=kw.pop("devices", (ORIN,)), **kw)

    return setup


def _engines(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "engines").glob("*.engine")) if (root / "engines").is_dir() else []


def _leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "engines").iterdir() if p.name != "timing.cache") \
        if (root / "engines").is_dir() else []


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_build_on_tensorrt_10(bundle: Path, machine, precision: str) -> None:
    trt, cudart = machine(NANO)
    report = build_bundle(bundle, precision=precision)
    b = load_bundle(bundle)  # every hash, the new engines' included
    engines = [a for a in b.manifest.artifacts if a.backend == "tensorrt"]
    assert sorted(a.graph for a in engines) == ["image_encoder", "mask_decoder_lowres"]
    assert all(a.precision == precision and a.path.startswith("engines/") for a in engines)
    fp = engines[0].extra["fingerprint"]
    assert fp["gpu"] == "Orin (nvgpu)" and fp["compute_capability"] == "8.7" and fp["tensorrt"] == "10.3.0"
    assert fp["l4t"] == NANO["jetson_release"] and fp["builder"]["optimization_level"] == 3
    assert report.verification["passed"] and b.manifest.backend_preference[0] == "tensorrt"
    assert (bundle / "engines" / "timing.cache").is_file() and len(_engines(bundle)) == 2
    headers = {bool(h["profiles"]): h for h in trt.builds[-2:]}  # the decoder alone has a dynamic axis
    decoder, encoder = headers[True], headers[False]
    # prompts per call from [tensorrt] decoder_batch, points per prompt from decoder_points
    assert decoder["profiles"][0]["point_coords"] == [[1, 1, 2], [16, 4, 2], [64, 16, 2]]
    assert decoder["profiles"][0]["has_mask_input"] == [[1], [16], [64]]
    assert decoder["workspace"] == 1 << 30 and not decoder["strongly_typed"]
    flags = {"fp32": [], "fp16": ["FP16", "OBEY_PRECISION_CONSTRAINTS"], "int8": ["INT8"]}[precision]
    assert encoder["flags"] == flags and cudart.memory == {}
    if precision == "int8":  # the Q/DQ encoder; the decoder has no int8 form and runs fp32
        assert engines[0].extra["source"].endswith(".int8.onnx") or engines[1].extra["source"].endswith(".int8.onnx")
        assert any("int8 engine runs fp32" in n for n in report.notes)
    # the predictor runs the engines (the fake computes with ONNX Runtime)
    from slimsam_edge.predictor import EdgePredictor

    with EdgePredictor.from_bundle(bundle, backend="tensorrt", precision=precision) as pred:
        pred.set_image(np.full((64, 80, 3), 128, np.uint8))
        masks, scores, _ = pred.predict(point_coords=np.array([[30.0, 20.0]]), point_labels=np.array([1]))
    assert masks.shape[-2:] == (64, 80) and np.isfinite(scores).all()


def test_built_decoder_engine_takes_a_batch_of_prompts(bundle: Path, machine) -> None:
    """B=3 prompts in one engine call; more than the profile's max are sent in chunks of its max."""
    import json as _json

    from slimsam_edge.predictor import EdgePredictor

    manifest = _json.loads((bundle / "manifest.json").read_text())  # a plan with a smaller prompt range
    manifest["build_plan"]["tensorrt"]["settings"]["decoder_batch"] = [1, 2, 4]
    (bundle / "manifest.json").write_text(_json.dumps(manifest))
    trt, _ = machine(NANO)
    build_bundle(bundle, precision="fp32")
    assert [h["profiles"][0]["point_coords"] for h in trt.builds if h["profiles"]] == [[[1, 1, 2], [2, 4, 2], [4, 16, 2]]]
    img = np.full((64, 80, 3), 128, np.uint8)
    img[10:40, 20:60] = 30
    boxes = np.array([[15, 5, 65, 45], [0, 0, 40, 40], [30, 20, 79, 63]], float)
    with EdgePredictor.from_bundle(bundle, backend="tensorrt") as pred, \
            EdgePredictor.from_bundle(bundle, backend="onnxruntime") as ref:
        for p in (pred, ref):
            p.set_image(img)
        assert pred.decoder.max_prompts() == 4 and pred.chunk_size() == 4 and ref.chunk_size() == 32
        calls: list[int] = []
        infer = pred.decoder._infer
        pred.decoder._infer = lambda feed: calls.append(feed["point_coords"].shape[0]) or infer(feed)
        masks, scores, low = pred.predict_batch(boxes=boxes)
        assert calls == [3] and masks.shape == (3, 3, 64, 80)
        want = ref.predict_batch(boxes=boxes)
        np.testing.assert_allclose(scores, want[1], atol=1e-4)
        np.testing.assert_allclose(low, want[2], atol=1e-3)
        many = np.tile(boxes, (3, 1))  # 9 prompts: chunks of the engine's max, 4
        calls.clear()
        np.testing.assert_allclose(pred.predict_batch(boxes=many)[1], np.tile(want[1], (3, 1)), atol=1e-4)
        assert calls == [4, 4, 1]


def test_rebuild_replaces_the_engines_it_supersedes(bundle: Path, machine) -> None:
    machine(NANO)
    build_bundle(bundle, precision="fp16")
    first = _engines(bundle)
    machine(NANO, "10.3.1")
    build_bundle(bundle, precision="fp16")
    b = load_bundle(bundle)
    assert len([a for a in b.manifest.artifacts if a.backend == "tensorrt"]) == 2
    assert len(_engines(bundle)) == 2 and _engines(bundle) != first  # old ones deleted, no strays
    assert _leftovers(bundle) == _engines(bundle)


def test_build_on_tensorrt_11(bundle: Path, machine) -> None:
    trt, _ = machine(X86, "11.0.0", devices=(("NVIDIA GeForce RTX 4090", 8, 9),))
    build_bundle(bundle, precision="int8")
    assert all(h["strongly_typed"] and h["flags"] == [] for h in trt.builds)
    build_bundle(bundle, precision="fp16")  # the plan's fp16 ONNX, strongly typed
    sources = {a.extra["source"] for a in load_bundle(bundle).manifest.artifacts
               if a.backend == "tensorrt" and a.precision == "fp16"}
    assert sources == {"onnx/image_encoder.fp16.onnx", "onnx/mask_decoder_lowres.fp16.onnx"}


def test_tensorrt_11_fp16_needs_the_fp16_onnx(bundle: Path, machine) -> None:
    machine(X86, "11.0.0")
    path = bundle / "manifest.json"
    data = json.loads(path.read_text())
    for graph, sources in data["build_plan"]["tensorrt"]["graphs"].items():
        sources["fp16"] = sources["fp32"]  # a plan without the fp16 graphs
    path.write_text(json.dumps(data))
    before = path.read_bytes()
    with pytest.raises(UsageError, match=r"TensorRT 11 builds strongly typed networks only.*export --precision fp16"):
        build_bundle(bundle, precision="fp16")
    assert path.read_bytes() == before and _leftovers(bundle) == []


def test_dla_builds(bundle: Path, machine) -> None:
    trt, _ = machine(AGX)
    report = build_bundle(bundle, precision="int8", dla_core=1)
    encoder, decoder = trt.builds[-2:]
    assert encoder["dla_core"] == 1 and encoder["calibration_batches"] == 16  # implicit int8 + calibrator
    assert decoder["dla_core"] is None and any("fp32 layers do not run on DLA" in n for n in report.notes)
    build_bundle(bundle, precision="fp16", dla_core=0)
    assert [h["dla_core"] for h in trt.builds[-2:]] == [0, 0]


@pytest.mark.parametrize("info, args, message", [
    (NANO, {"precision": "fp16", "dla_core": 0}, "this board (NVIDIA Jetson Orin Nano Developer Kit) has no DLA cores"),
    (AGX, {"precision": "fp16", "dla_core": 2}, "has 2 DLA cores; use --dla 0..1"),
    (AGX, {"precision": "fp32", "dla_core": 0}, "--dla needs --precision fp16 or int8"),
    (X86, {"precision": "fp16", "dla_core": 0}, "target jetson-orin-nano has no DLA cores"),
    (NANO, {"precision": "bf16"}, "precision bf16 is not in the build plan"),
])
def test_bad_dla_and_precision(bundle: Path, machine, info: dict, args: dict, message: str) -> None:
    machine(info)
    before = (bundle / "manifest.json").read_bytes()
    with pytest.raises(UsageError) as err:
        build_bundle(bundle, **args)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert (bundle / "manifest.json").read_bytes() == before and _engines(bundle) == []


def test_fp16_collapse_is_refused(bundle: Path, machine) -> None:
    machine(NANO, fp16_collapse=True)
    before = (bundle / "manifest.json").read_bytes()
    with pytest.raises(AccuracyGateError, match="disagree with the bundle's reference outputs") as err:
        build_bundle(bundle, precision="fp16")
    assert "\n" not in str(err.value)
    assert (bundle / "manifest.json").read_bytes() == before and _leftovers(bundle) == []
    build_bundle(bundle, precision="fp32")  # fp32 engines are not touched by the collapse
    assert len(_engines(bundle)) == 2


def test_engine_of_another_machine_is_refused(bundle: Path, machine) -> None:
    from slimsam_edge.predictor import open_artifact

    machine(NANO)
    build_bundle(bundle, precision="fp16")
    art = load_bundle(bundle).find("image_encoder", backend="tensorrt")
    machine(X86, "10.3.0", devices=(("NVIDIA GeForce RTX 4090", 8, 9),))
    with pytest.raises(BundleError) as err:
        open_artifact(bundle, art).activate()
    msg = str(err.value)
    assert "engine built on Orin (nvgpu) (sm 8.7) / TensorRT 10.3.0 / L4T # R36" in msg
    assert "this machine is NVIDIA GeForce RTX 4090 (sm 8.9) / TensorRT 10.3.0 / not a Jetson" in msg
    assert f"run `slimsam-edge build {bundle}` here" in msg and "\n" not in msg
    machine(NANO, "10.4.0")  # same GPU, another TensorRT
    with pytest.raises(BundleError, match="built by TensorRT 10.3.0, this device has 10.4.0"):
        open_artifact(bundle, art).activate()


@pytest.mark.parametrize("info, kw, error, message", [
    (X86, None, BackendUnavailableError, "pip install 'slimsam-edge[tensorrt]'"),
    (NANO, None, BackendUnavailableError, "sudo apt install python3-libnvinfer"),
    (X86, {"devices": ()}, UnsupportedOnThisMachineError, "no NVIDIA GPU usable here (no CUDA-capable device"),
    (X86, {"driver": False}, UnsupportedOnThisMachineError, "CUDA driver version is insufficient"),
])
def test_missing_tensorrt_or_gpu(bundle: Path, machine, monkeypatch, info, kw, error, message) -> None:
    import sys

    if kw is None:
        machine(info, version=None)
        monkeypatch.setitem(sys.modules, "tensorrt", None)  # not installed (even where it is)
    else:
        machine(info, **kw)
    before = (bundle / "manifest.json").read_bytes()
    with pytest.raises(error) as err:
        build_bundle(bundle, precision="fp16")
    assert message in str(err.value) and "\n" not in str(err.value)
    assert (bundle / "manifest.json").read_bytes() == before and _engines(bundle) == []


def test_bundle_without_a_plan(tiny_bundle: Path, machine) -> None:
    machine(NANO)
    with pytest.raises(UsageError, match=r"target cpu\) has no TensorRT build plan; export it for a TensorRT "
                                         r"target first: slimsam-edge export --target .*jetson-orin-nano"):
        build_bundle(tiny_bundle)


def test_tampered_plan_settings_are_refused(bundle: Path, machine) -> None:
    machine(NANO)
    path = bundle / "manifest.json"
    data = json.loads(path.read_text())
    data["build_plan"]["tensorrt"]["settings"]["optimization_level"] = 9
    path.write_text(json.dumps(data))
    with pytest.raises(UsageError, match="build_plan.tensorrt.settings.*optimization_level"):
        build_bundle(bundle)


@pytest.mark.gpu
@pytest.mark.tensorrt
def test_real_tensorrt_build(bundle: Path) -> None:
    """On a machine with TensorRT and an NVIDIA GPU: build, verify and run fp32 and fp16 engines."""
    from slimsam_edge.runtimes.tensorrt.runner import TensorRTRunner

    if not TensorRTRunner.available():
        pytest.skip("needs TensorRT and cuda-python")
    for precision in ("fp32", "fp16"):
        report = build_bundle(bundle, precision=precision)
        assert report.verification["passed"], report.verification
    from slimsam_edge.deploy.verify import verify_bundle

    assert verify_bundle(bundle, backend="tensorrt", precision="fp16").passed


def _doctor(root: Path, change) -> None:
    path = root / "manifest.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_a_tampered_fingerprint_is_one_line(bundle: Path, machine) -> None:
    """A manifest's fingerprint that is not an object of strings: a BundleError, not a traceback."""
    from slimsam_edge.predictor import open_artifact

    machine(NANO)
    build_bundle(bundle, precision="fp16")

    def change(data):
        for a in data["artifacts"]:
            if a["backend"] == "tensorrt":
                a["extra"]["fingerprint"] = "Orin"
    _doctor(bundle, change)
    art = load_bundle(bundle).find("image_encoder", backend="tensorrt")
    with pytest.raises(BundleError) as err:
        open_artifact(bundle, art).activate()
    assert "fingerprint" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("graph", ["../../escaped", "sub/dir", "not_a_graph"])
def test_plan_graph_names_are_graphs_not_paths(bundle: Path, machine, graph: str) -> None:
    """A build plan names graphs; a name that is a path (or no graph at all) is refused before
    anything is built, so no engine is written outside ``engines/``."""
    trt, _ = machine(NANO)

    def change(data):
        graphs = data["build_plan"]["tensorrt"]["graphs"]
        graphs[graph] = graphs.pop("image_encoder")
    _doctor(bundle, change)
    before = sorted(p.relative_to(bundle.parent).as_posix() for p in bundle.parent.rglob("*"))
    with pytest.raises(BundleError) as err:
        build_bundle(bundle, precision="fp32")
    assert graph in str(err.value) and "\n" not in str(err.value)
    assert trt.builds == [] and _engines(bundle) == []
    after = sorted(p.relative_to(bundle.parent).as_posix() for p in bundle.parent.rglob("*"))
    assert [p for p in after if p not in before and not p.startswith("b/engines")] == []


@pytest.mark.parametrize("what", ["bad shape", "not a zip", "float sizes"])
def test_a_bad_calibration_file_is_refused_before_building(bundle: Path, machine, what: str) -> None:
    """The calibration npz is checked when the build starts, not inside TensorRT's calibrator
    callback (where TensorRT would swallow the error and fail the build without the reason)."""
    from slimsam_edge.fsutil import sha256_file

    trt, _ = machine(AGX)
    data = json.loads((bundle / "manifest.json").read_text())
    rel = data["build_plan"]["tensorrt"]["calibration"]["image_encoder"]
    path = bundle / rel
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    if what == "not a zip":
        path.write_bytes(b"PK\x03\x04 not really a zip")
    else:
        if what == "bad shape":
            arrays["pixels"] = arrays["pixels"][:, :, :, :2]
        else:
            arrays["input_hw"] = arrays["input_hw"].astype(np.float64) - 0.5
        with open(path, "wb") as f:
            np.savez(f, **arrays)
    _doctor(bundle, lambda d: d["files"].__setitem__(rel, sha256_file(path)))
    with pytest.raises(BundleError) as err:
        build_bundle(bundle, precision="int8", dla_core=0)
    assert rel in str(err.value) and "re-export" in str(err.value) and "\n" not in str(err.value)
    assert trt.builds == [] and _leftovers(bundle) == []


def test_calibration_file_memory_is_bounded(bundle: Path, machine, monkeypatch) -> None:
    """Declared array sizes are checked before the calibration npz is loaded."""
    import slimsam_edge.deploy.reference_io as reference_io

    trt, _ = machine(AGX)
    monkeypatch.setattr(reference_io, "MAX_REFERENCE_BYTES", 1000)
    with pytest.raises(BundleError, match="refused") as err:
        build_bundle(bundle, precision="int8", dla_core=0)
    assert "\n" not in str(err.value) and trt.builds == []


def test_a_failed_manifest_write_leaves_no_stray_engines(bundle: Path, machine, monkeypatch) -> None:
    """Disk full while the manifest is rewritten: the old manifest stays, and the engines already
    renamed into ``engines/`` (which it does not name) are removed again."""
    import errno

    import slimsam_edge.deploy.build as build_mod

    machine(NANO)
    build_bundle(bundle, precision="fp32")
    kept = _leftovers(bundle)
    before = (bundle / "manifest.json").read_bytes()

    def full(*_a, **_k):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(build_mod, "write_manifest", full)
    with pytest.raises(OSError):
        build_bundle(bundle, precision="fp16")
    assert (bundle / "manifest.json").read_bytes() == before and _leftovers(bundle) == kept
    load_bundle(bundle)  # every file it names is there


def test_a_plan_graph_without_its_fp32_source_is_one_line(bundle: Path, machine) -> None:
    """TensorRT 10 builds fp16 from the fp32 ONNX: a plan that lacks it is refused up front."""
    trt, _ = machine(NANO)
    _doctor(bundle, lambda d: d["build_plan"]["tensorrt"]["graphs"]["image_encoder"].pop("fp32"))
    with pytest.raises(BundleError) as err:
        build_bundle(bundle, precision="fp16")
    assert "fp32" in str(err.value) and "image_encoder" in str(err.value) and "\n" not in str(err.value)
    assert trt.builds == []


def test_build_with_a_relative_bundle_path(bundle: Path, machine, monkeypatch) -> None:
    machine(NANO)
    monkeypatch.chdir(bundle.parent)
    report = build_bundle("b", precision="fp32")
    assert all(e["path"].startswith("engines/") for e in report.engines)
    assert len(_engines(bundle)) == 2 and _leftovers(bundle) == _engines(bundle)
    load_bundle(bundle)
