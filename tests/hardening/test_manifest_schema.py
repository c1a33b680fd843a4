"""The manifest is checked against a schema before anything in it reaches a runtime (issue 20,
items 2, 4 and 7): numbers are finite and in range, nesting is bounded, and an artifact's ``extra``
holds only the keys its backend declares (``Backend.artifact_extra``), of the declared types; only
the runtime facts among them reach a runner. Every refusal is one line naming the manifest, the
key (and the artifact), saying to re-export the bundle, exit 2.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from helpers import assert_one_line_error
from slimsam_edge.bundle import MANIFEST, Artifact, Manifest, load_bundle
from slimsam_edge.errors import BundleError

RE_EXPORT = "re-export the bundle"
SHA = "0" * 64


def _manifest(**changes) -> dict:
    data = json.loads(Manifest(model={"id": "m", "type": "vit_t", "spec": {}}, target="cpu").to_json())
    data.update(changes)
    return data


def _refused(text: str, *fragments: str) -> str:
    with pytest.raises(BundleError) as err:
        Manifest.from_json(text, source="b/manifest.json")
    msg = str(err.value)
    assert "\n" not in msg and RE_EXPORT in msg and "b/manifest.json" in msg, msg
    for frag in fragments:
        assert frag in msg, msg
    return msg


# -- numbers ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("key, value", [
    ("pixel_std", [58.4, 0, 57.4]),
    ("pixel_std", [58.4, -57.1, 57.4]),
    ("pixel_std", [1e-9, 57.1, 57.4]),
    ("pixel_mean", [1e300, 116.3, 103.5]),
    ("pixel_mean", [-5, 116.3, 103.5]),
    ("mask_threshold", 1e300),
    ("image_size", 100000),
    ("image_size", 0),
    ("image_size", -1024),
    ("image_size", 1e30),
    ("image_size", 1024.0),
    ("image_size", True),
])
def test_manifest_numbers_out_of_range_are_refused(key, value):
    _refused(json.dumps(_manifest(**{key: value})), key)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
@pytest.mark.parametrize("key", ["mask_threshold", "pixel_mean", "validation"])
def test_non_finite_numbers_anywhere_are_refused(key, literal):
    """JSON has no NaN or Infinity; Python's json reads them (and 1e400 as inf), then ``--json``
    printed ``NaN``, which is not JSON. Refused wherever they stand, even in free-form objects."""
    value = {"pixel_mean": "[123.6, @, 103.5]", "validation": '{"iou": @}'}.get(key, "@").replace("@", literal)
    text = json.dumps(_manifest(**{key: "PLACEHOLDER"})).replace('"PLACEHOLDER"', value)
    _refused(text, "finite", key)


def test_a_huge_integer_literal_is_one_line():
    text = json.dumps(_manifest(image_size=1)).replace('"image_size": 1', '"image_size": ' + "9" * 5000)
    _refused(text, "digits", "image_size")


@pytest.mark.parametrize("depth", [100_000, 200])
def test_deeply_nested_json_is_one_line(depth):
    """100,000 nested arrays raised RecursionError (exit 1); a depth beyond the schema's is refused
    before anything walks it."""
    deep = "[" * depth + "]" * depth
    text = json.dumps(_manifest(validation="PLACEHOLDER")).replace('"PLACEHOLDER"', deep)
    _refused(text, "nested")


def test_valid_numbers_still_load():
    m = Manifest.from_json(json.dumps(_manifest(image_size=1024, mask_threshold=-0.5)))
    assert m.image_size == 1024 and m.mask_threshold == -0.5 and all(math.isfinite(v) for v in m.pixel_std)


_NUMBER = st.one_of(st.floats(allow_nan=False, allow_infinity=False, width=64), st.integers(-10**6, 10**6))


@settings(max_examples=150, deadline=None)
@given(mean=st.lists(_NUMBER, min_size=3, max_size=3), std=st.lists(_NUMBER, min_size=3, max_size=3),
       threshold=_NUMBER, size=st.one_of(st.integers(-10**7, 10**7), st.floats(allow_nan=False)))
def test_any_numbers_load_in_range_or_are_one_line(mean, std, threshold, size):
    """Whatever numbers a manifest holds: loaded within the documented ranges, or one BundleError line."""
    from slimsam_edge import manifest_schema as ms

    text = json.dumps(_manifest(pixel_mean=mean, pixel_std=std, mask_threshold=threshold, image_size=size))
    try:
        m = Manifest.from_json(text)
    except BundleError as err:
        assert "\n" not in str(err) and RE_EXPORT in str(err)
        return
    assert isinstance(m.image_size, int) and 0 < m.image_size <= ms.MAX_IMAGE_SIZE
    assert all(ms.PIXEL_MEAN_RANGE[0] <= v <= ms.PIXEL_MEAN_RANGE[1] for v in m.pixel_mean)
    assert all(ms.PIXEL_STD_RANGE[0] <= v <= ms.PIXEL_STD_RANGE[1] for v in m.pixel_std)
    assert ms.MASK_THRESHOLD_RANGE[0] <= m.mask_threshold <= ms.MASK_THRESHOLD_RANGE[1]


# -- artifact extra --------------------------------------------------------------------------------

def _runner_extra(backend: str, extra: dict) -> dict:
    from slimsam_edge.runtimes import get_backend

    art = Artifact("image_encoder", backend, "fp32", "e.onnx", {"e.onnx": SHA}, extra)
    return get_backend(backend).runner_extra(art, "b/manifest.json")


@pytest.mark.parametrize("backend, extra, key", [
    ("openvino", {"config": {"CACHE_DIR": "/any/dir"}}, "config"),
    ("openvino", {"performance_hint": "THROUGHPUT"}, "performance_hint"),
    ("openvino", {"static_axis0": False}, "static_axis0"),
    ("openvino", {"fold_zeros": ["mask_input"]}, "fold_zeros"),
    ("openvino", {"channel_last": False}, "channel_last"),
    ("openvino", {"banded": False}, "banded"),
    ("openvino", {"channel_means": False}, "channel_means"),
    ("onnxruntime", {"providers": ["AzureExecutionProvider"]}, "providers"),
    ("onnxruntime", {"provider_options": [{}]}, "provider_options"),
    ("onnxruntime", {"log_severity_level": 0}, "log_severity_level"),
    ("onnxruntime-cuda", {"providers": ["CPUExecutionProvider"]}, "providers"),
    ("tensorrt", {"graph": "mask_decoder"}, "graph"),
    ("torch", {"model_spec": {}}, "model_spec"),
])
def test_runtime_settings_in_extra_are_refused(backend, extra, key):
    """A manifest describes files; it does not configure runtimes. Keys a backend does not declare
    (its runtime settings among them) are refused, naming the artifact and the key."""
    with pytest.raises(BundleError) as err:
        _runner_extra(backend, extra)
    msg = str(err.value)
    assert "\n" not in msg and RE_EXPORT in msg and "b/manifest.json" in msg, msg
    assert f"image_encoder/{backend}/fp32" in msg and repr(key) in msg, msg


@pytest.mark.parametrize("backend, extra, key", [
    ("openvino", {"precision_hint": "int4"}, "precision_hint"),
    ("openvino", {"method": ["not", "text"]}, "method"),
    ("openvino", {"subset_size": -3}, "subset_size"),
    ("openvino", {"ignored_types": "MatMul"}, "ignored_types"),
    ("onnxruntime", {"kept_fp32": [1, 2]}, "kept_fp32"),
    ("onnxruntime", {"calibration_feeds": 1.5}, "calibration_feeds"),
    ("onnxruntime", {"calibration": {"images": 3}}, "calibration"),
    ("tensorrt", {"tensorrt_version": 10}, "tensorrt_version"),
    ("tensorrt", {"fingerprint": "Orin"}, "fingerprint"),
    ("tensorrt", {"fingerprint": {"gpu": 3}}, "fingerprint"),
])
def test_bad_extra_values_are_refused(backend, extra, key):
    with pytest.raises(BundleError) as err:
        _runner_extra(backend, extra)
    msg = str(err.value)
    assert "\n" not in msg and RE_EXPORT in msg and key in msg and f"/{backend}/" in msg, msg


def test_only_runtime_facts_reach_the_runner():
    """Of the declared keys, a runner gets its graph and the facts it checks before loading;
    descriptions (method, calibration, ...) stay in the manifest."""
    assert _runner_extra("onnxruntime", {"method": "static QDQ", "precision_hint": "fp32", "kept_fp32": ["Softmax"],
                                         "calibration": "procedural images"}) == {"graph": "image_encoder"}
    fp = {"tensorrt": "10.3.0", "gpu": "Orin", "compute_capability": "8.7", "l4t": None,
          "builder": {"precision": "fp16", "workspace_gb": 1.0, "decoder_points": [1, 4, 16]}}
    got = _runner_extra("tensorrt", {"tensorrt_version": "10.3.0", "build": "fp16", "fingerprint": fp,
                                     "source": "onnx/image_encoder.onnx"})
    assert got == {"graph": "image_encoder", "tensorrt_version": "10.3.0",
                   "fingerprint": {k: fp[k] for k in ("tensorrt", "gpu", "compute_capability", "l4t")}}


def test_every_backend_declares_what_its_recipes_write():
    """The keys every recipe writes (method, precision_hint, calibration) are declared by each
    backend that has recipes, so an exported bundle always opens."""
    from slimsam_edge.runtimes import backends

    for b in backends().values():
        if b.recipes:
            assert {"method", "precision_hint", "calibration"} <= set(b.artifact_extra), b.name


# -- end to end: the CLI ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def image(tmp_path_factory):
    from slimsam_edge.data.procedural import write_procedural

    out = tmp_path_factory.mktemp("img")
    write_procedural(out, 1, size=(64, 64))
    return next(out.glob("*.png"))


@pytest.fixture()
def doctor(mini_bundle, tmp_path):
    """A copy of mini_bundle (files hard-linked) whose manifest text ``change`` rewrites."""
    def make(change) -> Path:
        root = tmp_path / "b"
        shutil.copytree(mini_bundle, root, copy_function=_link)
        path = root / MANIFEST
        text = path.read_text(encoding="utf-8")
        path.unlink()  # the link: write a new file, never through to the fixture's
        path.write_text(change(text), encoding="utf-8")
        return root
    return make


def _link(src, dst):
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _json_change(fn):
    def change(text):
        data = json.loads(text)
        fn(data)
        return json.dumps(data)
    return change


def _set(key, value):
    return _json_change(lambda d: d.__setitem__(key, value))


def _extra(**kv):
    return _json_change(lambda d: [a["extra"].update(kv) for a in d["artifacts"]])


CLI_CASES = {
    "image_size 100000": (_set("image_size", 100000), "image_size"),
    "image_size 1e30": (_set("image_size", 1e30), "image_size"),
    "pixel_std 0": (_set("pixel_std", [0, 0, 0]), "pixel_std"),
    "huge pixel_mean": (_set("pixel_mean", [1e300, 1e300, 1e300]), "pixel_mean"),
    "NaN mask_threshold": (lambda t: t.replace('"mask_threshold": 0.0', '"mask_threshold": NaN'), "mask_threshold"),
    "100,000-deep JSON": (lambda t: t.replace('"notes": []', '"notes": [' + "[" * 100_000 + "]" * 100_000 + "]"),
                          "nested"),
    "providers": (_extra(providers=["AzureExecutionProvider"]), "providers"),
    "precision_hint list": (_extra(precision_hint=["fp32"]), "precision_hint"),
}


@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_segment_refuses_a_doctored_manifest_in_one_line(case, doctor, image, tmp_path):
    from slimsam_edge.cli.app import app

    change, key = CLI_CASES[case]
    root = doctor(change)
    out = tmp_path / "mask.png"
    r = CliRunner().invoke(app, ["segment", str(image), "--bundle", str(root), "--out", str(out),
                                 "--point", "30,30", "--backend", "onnxruntime"])
    assert_one_line_error(r, key, RE_EXPORT, MANIFEST)
    assert not out.exists()


def test_a_cache_dir_in_extra_creates_nothing(doctor, image, tmp_path):
    """``"extra": {"config": {"CACHE_DIR": ...}}`` made segment create that folder and write blobs
    there (OpenVINO's model cache); now the artifact is refused and nothing is created."""
    from slimsam_edge.cli.app import app

    cache = tmp_path / "cache-from-the-manifest"
    root = doctor(_json_change(lambda d: [a["extra"].update(config={"CACHE_DIR": str(cache)})
                                          for a in d["artifacts"]]))
    r = CliRunner().invoke(app, ["segment", str(image), "--bundle", str(root), "--out", str(tmp_path / "m.png"),
                                 "--point", "30,30"])
    assert_one_line_error(r, "'config'", RE_EXPORT)
    assert not cache.exists()


def test_the_exported_bundle_still_opens(mini_bundle):
    from slimsam_edge.predictor import open_artifact

    b = load_bundle(mini_bundle)
    for art in b.manifest.artifacts:
        if art.backend == "onnxruntime":
            assert open_artifact(b.root, art).options.extra == {"graph": art.graph}
