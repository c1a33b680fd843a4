"""Data readers, procedural data, splits, mask metrics and the ``data`` CLI (all torch-free)."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from slimsam_edge.data.auto import detect_layout, open_labelled
from slimsam_edge.data.coco import CocoDataset
from slimsam_edge.data.folder import ImageFolder
from slimsam_edge.data.images import list_images, read_image
from slimsam_edge.data.procedural import (
    SHAPES,
    ProceduralDataset,
    generate_sample,
    procedural_sample,
    write_procedural,
)
from slimsam_edge.data.records import DataSkipWarning, xywh_to_xyxy
from slimsam_edge.data.rle import counts_from_string, encode_mask, require_pycocotools
from slimsam_edge.data.sa1b import SA1BDataset, write_sa1b_sample
from slimsam_edge.data.splits import select_split, split_items
from slimsam_edge.errors import DataError, ImageError, UsageError
from slimsam_edge.data.prompts import point_inside_mask
from slimsam_edge.eval.metrics import MiouAccumulator, batch_iou, mask_iou

pytest.importorskip("pycocotools")


def _write(path: Path, image_rgb: np.ndarray) -> Path:
    ok, buf = cv2.imencode(path.suffix, np.ascontiguousarray(image_rgb[..., ::-1]))
    assert ok
    path.parent.mkdir(parents=True, exist_ok=True)
    buf.tofile(str(path))
    return path


def _square(h: int, w: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def _quiet(iterable):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataSkipWarning)
        return list(iterable)


# ----------------------------------------------------------------------------- images


def _jpeg_with_orientation(image_rgb: np.ndarray, orientation: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", image_rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    data = buf.tobytes()
    ifd = struct.pack(">H", 1) + struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack(">I", 0)
    tiff = b"MM\x00\x2a" + struct.pack(">I", 8) + ifd
    payload = b"Exif\x00\x00" + tiff
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    return data[:2] + app1 + data[2:]


def test_read_image_gray_rgba_unicode_and_exif(tmp_path: Path) -> None:
    gray = np.full((5, 7), 90, np.uint8)
    cv2.imencode(".png", gray)[1].tofile(str(tmp_path / "gray.png"))
    out = read_image(tmp_path / "gray.png")
    assert out.shape == (5, 7, 3) and out.dtype == np.uint8 and (out == 90).all()

    bgra = np.zeros((4, 4, 4), np.uint8)
    bgra[..., 0], bgra[..., 3] = 255, 128  # blue, half transparent
    cv2.imencode(".png", bgra)[1].tofile(str(tmp_path / "rgba.png"))
    rgba = read_image(tmp_path / "rgba.png")
    assert rgba.shape == (4, 4, 3) and rgba[0, 0].tolist() == [0, 0, 255]

    uni = _write(tmp_path / "ünïcödé 图像.png", np.full((3, 3, 3), (10, 20, 30), np.uint8))
    assert read_image(uni)[1, 1].tolist() == [10, 20, 30]

    image = np.zeros((32, 64, 3), np.uint8)
    image[:, :32] = (255, 0, 0)  # left half red, right half blue
    image[:, 32:] = (0, 0, 255)
    (tmp_path / "rot.jpg").write_bytes(_jpeg_with_orientation(image, 6))  # 6 = rotate 90° clockwise
    rotated = read_image(tmp_path / "rot.jpg")
    assert rotated.shape == (64, 32, 3)
    assert rotated[8, 16, 0] > 200 and rotated[8, 16, 2] < 60  # old left (red) is now on top
    assert rotated[56, 16, 2] > 200 and rotated[56, 16, 0] < 60


def test_read_image_errors_and_list_images(tmp_path: Path) -> None:
    (tmp_path / "bad.jpg").write_bytes(b"not an image at all")
    with pytest.raises(ImageError, match="cannot decode image .*jpg/png/bmp/webp"):
        read_image(tmp_path / "bad.jpg")
    with pytest.raises(ImageError, match="file not found"):
        read_image(tmp_path / "missing.png")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no images .* found in"):
        list_images(empty)
    with pytest.raises(DataError, match="does not exist"):
        list_images(tmp_path / "nope")
    _write(tmp_path / "sub" / "b.PNG", np.zeros((2, 2, 3), np.uint8))
    _write(tmp_path / ".hidden" / "c.png", np.zeros((2, 2, 3), np.uint8))
    assert [p.name for p in list_images(tmp_path)] == ["bad.jpg", "b.PNG"]
    assert [p.name for p in list_images(tmp_path, recursive=False)] == ["bad.jpg"]
    with pytest.raises(ImageError):
        ImageFolder(tmp_path)[0]
    folder = ImageFolder(tmp_path)
    with pytest.warns(DataSkipWarning):
        assert len(list(folder)) == 1
    assert folder.skipped == {"bad_image": 1}


# ----------------------------------------------------------------------------- SA-1B


@pytest.fixture()
def sa1b_dir(tmp_path: Path) -> Path:
    root = tmp_path / "sa1b"
    image = np.full((20, 30, 3), 100, np.uint8)
    write_sa1b_sample(root, "a", image, [_square(20, 30, 2, 8, 3, 13), _square(20, 30, 10, 18, 20, 28)])
    write_sa1b_sample(root, "b", image, [_square(20, 30, 0, 20, 0, 10)], point_coords=[[(4.0, 9.0)]])
    return root


def test_sa1b_reader_roundtrip(sa1b_dir: Path) -> None:
    ds = SA1BDataset(sa1b_dir)
    assert len(ds) == 2 and ds.layout == "sa1b"
    samples = list(ds)
    assert ds.skipped == {}
    a, b = samples
    assert a.image_id == "a" and a.load_image().shape == (20, 30, 3)
    first = a.annotations[0]
    assert not first.mask_loaded  # decoded lazily
    assert first.bbox_xyxy == (3.0, 2.0, 13.0, 8.0)  # written as xywh [3, 2, 10, 6]
    assert first.area == 60 and first.mask.sum() == 60 and first.mask[2:8, 3:13].all()
    x, y = first.point_coords[0]
    assert first.mask[int(y), int(x)]
    assert b.annotations[0].point_coords == [(4.0, 9.0)]
    doc = json.loads((sa1b_dir / "a.json").read_text())
    assert doc["annotations"][1]["bbox"] == [20.0, 10.0, 8.0, 8.0]
    assert isinstance(doc["annotations"][0]["segmentation"]["counts"], str)
    assert xywh_to_xyxy([1, 2, 3, 4]) == (1.0, 2.0, 4.0, 6.0)


def test_sa1b_skips_bad_items_and_strict(sa1b_dir: Path) -> None:
    image = np.full((20, 30, 3), 50, np.uint8)
    _write(sa1b_dir / "no_json.png", image)  # image without its JSON
    write_sa1b_sample(sa1b_dir, "corrupt", image, [_square(20, 30, 1, 5, 1, 5), _square(20, 30, 9, 12, 9, 12)])
    doc = json.loads((sa1b_dir / "corrupt.json").read_text())
    doc["annotations"][0]["segmentation"]["counts"] = "~~~~"  # corrupt RLE; the other stays usable
    (sa1b_dir / "corrupt.json").write_text(json.dumps(doc))
    write_sa1b_sample(sa1b_dir, "empty", image, [_square(20, 30, 1, 5, 1, 5)])
    doc = json.loads((sa1b_dir / "empty.json").read_text())
    doc["annotations"] = []
    (sa1b_dir / "empty.json").write_text(json.dumps(doc))
    write_sa1b_sample(sa1b_dir, "undecodable", image, [_square(20, 30, 1, 5, 1, 5)])
    (sa1b_dir / "undecodable.png").write_bytes(b"\x89PNG garbage")

    ds = SA1BDataset(sa1b_dir)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        samples = list(ds)
    assert sorted(s.image_id for s in samples) == ["a", "b", "corrupt"]
    assert len(next(s for s in samples if s.image_id == "corrupt").annotations) == 1
    assert ds.skipped == {"missing_json": 1, "corrupt_rle": 1, "empty_annotations": 1, "bad_image": 1}
    skip_warnings = [w for w in caught if issubclass(w.category, DataSkipWarning)]
    assert len(skip_warnings) == 4  # one per reason
    assert _quiet(ds) and ds.skipped["missing_json"] == 1  # counts restart on each pass

    with pytest.raises(DataError, match="no_json.png"):
        SA1BDataset(sa1b_dir, strict=True)
    (sa1b_dir / "no_json.png").unlink()
    with pytest.raises(DataError, match="strict"):
        list(SA1BDataset(sa1b_dir, strict=True))


def test_rle_validation_and_missing_pycocotools(monkeypatch: pytest.MonkeyPatch) -> None:
    m = np.zeros((7, 5), bool)
    m[1:4, 2:5] = True
    m[6, 0] = True
    rle = encode_mask(m)
    runs = counts_from_string(rle["counts"])
    assert runs.sum() == 35 and runs[1::2].sum() == 10
    with pytest.raises(ValueError):
        counts_from_string("0\x7f")
    monkeypatch.setitem(sys.modules, "pycocotools", None)
    with pytest.raises(DataError, match=r"pip install 'slimsam-edge\[data\]'"):
        require_pycocotools()


# ----------------------------------------------------------------------------- COCO


def _coco_fixture(root: Path) -> Path:
    image = np.full((20, 30, 3), 80, np.uint8)
    for name in ("p.jpg", "r.jpg", "none.jpg"):
        _write(root / "images" / name, image)
    square = _square(20, 30, 5, 15, 5, 15)
    flat = square.flatten(order="F")
    change = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    bounds = np.concatenate(([0], change, [flat.size]))
    counts = np.diff(bounds).tolist()  # uncompressed RLE, starting with a zero run
    doc = {
        "images": [
            {"id": 1, "file_name": "p.jpg", "height": 20, "width": 30},
            {"id": 2, "file_name": "r.jpg", "height": 20, "width": 30},
            {"id": 3, "file_name": "none.jpg", "height": 20, "width": 30},
        ],
        "annotations": [
            {"id": 10, "image_id": 1, "segmentation": [[2, 2, 12, 2, 12, 12, 2, 12]], "bbox": [2, 2, 10, 10],
             "iscrowd": 0, "category_id": 1},
            {"id": 11, "image_id": 2, "segmentation": {"size": [20, 30], "counts": counts},
             "bbox": [5, 5, 10, 10], "iscrowd": 0},
            {"id": 12, "image_id": 2, "segmentation": encode_mask(_square(20, 30, 0, 3, 0, 30)),
             "bbox": [0, 0, 30, 3], "iscrowd": 0},
            {"id": 13, "image_id": 2, "segmentation": encode_mask(square), "bbox": [5, 5, 10, 10], "iscrowd": 1},
            {"id": 14, "image_id": 2, "segmentation": {"size": [20, 30], "counts": [1, 2]}, "bbox": [0, 0, 1, 1]},
            {"id": 15, "image_id": 99, "segmentation": [[0, 0, 1, 0, 1, 1]], "bbox": [0, 0, 1, 1]},
        ],
    }
    path = root / "annotations" / "instances_val.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(doc))
    return path


def test_coco_reader(tmp_path: Path) -> None:
    ann_file = _coco_fixture(tmp_path)
    ds = CocoDataset(ann_file)
    assert ds.image_dir == tmp_path / "images" and len(ds) == 3
    samples = _quiet(ds)
    assert [s.image_id for s in samples] == [1, 2]
    poly = samples[0].annotations[0]
    assert poly.bbox_xyxy == (2.0, 2.0, 12.0, 12.0) and poly.mask[3:12, 3:12].all() and poly.area == poly.mask.sum()
    assert poly.extra == {"category_id": 1}
    uncompressed, compressed = samples[1].annotations
    assert (uncompressed.mask == _square(20, 30, 5, 15, 5, 15)).all() and uncompressed.id == 11
    assert compressed.mask[:3].all() and compressed.mask.sum() == 90
    assert ds.skipped == {"orphan_annotation": 1, "crowd": 1, "corrupt_rle": 1, "empty_annotations": 1}
    assert len(_quiet(CocoDataset(ann_file, include_crowd=True))[1].annotations) == 3
    with pytest.raises(DataError):
        list(CocoDataset(ann_file, strict=True))
    assert open_labelled(tmp_path).layout == "coco"
    assert detect_layout(ann_file) == ("coco", ann_file)


def test_open_labelled_layouts(tmp_path: Path, sa1b_dir: Path) -> None:
    assert isinstance(open_labelled(sa1b_dir), SA1BDataset)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="unrecognised data layout.*SA-1B.*COCO"):
        open_labelled(tmp_path / "junk")
    with pytest.raises(DataError, match="does not exist"):
        open_labelled(tmp_path / "missing")


# ----------------------------------------------------------------------------- procedural


def test_procedural_is_deterministic(tmp_path: Path) -> None:
    write_procedural(tmp_path / "a", 2, seed=3, size=64)
    write_procedural(tmp_path / "b", 2, seed=3, size=64)
    write_procedural(tmp_path / "c", 2, seed=4, size=64)
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == ["proc_3_000000.json", "proc_3_000000.png", "proc_3_000001.json", "proc_3_000001.png"]
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    other = (tmp_path / "c" / "proc_4_000000.png").read_bytes()
    assert other != (tmp_path / "a" / "proc_3_000000.png").read_bytes()
    # any sample can be regenerated alone, in memory, identical to what was written
    written = list(SA1BDataset(tmp_path / "a"))[1]
    alone = ProceduralDataset(2, seed=3, size=64)[1]
    assert (written.load_image() == alone.image).all()
    assert all((w.mask == m.mask).all() for w, m in zip(written.annotations, alone.annotations))
    assert [w.point_coords for w in written.annotations] == [m.point_coords for m in alone.annotations]


def test_procedural_masks_visible_disjoint_and_varied() -> None:
    kinds_seen, holes, concave = set(), False, False
    for seed in range(8):
        image, masks, kinds = generate_sample(seed, 96, return_kinds=True)
        assert image.shape == (96, 96, 3) and image.dtype == np.uint8 and masks
        stack = np.stack(masks)
        assert stack.sum(0).max() == 1  # visible parts never overlap
        assert (stack.reshape(len(masks), -1).sum(1) >= 0.003 * 96 * 96).all()
        kinds_seen.update(kinds)
        for m in masks:
            contours, hierarchy = cv2.findContours(m.astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
            holes |= bool((hierarchy[0][:, 3] >= 0).any())
            hull = cv2.convexHull(np.concatenate(contours))
            concave |= m.sum() < 0.8 * cv2.contourArea(hull)
    assert len(kinds_seen) >= 5 and kinds_seen <= set(SHAPES)
    assert holes and concave
    sample = procedural_sample(0, 0, 64)
    for ann in sample.annotations:
        x, y = ann.point_coords[0]
        assert ann.mask[int(y), int(x)]
    with pytest.raises(UsageError):
        generate_sample(0, 16)
    with pytest.raises(IndexError):
        ProceduralDataset(2, 0, 64)[2]


# ----------------------------------------------------------------------------- splits


def test_splits_deterministic_and_order_free() -> None:
    items = [Path(f"/d/img{i:03d}.jpg") for i in range(50)]
    parts = split_items(items, {"train": 0.8, "val": 0.2}, seed=7)
    assert len(parts["train"]) == 40 and len(parts["val"]) == 10
    assert not set(parts["train"]) & set(parts["val"])
    assert split_items(list(reversed(items)), {"train": 0.8, "val": 0.2}, seed=7) == parts
    assert split_items(items, {"train": 0.8, "val": 0.2}, seed=8) != parts
    assert select_split(items, "val", seed=7) == sorted(split_items(items, seed=7)["val"])
    with pytest.raises(UsageError):
        split_items(items, {"train": 0.8, "val": 0.5})
    with pytest.raises(UsageError, match="unknown split"):
        select_split(items, "test")


# ----------------------------------------------------------------------------- metrics


def test_metrics() -> None:
    empty = np.zeros((4, 4), bool)
    full = np.ones((4, 4), bool)
    half = _square(4, 4, 0, 2, 0, 4)
    assert mask_iou(empty, empty) == 1.0 and mask_iou(empty, full) == 0.0
    assert mask_iou(half, full) == 0.5 and mask_iou(half.astype(np.float32) - 0.5, full) == 0.5
    with pytest.raises(DataError):
        mask_iou(empty, np.zeros((3, 3), bool))
    assert batch_iou(np.stack([half, empty]), np.stack([full, empty])).tolist() == [0.5, 1.0]

    acc = MiouAccumulator()
    acc.add_image([full], [full])  # image 1: 1.0
    acc.add_image([empty, full, full], [full, full, full])  # image 2: (0 + 1 + 1) / 3
    acc.add_image([], [])  # no annotations: ignored
    summary = acc.summary()
    assert summary["miou"] == pytest.approx((1.0 + 2 / 3) / 2)  # per image, then over images
    assert summary["n_images"] == 2 and summary["n_annotations"] == 4
    assert summary["buckets"]["small"] == {"miou": 0.75, "n": 4}
    acc.add_ious([0.2, 0.4], areas=[5000, 96**2])
    buckets = acc.summary()["buckets"]
    assert buckets["medium"]["n"] == 1 and buckets["large"] == {"miou": 0.4, "n": 1}

    mask = _square(10, 12, 2, 8, 1, 11)
    assert point_inside_mask(mask) == point_inside_mask(mask) == (5.0, 4.0)
    x, y = point_inside_mask(mask, rng=np.random.default_rng(0))
    assert mask[int(y), int(x)]
    assert point_inside_mask(_square(6, 6, 0, 6, 0, 2)) == (0.0, 2.0)  # the image edge is a border
    with pytest.raises(DataError, match="empty"):
        point_inside_mask(np.zeros((3, 3), bool))


def test_data_and_metrics_modules_do_not_import_torch() -> None:
    code = (
        "import sys; import slimsam_edge.data.auto, slimsam_edge.data.procedural, slimsam_edge.data.folder,"
        " slimsam_edge.eval.metrics, slimsam_edge.cli.data;"
        " bad = [m for m in ('torch', 'pycocotools') if m in sys.modules]; print(bad); sys.exit(bool(bad))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# ----------------------------------------------------------------------------- CLI


def test_cli_procedural_and_inspect(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from slimsam_edge.cli.data import app

    runner = CliRunner()
    out = tmp_path / "proc"
    result = runner.invoke(app, ["procedural", "--out", str(out), "--count", "2", "--size", "64", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["count"] == 2 and summary["seed"] == 0 and summary["size"] == 64 and summary["instances"] >= 2

    result = runner.invoke(app, ["procedural", "--out", str(tmp_path / "t"), "--count", "1", "--size", "32"])
    assert result.exit_code == 0 and "wrote 1 procedural images" in result.stdout

    for args in (["--count", "0"], ["--size", "16"]):
        result = runner.invoke(app, ["procedural", "--out", str(tmp_path / "x"), *args])
        assert result.exit_code == UsageError.exit_code and "error: --" in result.output
    result = runner.invoke(app, ["inspect", str(tmp_path / "nothing-here")])
    assert result.exit_code == 2 and "does not exist" in result.output

    _write(out / "lonely.png", np.zeros((8, 8, 3), np.uint8))
    result = runner.invoke(app, ["inspect", str(out), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["layout"] == "sa1b" and report["images"] == 2
    assert report["annotations"] == summary["instances"] and report["skipped"] == {"missing_json": 1}

    result = runner.invoke(app, ["inspect", str(out)])
    assert "layout sa1b, 2 images" in result.stdout and "[missing_json]" in result.stdout

    plain = tmp_path / "plain"
    _write(plain / "x.jpg", np.zeros((8, 8, 3), np.uint8))
    report = json.loads(runner.invoke(app, ["inspect", str(plain), "--json"]).stdout)
    assert report["layout"] == "images" and report["images"] == 1

    _coco_fixture(tmp_path / "coco")
    report = json.loads(runner.invoke(app, ["inspect", str(tmp_path / "coco"), "--json"]).stdout)
    assert report["layout"] == "coco" and report["images"] == 2 and report["annotations"] == 3
