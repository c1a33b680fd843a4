from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from helpers import photo
from slimsam_edge.errors import ImageError, PromptError, UsageError
from slimsam_edge.predictor import EdgePredictor


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    u = np.logical_or(a, b).sum()
    return 1.0 if u == 0 else float(np.logical_and(a, b).sum() / u)


def _prompts(h: int, w: int):
    rng = np.random.default_rng(7)
    yield dict(point_coords=np.array([[w * 0.4, h * 0.5]]), point_labels=np.array([1]))
    pts = np.stack([rng.uniform(0, w, 3), rng.uniform(0, h, 3)], 1)
    yield dict(point_coords=pts, point_labels=np.array([1, 0, 1]))
    yield dict(box=np.array([w * 0.1, h * 0.2, w * 0.6, h * 0.9]))
    yield dict(point_coords=pts[:2], point_labels=np.array([1, 1]), box=np.array([0, 0, w * 0.5, h * 0.5]))


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
@pytest.mark.parametrize("hw", [(1500, 2250), (480, 360), (256, 256)])
def test_masks_agree_with_segment_anything(tiny_bundle, tiny_model, backend, hw):
    from segment_anything import SamPredictor

    img = photo(hw, seed=hw[0])
    ref = SamPredictor(tiny_model)
    ref.set_image(img)
    ours = EdgePredictor.from_bundle(tiny_bundle, backend=backend)
    ours.set_image(img)
    assert ours.original_size == hw
    fractions = []
    for prompt in _prompts(*hw):
        for multimask in (True, False):
            m1, s1, l1 = ours.predict(**prompt, multimask_output=multimask)
            m2, s2, l2 = ref.predict(**prompt, multimask_output=multimask)
            assert m1.shape == m2.shape and m1.dtype == bool
            np.testing.assert_allclose(s1, s2, atol=1e-3)
            for a, b in zip(m1, m2):
                assert _iou(a, b) >= 0.99
                fractions.append(a.mean())
    # the check means something only if masks are neither empty nor full
    assert any(0.05 < f < 0.95 for f in fractions)


def test_mask_input_and_logits(tiny_bundle, tiny_model):
    from segment_anything import SamPredictor

    img = photo((300, 400), seed=3)
    ref = SamPredictor(tiny_model)
    ref.set_image(img)
    ours = EdgePredictor.from_bundle(tiny_bundle, backend="onnxruntime")
    ours.set_image(img)
    pts, lab = np.array([[120.0, 150.0]]), np.array([1])
    _, s, low = ours.predict(pts, lab, multimask_output=False)
    logits, s2, _ = ours.predict(pts, lab, mask_input=low, multimask_output=False, return_logits=True)
    ref_logits, r2, _ = ref.predict(pts, lab, mask_input=low, multimask_output=False, return_logits=True)
    assert logits.dtype == np.float32 and logits.shape == (1, 300, 400)
    np.testing.assert_allclose(logits, ref_logits, atol=5e-3)
    assert _iou(logits[0] > 0, ref_logits[0] > 0) >= 0.99


def test_bgr_input_equals_rgb(tiny_bundle):
    img = photo((200, 300), seed=5)
    p = EdgePredictor.from_bundle(tiny_bundle, backend="onnxruntime")
    p.set_image(img)
    e1 = p.get_image_embedding().copy()
    p.set_image(np.ascontiguousarray(img[..., ::-1]), image_format="BGR")
    np.testing.assert_allclose(p.get_image_embedding(), e1, atol=1e-6)


