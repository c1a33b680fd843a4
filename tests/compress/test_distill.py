"""``compress --image-size``: a student of a smaller input size (tiny random-weight models, fast)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from slimsam_edge.compress.data import ImageSource
from slimsam_edge.compress.distill import DistillSpec, distill_loss
from slimsam_edge.compress.pipeline import CompressConfig, compress
from slimsam_edge.errors import UsageError
from slimsam_edge.models.build import build_sam, random_init_
from slimsam_edge.models.io import save_model
from slimsam_edge.models.regrid import (check_image_size, resample_model, resize_embedding,
                                        resize_input, resolution_sizes, resolution_window)
from slimsam_edge.models.spec import PRESETS

from helpers import assert_one_line_error, run_command, tiny_compress_spec

torch.set_num_threads(1)
M = PRESETS["sam_mini"]
#: 3 blocks (block 1 global), 128x128 input, 8x8 token grid, windows of 4
SPEC = tiny_compress_spec(128, 4)


@pytest.fixture(scope="module")
def teacher():
    sam = random_init_(build_sam(SPEC), seed=0)
    return sam.requires_grad_(False)


@pytest.fixture(scope="module")
def teacher_ckpt(tmp_path_factory, teacher):
    path = tmp_path_factory.mktemp("teacher") / "tiny.safetensors"
    save_model(teacher, SPEC, path)
    return path


def test_window_rule_tiles_every_listed_size():
    for name in ("vit_b", "sam_mini"):
        e = PRESETS[name].encoder
        sizes = resolution_sizes(e)
        assert sizes[-1] == e.img_size and all(s % e.patch_size == 0 for s in sizes)
        for s in sizes[:-1]:
            w, g = resolution_window(e, s), s // e.patch_size
            assert g % w == 0 and w <= e.window_size and w * e.img_size >= e.window_size * s
    b, mini = PRESETS["vit_b"].encoder, PRESETS["sam_mini"].encoder
    assert [resolution_window(b, s) for s in (768, 512)] == [12, 8]
    assert [resolution_window(mini, s) for s in (192, 128)] == [6, 4]


def test_resampled_student_has_the_new_grid_everywhere(teacher):
    small, spec = resample_model(teacher, SPEC, 96)
    e = spec.encoder
    assert (spec.image_size, e.grid, e.window_size, e.global_attn_indexes) == (96, 6, 3, (1,))
    with torch.no_grad():
        emb = small.image_encoder(torch.zeros(1, 3, 96, 96))
    assert tuple(emb.shape) == (1, 32, 6, 6)
    enc = small.image_encoder
    assert tuple(enc.pos_embed.shape) == (1, 6, 6, 48)
    assert enc.blocks[0].attn.rel_pos_h.shape[0] == 2 * 3 - 1  # windowed: the new window
    assert enc.blocks[1].attn.rel_pos_h.shape[0] == 2 * 6 - 1  # global: the new grid
    # the prompt encoder and mask decoder follow the grid: 4x the grid for low-res masks / mask_input
    assert small.prompt_encoder.image_embedding_size == (6, 6)
    assert small.prompt_encoder.input_image_size == (96, 96)
    from slimsam_edge.models.batch import decode

    pts = (torch.tensor([[[40.0, 50.0]]]), torch.ones(1, 1, dtype=torch.int64))
    with torch.no_grad():
        low, _ = decode(small, emb, pts, mask_input=torch.zeros(1, 1, 24, 24))
    assert low.shape[-2:] == (24, 24) and spec.low_res_size == 24
    # weights not tied to positions are copied unchanged; at the teacher's own size nothing moves
    assert torch.equal(enc.blocks[0].attn.qkv.weight, teacher.image_encoder.blocks[0].attn.qkv.weight)
    assert resample_model(teacher, SPEC, 128)[0] is teacher


def test_position_tables_are_interpolated_not_reset(teacher):
    small, _ = resample_model(teacher, SPEC, 64)
    pe_t, pe_s = teacher.image_encoder.pos_embed, small.image_encoder.pos_embed
    # a 2x smaller grid: each new position is the mean of a 2x2 block of the old ones (bilinear, centres)
    ref = pe_t.reshape(1, 4, 2, 4, 2, 48).mean((2, 4))
    torch.testing.assert_close(pe_s, ref)
    rel_t, rel_s = teacher.image_encoder.blocks[1].attn.rel_pos_h, small.image_encoder.blocks[1].attn.rel_pos_h
    assert torch.equal(rel_s[0], rel_t[0]) and torch.equal(rel_s[-1], rel_t[-1])  # end offsets stay


def test_distillation_target_is_the_teacher_at_its_size_resized(teacher):
    small, _ = resample_model(teacher, SPEC, 96)
    src = ImageSource.procedural(count=2, size=128)
    from slimsam_edge.models.batch import preprocess

    x = preprocess(teacher, src.images([0, 1]))
    with torch.no_grad():
        want = resize_embedding(teacher.image_encoder(x), 6)
        got = small.image_encoder(resize_input(x, 96))
        out = distill_loss(small, x, DistillSpec("final", steps=1), 0, teacher=teacher)
    torch.testing.assert_close(out["embed"], torch.nn.functional.mse_loss(got, want))


@pytest.mark.parametrize("size, fragment", [
    (100, "not a multiple of the patch size 16"),
    (112, "no window of 3.5 to 4 tokens tiles"),
    (256, "larger than the teacher's input 128 px"),
    (0, "not a multiple of the patch size"),
])
def test_bad_sizes_refuse_with_the_list_of_sizes_that_work(size, fragment):
    with pytest.raises(UsageError, match="sizes that work for this 128 px teacher") as err:
        check_image_size(SPEC.encoder, size)
    assert fragment in str(err.value) and "16, 32, 48, 64, 96, 128" in str(err.value)
    assert "\n" not in str(err.value)


def _run(*args):
    from slimsam_edge.cli.compress import compress as cmd

    return run_command(cmd, *args)


@pytest.mark.parametrize("size, fragment", [(100, "multiple of the patch size"), (112, "tiles"),
                                            (256, "larger than the teacher's")])
def test_cli_refuses_bad_sizes_in_one_line(tmp_path, teacher_ckpt, size, fragment):
    res = _run("--out", tmp_path / "o", "--teacher", teacher_ckpt, "--ratio", 0.5, "--image-size", size)
    assert_one_line_error(res, fragment, "sizes that work", "64, 96, 128")
    assert not (tmp_path / "o").exists()  # refused before anything was written


def test_cli_refuses_labelled_taylor_at_another_size(tmp_path, teacher_ckpt):
    res = _run("--out", tmp_path / "o", "--teacher", teacher_ckpt, "--ratio", 0.5, "--image-size", 96,
               "--importance", "taylor", "--steps", 1)
    assert_one_line_error(res, "--importance taylor", "disturbed-taylor")


def test_config_records_the_size_only_when_given():
    assert "image_size" not in CompressConfig(0.5).identity()
    assert CompressConfig(0.5, image_size=96).identity()["image_size"] == 96
    with pytest.raises(UsageError, match="--image-size"):
        CompressConfig(0.5, image_size=-4).validate()


def test_resolution_route_compresses_exports_validates_and_predicts(tmp_path, teacher_ckpt):
    """A tiny compress at 96 px of a 128 px teacher, then a validated bundle whose predictor resizes
    inputs to 96 and answers at the original image size."""
    import json

    from slimsam_edge.bundle import load_bundle
    from slimsam_edge.exporters.bundle_export import export_bundle
    from slimsam_edge.models.io import load_model
    from slimsam_edge.predictor import EdgePredictor

    res = _run("--out", tmp_path / "c", "--teacher", teacher_ckpt, "--ratio", 0.5, "--image-size", 96,
               "--steps", 2, "--images", 4, "--importance-images", 2, "--eval-images", 1, "--batch", 1,
               "--val-every", 1, "--val-images", 1, "--json")
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)
    assert rep["config"]["image_size"] == 96
    assert (rep["teacher"]["image_size"], rep["student"]["image_size"]) == (128, 96)
    assert rep["student"]["miou"]["n_images"] == 1 and rep["student"]["embedding_mse"] > 0
    assert rep["phase_modes"] == ["bottleneck", "embedding"]
    assert "| input size (px) | 128 | 96 |" in (tmp_path / "c" / "report.md").read_text()
    sam, spec = load_model(tmp_path / "c" / "model.safetensors")
    assert (spec.image_size, spec.encoder.window_size, spec.encoder.embed_dim) == (96, 3, 24)

    out = tmp_path / "bundle"
    export_bundle(sam, spec, out, target="onnx", model_id="tiny96")  # validates against PyTorch
    manifest = load_bundle(out).manifest
    assert manifest.image_size == 96
    assert "24x24" in json.dumps(manifest.prompt_frame)  # mask_input = 4 x the 6x6 grid
    pred = EdgePredictor.from_bundle(out)
    assert pred.image_size == 96
    image = np.random.default_rng(0).integers(0, 255, (150, 200, 3), dtype=np.uint8)
    pred.set_image(image)
    masks, scores, low = pred.predict(point_coords=np.array([[120.0, 70.0]]), point_labels=np.array([1]),
                                      multimask_output=False)
    assert masks.shape == (1, 150, 200) and low.shape == (1, 24, 24) and scores.shape == (1,)


def test_window_rule_property():
    """Whatever the teacher's grid, patch and window: a size either gets a window that tiles its grid
    (covering at least the teacher's window's share of the image, never more tokens) and a student
    spec of that grid, or a one-line refusal whose list holds exactly the sizes that work."""
    from hypothesis import given, settings, strategies as st

    from slimsam_edge.models.regrid import at_image_size

    @settings(max_examples=200, deadline=None)
    @given(patch=st.sampled_from([4, 8, 16]), grid=st.integers(1, 48), window=st.integers(1, 16),
           size=st.integers(-8, 900))
    def check(patch, grid, window, size):
        spec = replace(M, encoder=replace(M.encoder, img_size=grid * patch, patch_size=patch, window_size=window))
        e = spec.encoder
        w = resolution_window(e, size)
        if w is None:
            with pytest.raises(UsageError) as err:
                at_image_size(spec, size)
            listed = str(err.value).rsplit(": ", 1)[1]
            assert [int(v) for v in listed.split(", ")] == resolution_sizes(e)
            assert size not in resolution_sizes(e)
        else:
            new = at_image_size(spec, size).encoder
            assert new.grid == size // patch and new.window_size == w
            if size != e.img_size:
                assert new.grid % w == 0 and w <= window and w * e.img_size >= window * size

    check()


def test_regridded_target_is_the_teacher_moved_to_the_students_size(tmp_path, teacher):
    """``embedding_target="regridded"``: the encoder phases and importance see the embeddings of the
    teacher resampled to the student's size (computed on the batch resized to it, cached under that
    model's own fingerprint); the decoder phase keeps the teacher's own. At the teacher's size, or with
    the default target, there is nothing else to pull toward."""
    from slimsam_edge.compress.cache import EMBEDDING_TARGETS, TeacherEmbeddings
    from slimsam_edge.compress.pipeline import _regridded_targets
    from slimsam_edge.models.batch import preprocess

    cfg = CompressConfig(0.5, image_size=96, embedding_target="regridded")
    cfg.validate()
    regridded = _regridded_targets(cfg, teacher, SPEC, tmp_path / "cache")
    images = ImageSource.procedural(count=2, size=128).images([0, 1])
    x = preprocess(teacher, images)
    moved, _ = resample_model(teacher, SPEC, 96)
    with torch.no_grad():
        want = moved.image_encoder(resize_input(x, 96))
    got = regridded(images, x)
    assert got.shape == want.shape == (2, 32, 6, 6)
    torch.testing.assert_close(got, want.half().float())  # cached targets are the fp16-rounded values
    torch.testing.assert_close(regridded(images, x), got)
    assert regridded.stats()["hits"] == 2 and regridded.stats()["misses"] == 2
    own = TeacherEmbeddings(teacher, tmp_path / "cache", key="teacher")
    assert own.path(images[0]) != regridded.path(images[0])  # another model, other cache files
    # with it, the embedding loss of an encoder phase is the MSE against the moved teacher
    small, _ = resample_model(teacher, SPEC, 96)
    with torch.no_grad():
        out = distill_loss(small, x, DistillSpec("final", steps=1), 0, teacher=teacher, targets=regridded,
                           images=images)
        mine = small.image_encoder(resize_input(x, 96))
    torch.testing.assert_close(out["embed"], torch.nn.functional.mse_loss(mine, got))
    # a caller that already holds the moved teacher (the model to prune, without a base) hands it over
    given = _regridded_targets(cfg, teacher, SPEC, None, moved=(moved, _))
    assert given.teacher is moved
    for other in (CompressConfig(0.5, image_size=96), CompressConfig(0.5, embedding_target="regridded"),
                  CompressConfig(0.5, image_size=128, embedding_target="regridded")):
        assert _regridded_targets(other, teacher, SPEC, None) is None
    assert set(EMBEDDING_TARGETS) == {"teacher", "regridded"}


def test_embedding_target_is_recorded_only_when_not_the_teachers():
    assert "embedding_target" not in CompressConfig(0.5, image_size=96).identity()
    assert CompressConfig(0.5, image_size=96, embedding_target="regridded").identity()["embedding_target"] == "regridded"
    with pytest.raises(UsageError, match="--embedding-target 'resized'.*teacher, regridded"):
        CompressConfig(0.5, embedding_target="resized").validate()


def test_regridded_route_compresses_end_to_end(tmp_path, teacher_ckpt):
    import json

    res = _run("--out", tmp_path / "c", "--teacher", teacher_ckpt, "--ratio", 0.5, "--image-size", 96,
               "--embedding-target", "regridded", "--steps", 2, "--images", 4, "--importance-images", 2,
               "--eval-images", 1, "--batch", 1, "--val-every", 1, "--val-images", 1,
               "--cache-teacher", tmp_path / "cache", "--decoder-steps", 1, "--json")
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)
    assert rep["config"]["embedding_target"] == "regridded"
    assert rep["regridded_cache"]["misses"] > 0 and rep["teacher_cache"]["misses"] > 0
