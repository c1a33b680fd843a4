"""mIoU evaluation: exact per-image averaging with scripted predictors, SA-1B and COCO data, a tiny
random model in PyTorch vs its ONNX Runtime bundle, and the ``eval`` command."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from slimsam_edge.data.auto import open_labelled
from slimsam_edge.data.procedural import procedural_sample, write_procedural
from slimsam_edge.data.records import Annotation, Sample
from slimsam_edge.data.sa1b import write_sa1b_sample
from slimsam_edge.errors import DataError, UsageError
from slimsam_edge.eval.evaluate import (
    HELDOUT_SEED,
    default_eval_data,
    evaluate,
    open_model,
    prompt_box,
    prompt_point,
)
from slimsam_edge.data.prompts import point_inside_mask

pytest.importorskip("pycocotools")
pytestmark = pytest.mark.filterwarnings("ignore::slimsam_edge.data.records.DataSkipWarning")


class Scripted:
    """A predictor that answers the prompts, in call order, with the given masks."""

    def __init__(self, answers: list[np.ndarray]):
        self.answers = list(answers)
        self.calls: list[dict] = []
        self.images = 0

    def set_image(self, image: np.ndarray) -> None:
        self.images += 1
        self.hw = image.shape[:2]

    def predict(self, **kwargs) -> tuple[np.ndarray, np.ndarray, None]:
        self.calls.append(kwargs)
        mask = self.answers.pop(0) if self.answers else np.zeros(self.hw, bool)
        return mask[None], np.ones(1, np.float32), None


def _rect(h: int, w: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def _ann(mask: np.ndarray, points=None) -> Annotation:
    ys, xs = np.nonzero(mask)
    return Annotation(mask, (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1), points,
                      int(mask.sum()))


@pytest.fixture()
def two_images() -> list[Sample]:
    """A: 20x20, two small masks (one with an SA-1B point); B: 100x100, one medium mask."""
    m1, m2 = _rect(20, 20, 2, 12, 2, 12), _rect(20, 20, 14, 18, 10, 15)
    m3 = _rect(100, 100, 10, 50, 20, 60)
    return [
        Sample(None, [_ann(m1, [(3.0, 4.0)]), _ann(m2)], "A", np.zeros((20, 20, 3), np.uint8)),
        Sample(None, [_ann(m3)], "B", np.zeros((100, 100, 3), np.uint8)),
    ]


def _gt(samples: list[Sample]) -> list[np.ndarray]:
    return [m for s in samples for m in s.masks]


# ----------------------------------------------------------------------------- protocol


def test_oracle_scores_one_and_empty_scores_zero(two_images: list[Sample]) -> None:
    assert evaluate(Scripted(_gt(two_images)), two_images)["point"]["miou"] == 1.0
    empty = [np.zeros_like(m) for m in _gt(two_images)]
    r = evaluate(Scripted(empty), two_images, prompt="box")
    assert r["box"]["miou"] == 0.0 and r["point"] is None
    assert r["n_images"] == 2 and r["n_annotations"] == 3 and r["skipped"] == {}


def test_iou_is_averaged_per_image_then_over_images(two_images: list[Sample]) -> None:
    m1, m2, m3 = _gt(two_images)
    half = m1.copy()
    half[7:] = False  # 50 of 100 pixels: IoU 0.5
    r = evaluate(Scripted([half, m2, np.zeros_like(m3)]), two_images, prompt="point")
    s = r["point"]
    # image A: (0.5 + 1) / 2 = 0.75, image B: 0 -> 0.375 (the mean over annotations would be 0.5)
    assert s["miou"] == pytest.approx(0.375)
    assert s["buckets"]["small"] == {"miou": pytest.approx(0.75), "n": 2}
    assert s["buckets"]["medium"] == {"miou": 0.0, "n": 1}
    assert s["buckets"]["large"] == {"miou": None, "n": 0}


def test_prompts_follow_the_slimsam_protocol(two_images: list[Sample]) -> None:
    gt = _gt(two_images)
    p = Scripted([gt[0], gt[1], gt[0], gt[1], gt[2], gt[2]])  # an image's points, then its boxes
    r = evaluate(p, two_images, prompt="both")
    assert r["point"]["miou"] == 1.0 and r["box"]["miou"] == 1.0 and p.images == 2
    assert all(c["multimask_output"] is False for c in p.calls)
    points = [c["point_coords"].tolist() for c in p.calls if "point_coords" in c]
    assert points[0] == [[3.0, 4.0]]  # the SA-1B point
    assert points[1] == [list(point_inside_mask(gt[1]))]  # computed, deterministic
    assert all(c["point_labels"].tolist() == [1] for c in p.calls if "point_labels" in c)
    boxes = [c["box"].tolist() for c in p.calls if "box" in c]
    assert boxes == [[2, 2, 12, 12], [10, 14, 15, 18], [20, 10, 60, 50]]


def test_prompt_helpers_repair_bad_stored_prompts() -> None:
    m = _rect(10, 10, 2, 5, 3, 8)
    assert prompt_point(_ann(m, [(50.0, 1.0)]), (10, 10)) == point_inside_mask(m)
    assert prompt_box(Annotation(m, (3, 2, 3, 9)), (10, 10)).tolist() == [3, 2, 8, 5]
    assert prompt_box(Annotation(m, (-4, 2, 30, 5)), (10, 10)).tolist() == [0, 2, 10, 5]


def test_undecodable_image_is_skipped_not_fatal(two_images: list[Sample], tmp_path: Path) -> None:
    (tmp_path / "broken.png").write_bytes(b"not a png")
    bad = Sample(tmp_path / "broken.png", [_ann(_rect(8, 8, 0, 4, 0, 4))], "broken")
    r = evaluate(Scripted(_gt(two_images)), [two_images[0], bad, two_images[1]])
    assert r["n_images"] == 2 and r["skipped"] == {"bad_image": 1} and r["point"]["miou"] == 1.0


def test_no_data_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no image with annotations"):
        evaluate(Scripted([]), [])
    (tmp_path / "broken.png").write_bytes(b"")
    with pytest.raises(DataError, match="1 bad_image"):
        evaluate(Scripted([]), [Sample(tmp_path / "broken.png", [], "x")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError):
        open_labelled(tmp_path / "empty")
    with pytest.raises(UsageError, match="prompt must be one of"):
        evaluate(Scripted([]), [], prompt="mask")


def test_default_data_is_held_out_procedural() -> None:
    data = default_eval_data(2, size=64)
    samples = list(data)
    assert len(data) == 2 and data.skipped == {} and HELDOUT_SEED == 1001
    assert samples[1].image_id == f"proc_{HELDOUT_SEED}_000001"
    assert np.array_equal(samples[1].image, procedural_sample(HELDOUT_SEED, 1, 64).image)
    ticks: list[tuple] = []
    r = evaluate(Scripted([]), data, limit=1, progress=lambda d, t: ticks.append((d, t)))
    assert r["n_images"] == 1 and ticks[0] == (1, 1) and 0.0 <= r["point"]["miou"] <= 1.0


# ----------------------------------------------------------------------------- data on disk


@pytest.fixture(scope="module")
def sa1b_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 procedural pairs, one hand-made pair with an SA-1B point, one undecodable image."""
    root = tmp_path_factory.mktemp("sa1b")
    write_procedural(root, 3, seed=5, size=96)
    image = np.full((96, 96, 3), 90, np.uint8)
    image[20:60, 30:70] = 200
    write_sa1b_sample(root, "hand", image, [_rect(96, 96, 20, 60, 30, 70)], [[(40.0, 30.0)]])
    shutil.copy(root / "hand.json", root / "broken.json")
    (root / "broken.png").write_bytes(b"\x89PNG truncated")
    return root


