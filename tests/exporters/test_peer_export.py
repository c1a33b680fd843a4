"""export_peer: a peer (random weights) written as a bundle that load_bundle verifies and
EdgePredictor runs unchanged; bad names and backends refused before anything is written."""

from __future__ import annotations

import numpy as np
import pytest

from slimsam_edge.bundle import load_bundle
from slimsam_edge.errors import UsageError
from slimsam_edge.exporters.peer_export import PEER_SPEC_FORMAT, RANDOM_WEIGHTS_GATE, export_peer
from slimsam_edge.exporters.precision import PrecisionOptions
from slimsam_edge.predictor import EdgePredictor

#: a quick int8 export: few calibration and gate images (the tests check the wiring, not quality)
QUICK = PrecisionOptions(calib_images=2, gate_images=1, allow_accuracy_drop=True)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _predict_one_point(bundle, backend: str, precision: str | None = None) -> None:
    image = np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    with EdgePredictor.from_bundle(bundle, backend=backend, precision=precision, threads=1) as p:
        assert p.precision == (precision or "fp32")
        p.set_image(image)
        masks, scores, low_res = p.predict(point_coords=np.array([[60, 40]]), point_labels=np.array([1]))
        grid = p.get_image_embedding().shape[-1]
    assert masks.shape == (3, 90, 120) and masks.dtype == bool
    assert scores.shape == (3,) and np.isfinite(scores).all()
    assert low_res.shape == (3, 4 * grid, 4 * grid)


def test_mobilesam_peer_bundle_runs_in_the_predictor(tmp_path):
    out = export_peer("mobilesam", tmp_path / "mobilesam", image_size=128, backends=("onnxruntime",),
                      validate=False, reference=False)
    bundle = load_bundle(out)  # hashes verified
    m = bundle.manifest
    assert (m.model["type"], m.model["weights"]) == ("peer:mobilesam", "random")
    assert "random weights: latency only" in m.model["label"] and "128 px" in m.model["label"]
    assert m.model["spec"]["format"] == PEER_SPEC_FORMAT
    assert (m.model["spec"]["image_size"], m.model["spec"]["embed_grid"]) == (128, 8)
    assert m.model["encoder_macs"]["total"] > m.model["encoder_macs"]["attention"] > 0
    assert m.image_size == 128 and m.prompt_frame["mask_input_size"] == [32, 32]
    assert sorted((a.graph, a.backend) for a in m.artifacts) == [
        ("image_encoder", "onnxruntime"), ("mask_decoder_lowres", "onnxruntime")]
    assert not list(tmp_path.glob(".*"))  # no temporary folder left
    _predict_one_point(out, "onnxruntime")


def test_mobilesam_int8_is_calibrated_at_its_size_and_gated_against_fp32(tmp_path):
    out = export_peer("mobilesam", tmp_path / "m8", image_size=64, backends=("onnxruntime",),
                      precisions=("fp32", "int8"), validate=False, reference=False, precision_options=QUICK)
    m = load_bundle(out).manifest  # hashes verified, int8 files included
    by = {(a.graph, a.precision): a for a in m.artifacts}
    assert sorted(by) == [("image_encoder", "fp32"), ("image_encoder", "int8"),
                          ("mask_decoder_lowres", "fp32"), ("mask_decoder_lowres", "int8")]
    enc = by[("image_encoder", "int8")]
    assert enc.path == "onnx/image_encoder.int8.onnx" and "QDQ" in enc.extra["method"]
    assert enc.extra["calibration"] == "procedural images (seed 3003, 64 px)"  # at the peer's input size
    assert by[("mask_decoder_lowres", "int8")].path == by[("mask_decoder_lowres", "fp32")].path  # decoder kept fp32
    gate = m.accuracy["onnxruntime/int8"]
    assert gate["measured"] and gate["reference"] == "onnxruntime/fp32" and 0 <= gate["agreement"] <= 1
    assert gate["meaning"] == RANDOM_WEIGHTS_GATE and "not accuracy" in gate["meaning"]
    assert any("weights are random" in n and "agreement with the fp32 artifacts" in n for n in m.notes)
    _predict_one_point(out, "onnxruntime", "int8")


@pytest.mark.slow
def test_mobilesam_openvino_int8_and_int8_bf16(tmp_path):
    """OpenVINO's NNCF int8 IR, and int8-bf16 recorded with its gate skipped on a CPU without BF16."""
    from slimsam_edge.devices import detected

    out = export_peer("mobilesam", tmp_path / "ov8", image_size=64, backends=("openvino",),
                      precisions=("int8", "int8-bf16"), validate=False, reference=False, precision_options=QUICK)
    b = load_bundle(out)
    m = b.manifest
    assert {a.precision for a in m.artifacts} == {"fp32", "int8", "int8-bf16"}
    enc = b.find("image_encoder", backend="openvino", precision="int8-bf16")
    assert enc.path == "openvino/image_encoder.int8-bf16.xml" and "64 px" in enc.extra["calibration"]
    assert m.accuracy["openvino/int8"]["measured"]
    assert m.accuracy["openvino/int8-bf16"]["measured"] == detected()["supports_bf16"]
    _predict_one_point(out, "openvino", "int8")


@pytest.mark.parametrize("kwargs,fragment", [
    ({"name": "sam-h"}, "choose one of: mobilesam, sam-b, efficientvit-sam-l0"),
    ({"name": "mobilesam", "backends": ("tensorrt",)}, "builds on the device"),
    ({"name": "mobilesam", "backends": ("nosuch",)}, "nosuch"),
    ({"name": "efficientvit-sam-l0", "image_size": 100}, "multiple of 32"),
    ({"name": "mobilesam", "precisions": ("int4",)}, "unknown precision 'int4'"),
    ({"name": "mobilesam", "backends": ("onnxruntime",), "precisions": ("int8-bf16",)},
     "int8-bf16 is made for openvino only"),
])
def test_bad_requests_are_refused_before_writing(tmp_path, kwargs, fragment):
    name = kwargs.pop("name")
    with pytest.raises(UsageError, match=fragment):
        export_peer(name, tmp_path / "out", **kwargs)
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_efficientvit_peer_full_export_both_backends(tmp_path):
    """The default export path at a reduced size: both CPU backends, validation, reference I/O."""
    out = export_peer("efficientvit-sam-l0", tmp_path / "evit", image_size=128)
    m = load_bundle(out).manifest
    assert all(v["ok"] for v in m.validation.values()) and len(m.validation) == 4
    assert m.reference and m.backend_preference == ["onnxruntime", "openvino"]
    for backend in ("onnxruntime", "openvino"):
        _predict_one_point(out, backend)
