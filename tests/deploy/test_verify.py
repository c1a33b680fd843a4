from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from helpers import doctor_reference
from slimsam_edge.bundle import load_bundle
from slimsam_edge.deploy.verify import (
    DEFAULT_THRESHOLDS,
    VerifyReport,
    compare,
    pick_artifacts,
    verify_artifacts,
    verify_bundle,
)
from slimsam_edge.errors import BackendUnavailableError, BundleError
from slimsam_edge.runtimes import Backend, get_backend, register_backend, runner_class, unregister_backend


@pytest.fixture()
def bundle_copy(tmp_path, tiny_bundle):
    copy = tmp_path / "b"
    shutil.copytree(tiny_bundle, copy)
    return copy


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_fresh_bundle_agrees_with_its_reference(tiny_bundle, backend):
    steps: list[str] = []
    report = verify_bundle(tiny_bundle, backend=backend, progress=steps.append)
    assert report.passed and report.failures() == []
    names = [c.name for c in report.checks]
    graphs = sorted({a.graph for a in load_bundle(tiny_bundle).manifest.artifacts if a.backend == backend})
    assert sorted(c.graph for c in report.checks if c.kind == "graph") == graphs
    assert f"end_to_end/mask_decoder_lowres/{backend}/fp32" in names
    for c in report.checks:
        assert c.threshold == 0.99 and c.precision == "fp32"
        if c.graph in ("image_encoder", "image_encoder_pixels"):  # plain, and preprocessing in the graph
            assert c.metric == "cosine" and c.cases == 2
            assert c.numbers["cosine_min"] > 0.99999 and c.numbers["rel_error_max"] < 1e-4
        else:  # the low-res decoder also has the batched case (3 prompts in one call)
            assert c.metric == "mask_iou" and c.cases == (7 if c.graph == "mask_decoder_lowres" else 6)
            assert c.numbers["mask_iou_min"] >= 0.99 and c.numbers["mask_iou_all_tokens"] >= 0.99
            assert c.numbers["iou_predictions_max_diff"] < 1e-3
    assert len(steps) == len(report.checks)
    d = report.to_dict()
    assert d["passed"] and d["checks"][0]["passed"] and d["failures"] == []


def test_default_backend_is_the_first_installed_one_in_the_preference(tiny_bundle):
    b = load_bundle(tiny_bundle)
    first = b.manifest.backend_preference[0]
    assert {a.backend for a in pick_artifacts(b)} == {first}
    assert {a.graph for a in pick_artifacts(b)} == {a.graph for a in b.manifest.artifacts if a.backend == first}


def test_a_doctored_reference_output_fails_the_agreement(bundle_copy):
    """The npz is rewritten and rehashed: the hashes pass, the agreement check does not."""
    doctor_reference(bundle_copy, "mask_decoder_lowres/0-box/out/low_res_masks", lambda a: -a)
    report = verify_bundle(bundle_copy, backend="onnxruntime")
    assert not report.passed
    failed = {c.name for c in report.checks if not c.passed}
    assert failed == {"mask_decoder_lowres/onnxruntime/fp32", "end_to_end/mask_decoder_lowres/onnxruntime/fp32"}
    bad = next(c for c in report.checks if c.name == "mask_decoder_lowres/onnxruntime/fp32")
    assert bad.numbers["mask_iou_min"] < 0.5 < bad.value < 0.99  # one prompt of nine flipped
    assert report.failures()[0].startswith("mask_decoder_lowres/onnxruntime/fp32 mask_iou 0.")


def test_a_doctored_embedding_fails_the_encoder(bundle_copy):
    doctor_reference(bundle_copy, "image_encoder/1/out/image_embeddings", lambda a: a[..., ::-1].copy())
    report = verify_bundle(bundle_copy, backend="onnxruntime")
    # the embedding is also the decoders' input for image 1: they fail on it, while end to end
    # (the runtime's own embedding into the decoder) still matches the recorded decoder outputs
    assert {c.name for c in report.checks if not c.passed} == {
        "image_encoder/onnxruntime/fp32", "mask_decoder/onnxruntime/fp32", "mask_decoder_single/onnxruntime/fp32",
        "mask_decoder_lowres/onnxruntime/fp32"}
    assert all(c.passed for c in report.checks if c.kind == "end_to_end")


