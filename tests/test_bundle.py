"""Bundle manifest: round trip, verification, and one-line errors for every kind of damage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slimsam_edge.bundle import (
    MANIFEST,
    SCHEMA_VERSION,
    Artifact,
    Bundle,
    Manifest,
    load_bundle,
    write_manifest,
)
from slimsam_edge.errors import BundleError
from slimsam_edge.fsutil import sha256_file


@pytest.fixture()
def bundle_dir(tmp_path: Path) -> Path:
    root = tmp_path / "bundle"
    (root / "ov").mkdir(parents=True)
    (root / "encoder.onnx").write_bytes(b"encoder-onnx")
    (root / "decoder.onnx").write_bytes(b"decoder-onnx")
    (root / "ov" / "encoder.xml").write_text("<net/>")
    (root / "ov" / "encoder.bin").write_bytes(b"\x00\x01")
    manifest = Manifest(
        model={"id": "slimsam-77", "type": "slimsam", "spec": {"embed_dim": 168}},
        target="cpu",
        artifacts=[
            Artifact.from_files(root, "image_encoder", "openvino", "bf16", "ov/encoder.xml",
                                other_files=["ov/encoder.bin"]),
            Artifact.from_files(root, "image_encoder", "onnxruntime", "fp32", "encoder.onnx"),
            Artifact.from_files(root, "mask_decoder", "onnxruntime", "fp32", "decoder.onnx",
                                extra={"variant": "lowres"}),
        ],
        tool_versions={"slimsam_edge": "0.1.0"},
        validation={"image_encoder": {"max_abs_diff": 1e-4}},
        notes=["test bundle"],
    )
    write_manifest(root, manifest)
    return root


def _edit_manifest(root: Path, change) -> None:
    data = json.loads((root / MANIFEST).read_text())
    change(data)
    (root / MANIFEST).write_text(json.dumps(data))


def test_round_trip(bundle_dir: Path) -> None:
    bundle = load_bundle(bundle_dir)
    m = bundle.manifest
    assert m.schema_version == SCHEMA_VERSION
    assert m.model["spec"] == {"embed_dim": 168}
    assert m.pixel_mean == [123.675, 116.28, 103.53] and m.image_size == 1024
    assert m.created.endswith("Z")
    assert Manifest.from_json(m.to_json()) == m
    ov = bundle.find("image_encoder", backend="openvino")
    assert ov.files == {"ov/encoder.xml": sha256_file(bundle_dir / "ov/encoder.xml"),
                        "ov/encoder.bin": sha256_file(bundle_dir / "ov/encoder.bin")}
    assert bundle.path_of(ov) == bundle_dir / "ov" / "encoder.xml"
    assert bundle.backends() == ["onnxruntime", "openvino"]
    assert bundle.graphs() == ["image_encoder", "mask_decoder"]
    assert bundle.find("mask_decoder").extra == {"variant": "lowres"}


def test_load_accepts_the_manifest_path(bundle_dir: Path) -> None:
    assert isinstance(load_bundle(bundle_dir / MANIFEST), Bundle)


def test_find_prefers_onnxruntime_and_filters(bundle_dir: Path) -> None:
    bundle = load_bundle(bundle_dir)
    assert bundle.find("image_encoder").backend == "onnxruntime"
    assert bundle.find("image_encoder", precision="bf16").backend == "openvino"
    with pytest.raises(BundleError, match="no artifact image_encoder/tensorrt/\\*.*image_encoder/openvino/bf16"):
        bundle.find("image_encoder", backend="tensorrt")


def test_find_follows_the_recorded_preference(bundle_dir: Path) -> None:
    """Export records the target's order; a bundle from a user profile stays self-describing."""
    _edit_manifest(bundle_dir, lambda d: d.update(target="my-board", backend_preference=["openvino", "onnxruntime"]))
    bundle = load_bundle(bundle_dir)
    assert bundle.backends() == ["openvino", "onnxruntime"]
    assert bundle.find("image_encoder").backend == "openvino"


def test_unknown_target_without_preference_falls_back_to_artifact_order(bundle_dir: Path) -> None:
    _edit_manifest(bundle_dir, lambda d: d.update(target="my-board"))
    assert load_bundle(bundle_dir).backends() == ["openvino", "onnxruntime"]  # as listed


@pytest.mark.parametrize("value, message", [
    (["onnxruntime", "onnxruntime"], "must list distinct backend names"),
    (["onnxruntime", 3], "must list distinct backend names"),
    ("onnxruntime", "key 'backend_preference' must be a list"),
    (["tensorrt", "onnxruntime"], "backend_preference names 'tensorrt', which has no artifact"),
])
def test_bad_backend_preference_is_refused(bundle_dir: Path, value, message: str) -> None:
    _edit_manifest(bundle_dir, lambda d: d.update(backend_preference=value))
    with pytest.raises(BundleError, match=message):
        load_bundle(bundle_dir)


def test_tampered_file_is_refused(bundle_dir: Path) -> None:
    (bundle_dir / "ov" / "encoder.bin").write_bytes(b"\x00\x02")
    with pytest.raises(BundleError, match=r"file ov/encoder.bin was modified or corrupted \(sha256 mismatch\); "
                                          "re-export the bundle"):
        load_bundle(bundle_dir)
    assert load_bundle(bundle_dir, verify=False).find("image_encoder", backend="openvino")


def test_missing_file_is_refused(bundle_dir: Path) -> None:
    (bundle_dir / "decoder.onnx").unlink()
    with pytest.raises(BundleError, match="file decoder.onnx is missing"):
        load_bundle(bundle_dir)