def test_torch_backend_from_bundle_and_checkpoint(tiny_bundle, tiny_checkpoint):
    img = photo((200, 300), seed=5)
    a = EdgePredictor.from_bundle(tiny_bundle, backend="torch")
    b = EdgePredictor.from_checkpoint(tiny_checkpoint)
    for p in (a, b):
        p.set_image(img)
    np.testing.assert_allclose(a.get_image_embedding(), b.get_image_embedding(), atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(), "no prompt"),
        (dict(point_coords=np.array([[10.0, 10.0]])), "together"),
        (dict(point_coords=np.array([[10.0, 10.0, 1.0]]), point_labels=np.array([1])), r"shape \(N, 2\)"),
        (dict(point_coords=np.array([[10.0, 10.0]]), point_labels=np.array([1, 1])), "1 points but 2 labels"),
        (dict(point_coords=np.array([[10.0, 10.0]]), point_labels=np.array([5])), "labels must be"),
        (dict(point_coords=np.array([[500.0, 10.0]]), point_labels=np.array([1])), "outside the 300x200 image"),
        (dict(box=np.array([10, 10, 5, 50])), "x1 > x0"),
        (dict(box=np.array([10, 10, 50])), "4 numbers"),
        (dict(box=np.array([0, 0, 50, 900])), "outside"),
        (dict(mask_input=np.zeros((1, 10, 10))), "mask_input must have shape"),
    ],
)
def test_bad_prompts(tiny_bundle, kwargs, match):
    p = EdgePredictor.from_bundle(tiny_bundle, backend="onnxruntime")
    p.set_image(photo((200, 300)))
    with pytest.raises(PromptError, match=match):
        p.predict(**kwargs)