class _Collapsing:
    """Mixed into the ONNX Runtime runner: the encoder's embedding loses its precision (as an FP16
    SAM encoder that overflows does), the decoder runs unchanged."""

    def _infer(self, feed):
        out = super()._infer(feed)
        if "image_embeddings" in out:
            emb = out["image_embeddings"]
            out["image_embeddings"] = (np.sign(emb) * np.abs(emb).mean()).astype(emb.dtype)
        return out


def test_end_to_end_catches_an_encoder_that_collapses(tiny_bundle):
    ort = runner_class("onnxruntime")
    runner = type("CollapsingRunner", (_Collapsing, ort), {})
    register_backend(Backend("collapse-test", runner=runner))
    try:
        b = load_bundle(tiny_bundle)
        arts = []
        for a in b.manifest.artifacts:
            if a.backend == "onnxruntime" and a.graph in ("image_encoder", "mask_decoder_lowres"):
                arts.append(type(a)(a.graph, "collapse-test", "fp16", a.path, dict(a.files), dict(a.extra)))
        report = verify_artifacts(b, arts)
    finally:
        unregister_backend("collapse-test")
    by_name = {c.name: c for c in report.checks}
    assert by_name["mask_decoder_lowres/collapse-test/fp16"].passed  # on the reference embedding
    e2e = by_name["end_to_end/mask_decoder_lowres/collapse-test/fp16"]
    assert not e2e.passed and e2e.value < 0.99 and not report.passed
    assert any(f.startswith("end_to_end/mask_decoder_lowres/collapse-test/fp16 mask_iou") for f in report.failures())


def test_backend_not_installed_is_one_line(tiny_bundle, monkeypatch):
    monkeypatch.setattr(get_backend("openvino").runner, "available", classmethod(lambda cls: False))
    with pytest.raises(BackendUnavailableError, match=r"slimsam-edge\[openvino\]"):
        verify_bundle(tiny_bundle, backend="openvino")
    b = load_bundle(tiny_bundle)
    assert "openvino" not in {a.backend for a in pick_artifacts(b)}  # never picked when not installed


def test_a_precision_the_bundle_lacks_lists_what_it_holds(tiny_bundle):
    with pytest.raises(BundleError) as err:
        verify_bundle(tiny_bundle, backend="onnxruntime", precision="int8")
    msg = str(err.value)
    assert "no onnxruntime/int8 artifacts" in msg and "onnxruntime/fp32, openvino/fp32" in msg and "\n" not in msg


def test_compare_numbers_and_nan():
    r = {"image_embeddings": np.ones((1, 2, 2, 2), np.float32)}
    assert compare("image_encoder", [r], [r]) == pytest.approx({"cosine_min": 1.0, "rel_error_max": 0.0})
    nan = {"image_embeddings": np.full((1, 2, 2, 2), np.nan, np.float32)}
    numbers = compare("image_encoder", [r], [nan])
    assert np.isnan(numbers["cosine_min"])
    with pytest.raises(BundleError, match="shape"):
        compare("image_encoder", [r], [{"image_embeddings": np.ones((1, 2), np.float32)}])


def test_nothing_checked_is_not_a_pass():
    report = VerifyReport("b", skipped=["x: no reference cases for graph x"])
    assert not report.passed and report.failures() == ["no reference case ran (x: no reference cases for graph x)"]


def test_thresholds_live_here_and_the_gate_uses_them():
    from slimsam_edge.exporters import gate, precision

    assert gate.DEFAULT_THRESHOLDS is DEFAULT_THRESHOLDS is precision.DEFAULT_THRESHOLDS
    assert DEFAULT_THRESHOLDS["fp32"] == 0.99 and DEFAULT_THRESHOLDS["int8"] == 0.95


