from __future__ import annotations

import json
import shutil
import zipfile

import numpy as np
import pytest

from helpers import doctor_reference
from slimsam_edge.bundle import load_bundle
from slimsam_edge.deploy import reference_io
from slimsam_edge.deploy.reference_io import (
    REFERENCE_FILE,
    ReferenceCase,
    load_reference,
    read_reference,
    write_reference,
)
from slimsam_edge.errors import BundleError


def _cases() -> list[ReferenceCase]:
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(1, 8, 4, 4)).astype(np.float32)
    enc = ReferenceCase("image_encoder", {"image": rng.normal(size=(1, 3, 64, 64)).astype(np.float32)},
                        {"image_embeddings": emb}, description="img")
    dec = ReferenceCase("mask_decoder_lowres",
                        {"image_embeddings": emb, "point_coords": np.ones((1, 2, 2), np.float32)},
                        {"low_res_masks": rng.normal(size=(1, 4, 16, 16)).astype(np.float32)},
                        name="point", description="a point", embedding_from="image_encoder/0")
    return [enc, dec]


def test_round_trip_key_scheme_and_manifest_entry(tmp_path):
    entry, files = write_reference(tmp_path, _cases())
    assert entry == {"path": REFERENCE_FILE, "format": 1, "cases": {"image_encoder": 1, "mask_decoder_lowres": 1},
                     "descriptions": {"image_encoder/0": "img", "mask_decoder_lowres/point": "a point"}}
    assert list(files) == [REFERENCE_FILE] and len(files[REFERENCE_FILE]) == 64
    with np.load(tmp_path / REFERENCE_FILE, allow_pickle=False) as npz:
        keys = set(npz.files)
    # the decoder's embedding is the encoder case's output: stored once
    assert keys == {"__index__", "image_encoder/0/in/image", "image_encoder/0/out/image_embeddings",
                    "mask_decoder_lowres/point/in/point_coords", "mask_decoder_lowres/point/out/low_res_masks"}
    back = read_reference(tmp_path / REFERENCE_FILE)
    for want, got in zip(_cases(), back):
        assert got.graph == want.graph and got.embedding_from == want.embedding_from
        assert set(got.inputs) == set(want.inputs) and set(got.outputs) == set(want.outputs)
        for name in want.inputs:
            np.testing.assert_array_equal(got.inputs[name], want.inputs[name])
        for name in want.outputs:
            np.testing.assert_array_equal(got.outputs[name], want.outputs[name])
    assert not [p for p in (tmp_path / "reference").iterdir() if p.name != "io.npz"]  # no temporaries


def test_write_is_atomic(tmp_path, monkeypatch):
    def boom(*_a, **_k):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez_compressed", boom)
    with pytest.raises(OSError):
        write_reference(tmp_path, _cases())
    assert list((tmp_path / "reference").iterdir()) == []


def test_bad_cases_are_refused(tmp_path):
    enc, dec = _cases()
    assert write_reference(tmp_path, [enc, enc])[0]["cases"] == {"image_encoder": 2}  # numbered 0, 1
    with pytest.raises(ValueError, match="two reference cases"):
        write_reference(tmp_path, [enc, ReferenceCase(enc.graph, enc.inputs, enc.outputs, name="0")])
    with pytest.raises(ValueError, match="names must match"):
        write_reference(tmp_path, [ReferenceCase("image_encoder", {}, {}, name="a/b")])
    dec.inputs["image_embeddings"] = dec.inputs["image_embeddings"] + 1
    with pytest.raises(ValueError, match="differ"):
        write_reference(tmp_path, [enc, dec])


def _one_line(err: pytest.ExceptionInfo, *fragments: str) -> None:
    msg = str(err.value)
    assert "\n" not in msg and "re-export the bundle" in msg, msg
    for frag in fragments:
        assert frag in msg, msg


def test_corrupt_or_malformed_npz_is_one_line(tmp_path):
    write_reference(tmp_path, _cases())
    path = tmp_path / REFERENCE_FILE
    arrays = dict(np.load(path, allow_pickle=False))
    del arrays["mask_decoder_lowres/point/out/low_res_masks"]
    with open(path, "wb") as f:
        np.savez_compressed(f, **arrays)
    with pytest.raises(BundleError) as err:
        read_reference(path)
    _one_line(err, str(path), "missing key", "low_res_masks")
    del arrays["__index__"]
    with open(path, "wb") as f:
        np.savez_compressed(f, **arrays)
    with pytest.raises(BundleError) as err:
        read_reference(path)
    _one_line(err, "malformed", "__index__")
    path.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(BundleError) as err:
        read_reference(path)
    _one_line(err, "not a readable npz")
    path.unlink()
    with pytest.raises(BundleError) as err:
        read_reference(path)
    _one_line(err, "missing")


def test_pickled_arrays_are_refused(tmp_path):
    path = tmp_path / "io.npz"
    np.savez(path, **{"__index__": np.array([{"a": 1}], dtype=object)})
    with pytest.raises(BundleError) as err:
        read_reference(path)
    _one_line(err, "not a readable npz")


def test_absurdly_large_declared_arrays_are_refused_before_loading(tmp_path):
    """A 40 GiB shape in an npy header (data absent): refused from the header alone."""
    path = tmp_path / "io.npz"
    with zipfile.ZipFile(path, "w") as zf, zf.open("__index__.npy", "w") as f:
        np.lib.format.write_array_header_1_0(
            f, {"descr": "<f4", "fortran_order": False, "shape": (10_000, 1_000_000)})
    with pytest.raises(BundleError) as err:
        read_reference(path)
    _one_line(err, "MiB", "refused")


