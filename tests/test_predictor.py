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
    from slimsam_edge.bench.run import bench_bundle
    from slimsam_edge.errors import UnsupportedOnThisMachineError

    import cv2

    bf16 = _with_precision(tiny_bundle, tmp_path, "openvino", "bf16")
    cv2.imwrite(str(tmp_path / "x.png"), photo((40, 60), seed=1))
    _machine(monkeypatch, NO_BF16, _profile(tmp_path, ["openvino", "onnxruntime"], "bf16"))
    for call in (lambda: EdgePredictor.from_bundle(bf16, precision="bf16"),
                 lambda: segment_file(tmp_path / "x.png", bf16, tmp_path / "m.png", points=[(1, 1)], precision="bf16"),
                 lambda: bench_bundle(bf16, precisions=["bf16"])):
        with pytest.raises(UnsupportedOnThisMachineError) as err:
            call()
        assert "bf16 needs a CPU with AVX512_BF16, AMX or Arm BF16 and Fake CPU without BF16 has none" in str(err.value)
        assert "use --precision fp32" in str(err.value) and "\n" not in str(err.value)
    p = EdgePredictor.from_bundle(bf16)  # the profile's default is bf16, the bundle has it: still fp32
    assert (p.backend, p.precision) == ("openvino", "fp32")
    assert p.encoder.options.precision == "fp32"


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
