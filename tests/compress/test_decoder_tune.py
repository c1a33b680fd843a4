"""The label-free mask-decoder phase: prompts, boxes, loss, and what it trains."""

from __future__ import annotations

import copy

import pytest
import torch

from slimsam_edge.compress.data import ImageSource
from slimsam_edge.compress.decoder_tune import (boxes_around, decode_all, decoder_loss, interior_points, mask_terms,
                                                random_points)
from slimsam_edge.compress.distill import DistillSpec, distill
from slimsam_edge.models.batch import preprocess
from slimsam_edge.models.build import build_sam, random_init_
from slimsam_edge.models.regrid import resample_model

from helpers import tiny_compress_spec

torch.set_num_threads(1)
SPEC = tiny_compress_spec(64, 2)


@pytest.fixture(scope="module")
def teacher():
    torch.manual_seed(0)  # build_sam draws the prompt encoder's random Fourier features from the global RNG
    return random_init_(build_sam(SPEC), seed=0).eval().requires_grad_(False)


def _embeddings(teacher, student, n=2):
    x = preprocess(teacher, ImageSource.procedural(count=n, size=64).images(range(n)))
    with torch.no_grad():
        t = teacher.image_encoder(x)
        s = student.image_encoder(torch.nn.functional.interpolate(x, size=student.image_encoder.img_size,
                                                                  mode="bilinear", antialias=True))
    return s, t


def test_prompts_are_a_function_of_the_image_index():
    a, b = random_points(3, 64), random_points(4, 64)
    assert torch.equal(a, random_points(3, 64)) and not torch.equal(a, b)
    assert a.shape == (16, 1, 2) and float(a.min()) >= 0 and float(a.max()) < 64


def test_boxes_cover_the_positive_pixels_in_input_coordinates():
    logits = torch.full((3, 16, 16), -5.0)
    logits[0, 4:8, 2:3] = 5.0  # rows 4..7, column 2
    logits[1, 0, 15] = 5.0  # the corner pixel
    boxes = boxes_around(logits, 64)  # 4 input pixels per low-res pixel
    assert boxes[0].tolist() == [8.0, 16.0, 12.0, 32.0]
    assert boxes[1].tolist() == [60.0, 0.0, 64.0, 4.0]
    assert boxes[2].tolist() == [0.0, 0.0, 64.0, 64.0]  # nothing positive: the whole input


def test_the_teacher_matches_itself_better_than_another_decoder(teacher):
    s_emb, t_emb = _embeddings(teacher, teacher)
    other = random_init_(build_sam(SPEC), seed=5).eval()
    other.image_encoder.load_state_dict(teacher.image_encoder.state_dict())
    same, diff = decoder_loss(teacher, teacher, s_emb, t_emb, [0, 1]), decoder_loss(other, teacher, s_emb, t_emb, [0, 1])
    assert float(same["iou"]) == 0.0 and float(same["mask"]) < float(diff["mask"])
    masks, iou = decode_all(teacher, t_emb[:1], points=random_points(0, 64, 5))
    assert masks.shape[:2] == (5, 4) and iou.shape == (5, 4)


def test_mask_terms_compare_at_the_teachers_size():
    t = torch.full((2, 4, 16, 16), -10.0)
    t[..., 4:12, 4:12] = 10.0
    exact, _ = mask_terms(t[..., ::2, ::2], t, torch.zeros(2, 4), torch.zeros(2, 4))  # a coarser copy
    flipped, _ = mask_terms(-t[..., ::2, ::2], t, torch.zeros(2, 4), torch.zeros(2, 4))
    assert float(exact) < 0.2 * float(flipped)


def test_the_decoder_phase_trains_only_the_mask_decoder_and_lowers_its_loss():
    """A smaller-input student with a scrambled decoder: tuning lowers the loss on unseen images'
    prompts and leaves the encoder and prompt encoder as they were."""
    teacher = random_init_(build_sam(SPEC), seed=0, std=0.2).eval().requires_grad_(False)  # masks that vary
    student, _ = resample_model(copy.deepcopy(teacher), SPEC, 32)
    student.mask_decoder.load_state_dict(random_init_(build_sam(SPEC), seed=3).mask_decoder.state_dict())
    frozen = {k: v.clone() for k, v in student.state_dict().items() if not k.startswith("mask_decoder.")}
    s_emb, t_emb = _embeddings(teacher, student, 4)

    def loss():
        with torch.no_grad():
            return float(decoder_loss(student, teacher, s_emb, t_emb, [900, 901, 902, 903])["loss"])

    before = loss()
    distill(student, DistillSpec("decoder", steps=20, lr=1e-2, batch=2), teacher=teacher,
            source=ImageSource.procedural(count=8, size=64))
    assert loss() < 0.8 * before
    after = student.state_dict()
    assert all(torch.equal(after[k], v) for k, v in frozen.items())
    assert not torch.equal(after["mask_decoder.iou_token.weight"], teacher.mask_decoder.iou_token.weight)


