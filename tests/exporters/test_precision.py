"""Reduced precision on tiny models: calibration feeds, ORT fp16/int8, OpenVINO fp16/bf16/int8,
the accuracy gate, CLI wiring and bad input; TensorRT precision plans against a fake module."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from helpers import assert_one_line_error, photo
from slimsam_edge.bundle import load_bundle, write_manifest
from slimsam_edge.errors import AccuracyGateError, BundleError, DataError, UsageError

runner = CliRunner()
CALIB, GATE = 4, 2  # calibration images / held-out gate images: small, to keep the file fast


def _cli(*args):
    from slimsam_edge.cli.app import app

    return runner.invoke(app, [str(a) for a in args])




def _add(root: Path, precision: str, backends: tuple[str, ...], **kw):
    """Add ``precision`` artifacts to the fp32 bundle at ``root`` and record them in its manifest."""
    from slimsam_edge.exporters.precision import RUNTIME_GRAPHS, PrecisionOptions, add_precision

    b = load_bundle(root)
    m = b.manifest
    fp32 = {(a.graph, a.backend): a for a in m.artifacts if a.precision == "fp32"}
    onnx = {g: root / fp32[(g, "onnxruntime")].path for g in RUNTIME_GRAPHS}
    opts = PrecisionOptions(**{"calib_images": CALIB, "gate_images": GATE, **kw})
    arts, acc, notes = add_precision(root, precision, backends, fp32, onnx, image_size=m.image_size,
                                     pixel_mean=m.pixel_mean, pixel_std=m.pixel_std, options=opts)
    m.artifacts += arts
    m.accuracy.update(acc)
    m.notes += notes
    write_manifest(root, m)
    return arts, acc, notes


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, tiny_bundle) -> Path:
    root = tmp_path_factory.mktemp("prec") / "b"
    shutil.copytree(tiny_bundle, root)
    return root


@pytest.fixture(scope="module")
def int8(bundle):
    return _add(bundle, "int8", ("onnxruntime", "openvino"), allow_accuracy_drop=True, int8_decoder=True)


# -- calibration feeds -------------------------------------------------------------------------

def test_feeds_use_the_runtime_preprocessing_and_replay(tiny_bundle) -> None:
    from slimsam_edge.calibration import calibration_images, decoder_feeds, encoder_feeds
    from slimsam_edge.predictor import EdgePredictor
    from slimsam_edge.runtimes import open_runner

    m = load_bundle(tiny_bundle).manifest
    kw = dict(image_size=m.image_size, pixel_mean=m.pixel_mean, pixel_std=m.pixel_std)
    images = calibration_images(None, 2, size=96)
    pred = EdgePredictor.from_bundle(tiny_bundle, backend="onnxruntime")
    enc = encoder_feeds(images, **kw)
    for image, feed in zip(images, enc):
        pred.set_image(image)  # the predictor's own preprocessing + encoder
        got = pred.encoder.infer(feed)["image_embeddings"]
        np.testing.assert_array_equal(got, pred.get_image_embedding())
    encoder = open_runner(tiny_bundle / "onnx" / "image_encoder.onnx", backend="onnxruntime")
    dec = decoder_feeds(images, encoder, **kw)
    first, second = list(dec), list(dec)  # re-iterable; the second pass replays the cached feeds
    assert len(first) == len(dec) == 4 and all(a is b for a, b in zip(first, second))
    assert set(first[0]) == {"image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input"}
    assert first[1]["point_labels"].tolist() == [[2.0, 3.0]]  # every other prompt is a box
    out = pred.decoder.infer(first[0])
    assert out["low_res_masks"].shape[-1] == 4 * first[0]["image_embeddings"].shape[-1]


def test_calibration_folder_counts(tmp_path: Path) -> None:
    from slimsam_edge.calibration import calibration_images

    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), photo((40, 60), seed=i))
    with pytest.raises(DataError, match=r"found 3 images, need 8 \(--calib-images 8\)") as err:
        calibration_images(tmp_path, 8)
    assert "\n" not in str(err.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="found 0 images, need 2"):
        calibration_images(empty, 2)
    with pytest.raises(DataError, match="not a folder"):
        calibration_images(tmp_path / "missing", 2)
    with pytest.raises(UsageError, match="1..512"):
        calibration_images(tmp_path, 0)
    imgs = calibration_images(tmp_path, 2)
    assert len(imgs) == 2 and imgs[0].shape == (40, 60, 3) and "2 images from" in imgs.describe()


def test_calibration_is_torch_free(tiny_bundle) -> None:
    code = (
        "import sys\nfrom slimsam_edge.calibration import calibration_images, encoder_feeds, decoder_feeds\n"
        "from slimsam_edge.runtimes import open_runner\n"
        f"root = {str(tiny_bundle)!r}\n"
        "imgs = calibration_images(None, 1, size=64)\n"
        "kw = dict(image_size=256, pixel_mean=(0, 0, 0), pixel_std=(1, 1, 1))\n"
        "list(encoder_feeds(imgs, **kw))\n"
        "list(decoder_feeds(imgs, open_runner(root + '/onnx/image_encoder.onnx'), **kw))\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'torch')\n"
        "sys.exit('torch imported: ' + ', '.join(bad[:5]) if bad else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr + proc.stdout


# -- precision paths ---------------------------------------------------------------------------

def test_fp16_paths_pass_the_gate(bundle) -> None:
    import onnx

    arts, acc, _ = _add(bundle, "fp16", ("onnxruntime", "openvino"))
    assert {(a.graph, a.backend) for a in arts} == {
        (g, b) for g in ("image_encoder", "mask_decoder_lowres") for b in ("onnxruntime", "openvino")}
    for key in ("onnxruntime/fp16", "openvino/fp16"):
        a = acc[key]
        print(key, {k: a[k] for k in ("agreement", "agreement_min", "embedding_rel_err")})
        assert a["passed"] and a["threshold"] == 0.99 and a["agreement"] >= 0.99
        assert a["embedding_rel_err"] < 0.01 and a["miou"] is not None
    g = onnx.load(str(bundle / "onnx" / "image_encoder.fp16.onnx"))
    assert g.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # fp32 I/O
    assert g.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    halves = [t for t in g.graph.initializer if t.data_type == onnx.TensorProto.FLOAT16]
    assert halves, "no fp16 weights"
    from slimsam_edge.predictor import EdgePredictor

    for backend in ("onnxruntime", "openvino"):
        p = EdgePredictor.from_bundle(bundle, backend=backend, precision="fp16")
        p.set_image(photo((120, 90), seed=5))
        masks, scores, _ = p.predict(point_coords=np.array([[40, 60]]), point_labels=np.array([1]))
        assert masks.shape == (3, 120, 90) and np.isfinite(scores).all()


def test_int8_paths_measured(bundle, int8) -> None:
    import onnx

    arts, acc, notes = int8
    for key in ("onnxruntime/int8", "openvino/int8"):
        a = acc[key]
        print(key, {k: a[k] for k in ("agreement", "agreement_min", "embedding_rel_err", "miou", "miou_reference")})
        # a random-weight tiny model quantizes worse than a trained one; the numbers must still be sane
        assert a["measured"] and 0.6 < a["agreement"] <= 1.0 and a["embedding_rel_err"] < 0.5
        assert a["threshold"] == 0.95 and a["passed"] == (a["agreement"] >= 0.95)
        assert a["images"] == GATE and a["prompts"] > GATE
    enc = next(a for a in arts if a.backend == "onnxruntime" and a.graph == "image_encoder")
    assert enc.extra["calibration"] == "procedural images (seed 3003)" and enc.extra["calibration_feeds"] == CALIB
    g = onnx.load(str(bundle / enc.path))
    ops = [n.op_type for n in g.graph.node]
    assert ops.count("QuantizeLinear") > 5 and ops.count("DequantizeLinear") > ops.count("QuantizeLinear")
    assert "Softmax" in ops and "QLinearSoftmax" not in ops  # excluded ops stay float ops
    from slimsam_edge.runtimes.onnxruntime.quantize import OrtInt8Options, _nodes_to_exclude

    f32 = onnx.load(str(bundle / "onnx" / "image_encoder.onnx"))
    excluded = _nodes_to_exclude(f32, OrtInt8Options(exclude_ops=("Softmax",), exclude_nodes=("*neck*",)))
    assert any("Softmax" in n for n in excluded) and any("neck" in n for n in excluded)
    consts = {t.name for t in f32.graph.initializer}
    act_matmuls = [n.name for n in f32.graph.node if n.op_type == "MatMul" and not set(n.input) & consts]
    assert act_matmuls and set(act_matmuls) <= set(excluded)  # attention scores / values stay float
    dec = onnx.load(str(bundle / "onnx" / "mask_decoder_lowres.onnx"))
    producer = {o: n for n in dec.graph.node for o in n.output}
    trig_in = {producer[i].name for n in dec.graph.node if n.op_type in ("Sin", "Cos") for i in n.input}
    assert trig_in and trig_in <= set(_nodes_to_exclude(dec, OrtInt8Options()))  # prompt positions stay float
    zps = [t for t in g.graph.initializer if t.name.endswith("zero_point") and "bias_quantized" not in t.name]
    assert zps and all(t.data_type == onnx.TensorProto.INT8 for t in zps)  # s8 activations + weights
    assert all(not onnx.numpy_helper.to_array(t).any() for t in zps)  # symmetric: zero points are 0
    ir = (bundle / "openvino" / "image_encoder.int8.xml").read_text()
    assert "FakeQuantize" in ir or "FakeConvert" in ir
    from slimsam_edge.predictor import EdgePredictor

    p = EdgePredictor.from_bundle(bundle, backend="onnxruntime", precision="int8")
    p.set_image(photo((64, 64), seed=3))
    assert p.predict(box=np.array([5, 5, 50, 40]))[0].shape == (3, 64, 64)


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_int8_decoders_keep_the_prompt_axis(bundle, int8, backend) -> None:
    """The quantized low-res decoder (ORT Q/DQ, OpenVINO NNCF IR) still takes B prompts per call."""
    from slimsam_edge.models.graph_spec import has_prompt_axis
    from slimsam_edge.predictor import EdgePredictor

    dec = next(a for a in int8[0] if a.backend == backend and a.graph == "mask_decoder_lowres")
    assert "int8" in dec.path  # a quantized file, not the fp32 one with a hint
    p = EdgePredictor.from_bundle(bundle, backend=backend, precision="int8")
    assert has_prompt_axis(p.decoder.input_specs())
    p.set_image(photo((64, 80), seed=3))
    boxes = np.array([[5, 5, 50, 40], [20, 10, 70, 60], [0, 30, 40, 64]], float)
    masks, scores, low = p.predict_batch(boxes=boxes)
    assert masks.shape == (3, 3, 64, 80) and scores.shape == (3, 3)
    for i, box in enumerate(boxes):
        _, s1, l1 = p.predict(box=box)
        np.testing.assert_allclose(scores[i], s1, atol=1e-3)
        assert ((low[i] > 0) == (l1 > 0)).mean() > 0.99


def test_int8_keeps_the_decoder_fp32_by_default(tmp_path, tiny_bundle) -> None:
    root = tmp_path / "b"
    shutil.copytree(tiny_bundle, root)
    arts, acc, notes = _add(root, "int8", ("onnxruntime",), allow_accuracy_drop=True)
    by = {a.graph: a for a in arts}
    fp32 = load_bundle(root).find("mask_decoder_lowres", backend="onnxruntime", precision="fp32")
    dec = by["mask_decoder_lowres"]
    assert dec.precision == "int8" and dec.path == fp32.path and dec.files == fp32.files
    assert dec.extra["precision_hint"] == "fp32" and "int8 decoder off" in dec.extra["method"]
    assert by["image_encoder"].path.endswith(".int8.onnx") and acc["onnxruntime/int8"]["measured"]
    assert "int8 artifacts cover image_encoder;" in notes[-1]
    from slimsam_edge.predictor import EdgePredictor

    p = EdgePredictor.from_bundle(root, backend="onnxruntime", precision="int8")
    p.set_image(photo((64, 64), seed=3))
    assert p.predict(point_coords=np.array([[30, 30]]), point_labels=np.array([1]))[0].shape == (3, 64, 64)


def test_gate_refuses_a_bad_artifact(bundle, int8) -> None:
    from slimsam_edge.exporters.gate import run_gate
    from slimsam_edge.exporters.precision import PrecisionOptions
    from slimsam_edge.runtimes import recipes

    RECIPES = recipes()
    arts, _, _ = int8
    m = load_bundle(bundle).manifest
    fp32 = {(a.graph, a.backend): a for a in m.artifacts if a.precision == "fp32"}
    kw = dict(image_size=m.image_size, pixel_mean=m.pixel_mean, pixel_std=m.pixel_std)
    with pytest.raises(AccuracyGateError) as err:
        run_gate(bundle, "int8", [RECIPES[("onnxruntime", "int8")]], arts, fp32,
                 options=PrecisionOptions(gate_images=1, threshold=1.01), **kw)
    msg = str(err.value)
    assert err.value.exit_code == 2 and "\n" not in msg
    assert "onnxruntime/int8 mask IoU agreement with fp32" in msg and "< 1.01" in msg
    assert "--allow-accuracy-drop" in msg and err.value.results["onnxruntime/int8"]["passed"] is False
    acc, notes = run_gate(bundle, "int8", [RECIPES[("onnxruntime", "int8")]], arts, fp32,
                          options=PrecisionOptions(gate_images=1, threshold=1.01, allow_accuracy_drop=True), **kw)
    assert acc["onnxruntime/int8"]["passed"] is False and "accepted below the accuracy gate" in notes[0]


def test_dynamic_int8_baseline(bundle, tmp_path) -> None:
    from slimsam_edge.eval.agreement import compare_predictors
    from slimsam_edge.eval.evaluate import default_eval_data
    from slimsam_edge.runtimes.onnxruntime.quantize import quantize_int8_dynamic
    from slimsam_edge.predictor import EdgePredictor
    from slimsam_edge.runtimes import open_runner

    m = load_bundle(bundle).manifest
    out = quantize_int8_dynamic(bundle / "onnx" / "image_encoder.onnx", tmp_path / "enc.dyn.onnx")
    ref = EdgePredictor.from_bundle(bundle, backend="onnxruntime", precision="fp32")
    dyn = EdgePredictor(open_runner(out[0]), ref.decoder, image_size=m.image_size,
                        pixel_mean=tuple(m.pixel_mean), pixel_std=tuple(m.pixel_std))
    r = compare_predictors(ref, dyn, default_eval_data(1))
    print("onnxruntime dynamic int8 (encoder only)", r["agreement"], r["embedding_rel_err"])
    assert 0.5 < r["agreement"] <= 1.0 and r["embedding_rel_err"] < 0.5


def test_bf16_is_a_recorded_hint(bundle, tiny_bundle, monkeypatch) -> None:
    import openvino as ov

    shutil.copytree(tiny_bundle, bundle.parent / "fp32-only", dirs_exist_ok=True)

    arts, acc, notes = _add(bundle, "bf16", ("openvino",))
    assert all(a.extra["precision_hint"] == "bf16" and a.path.endswith(f"{a.graph}.xml") for a in arts)
    a = acc["openvino/bf16"]
    if "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        assert a["measured"] and a["agreement"] >= 0.99
    else:  # this CPU cannot run bf16: recorded, and refused at run time (never run as fp32)
        assert not a["measured"] and "does not support bf16" in a["reason"]
        assert any("openvino/bf16 not measured" in n for n in notes)
        from slimsam_edge.predictor import EdgePredictor

        # refused before a session is made (the machine check), or by OpenVINO's capability check
        with pytest.raises(UsageError, match="bf16 needs a CPU with AVX512_BF16|does not support bf16"):
            EdgePredictor.from_bundle(bundle, backend="openvino", precision="bf16").activate()
    from slimsam_edge.devices import profile
    from slimsam_edge.predictor import EdgePredictor

    # on a CPU with BF16 too (faked here, so that every machine tests it), ONNX Runtime is refused bf16
    monkeypatch.setattr(profile, "_DETECTED", [{"supports_bf16": True, "cpu_model": "Fake BF16 CPU", "is_jetson": False}])
    with pytest.raises(BundleError, match="onnxruntime cannot run bf16 .ONNX Runtime's CPU provider has no bf16"):
        EdgePredictor.from_bundle(bundle, backend="onnxruntime", precision="bf16")  # ORT has no bf16: refused
    from slimsam_edge.predictor import open_artifact

    with pytest.raises(UsageError, match="cannot apply a bf16 hint"):  # and its runner refuses the hint too
        open_artifact(bundle, load_bundle(bundle).find("image_encoder", "onnxruntime", "fp32"), precision="bf16").activate()
    with pytest.raises(BundleError, match="no artifact image_encoder/onnxruntime/fp16"):
        EdgePredictor.from_bundle(bundle.parent / "fp32-only", backend="onnxruntime", precision="fp16")


def test_manifest_records_accuracy_and_bench_pairs(bundle, int8) -> None:
    from slimsam_edge.bench.run import runnable_pairs

    b = load_bundle(bundle)
    assert b.manifest.accuracy["onnxruntime/int8"]["agreement"] > 0
    pairs, skipped = runnable_pairs(b, ["onnxruntime", "openvino"], None)
    assert ("onnxruntime", "int8") in pairs and ("openvino", "int8") in pairs and not skipped
    pairs, skipped = runnable_pairs(b, ["torch"], ["fp32", "int8"])
    assert pairs == [("torch", "fp32")] and "no int8 artifact for torch" in skipped[0]["reason"]
    with pytest.raises(UsageError, match="nothing to benchmark"):
        runnable_pairs(b, ["torch"], ["int8"])


def test_every_exportable_target_precision_has_a_recipe() -> None:
    from slimsam_edge.devices import list_profiles, load_profile
    from slimsam_edge.runtimes import get_backend, recipes

    for name in list_profiles():
        t = load_profile(name)
        for prec in t.all_precisions():
            if prec != "fp32":
                for b in t.backends_for(prec):
                    converter = get_backend(b).converter
                    # an on-device backend (TensorRT) builds from its source backend's artifacts
                    source = converter.source_backend if converter is not None and converter.on_device else b
                    assert (source, prec) in recipes(), (t.name, b, prec)


def _gate_inputs(bundle, int8):
    from slimsam_edge.runtimes import recipes

    arts, _, _ = int8
    m = load_bundle(bundle).manifest
    fp32 = {(a.graph, a.backend): a for a in m.artifacts if a.precision == "fp32"}
    kw = dict(image_size=m.image_size, pixel_mean=m.pixel_mean, pixel_std=m.pixel_std)
    return [recipes()[("onnxruntime", "int8")]], arts, fp32, kw


def test_gate_fails_on_a_bad_precision_hint(bundle, int8) -> None:
    """A bad hint is a UsageError, not "not measurable here": it fails the export (it used to pass)."""
    import copy

    from slimsam_edge.exporters.gate import run_gate
    from slimsam_edge.exporters.precision import PrecisionOptions

    recipes_, arts, fp32, kw = _gate_inputs(bundle, int8)
    bad = [copy.deepcopy(a) for a in arts]
    for a in bad:
        if a.backend == "onnxruntime":
            a.extra["precision_hint"] = "fp16"  # ONNX Runtime on CPU cannot apply a hint
    with pytest.raises(UsageError, match="cannot apply a fp16 hint"):
        run_gate(bundle, "int8", recipes_, bad, fp32, options=PrecisionOptions(gate_images=1), **kw)


def test_gate_skips_only_what_this_machine_cannot_run_and_says_so(bundle, int8, monkeypatch) -> None:
    from slimsam_edge.errors import UnsupportedOnThisMachineError
    from slimsam_edge.exporters import gate
    from slimsam_edge.exporters.precision import PrecisionOptions

    recipes_, arts, fp32, kw = _gate_inputs(bundle, int8)

    def unsupported(*_a, **_k):
        raise UnsupportedOnThisMachineError("openvino: CPU does not support bf16")

    monkeypatch.setattr(gate, "_predictor", unsupported)
    said: list[str] = []
    acc, notes = gate.run_gate(bundle, "int8", recipes_, arts, fp32, options=PrecisionOptions(gate_images=1, allow_accuracy_drop=True),
                               progress=said.append, **kw)
    assert acc["onnxruntime/int8"] == {"measured": False, "threshold": 0.95,
                                       "reason": "openvino: CPU does not support bf16"}
    assert "skipped" in notes[0] and "does not support bf16" in notes[0]
    assert said and said[0].startswith("accuracy gate skipped: onnxruntime/int8 not measured")



def test_gate_closes_the_sessions_it_opens(bundle, int8, monkeypatch) -> None:
    from slimsam_edge.exporters import gate
    from slimsam_edge.exporters.precision import PrecisionOptions

    recipes_, arts, fp32, kw = _gate_inputs(bundle, int8)
    opened = []
    real = gate._predictor

    def tracked(*a, **k):
        opened.append(real(*a, **k))
        return opened[-1]

    monkeypatch.setattr(gate, "_predictor", tracked)
    acc, _ = gate.run_gate(bundle, "int8", recipes_, arts, fp32, options=PrecisionOptions(gate_images=1, allow_accuracy_drop=True),
                           **kw)
    assert acc["onnxruntime/int8"]["measured"] and len(opened) == 2  # candidate and fp32 reference
    assert not any(r.is_active for p in opened for r in (p.encoder, p.decoder))

# -- int8 + bf16 (OpenVINO: the NNCF IR, its unquantized ops in bf16) ----------------------------

NO_BF16 = {"supports_bf16": False, "cpu_model": "Fake CPU without BF16", "is_jetson": False}


@pytest.fixture(scope="module")
def has_bf16() -> bool:
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


@pytest.fixture(scope="module")
def int8_bf16(bundle):
    return _add(bundle, "int8-bf16", ("openvino",), allow_accuracy_drop=True)


def _runtime_precisions(runner) -> dict[str, int]:
    """How many layers of the compiled model run in each precision (OpenVINO's execution graph)."""
    counts: dict[str, int] = {}
    for op in runner._compiled.get_runtime_model().get_ops():
        rt = op.get_rt_info()
        if "runtimePrecision" in rt:
            key = rt["runtimePrecision"].astype(str)
            counts[key] = counts.get(key, 0) + 1
    return counts


def test_int8_bf16_is_recorded_in_the_manifest(bundle, int8_bf16, has_bf16) -> None:
    arts, acc, notes = int8_bf16
    by = {a.graph: a for a in arts}
    enc, dec = by["image_encoder"], by["mask_decoder_lowres"]
    assert enc.precision == dec.precision == "int8-bf16" and enc.backend == "openvino"
    assert enc.path == "openvino/image_encoder.int8-bf16.xml"  # its own IR: int8 may sit next to it
    assert "FakeQuantize" in (bundle / enc.path).read_text()
    assert "INFERENCE_PRECISION_HINT=bf16" in enc.extra["method"] and enc.extra["subset_size"] == CALIB
    assert enc.extra["calibration"] == "procedural images (seed 3003)"
    fp32_dec = load_bundle(bundle).find("mask_decoder_lowres", backend="openvino", precision="fp32")
    assert dec.path == fp32_dec.path and "INFERENCE_PRECISION_HINT=bf16" in dec.extra["method"]
    b = load_bundle(bundle)  # validated on load; the hints are manifest values, checked
    assert b.find("image_encoder", "openvino", "int8-bf16").precision_hint("b") == "int8-bf16"
    assert b.find("mask_decoder_lowres", "openvino", "int8-bf16").precision_hint("b") == "bf16"
    a = acc["openvino/int8-bf16"]
    assert a["threshold"] == 0.95 and a["measured"] == has_bf16
    if has_bf16:
        print("openvino/int8-bf16", {k: a[k] for k in ("agreement", "agreement_min", "embedding_rel_err")})
        assert a["reference"] == "openvino/fp32" and a["passed"] and 0.95 <= a["agreement"] <= 1.0
    else:  # recorded, gate skipped with the reason; refused at run time
        assert "does not support int8-bf16" in a["reason"] and any("openvino/int8-bf16 not measured" in n for n in notes)
    bad = b.find("image_encoder", "openvino", "int8-bf16")
    bad.extra["precision_hint"] = "int4-bf16"
    with pytest.raises(BundleError, match="extra.precision_hint 'int4-bf16' is not one of"):
        bad.precision_hint("b")


def test_the_runner_sets_the_hint_and_keeps_int8(bundle, int8, int8_bf16, has_bf16) -> None:
    """int8-bf16 compiles with INFERENCE_PRECISION_HINT=bf16 and still runs layers in int8; int8 pins f32
    (left unset, an AMX CPU would quietly run int8's other ops in bf16)."""
    from slimsam_edge.predictor import EdgePredictor

    if not has_bf16:
        pytest.skip("this CPU has no BF16 (the refusal is tested with a faked CPU below)")
    opened = {}
    for precision, hint in (("int8", "f32"), ("int8-bf16", "bf16"), ("fp32", "f32")):
        p = opened[precision] = EdgePredictor.from_bundle(bundle, backend="openvino", precision=precision).activate()
        enc, dec = p.encoder, p.decoder
        got = str(enc._compiled.get_property("INFERENCE_PRECISION_HINT")).lower()
        assert got.endswith(hint) or {"f32": "float32", "bf16": "bfloat16"}[hint] in got, (precision, got)
        assert f"INFERENCE_PRECISION_HINT={hint}" in enc.notes[-1]
        assert ("CPU AMX: " in enc.notes[-1]) == (precision != "fp32")  # where AMX kernels may run
        counts = _runtime_precisions(enc)
        if precision != "fp32":
            assert counts.get("i8", 0) + counts.get("u8", 0) > 0, counts  # quantized layers stay int8
        assert (counts.get("bf16", 0) > 0) == (precision == "int8-bf16"), counts
        dec_hint = str(dec._compiled.get_property("INFERENCE_PRECISION_HINT")).lower()
        assert ("bf" in dec_hint) == (precision == "int8-bf16"), dec_hint  # the unquantized decoder too
    from slimsam_edge.eval.agreement import compare_predictors
    from slimsam_edge.eval.evaluate import default_eval_data

    try:  # int8 where NNCF quantized, bf16 elsewhere: still the int8 gate's agreement with fp32
        r = compare_predictors(opened["fp32"], opened["int8-bf16"], default_eval_data(GATE))
        print("int8-bf16 vs fp32", r["agreement"], r["agreement_min"], r["embedding_rel_err"])
        assert r["agreement"] >= 0.95
    finally:
        for p in opened.values():
            p.close()


def test_nncf_leaves_attention_matmuls_in_float(bundle, int8, int8_bf16) -> None:
    """MatMuls of two activations (attention scores / values) stay float: quantized, they break
    OpenVINO's fused attention (slower than bf16 at 1024, see NncfOptions.float_attention)."""
    import openvino as ov

    from slimsam_edge.runtimes.openvino.quantize import activation_matmuls

    core = ov.Core()
    names = activation_matmuls(core.read_model(str(bundle / "openvino" / "image_encoder.xml")))
    assert names and all("/attn/MatMul" in n for n in names), names
    for ir in ("image_encoder.int8.xml", "image_encoder.int8-bf16.xml"):
        ops = {op.get_friendly_name(): op for op in core.read_model(str(bundle / "openvino" / ir)).get_ops()}
        fed = {n: [i.get_source_output().get_node().get_type_name() for i in ops[n].inputs()] for n in names}
        assert not any("FakeQuantize" in kinds for kinds in fed.values()), fed
        assert any(op.get_type_name() == "FakeQuantize" for op in ops.values())  # the rest is quantized


def test_int8_bf16_refused_without_bf16(bundle, int8_bf16, tmp_path, monkeypatch) -> None:
    from slimsam_edge.bench.suite import bench_suite
    from slimsam_edge.devices import profile
    from slimsam_edge.errors import UnsupportedOnThisMachineError
    from slimsam_edge.predictor import EdgePredictor

    monkeypatch.setattr(profile, "_DETECTED", [NO_BF16])
    for call in (lambda: EdgePredictor.from_bundle(bundle, backend="openvino", precision="int8-bf16"),
                 lambda: bench_suite([str(bundle)], precisions=["int8-bf16"])):
        with pytest.raises(UnsupportedOnThisMachineError) as err:
            call()
        assert str(err.value) == ("int8-bf16 needs a CPU with AVX512_BF16, AMX or Arm BF16 and Fake CPU without "
                                  "BF16 has none; use --precision int8 (the same int8 graph, its other ops in fp32) "
                                  "or fp32")
    cv2.imwrite(str(tmp_path / "x.png"), photo((40, 60), seed=1))
    for args in (("bench", bundle, "--precision", "int8-bf16"),
                 ("segment", tmp_path / "x.png", "--bundle", bundle, "--out", tmp_path / "m.png", "--point", "1,1",
                  "--precision", "int8-bf16")):
        assert_one_line_error(_cli(*args), "int8-bf16 needs a CPU with AVX512_BF16", "Fake CPU without BF16 has none")
    # bench --all lists the pair as skipped, with the reason, and measures the rest
    from slimsam_edge.bench.run import runnable_pairs

    pairs, _ = runnable_pairs(load_bundle(bundle), ["openvino"], None)
    assert ("openvino", "int8-bf16") in pairs  # held by the bundle; the machine decides later
    _, skipped = runnable_pairs(load_bundle(bundle), ["onnxruntime", "openvino"], ["int8-bf16"])
    assert [s["backend"] for s in skipped] == ["onnxruntime"] and "no bf16 kernels" in skipped[0]["reason"]


def test_int8_bf16_from_an_int8_bundle_and_not_on_onnxruntime(bundle, int8, has_bf16, tmp_path) -> None:
    """An int8 bundle runs as int8-bf16 (its int8 IR + the bf16 hint); ONNX Runtime refuses it, saying why."""
    import dataclasses

    from slimsam_edge.exporters.precision import recipes_for
    from slimsam_edge.predictor import find_artifact, open_artifact

    root = tmp_path / "int8-only"
    shutil.copytree(bundle, root)
    m = load_bundle(root).manifest
    write_manifest(root, dataclasses.replace(m, artifacts=[a for a in m.artifacts if a.precision != "int8-bf16"]))
    b = load_bundle(root)
    enc = find_artifact(b, "image_encoder", "openvino", "int8-bf16")
    assert enc.precision == "int8" and enc.path.endswith("image_encoder.int8.xml")
    assert open_artifact(root, enc, precision="int8-bf16").options.precision == "int8-bf16"
    assert open_artifact(root, enc, precision="int8").options.precision == "int8"
    assert open_artifact(root, enc).options.precision == "int8"
    with pytest.raises(BundleError) as err:
        find_artifact(b, "image_encoder", "onnxruntime", "int8-bf16")
    assert "onnxruntime cannot run int8-bf16 (ONNX Runtime's CPU provider has no bf16 kernels" in str(err.value)
    assert "--backend openvino" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(UsageError, match="no int8-bf16 export for backend.s. onnxruntime .ONNX Runtime's CPU provider"):
        recipes_for(("onnxruntime",), "int8-bf16")


def test_cli_int8_bf16_export_is_gated_like_other_precisions(tmp_path, tiny_checkpoint) -> None:
    out = tmp_path / "b"
    assert_one_line_error(_cli("export", tiny_checkpoint, "--out", out, "--target", "onnx", "--precision", "int8-bf16"),
                          "precision int8-bf16 is not available for target onnx", "--target cpu")
    board = tmp_path / "ort-bf16.toml"
    board.write_text('name = "ort"\nkind = "cpu"\ndescription = "d"\nbackends = ["onnxruntime"]\n'
                     'default_precision = "fp32"\n[precisions]\nonnxruntime = ["fp32", "int8-bf16"]\n'
                     '[graphs]\nonnxruntime = ["image_encoder", "mask_decoder_lowres"]\n')
    assert_one_line_error(_cli("export", tiny_checkpoint, "--out", out, "--target", board, "--precision", "int8-bf16"),
                          "no int8-bf16 export for backend(s) onnxruntime", "no bf16 kernels")
    assert_one_line_error(_cli("export", tiny_checkpoint, "--out", out, "--precision", "bf16", "--int8-decoder"),
                          "--int8-decoder is used by --precision int8 / int8-bf16 only")
    assert not out.exists()


@pytest.mark.slow
def test_sam_mini_int8_bf16_agrees_with_fp32(tmp_path, has_bf16) -> None:
    """The shipped sam-mini: int8-bf16 passes the int8 gate (mask IoU agreement with fp32 >= 0.95)."""
    if not has_bf16:
        pytest.skip("this CPU has no BF16: int8-bf16 is refused here (tested above with a faked CPU)")
    from slimsam_edge.assets import reference_model_path
    from slimsam_edge.exporters.bundle_export import export_bundle
    from slimsam_edge.exporters.precision import PrecisionOptions
    from slimsam_edge.models.io import load_model

    board = tmp_path / "ov.toml"
    board.write_text('name = "ov"\nkind = "cpu"\ndescription = "d"\nbackends = ["openvino"]\n'
                     'default_precision = "fp32"\n[precisions]\nopenvino = ["fp32", "int8-bf16"]\n'
                     '[graphs]\nopenvino = ["image_encoder", "mask_decoder_lowres"]\n')
    sam, spec = load_model(reference_model_path())
    m = export_bundle(sam, spec, tmp_path / "b", target=board, precision="int8-bf16", validate=False,
                      precision_options=PrecisionOptions(calib_images=16, gate_images=8))
    a = m.accuracy["openvino/int8-bf16"]
    print("sam-mini openvino/int8-bf16", {k: a[k] for k in ("agreement", "agreement_min", "miou", "miou_reference")})
    assert a["measured"] and a["passed"] and a["agreement"] >= 0.95


# -- CLI -----------------------------------------------------------------------------------------

def test_cli_bad_inputs_exit_2(tmp_path, tiny_checkpoint) -> None:
    out = tmp_path / "b"
    assert_one_line_error(_cli("export", tiny_checkpoint, "--out", out, "--target", "onnx", "--precision", "bf16"),
                    "precision bf16 is not available for target onnx", "--target cpu")
    assert_one_line_error(_cli("export", tiny_checkpoint, "--out", out, "--precision", "fp16", "--calib-data", tmp_path),
                    "--calib-data is used by --precision int8 / int8-bf16 only")
    cv2.imwrite(str(tmp_path / "one.png"), photo((32, 32)))
    assert_one_line_error(_cli("export", tiny_checkpoint, "--out", out, "--precision", "int8", "--calib-data", tmp_path,
                         "--calib-images", "5"), "found 1 images, need 5")
    assert not out.exists()


def test_missing_quantizer_package_is_refused_up_front(tiny_checkpoint, tmp_path, monkeypatch) -> None:
    from slimsam_edge.runtimes import recipes

    monkeypatch.setattr(type(recipes()[("openvino", "int8")]), "requires", ("no_such_nncf_module",))
    assert_one_line_error(_cli("export", tiny_checkpoint, "--out", tmp_path / "b", "--precision", "int8"),
                    "int8 export for onnxruntime, openvino needs no_such_nncf_module", "--target onnx")


def test_cli_gate_refusal_end_to_end(tmp_path, tiny_checkpoint) -> None:
    out = tmp_path / "b"
    r = _cli("export", tiny_checkpoint, "--out", out, "--target", "onnx", "--precision", "fp16",
             "--no-validate", "--no-simplify", "--gate-images", "1", "--accuracy-threshold", "1.01")
    assert_one_line_error(r, "accuracy gate: onnxruntime/fp16 mask IoU agreement with fp32", "--allow-accuracy-drop")
    assert not out.exists()  # nothing half-written


# -- TensorRT precision plans (fake `tensorrt`, see test_runtimes.py; real GPU tests marked) ----

def _tiny_onnx(path: Path, kind: str) -> Path:
    """y = x * w: fp32, fp16 weights (with casts), or Q/DQ around x."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])
    if kind == "fp16":
        nodes = [helper.make_node("Cast", ["x"], ["xh"], to=TensorProto.FLOAT16),
                 helper.make_node("Mul", ["xh", "w"], ["yh"]),
                 helper.make_node("Cast", ["yh"], ["y"], to=TensorProto.FLOAT)]
        inits = [helper.make_tensor("w", TensorProto.FLOAT16, [], [2.0])]
    elif kind == "qdq":
        nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
                 helper.make_node("DequantizeLinear", ["q", "s", "z"], ["dq"]),
                 helper.make_node("Mul", ["dq", "w"], ["y"])]
        inits = [helper.make_tensor("w", TensorProto.FLOAT, [], [2.0]),
                 helper.make_tensor("s", TensorProto.FLOAT, [], [0.1]),
                 helper.make_tensor("z", TensorProto.INT8, [], [0])]
    else:
        nodes = [helper.make_node("Mul", ["x", "w"], ["y"])]
        inits = [helper.make_tensor("w", TensorProto.FLOAT, [], [2.0])]
    model = helper.make_model(helper.make_graph(nodes, kind, [x], [y], initializer=inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.fixture()
def trt_env(monkeypatch, tmp_path):
    import fake_tensorrt

    def install(version: str):
        return fake_tensorrt.install(monkeypatch, version)[0]

    files = {k: _tiny_onnx(tmp_path / f"{k}.onnx", k) for k in ("fp32", "fp16", "qdq")}
    return install, files


SHAPES = {"min_opt_max_shapes": {"x": ((1, 3), (2, 3), (8, 3))}}


def test_tensorrt_10_precision_plans(trt_env, tmp_path) -> None:
    from slimsam_edge.runtimes.tensorrt.precision import build_engine_for, onnx_facts
    from slimsam_edge.runtimes import RunnerOptions, open_runner

    install, onnx_files = trt_env
    trt = install("10.3.0")
    assert onnx_facts(onnx_files["qdq"]) == {"qdq": True, "fp16": False}
    assert onnx_facts(onnx_files["fp16"]) == {"qdq": False, "fp16": True}
    cache = tmp_path / "timing.cache"
    engine, extra = build_engine_for(onnx_files["fp32"], tmp_path / "fp16.engine", "fp16", timing_cache=cache, **SHAPES)
    cfg = trt.Builder.last.config
    assert {f.name for f in cfg.flags} == {"FP16", "OBEY_PRECISION_CONSTRAINTS"}
    # (which layers get pinned is tested on a LayerNorm/Softmax graph in tests/test_runtimes.py)
    assert extra == {"tensorrt_version": "10.3.0", "build": "fp16 flag, LayerNormalization, Softmax pinned to fp32"}
    assert cache.is_file()  # the timing cache is saved for the next build
    _, extra = build_engine_for(onnx_files["qdq"], tmp_path / "int8.engine", "int8", **SHAPES)
    assert {f.name for f in trt.Builder.last.config.flags} == {"INT8"} and "Q/DQ" in extra["build"]
    with pytest.raises(UsageError, match="needs a calibrator"):
        build_engine_for(onnx_files["fp32"], tmp_path / "x.engine", "int8", **SHAPES)
    from slimsam_edge.runtimes.tensorrt.build import entropy_calibrator_class

    calib = entropy_calibrator_class()([{"x": np.ones((2, 3), np.float32)}], tmp_path / "x.calib")
    _, extra = build_engine_for(onnx_files["fp32"], tmp_path / "c.engine", "int8", calibrator=calib, **SHAPES)
    cfg = trt.Builder.last.config
    assert cfg.int8_calibrator is calib and cfg.calibration_profile is cfg.profiles[0]
    assert "calibrator" in extra["build"]
    with pytest.raises(UsageError, match="needs the fp32 ONNX"):
        build_engine_for(onnx_files["qdq"], tmp_path / "x.engine", "fp32", **SHAPES)
    with pytest.raises(UsageError, match="choose one of fp32, fp16, int8"):
        build_engine_for(onnx_files["fp32"], tmp_path / "x.engine", "bf16", **SHAPES)
    with open_runner(engine, options=RunnerOptions(extra=extra)) as r:  # the recorded version loads
        np.testing.assert_allclose(r.infer({"x": np.ones((1, 3), np.float32)})["y"], 2.0)  # y = x * 2, run


def test_tensorrt_11_takes_precision_from_the_onnx(trt_env, tmp_path) -> None:
    from slimsam_edge.runtimes.tensorrt.precision import build_engine_for
    from slimsam_edge.runtimes import RunnerOptions, open_runner

    install, onnx_files = trt_env
    trt = install("11.4.0")
    with pytest.raises(UsageError, match=r"strongly typed networks only: pass the fp16 ONNX"):
        build_engine_for(onnx_files["fp32"], tmp_path / "x.engine", "fp16", **SHAPES)
    with pytest.raises(UsageError, match="no INT8 calibrators: pass the Q/DQ ONNX"):
        build_engine_for(onnx_files["fp32"], tmp_path / "x.engine", "int8", **SHAPES)
    for kind, prec in (("fp16", "fp16"), ("qdq", "int8"), ("fp32", "fp32")):
        engine, extra = build_engine_for(onnx_files[kind], tmp_path / f"{kind}.engine", prec, **SHAPES)
        assert trt.Builder.last.network.flags == 0b11 and not trt.Builder.last.config.flags
    with pytest.raises(BundleError, match="built by TensorRT 10.3.0, this device has 11.4.0.*rebuild"):
        open_runner(engine, options=RunnerOptions(extra={"tensorrt_version": "10.3.0"})).activate()


@pytest.mark.gpu
@pytest.mark.tensorrt
def test_tensorrt_int8_and_fp16_engines_agree_on_gpu(bundle, int8, tmp_path) -> None:
    """On an NVIDIA GPU with TensorRT: engines from the bundle's fp16 and Q/DQ graphs vs ONNX Runtime."""
    pytest.importorskip("tensorrt")
    from slimsam_edge.runtimes.tensorrt.precision import build_engine_for
    from slimsam_edge.runtimes import RunnerOptions, open_runner

    x = {"image": np.random.default_rng(0).normal(size=(1, 3, 256, 256)).astype(np.float32)}
    ref = open_runner(bundle / "onnx" / "image_encoder.onnx").infer(x)["image_embeddings"]
    for src, prec, tol in (("image_encoder.onnx", "fp16", 0.05), ("image_encoder.int8.onnx", "int8", 0.5)):
        engine, extra = build_engine_for(bundle / "onnx" / src, tmp_path / f"{prec}.engine", prec,
                                         timing_cache=tmp_path / "timing.cache")
        with open_runner(engine, options=RunnerOptions(device="cuda", extra=extra)) as r:
            got = r.infer(x)["image_embeddings"]
        assert np.linalg.norm(got - ref) / np.linalg.norm(ref) < tol, prec