def test_limit_counts_every_array(tmp_path, monkeypatch):
    write_reference(tmp_path, _cases())
    monkeypatch.setattr(reference_io, "MAX_REFERENCE_BYTES", 40_000)  # the image alone is 49 kB
    with pytest.raises(BundleError, match="refused"):
        read_reference(tmp_path / REFERENCE_FILE)


def test_export_writes_reference_io_for_every_graph(tiny_bundle):
    b = load_bundle(tiny_bundle)
    m = b.manifest
    assert m.reference["path"] == REFERENCE_FILE and REFERENCE_FILE in m.files
    assert m.reference["cases"] == {"image_encoder": 2, "image_encoder_pixels": 2, "mask_decoder": 6,
                                    "mask_decoder_single": 6, "mask_decoder_lowres": 7}
    cases = load_reference(b)
    graphs = {a.graph for a in m.artifacts}
    assert graphs == {c.graph for c in cases}
    enc = [c for c in cases if c.graph == "image_encoder"]
    assert [c.inputs["image"].shape for c in enc] == [(1, 3, 256, 256)] * 2
    assert enc[0].outputs["image_embeddings"].shape == (1, 64, 16, 16)
    assert not np.array_equal(enc[0].inputs["image"], enc[1].inputs["image"])
    assert enc[0].description.startswith("procedural seed")
    dec = {c.name: c for c in cases if c.graph == "mask_decoder_lowres"}
    assert set(dec) == {f"{i}-{p}" for i in (0, 1) for p in ("point", "points", "box")} | {"0-batch"}
    assert dec["0-point"].inputs["point_labels"].tolist() == [[1, -1]]  # SAM's pad point
    assert dec["0-points"].inputs["point_labels"].tolist() == [[1, 0, -1]]
    assert dec["1-box"].inputs["point_labels"].tolist() == [[2, 3]]
    assert dec["1-box"].embedding_from == "image_encoder/1"
    assert dec["1-box"].inputs["image_embeddings"] is enc[1].outputs["image_embeddings"]
    assert dec["0-point"].outputs["low_res_masks"].shape == (1, 4, 64, 64)
    masks = dec["0-point"].outputs["low_res_masks"] > 0
    assert 0 < masks.mean() < 1  # a real mask, neither empty nor full
    # the batched case: the three prompts of image 0 in one call (prompt axis), padded with -1
    batch = dec["0-batch"]
    assert batch.inputs["point_labels"].tolist() == [[1, -1, -1], [1, 0, -1], [2, 3, -1]]
    for i, name in enumerate(("point", "points", "box")):
        n = dec[f"0-{name}"].inputs["point_coords"].shape[1]
        np.testing.assert_array_equal(batch.inputs["point_coords"][i, :n], dec[f"0-{name}"].inputs["point_coords"][0])
    assert batch.inputs["has_mask_input"].tolist() == [0, 0, 1]
    np.testing.assert_array_equal(batch.inputs["mask_input"][2, 0], dec["0-point"].outputs["low_res_masks"][0, 0])
    assert batch.outputs["low_res_masks"].shape == (3, 4, 64, 64) and batch.outputs["iou_predictions"].shape == (3, 4)
    # the first prompt alone (its extra pad point aside) is the single "point" case
    same = (batch.outputs["low_res_masks"][0, 0] > 0) == (dec["0-point"].outputs["low_res_masks"][0, 0] > 0)
    assert same.mean() > 0.95
    assert batch.embedding_from == "image_encoder/0" and "3 prompts in one call" in batch.description
    official = {c.name: c for c in cases if c.graph == "mask_decoder"}
    assert official["0-box"].inputs["orig_im_size"].tolist() == [192, 256]
    assert official["1-box"].outputs["masks"].shape == (1, 4, 256, 160)


def test_bundle_without_reference_io_says_to_re_export(tmp_path, tiny_bundle):
    copy = tmp_path / "old"
    shutil.copytree(tiny_bundle, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["reference"], manifest["files"] = {}, {}
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError) as err:
        load_reference(copy)
    _one_line(err, "no reference I/O")


def test_tampered_reference_is_refused_by_its_hash(tmp_path, tiny_bundle):
    copy = tmp_path / "b"
    shutil.copytree(tiny_bundle, copy)
    doctor_reference(copy, "image_encoder/0/out/image_embeddings", lambda a: a * 2, rehash=False)
    with pytest.raises(BundleError, match="reference/io.npz was modified"):
        load_reference(copy)


def test_zip_features_numpy_cannot_read_are_one_line(tmp_path):
    """A member compressed with a method zipfile lacks (NotImplementedError) or encrypted (RuntimeError)."""
    write_reference(tmp_path, _cases())
    path = tmp_path / REFERENCE_FILE
    raw = bytearray(path.read_bytes())
    for sig, offset in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):  # local and central headers: method
        at = raw.find(sig)
        while at >= 0:
            raw[at + offset:at + offset + 2] = (99).to_bytes(2, "little")
            at = raw.find(sig, at + 4)
    path.write_bytes(bytes(raw))
    with pytest.raises(BundleError) as err:
        read_reference(path)
    _one_line(err, "not a readable npz")