def test_interior_points_sit_inside_the_teachers_best_multimask_answer():
    """The most interior pixel of the mask with the highest predicted IoU among tokens 1-3 (token 0,
    the single-mask answer, is not a candidate), in input pixels; an empty mask keeps its point."""
    logits = torch.full((3, 4, 16, 16), -5.0)
    logits[0, 1, 2:6, 2:6] = 5.0  # best for prompt 0
    logits[0, 2, 8:16, 8:16] = 5.0
    logits[1, 0, :, :] = 5.0  # token 0 only: prompt 1's best multimask answer is empty
    logits[2, 3, 0:16, 10:16] = 5.0
    iou = torch.tensor([[0.0, 0.9, 0.5, 0.1], [0.99, 0.3, 0.2, 0.1], [0.0, 0.1, 0.2, 0.3]])
    fallback = torch.tensor([[[1.0, 2.0]], [[3.0, 4.0]], [[5.0, 6.0]]])
    pts = interior_points(logits, iou, 64, fallback)
    assert pts.shape == (3, 1, 2)
    assert pts[0, 0].tolist() == [4 * 3.5, 4 * 3.5]  # pixel (3, 3) of a 4x4 block at 2..5, x4 scale, centred
    assert pts[1, 0].tolist() == [3.0, 4.0]
    x, y = pts[2, 0].tolist()
    assert 4 * 10 <= x < 64 and 0 <= y < 64 and x == 4 * (12 + 0.5) or x == 4 * (13 + 0.5)


def test_interior_prompts_add_a_third_set_that_trains(teacher, monkeypatch):
    """``prompts="random+interior"``: the teacher's answers to the random points give a third point
    set (here moved by hand: the random teacher's masks are empty, so the real function would give
    the random points back) that both models decode — the student at its own scale; the loss stays
    finite with gradients into the student's decoder; an unknown prompt set is refused."""
    from slimsam_edge.compress import decoder_tune

    student, _ = resample_model(copy.deepcopy(teacher), SPEC, 32)
    s_emb, t_emb = _embeddings(teacher, student)
    student.mask_decoder.requires_grad_(True)
    seen, decoded = [], []
    monkeypatch.setattr(decoder_tune, "interior_points",
                        lambda logits, iou, size, fallback: seen.append(logits.shape) or (fallback + 7) % size)
    real = decoder_tune.decode_all
    monkeypatch.setattr(decoder_tune, "decode_all",
                        lambda sam, emb, **kw: decoded.append((sam is student, kw)) or real(sam, emb, **kw))
    inner = decoder_loss(student, teacher, s_emb, t_emb, [5], "random+interior")
    assert seen == [(16, 4, 16, 16)]  # the teacher's answers to the image's 16 random points
    points = decoder_tune.random_points(5, 64)
    moved = (points + 7) % 64
    got = {(is_student, kind): p for is_student, kw in decoded for kind, p in kw.items()
           if kind == "points" and not torch.equal(p, points) and not torch.equal(p, points / 2)}
    assert torch.equal(got[(False, "points")], moved) and torch.equal(got[(True, "points")], moved / 2)
    assert len(decoded) == 6  # points, boxes, interior points, for each model
    assert torch.isfinite(inner["loss"])
    inner["loss"].backward()
    assert student.mask_decoder.iou_token.weight.grad is not None
    with pytest.raises(ValueError, match="random, random\\+interior"):
        decoder_loss(student, teacher, s_emb, t_emb, [5], "grid")


def test_encoder_and_decoder_learn_from_the_masks_when_asked(teacher):
    """``decoder_trains="encoder+decoder"``: the mask loss reaches the encoder (prompt in the loop);
    the prompt encoder stays as it was."""
    student, _ = resample_model(copy.deepcopy(teacher), SPEC, 32)
    before = {k: v.clone() for k, v in student.state_dict().items()}
    distill(student, DistillSpec("decoder", steps=2, lr=1e-2, batch=1, decoder_trains="encoder+decoder"),
            teacher=teacher, source=ImageSource.procedural(count=4, size=64))
    after = student.state_dict()
    changed = {k.split(".")[0] for k in after if not torch.equal(after[k], before[k])}
    assert changed == {"image_encoder", "mask_decoder"}