def test_bad_images_and_order(tiny_bundle):
    p = EdgePredictor.from_bundle(tiny_bundle, backend="onnxruntime")
    with pytest.raises(UsageError, match="set_image"):
        p.predict(point_coords=np.array([[1.0, 1.0]]), point_labels=np.array([1]))
    with pytest.raises(ImageError, match="HxWx3"):
        p.set_image(np.zeros((10, 10), np.uint8))
    with pytest.raises(ImageError, match="uint8"):
        p.set_image(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(UsageError, match="image_format"):
        p.set_image(np.zeros((10, 10, 3), np.uint8), image_format="HSV")
    p.set_image(np.zeros((10, 10, 3), np.uint8))
    p.reset_image()
    with pytest.raises(UsageError):
        p.get_image_embedding()


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_runtime_path_never_imports_torch(tiny_bundle, backend):
    code = textwrap.dedent(f"""
        import sys, json
        import numpy as np
        from slimsam_edge import EdgePredictor
        p = EdgePredictor.from_bundle({str(tiny_bundle)!r}, backend={backend!r})
        p.set_image(np.full((120, 160, 3), 90, np.uint8))
        m, s, l = p.predict(point_coords=np.array([[50.0, 60.0]]), point_labels=np.array([1]))
        import slimsam_edge.devices, slimsam_edge.bundle, slimsam_edge.runtimes
        slimsam_edge.runtimes.registered_backends()
        print(json.dumps({{"torch": "torch" in sys.modules, "shape": list(m.shape)}}))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"torch": False, "shape": [3, 120, 160]}


# -- backend and precision picked for this machine (the detected profile) ---------------------------

NO_BF16 = {"supports_bf16": False, "cpu_model": "Fake CPU without BF16", "is_jetson": False}


def _machine(monkeypatch, info: dict, profile_toml=None) -> None:
    """Pretend this machine is ``info`` (cached detection) whose fitting profile is ``profile_toml``."""
    import slimsam_edge.devices as devices
    from slimsam_edge.devices import profile

    monkeypatch.setattr(profile, "_DETECTED", [info])
    if profile_toml is not None:
        monkeypatch.setattr(devices, "default_profile", lambda info=None: str(profile_toml))


def _with_precision(bundle_dir, tmp_path, backend: str, precision: str):
    """A copy of ``bundle_dir`` that also lists ``backend``'s fp32 files as ``precision`` artifacts."""
    import dataclasses
    import shutil

    from slimsam_edge.bundle import Artifact, load_bundle, write_manifest

    root = tmp_path / f"b-{backend}-{precision}"
    shutil.copytree(bundle_dir, root)
    m = load_bundle(root).manifest
    extra = [Artifact.from_files(root, a.graph, a.backend, precision, a.path, [f for f in a.files if f != a.path],
                                 extra=dict(a.extra))
             for a in m.artifacts if a.backend == backend and a.precision == "fp32"]
    write_manifest(root, dataclasses.replace(m, artifacts=[*m.artifacts, *extra]))
    return root


def _profile(tmp_path, backends: list[str], default_precision: str):
    path = tmp_path / f"fake-{'-'.join(backends)}-{default_precision}.toml"
    precisions = "\n".join(f'{b} = ["fp32", "fp16", "bf16", "int8"]' for b in backends)
    graphs = "\n".join(f'{b} = ["image_encoder", "mask_decoder_lowres"]' for b in backends)
    path.write_text(f'name = "fake"\nkind = "cpu"\ndescription = "d"\nbackends = {backends!r}\n'.replace("'", '"')
                    + f'default_precision = "{default_precision}"\n[precisions]\n{precisions}\n[graphs]\n{graphs}\n')
    return path


def test_a_precision_the_machine_lacks_is_refused_and_never_picked(tiny_bundle, tmp_path, monkeypatch):
    from slimsam_edge.apps.segment import segment_file
    from slimsam_edge.bench.suite import bench_suite
    from slimsam_edge.errors import UnsupportedOnThisMachineError

    import cv2

    bf16 = _with_precision(tiny_bundle, tmp_path, "openvino", "bf16")
    cv2.imwrite(str(tmp_path / "x.png"), photo((40, 60), seed=1))
    _machine(monkeypatch, NO_BF16, _profile(tmp_path, ["openvino", "onnxruntime"], "bf16"))
    for call in (lambda: EdgePredictor.from_bundle(bf16, precision="bf16"),
                 lambda: segment_file(tmp_path / "x.png", bf16, tmp_path / "m.png", points=[(1, 1)], precision="bf16"),
                 lambda: bench_suite([str(bf16)], precisions=["bf16"])):
        with pytest.raises(UnsupportedOnThisMachineError) as err:
            call()
        assert "bf16 needs a CPU with AVX512_BF16, AMX or Arm BF16 and Fake CPU without BF16 has none" in str(err.value)
        assert "use --precision fp32" in str(err.value) and "\n" not in str(err.value)
    p = EdgePredictor.from_bundle(bf16)  # the profile's default is bf16, the bundle has it: still fp32
    assert (p.backend, p.precision) == ("openvino", "fp32")
    assert p.encoder.options.precision == "fp32"


def test_decoder_precision_bf16_is_refused_on_a_cpu_without_bf16(tiny_bundle, monkeypatch):
    from slimsam_edge.errors import UnsupportedOnThisMachineError

    _machine(monkeypatch, NO_BF16)
    with pytest.raises(UnsupportedOnThisMachineError) as err:
        EdgePredictor.from_bundle(tiny_bundle, backend="openvino", precision="fp32", decoder_precision="bf16")
    assert "bf16 needs a CPU with AVX512_BF16" in str(err.value) and "\n" not in str(err.value)


def test_decoder_precision_bf16_behind_an_fp32_encoder(tiny_bundle):
    from slimsam_edge.devices import detected

    pytest.importorskip("openvino")
    if not detected()["supports_bf16"]:
        pytest.skip("this CPU has no BF16 (the refusal is tested with a faked CPU)")
    img = photo((300, 400), seed=5)
    fp32 = EdgePredictor.from_bundle(tiny_bundle, backend="openvino", precision="fp32")
    mixed = EdgePredictor.from_bundle(tiny_bundle, backend="openvino", precision="fp32", decoder_precision="bf16")
    assert (mixed.precision, mixed.decoder_precision, fp32.decoder_precision) == ("fp32", "bf16", "fp32")
    assert (mixed.encoder.options.precision, mixed.decoder.options.precision) == ("fp32", "bf16")
    fp32.set_image(img)
    mixed.set_image(img)
    np.testing.assert_array_equal(mixed.features, fp32.features)  # the encoder is untouched
    fractions, ious = [], []
    for prompt in _prompts(300, 400):
        a, sa, _ = fp32.predict(**prompt)
        b, sb, _ = mixed.predict(**prompt)
        np.testing.assert_allclose(sb, sa, atol=2e-2)
        ious += [_iou(x, y) for x, y in zip(a, b)]
        fractions += [x.mean() for x in a]
    assert any(0.05 < f < 0.95 for f in fractions)
    # the tiny model's random weights give small logits, which bf16 moves across 0 more than a
    # trained model's (sam-mini: see docs/results/decoder.md); this checks the wiring, loosely
    assert np.mean(ious) >= 0.95 and min(ious) >= 0.85, ious


def test_the_detected_profile_picks_backend_and_precision(tiny_bundle, tmp_path, monkeypatch):
    from slimsam_edge.predictor import auto_pick

    fp16 = _with_precision(tiny_bundle, tmp_path, "onnxruntime", "fp16")
    with_bf16 = dict(NO_BF16, supports_bf16=True)
    _machine(monkeypatch, with_bf16, _profile(tmp_path, ["onnxruntime", "openvino"], "fp16"))
    p = EdgePredictor.from_bundle(fp16)
    assert (p.backend, p.precision) == ("onnxruntime", "fp16")
    assert p.encoder.artifact.name.endswith(".onnx") and p.encoder.options.extra["graph"] == "image_encoder"
    # the profile prefers openvino, which holds no fp16 artifact: fp32 there
    _machine(monkeypatch, with_bf16, _profile(tmp_path, ["openvino", "onnxruntime"], "fp16"))
    assert (EdgePredictor.from_bundle(fp16).backend, EdgePredictor.from_bundle(fp16).precision) == ("openvino", "fp32")
    # told the backend: the profile's precision where the bundle has it for that backend
    assert EdgePredictor.from_bundle(fp16, backend="onnxruntime").precision == "fp16"
    # a profile whose backends the bundle lacks: the bundle's own preference, fp32
    _machine(monkeypatch, with_bf16, "jetson-orin-nano")  # tensorrt first: not in the bundle
    from slimsam_edge.bundle import load_bundle

    assert auto_pick(load_bundle(fp16), None, None) == (load_bundle(fp16).backends()[0], "fp16")
    assert auto_pick(load_bundle(tiny_bundle), None, None) == (load_bundle(tiny_bundle).backends()[0], "fp32")
    assert auto_pick(load_bundle(fp16), "openvino", "int8") == ("openvino", "int8")  # told: kept


def test_a_backend_that_is_not_installed_is_never_picked(tiny_bundle, tmp_path, monkeypatch):
    from slimsam_edge.bundle import load_bundle
    from slimsam_edge.predictor import auto_pick
    from slimsam_edge.runtimes import get_backend

    _machine(monkeypatch, NO_BF16, _profile(tmp_path, ["openvino", "onnxruntime"], "fp32"))
    monkeypatch.setattr(get_backend("openvino").runner, "available", classmethod(lambda cls: False))
    assert auto_pick(load_bundle(tiny_bundle), None, None) == ("onnxruntime", "fp32")


def test_the_detected_profile_gives_its_runtime_defaults(tiny_bundle, tmp_path, monkeypatch):
    """[runtime] device / threads apply to the profile's default backend, never to its fallbacks."""
    toml = _profile(tmp_path, ["onnxruntime", "openvino"], "fp32")
    toml.write_text(toml.read_text() + '[runtime]\nthreads = 1\ndevice = "cpu"\n')
    _machine(monkeypatch, NO_BF16, toml)
    p = EdgePredictor.from_bundle(tiny_bundle)
    assert p.backend == "onnxruntime" and p.encoder.options.threads == 1 and p.encoder.options.device == "cpu"
    assert EdgePredictor.from_bundle(tiny_bundle, threads=2).encoder.options.threads == 2  # told: kept
    ov = EdgePredictor.from_bundle(tiny_bundle, backend="openvino")
    assert ov.encoder.options.threads is None  # a fallback backend: the runtime's own defaults


# -- batched prompts: predict_batch ------------------------------------------------------------------

def _batch_prompts(h: int, w: int, b: int, seed: int = 3):
    rng = np.random.default_rng(seed)
    pts = np.stack([rng.uniform(0, w, (b, 2)), rng.uniform(0, h, (b, 2))], -1)
    labels = np.tile([1, 0], (b, 1))
    x0, y0 = rng.uniform(0, w * 0.5, b), rng.uniform(0, h * 0.5, b)
    boxes = np.stack([x0, y0, x0 + rng.uniform(10, w * 0.5, b), y0 + rng.uniform(10, h * 0.5, b)], 1)
    return pts, labels, boxes


@pytest.fixture(scope="module")
def batch_predictor(tiny_bundle):
    p = EdgePredictor.from_bundle(tiny_bundle, backend="onnxruntime")
    p.set_image(photo((300, 400), seed=3))
    return p


def _separate(p: EdgePredictor, kw: dict, b: int, multimask: bool, return_logits: bool = False):
    singles = [p.predict(kw["points"][i] if "points" in kw else None, kw["labels"][i] if "labels" in kw else None,
                         kw["boxes"][i] if "boxes" in kw else None,
                         kw["mask_inputs"][i] if "mask_inputs" in kw else None,
                         multimask_output=multimask, return_logits=return_logits) for i in range(b)]
    return [np.stack(parts) for parts in zip(*singles)]


@pytest.mark.parametrize("kind", ["points", "boxes", "both", "mask_inputs"])
@pytest.mark.parametrize("multimask", [True, False])
def test_predict_batch_is_b_predict_calls(batch_predictor, kind: str, multimask: bool) -> None:
    p, b = batch_predictor, 5
    pts, labels, boxes = _batch_prompts(300, 400, b)
    kw = {"points": dict(points=pts, labels=labels), "boxes": dict(boxes=boxes),
          "both": dict(points=pts[:, :1], labels=labels[:, :1], boxes=boxes),
          "mask_inputs": dict(points=pts, labels=labels)}[kind]
    if kind == "mask_inputs":  # each prompt's own previous low-res logits fed back
        _, _, low = p.predict_batch(**kw, multimask_output=False)
        kw["mask_inputs"] = low
    masks, scores, low_res = p.predict_batch(**kw, multimask_output=multimask)
    c = 3 if multimask else 1
    assert masks.shape == (b, c, 300, 400) and masks.dtype == bool
    assert scores.shape == (b, c) and low_res.shape == (b, c, 64, 64)
    m1, s1, l1 = _separate(p, kw, b, multimask)
    np.testing.assert_allclose(scores, s1, atol=1e-4)
    np.testing.assert_allclose(low_res, l1, atol=1e-3)
    assert (masks != m1).mean() < 1e-4
    assert 0.02 < masks.mean() < 0.98  # neither empty nor full: the comparison means something


def test_predict_batch_chunks_and_logits(batch_predictor) -> None:
    """More prompts than one decoder call takes: chunks of prompt_chunk give the same masks."""
    p, b = batch_predictor, 7
    pts, labels, boxes = _batch_prompts(300, 400, b, seed=9)
    whole = p.predict_batch(pts, labels, boxes, return_logits=True)
    p.prompt_chunk = 3
    calls = []
    infer = p.decoder.infer
    p.decoder.infer = lambda feed: calls.append(feed["point_coords"].shape[0]) or infer(feed)
    try:
        chunked = p.predict_batch(pts, labels, boxes, return_logits=True)
    finally:
        p.prompt_chunk = 32
        del p.decoder.infer
    assert calls == [3, 3, 1] and chunked[0].dtype == np.float32
    for a, c in zip(whole, chunked):
        np.testing.assert_allclose(a, c, atol=1e-4)
    np.testing.assert_allclose(whole[0], _separate(p, dict(points=pts, labels=labels, boxes=boxes), b, True, True)[0],
                               atol=2e-3)


def test_predict_batch_padding_and_partial_mask_inputs(batch_predictor) -> None:
    """Labels -1 pad shorter prompts; a list of mask inputs with None gives a mask to some only."""
    p = batch_predictor
    pts = np.array([[[100.0, 100.0], [0.0, 0.0]], [[200.0, 150.0], [250.0, 160.0]]])
    labels = np.array([[1, -1], [1, 0]])
    _, _, low = p.predict_batch(pts, labels, multimask_output=False)
    masks, scores, _ = p.predict_batch(pts, labels, mask_inputs=[None, low[1]], multimask_output=False)
    m1, s1, _ = p.predict(pts[1], labels[1], mask_input=low[1], multimask_output=False)
    np.testing.assert_allclose(scores[1], s1, atol=1e-4)
    # the padded first prompt: one real point, mask input none; the pad is SAM's own pad point
    m0, s0, _ = p.predict(pts[0, :1], labels[0, :1], multimask_output=False)
    assert _iou(masks[0, 0], m0[0]) > 0.9


@pytest.mark.parametrize("kwargs, match", [
    (dict(), "no prompt given"),
    (dict(points=np.zeros((2, 1, 2))), "points and labels must be given together"),
    (dict(points=np.zeros((1, 2)), labels=np.ones((1,))), r"points must have shape \(B, N, 2\)"),
    (dict(points=np.ones((2, 1, 2)), labels=np.ones((2, 2))), r"labels must have shape \(B, N\) = \(2, 1\)"),
    (dict(points=np.ones((2, 1, 2)), labels=np.full((2, 1), 3)), "labels must be 1"),
    (dict(points=np.ones((2, 1, 2)), labels=np.ones((2, 1)), boxes=np.tile([1, 1, 9, 9], (3, 1))),
     "prompt counts differ: points 2, boxes 3"),
    (dict(boxes=np.tile([1, 1, 9, 9], (2, 1)), mask_inputs=np.zeros((1, 1, 64, 64))),
     "prompt counts differ: boxes 2, mask_inputs 1"),
    (dict(boxes=[1, 1, 9, 9]), r"boxes must have shape \(B, 4\)"),
    (dict(boxes=np.array([[1, 1, 9, 9], [10, 10, 5, 50]])), r"boxes\[1\] \[10.0, 10.0, 5.0, 50.0\] must have x1 > x0"),
    (dict(boxes=np.array([[1, 1, 9, 9], [0, 0, 50, 900]])), r"boxes\[1\] corner \(50, 900\) is outside the 300x200"),
    (dict(points=np.array([[[5.0, 5.0]], [[500.0, 5.0]]]), labels=np.ones((2, 1))), r"points\[1\] \(500, 5\) is outside"),
    (dict(points=np.array([[[5.0, 5.0]], [[9.0, 5.0]]]), labels=np.array([[1], [-1]])), "prompt 1 has no point"),
    (dict(mask_inputs=np.zeros((2, 1, 10, 10))), r"mask_inputs must have shape \(B, 1, 64, 64\)"),
    (dict(mask_inputs=[np.zeros((1, 64, 64)), np.zeros(3)]), r"mask_inputs\[1\] must have shape"),
])
def test_bad_batch_prompts(tiny_bundle, kwargs, match) -> None:
    p = EdgePredictor.from_bundle(tiny_bundle, backend="onnxruntime")
    p.set_image(photo((200, 300)))
    with pytest.raises(PromptError, match=match) as err:
        p.predict_batch(**kwargs)
    assert "\n" not in str(err.value)


def test_bundle_without_prompt_axis(tiny_bundle, tiny_model, tmp_path) -> None:
    """A decoder exported before the prompt axis: predict works, predict_batch says to re-export."""
    import dataclasses

    from slimsam_edge.errors import BundleError
    from slimsam_edge.exporters.onnx_export import export_onnx
    from slimsam_edge.models.graph_spec import ONNX_SPECS
    from slimsam_edge.runtimes import open_runner

    new = ONNX_SPECS["mask_decoder_lowres"]
    points = {1: "num_points"}
    old = dataclasses.replace(new, inputs={**{k: {} for k in new.inputs}, "point_coords": points,
                                           "point_labels": points}, outputs={k: {} for k in new.outputs})
    path, _ = export_onnx(tiny_model, old, tmp_path / "old_decoder.onnx", simplify=False)
    fresh = EdgePredictor.from_bundle(tiny_bundle, backend="onnxruntime")
    p = EdgePredictor(fresh.encoder, open_runner(path, backend="onnxruntime"), image_size=fresh.image_size,
                      pixel_mean=fresh.pixel_mean, pixel_std=fresh.pixel_std)
    img = photo((200, 300), seed=4)
    p.set_image(img)
    fresh.set_image(img)
    pt, lab = np.array([[120.0, 90.0]]), np.array([1])
    np.testing.assert_allclose(p.predict(pt, lab)[1], fresh.predict(pt, lab)[1], atol=1e-4)
    with pytest.raises(BundleError, match="re-export") as err:
        p.predict_batch(pt[None], lab[None])
    assert "\n" not in str(err.value) and "(1, 'num_points', 2)" in str(err.value)


def test_encode_then_set_embedding_matches_set_image(tiny_bundle):
    """encode() leaves the current image alone; set_embedding() makes it current, same masks as set_image."""
    from slimsam_edge.predictor import ImageEmbedding

    p = EdgePredictor.from_bundle(tiny_bundle, backend="onnxruntime")
    img = np.random.default_rng(3).integers(0, 255, (40, 56, 3), dtype=np.uint8)
    emb = p.encode(img)
    assert isinstance(emb, ImageEmbedding) and not p.is_image_set
    assert emb.original_size == (40, 56)
    p.set_embedding(emb)
    a = p.predict(point_coords=np.array([[20, 10]]), point_labels=np.array([1]))
    p.set_image(img)
    b = p.predict(point_coords=np.array([[20, 10]]), point_labels=np.array([1]))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_allclose(a[1], b[1], rtol=1e-6)
    assert p.embedding.original_size == (40, 56)
    with pytest.raises(UsageError, match="ImageEmbedding"):
        p.set_embedding(np.zeros((1, 8, 4, 4)))


def test_predictor_refuses_concurrent_decoder_use():
    """A second thread entering the decoder while one is inside gets ConcurrentUseError, not a race."""
    import threading

    from slimsam_edge.errors import ConcurrentUseError

    inside, release = threading.Event(), threading.Event()

    class SlowDecoder:
        def input_specs(self):
            return {}

        def max_prompts(self):
            return None

        def infer(self, feed):
            inside.set()
            release.wait(10)
            n = feed["point_coords"].shape[0]
            return {"iou_predictions": np.ones((n, 4), np.float32),
                    "low_res_masks": np.zeros((n, 4, 16, 16), np.float32)}

    class Encoder:
        def infer(self, feed):
            return {"image_embeddings": np.zeros((1, 8, 4, 4), np.float32)}

    p = EdgePredictor(Encoder(), SlowDecoder(), image_size=64, pixel_mean=(0, 0, 0), pixel_std=(1, 1, 1))

    def segment():
        p.set_image(np.zeros((64, 64, 3), np.uint8))
        p.predict(point_coords=np.array([[5, 5]]), point_labels=np.array([1]))

    t = threading.Thread(target=segment)
    t.start()
    try:
        assert inside.wait(10)
        with pytest.raises(ConcurrentUseError, match="another thread"):
            p.predict(point_coords=np.array([[5, 5]]), point_labels=np.array([1]))
        with pytest.raises(ConcurrentUseError):
            p.set_embedding(p.encode(np.zeros((64, 64, 3), np.uint8)))  # encoding is allowed; swapping the image is not
    finally:
        release.set()
        t.join(10)
    assert not t.is_alive()
    with pytest.raises(ConcurrentUseError, match="set by another thread"):  # the image is t's
        p.predict(point_coords=np.array([[5, 5]]), point_labels=np.array([1]))
    p.set_image(np.zeros((64, 64, 3), np.uint8))
    p.predict(point_coords=np.array([[5, 5]]), point_labels=np.array([1]))  # free again


# -- runtime tuning (slimsam_edge.runtimes.tuning) ----------------------------------------------


def test_encode_requests_lets_that_many_threads_encode_at_once_and_refuses_one_more():
    """Two encodes meet inside the encoder (a barrier of two: neither finishes until both are in);
    a third thread while both are inside is refused in one line, and the decode guard is unchanged."""
    import threading

    from slimsam_edge.errors import ConcurrentUseError

    both_in, release = threading.Barrier(3), threading.Event()

    class Encoder:
        def infer(self, feed):
            both_in.wait(10)
            assert release.wait(10)
            return {"image_embeddings": np.full((1, 8, 4, 4), feed["image"].mean(), np.float32)}

    p = EdgePredictor(Encoder(), None, image_size=64, pixel_mean=(0, 0, 0), pixel_std=(1, 1, 1), encode_requests=2)
    assert p.tuning.encode_requests == 2
    out = {}
    threads = [threading.Thread(target=lambda k=k: out.__setitem__(k, p.encode(np.full((64, 64, 3), k, np.uint8))))
               for k in range(2)]
    for t in threads:
        t.start()
    try:
        both_in.wait(10)  # both encodes are inside the encoder now
        with pytest.raises(ConcurrentUseError, match="in use by 2 other threads") as err:
            p.encode(np.zeros((64, 64, 3), np.uint8))
        assert "\n" not in str(err.value)
    finally:
        release.set()
        for t in threads:
            t.join(10)
    assert sorted(out) == [0, 1] and float(out[1].features.mean()) == 1.0
    with pytest.raises(UsageError, match="encode_requests must be a whole number"):
        EdgePredictor(Encoder(), None, image_size=64, pixel_mean=(0, 0, 0), pixel_std=(1, 1, 1), encode_requests=0)


def test_from_bundle_tunes_each_runner_and_two_threads_encode_the_serial_embeddings(tiny_bundle):
    import threading

    from slimsam_edge.runtimes import RuntimeTuning

    tuning = RuntimeTuning(hint="throughput", encoder_threads=2, decoder_threads=1, encode_requests=2)
    p = EdgePredictor.from_bundle(tiny_bundle, backend="openvino", threads=1, tuning=tuning).activate()
    assert p.tuning == tuning
    enc, dec = p.encoder.options, p.decoder.options
    assert (enc.threads, dec.threads) == (2, 1)
    assert enc.extra["performance_hint"] == "throughput" and enc.extra["requests"] == 2
    assert "performance_hint" not in dec.extra and "requests" not in dec.extra
    assert "PERFORMANCE_HINT=THROUGHPUT" in p.encoder.notes[0] and "infer requests: 2" in p.encoder.notes[0]
    assert "PERFORMANCE_HINT=LATENCY" in p.decoder.notes[0] and "INFERENCE_NUM_THREADS=1" in p.decoder.notes[0]
    rng = np.random.default_rng(5)
    images = [rng.integers(0, 255, (40, 56, 3), dtype=np.uint8) for _ in range(6)]
    serial = EdgePredictor.from_bundle(tiny_bundle, backend="openvino", threads=1)
    want = [serial.encode(img).features for img in images]
    got: dict[int, np.ndarray] = {}

    def encode(k):
        for j in range(k, len(images), 2):
            got[j] = p.encode(images[j]).features

    threads = [threading.Thread(target=encode, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for j, w in enumerate(want):
        np.testing.assert_allclose(got[j], w, rtol=1e-4, atol=1e-4)
    p.close()


def test_a_hint_on_a_backend_without_hints_is_refused(tiny_bundle):
    from slimsam_edge.runtimes import RuntimeTuning

    with pytest.raises(UsageError, match="onnxruntime has no performance hint .* openvino"):
        EdgePredictor.from_bundle(tiny_bundle, backend="onnxruntime", tuning=RuntimeTuning(hint="latency"))
    with pytest.raises(UsageError, match="tuning must be a RuntimeTuning"):
        EdgePredictor.from_bundle(tiny_bundle, backend="onnxruntime", tuning={"hint": "latency"})
    # threads per graph and concurrent encodes apply to every backend
    p = EdgePredictor.from_bundle(tiny_bundle, backend="onnxruntime",
                                  tuning=RuntimeTuning(encoder_threads=2, decoder_threads=1, encode_requests=2))
    assert (p.encoder.options.threads, p.decoder.options.threads, p.tuning.encode_requests) == (2, 1, 2)


@pytest.fixture(scope="module")
def factored_pair(tmp_path_factory):
    """A tiny model whose decoder is exported factored (2 heads: factoring pays) and its cpu bundle."""
    from dataclasses import replace

    from helpers import TINY_SPEC, tiny_sam
    from slimsam_edge.exporters.bundle_export import export_bundle
    from slimsam_edge.models.factored_decoder import pays

    spec = replace(TINY_SPEC, decoder=replace(TINY_SPEC.decoder, transformer_heads=2))
    model = tiny_sam(1, spec)
    assert pays(model.mask_decoder)
    out = tmp_path_factory.mktemp("factored") / "tiny"
    export_bundle(model, spec, out, target="cpu", model_id="tiny-factored")
    return model, out


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_factored_decoder_bundle_agrees_with_segment_anything(factored_pair, backend):
    """Points, boxes, both together, and a mask fed back: the factored decoder graph through the runtime
    gives segment-anything's masks and scores."""
    from segment_anything import SamPredictor

    model, bundle = factored_pair
    img = photo((480, 640), seed=11)
    ref, ours = SamPredictor(model), EdgePredictor.from_bundle(bundle, backend=backend)
    ref.set_image(img)
    ours.set_image(img)
    fractions = []
    for prompt in _prompts(480, 640):
        for multimask in (True, False):
            m1, s1, low = ours.predict(**prompt, multimask_output=multimask)
            m2, s2, _ = ref.predict(**prompt, multimask_output=multimask)
            np.testing.assert_allclose(s1, s2, atol=1e-3)
            assert min(_iou(a, b) for a, b in zip(m1, m2)) >= 0.99
            fractions += [a.mean() for a in m1]
    again = dict(point_coords=np.array([[300.0, 200.0]]), point_labels=np.array([1]), mask_input=low[:1],
                 multimask_output=False)
    assert _iou(ours.predict(**again)[0][0], ref.predict(**again)[0][0]) >= 0.99
    assert any(0.05 < f < 0.95 for f in fractions)