@pytest.fixture(scope="module")
def coco_json(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two procedural images as a COCO instances file (masks as compressed RLE)."""
    from slimsam_edge.data.rle import encode_mask

    root = tmp_path_factory.mktemp("coco")
    images, anns = [], []
    for i in range(2):
        s = procedural_sample(7, i, 80)
        (root / "images").mkdir(exist_ok=True)
        cv2.imwrite(str(root / "images" / f"{s.image_id}.png"), s.image[..., ::-1])
        images.append({"id": i + 1, "file_name": f"{s.image_id}.png", "height": 80, "width": 80})
        for a in s.annotations:
            x0, y0, x1, y1 = a.bbox_xyxy
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "iscrowd": 0, "category_id": 1,
                         "segmentation": encode_mask(a.mask), "bbox": [x0, y0, x1 - x0, y1 - y0],
                         "area": a.area})
    path = root / "instances_val.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": []}))
    return path


def test_sa1b_folder_counts_and_skips(sa1b_dir: Path) -> None:
    ds = open_labelled(sa1b_dir)
    expected = sum(len(s.annotations) for s in ds)
    r = evaluate(Scripted([]), ds, prompt="both")  # empty answers: every IoU is 0
    assert r["n_images"] == 4 and r["n_annotations"] == expected
    assert r["skipped"] == {"bad_image": 1} and r["point"]["miou"] == r["box"]["miou"] == 0.0
    assert evaluate(Scripted([]), open_labelled(sa1b_dir), limit=2)["n_images"] == 2


def test_coco_file_evaluates(coco_json: Path) -> None:
    ds = open_labelled(coco_json)
    gt = [m for s in ds for m in s.masks]
    r = evaluate(Scripted(gt), open_labelled(coco_json), prompt="point")
    assert r["point"]["miou"] == 1.0 and r["n_images"] == 2 and r["n_annotations"] == len(gt)


# ----------------------------------------------------------------------------- a real (tiny) model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 2-block random SAM at 128 px: its safetensors checkpoint and its ONNX bundle."""
    pytest.importorskip("torch")
    from slimsam_edge.exporters.bundle_export import export_bundle
    from slimsam_edge.models.build import build_sam, random_init_
    from slimsam_edge.models.io import save_model
    from slimsam_edge.models.spec import PRESETS

    base = PRESETS["sam_mini"]
    enc = dataclasses.replace(base.encoder, img_size=128, embed_dim=64, num_heads=4, window_size=4,
                              global_attn_indexes=(1,), qkv_dims=(64, 64), mlp_dims=(128, 128),
                              out_chans=64)
    dec = dataclasses.replace(base.decoder, transformer_mlp_dim=128, transformer_heads=4,
                              iou_head_hidden_dim=64)
    spec = dataclasses.replace(base, model_type="custom", encoder=enc, decoder=dec)
    sam = random_init_(build_sam(spec), seed=0, std=0.3)
    root = tmp_path_factory.mktemp("tiny")
    ckpt = save_model(sam, spec, root / "tiny.safetensors")
    export_bundle(sam, spec, root / "bundle", target="onnx", validate=False)
    return {"checkpoint": ckpt, "bundle": root / "bundle"}


def test_checkpoint_and_onnx_bundle_agree(tiny: dict[str, Path], sa1b_dir: Path) -> None:
    results = []
    for model, backend in ((tiny["checkpoint"], None), (tiny["bundle"], "onnxruntime")):
        predictor, about = open_model(model, backend=backend, threads=1)
        results.append(evaluate(predictor, open_labelled(sa1b_dir), prompt="both"))
        assert about["backend"] == (backend or "torch")
    torch_r, ort_r = results
    for kind in ("point", "box"):
        assert 0.0 <= torch_r[kind]["miou"] <= 1.0
        assert abs(torch_r[kind]["miou"] - ort_r[kind]["miou"]) <= 0.01
    assert torch_r["n_annotations"] == ort_r["n_annotations"] and torch_r["n_images"] == 4


def test_checkpoint_with_another_backend_is_usage_error(tiny: dict[str, Path]) -> None:
    with pytest.raises(UsageError, match="export a bundle"):
        open_model(tiny["checkpoint"], backend="onnxruntime")
    with pytest.raises(UsageError, match="does not exist"):
        open_model(tiny["checkpoint"].with_name("nope.safetensors"))


def test_open_model_reads_and_hashes_a_bundle_once(tiny: dict[str, Path],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A bundle is loaded once and each of its files hashed once (it was loaded twice)."""
    import slimsam_edge.bundle as bundle_mod
    from slimsam_edge.bundle import load_bundle

    files = list(load_bundle(tiny["bundle"]).hashed_files())  # each distinct file once
    loads: list[Path] = []
    hashed: list[str] = []
    real_load, real_sha = bundle_mod.load_bundle, bundle_mod.sha256_inside
    monkeypatch.setattr(bundle_mod, "load_bundle", lambda path, **kw: loads.append(path) or real_load(path, **kw))
    monkeypatch.setattr(bundle_mod, "sha256_inside",
                        lambda root, rel, where: hashed.append(Path(rel).name) or real_sha(root, rel, where))
    predictor, about = open_model(tiny["bundle"], backend="onnxruntime", threads=1)
    assert len(loads) == 1 and about["kind"] == "bundle" and about["backend"] == "onnxruntime"
    assert sorted(hashed) == sorted(Path(f).name for f in files)


# ----------------------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def cli():
    import typer
    from typer.testing import CliRunner

    from slimsam_edge.cli.eval import eval_cmd

    app = typer.Typer()
    app.callback()(lambda: None)
    app.command("eval")(eval_cmd)
    runner = CliRunner()
    return lambda *args: runner.invoke(app, ["eval", *map(str, args)])


def test_cli_json_and_report_file(cli, tiny: dict[str, Path], sa1b_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    r = cli(tiny["bundle"], "--data", sa1b_dir, "--backend", "onnxruntime", "--threads", 1,
            "--json", "--out", out)
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["model"]["kind"] == "bundle" and report["data"]["layout"] == "sa1b"
    assert report["n_images"] == 4 and report["skipped"] == {"bad_image": 1}
    assert 0.0 <= report["point"]["miou"] <= 1.0 and 0.0 <= report["box"]["miou"] <= 1.0
    assert json.loads(out.read_text())["n_annotations"] == report["n_annotations"]


def test_cli_table_on_default_data(cli, tiny: dict[str, Path]) -> None:
    r = cli(tiny["checkpoint"], "--limit", 2, "--prompt", "point")
    assert r.exit_code == 0, r.output
    assert "point prompt" in r.stdout and "box prompt" not in r.stdout
    assert "procedural (held-out)" in r.stdout and "2 images" in r.stdout


def test_cli_bad_input_exit_2_one_line(cli, tiny: dict[str, Path], tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    r = cli(tiny["checkpoint"], "--backend", "onnxruntime")
    assert r.exit_code == 2 and r.stderr.startswith("error: ") and "export" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    (tmp_path / "empty").mkdir()
    r = cli(tiny["bundle"], "--data", tmp_path / "empty")
    assert r.exit_code == 2 and "unrecognised data layout" in r.stderr
    missing = tmp_path / "assets" / "sam_mini.safetensors"
    monkeypatch.setattr("slimsam_edge.eval.run.REFERENCE_MODEL", missing)
    r = cli("--limit", 1)
    assert r.exit_code == 2 and str(missing) in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