@pytest.mark.parametrize("key", ["model", "artifacts", "image_size", "pixel_mean", "target", "schema_version"])
def test_missing_manifest_key(bundle_dir: Path, key: str) -> None:
    _edit_manifest(bundle_dir, lambda d: d.pop(key))
    with pytest.raises(BundleError, match=f"missing key '{key}'") as info:
        load_bundle(bundle_dir)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d.update(image_size="1024"), "'image_size' must be an integer"),
        (lambda d: d.update(pixel_std=[1, 2]), "'pixel_std' must be a list of 3 numbers"),
        (lambda d: d.update(mask_threshold=True), "'mask_threshold' must be a number"),
        (lambda d: d["model"].pop("type"), "model: missing key 'type'"),
        (lambda d: d["artifacts"][0].pop("files"), r"artifacts\[0\]: missing key 'files'"),
        (lambda d: d["artifacts"][1].update(path="../escape.onnx"), "must be relative"),
        (lambda d: d["artifacts"][1]["files"].update({"encoder.onnx": "abc"}), "not a sha256"),
        (lambda d: d.update(notes="x"), "'notes' must be a list"),
    ],
)
def test_bad_manifest_values(bundle_dir: Path, change, message: str) -> None:
    _edit_manifest(bundle_dir, change)
    with pytest.raises(BundleError, match=message):
        load_bundle(bundle_dir)


def test_newer_schema_asks_to_upgrade(bundle_dir: Path) -> None:
    _edit_manifest(bundle_dir, lambda d: d.update(schema_version=SCHEMA_VERSION + 1))
    with pytest.raises(BundleError, match="newer than this slimsam-edge.*upgrade slimsam-edge"):
        load_bundle(bundle_dir)


def test_missing_folder_manifest_and_bad_json(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="folder not found"):
        load_bundle(tmp_path / "nope")
    with pytest.raises(BundleError, match="no manifest.json"):
        load_bundle(tmp_path)
    (tmp_path / MANIFEST).write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON \\(line 1"):
        load_bundle(tmp_path)
    (tmp_path / MANIFEST).write_text("[1, 2]")
    with pytest.raises(BundleError, match="must hold a JSON object"):
        load_bundle(tmp_path)


def test_artifact_from_files_checks_paths(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="does not exist"):
        Artifact.from_files(tmp_path, "image_encoder", "onnxruntime", "fp32", "missing.onnx")
    with pytest.raises(BundleError, match="must be relative"):
        Artifact.from_files(tmp_path, "image_encoder", "onnxruntime", "fp32", "/etc/passwd")


def test_write_manifest_is_atomic_and_readable(bundle_dir: Path) -> None:
    leftovers = [p.name for p in bundle_dir.iterdir() if p.name.startswith(".")]
    assert leftovers == []
    assert json.loads((bundle_dir / MANIFEST).read_text())["schema_version"] == SCHEMA_VERSION


def test_atomic_writes_get_ordinary_permissions(tmp_path: Path) -> None:
    """Temporaries are private (mkstemp/mkdtemp); what is renamed into place is not."""
    import os

    from slimsam_edge.fsutil import atomic_dir, atomic_path, default_mode

    old = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "a.bin") as tmp:
            tmp.write_bytes(b"x")
        with atomic_dir(tmp_path / "bundle") as d:
            (d / "f").write_text("y")
        assert (tmp_path / "a.bin").stat().st_mode & 0o777 == 0o644 == default_mode("file")
        assert (tmp_path / "bundle").stat().st_mode & 0o777 == 0o755 == default_mode("dir")
    finally:
        os.umask(old)


def test_failed_atomic_write_leaves_nothing(tmp_path: Path) -> None:
    from slimsam_edge.fsutil import atomic_path

    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "half.onnx") as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("crash mid-write")
    assert list(tmp_path.iterdir()) == []


def test_extra_files_reference_and_build_plan_are_hashed_and_checked(bundle_dir: Path) -> None:
    ref = bundle_dir / "reference" / "io.npz"
    ref.parent.mkdir()
    ref.write_bytes(b"reference arrays")
    digest = sha256_file(ref)
    onnx = load_bundle(bundle_dir).manifest.artifacts[0].path

    def add(data: dict) -> None:
        data["files"] = {"reference/io.npz": digest}
        data["reference"] = {"path": "reference/io.npz", "cases": {"image_encoder": 1}}
        data["build_plan"] = {"tensorrt": {"settings": {}, "graphs": {"image_encoder": {"fp32": onnx}}}}
        data["backend_preference"] = ["tensorrt", *data["backend_preference"]]

    _edit_manifest(bundle_dir, add)
    b = load_bundle(bundle_dir)
    assert b.manifest.reference["path"] == "reference/io.npz" and "reference/io.npz" in b.hashed_files()
    assert b.manifest.build_plan["tensorrt"]["graphs"]["image_encoder"] == {"fp32": onnx}
    ref.write_bytes(b"doctored arrays")
    with pytest.raises(BundleError, match="reference/io.npz was modified"):
        load_bundle(bundle_dir)
    _edit_manifest(bundle_dir, lambda d: d["reference"].update(path="elsewhere.npz"))
    with pytest.raises(BundleError, match="reference: path 'elsewhere.npz' is not a hashed file"):
        load_bundle(bundle_dir, verify=False)
    _edit_manifest(bundle_dir, lambda d: d.update(reference={"path": "reference/io.npz"}, build_plan={
        "tensorrt": {"graphs": {"image_encoder": {"fp32": "../outside.onnx"}}}}))
    with pytest.raises(BundleError, match="must be relative to the bundle folder"):
        load_bundle(bundle_dir, verify=False)