def test_verify_does_not_import_torch(tiny_bundle):
    code = textwrap.dedent(f"""
        import sys
        from slimsam_edge.deploy.verify import verify_bundle
        assert verify_bundle({str(tiny_bundle)!r}, backend="onnxruntime").passed
        print("torch" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_engines_not_built_yet_say_to_run_build(bundle_copy, monkeypatch):
    """A device bundle before `build`: verify --backend tensorrt says to build, not 'pick another'."""
    import json

    import fake_tensorrt

    fake_tensorrt.install(monkeypatch, "10.3.0")
    data = json.loads((bundle_copy / "manifest.json").read_text())
    onnx = next(a["path"] for a in data["artifacts"] if a["graph"] == "image_encoder" and a["backend"] == "onnxruntime")
    data["build_plan"] = {"tensorrt": {"settings": {}, "graphs": {"image_encoder": {"fp16": onnx}}}}
    (bundle_copy / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(BundleError) as err:
        verify_bundle(bundle_copy, backend="tensorrt", precision="fp16")
    assert "no tensorrt/fp16 engines yet" in str(err.value) and "slimsam-edge build" in str(err.value)
    assert "\n" not in str(err.value)


def _doctor_manifest(root, change) -> None:
    import json

    path = root / "manifest.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_manifest_extra_never_reaches_the_runtime(bundle_copy):
    """Runtime settings (ONNX Runtime providers, OpenVINO config) written into an artifact's
    ``extra`` never reach a runtime: a manifest describes files, it does not configure runtimes.
    Keys its backend does not declare are refused in one line (tests/hardening/test_manifest_schema.py)."""
    from slimsam_edge.predictor import open_artifact

    b = load_bundle(bundle_copy)
    for art in b.manifest.artifacts:
        if art.backend in ("onnxruntime", "openvino"):
            assert open_artifact(b.root, art).options.extra == {"graph": art.graph}

    def change(data):
        for a in data["artifacts"]:
            a["extra"].update(providers=["NoSuchExecutionProvider"], provider_options=[{"x": "y"}],
                              config={"INFERENCE_PRECISION_HINT": "f16"}, log_severity_level=0)
    _doctor_manifest(bundle_copy, change)
    with pytest.raises(BundleError) as err:
        verify_bundle(bundle_copy, backend="onnxruntime")
    assert "extra key" in str(err.value) and "\n" not in str(err.value)


def test_a_bad_precision_hint_in_the_manifest_is_one_line(bundle_copy):
    def change(data):
        for a in data["artifacts"]:
            a["extra"]["precision_hint"] = "fp64"
    _doctor_manifest(bundle_copy, change)
    with pytest.raises(BundleError) as err:
        verify_bundle(bundle_copy, backend="onnxruntime")
    assert "precision_hint" in str(err.value) and "\n" not in str(err.value)


def test_an_artifact_of_an_unknown_precision_is_one_line(bundle_copy):
    def change(data):
        for a in data["artifacts"]:
            if a["backend"] == "onnxruntime" and a["precision"] == "fp32":
                a["precision"] = "int4"
    _doctor_manifest(bundle_copy, change)
    with pytest.raises(BundleError) as err:
        verify_bundle(bundle_copy, backend="onnxruntime", precision="int4")
    assert "int4" in str(err.value) and "\n" not in str(err.value)

def test_batched_case_is_judged_per_prompt(bundle_copy):
    """One prompt of the batched reference case doctored: verify sees it (mask IoU per prompt)."""
    def flip_second(a):
        a = a.copy()
        a[1] = -a[1]
        return a

    doctor_reference(bundle_copy, "mask_decoder_lowres/0-batch/out/low_res_masks", flip_second)
    report = verify_bundle(bundle_copy, backend="openvino")
    bad = next(c for c in report.checks if c.name == "mask_decoder_lowres/openvino/fp32")
    assert not bad.passed and bad.cases == 7
    assert bad.numbers["mask_iou_min"] < 0.5 < bad.value  # 1 of 9 prompts (6 single + 3 batched)
    assert all(c.passed for c in report.checks if c.graph != "mask_decoder_lowres")
