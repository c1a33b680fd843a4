"""Label-free mask-decoder tuning: the student's decoder learns the teacher's masks on its own grid.

SlimSAM's distillation aligns image embeddings and leaves the teacher's prompt encoder and mask
decoder in place. At the teacher's input size that decoder reads an embedding close to the one it
was trained on; a student of a smaller input size (``compress --image-size``) or with windowed
global attention hands it a coarser or differently built embedding (a 12x12 grid where it learned
16x16), and the masks lose detail the embedding MSE does not measure.

This phase (``compress --decoder-steps N``, distillation mode ``"decoder"``) trains the mask decoder
(with ``--decoder-trains encoder+decoder`` the image encoder too, through the decoder) on the
teacher's answers — no labels: for each image, random point prompts
(``PROMPTS_PER_IMAGE``) and the boxes around the teacher's masks for them go to both models; the
student's four low-resolution mask logits, upsampled to the teacher's low-resolution size, are pulled
toward the teacher's (binary cross-entropy against the teacher's probabilities plus a soft Dice term)
and its IoU predictions toward the teacher's (MSE). The prompts of an image are a pure function of
its index (and of the teacher), so a resumed phase sees the same prompts.

Uniform random points land on object edges and background as often as inside objects, where users
(and ``eval``) click. ``--decoder-prompts random+interior`` adds a third prompt set, still without
labels: for each random point, the most interior pixel of the teacher's best multimask answer to it
(:func:`interior_points`): a click in the middle of what the teacher segments there.

Example:
    >>> import torch
    >>> pts = random_points(7, size=64, count=3)
    >>> tuple(pts.shape), bool((pts >= 0).all() and (pts < 64).all()), torch.equal(pts, random_points(7, 64, 3))
    ((3, 1, 2), True, True)
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F

from .choices import DECODER_PROMPTS

#: random point prompts per image and step (each also gives one box prompt)
PROMPTS_PER_IMAGE = 16


def random_points(index: int, size: int, count: int = PROMPTS_PER_IMAGE) -> torch.Tensor:
    """``count`` single-point prompts ``(count, 1, 2)`` uniform over a ``size`` px input, seeded by
    the image ``index`` (the same image always gets the same prompts)."""
    gen = torch.Generator().manual_seed(int(index))
    return torch.rand(count, 1, 2, generator=gen) * size


def decode_all(sam: Any, embedding: torch.Tensor, *, points: torch.Tensor | None = None,
               boxes: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """All four mask tokens' low-resolution logits ``(N, 4, h, w)`` and IoU predictions ``(N, 4)``
    of ``N`` prompts (positive points ``(N, 1, 2)`` or boxes ``(N, 4)``, input pixels) on one image's
    ``embedding`` ``(1, C, g, g)``."""
    labels = None if points is None else torch.ones(points.shape[:2], device=points.device)
    sparse, dense = sam.prompt_encoder(points=None if points is None else (points, labels), boxes=boxes, masks=None)
    return sam.mask_decoder.predict_masks(image_embeddings=embedding, image_pe=sam.prompt_encoder.get_dense_pe(),
                                          sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense)


def interior_points(logits: torch.Tensor, iou: torch.Tensor, size: int, fallback: torch.Tensor) -> torch.Tensor:
    """One point ``(N, 1, 2)`` (``size`` px input coordinates) per prompt: the most interior pixel
    (:func:`~slimsam_edge.data.prompts.point_inside_mask`) of the multimask answer (tokens 1-3 of
    low-resolution logits ``(N, 4, h, w)``) with the highest predicted IoU; ``fallback`` ``(N, 1, 2)``
    where that mask is empty.

    Example:
        >>> m = torch.full((1, 4, 8, 8), -1.0); m[0, 2, 4:8, 0:4] = 1.0
        >>> interior_points(m, torch.tensor([[0.0, 0.1, 0.9, 0.2]]), 16, torch.zeros(1, 1, 2)).tolist()
        [[[3.0, 11.0]]]
    """
    from ..data.prompts import point_inside_mask

    best = 1 + iou[:, 1:].argmax(1)
    masks = (logits[torch.arange(logits.shape[0]), best] > 0).cpu().numpy()
    h, w = masks.shape[-2:]
    out = fallback.detach().clone().cpu()
    for i, m in enumerate(masks):
        if m.any():
            x, y = point_inside_mask(m)
            out[i, 0] = torch.tensor([(x + 0.5) * size / w, (y + 0.5) * size / h])
    return out.to(fallback.device)


def boxes_around(logits: torch.Tensor, size: int) -> torch.Tensor:
    """Boxes ``(N, 4)`` (x0, y0, x1, y1 in ``size`` px input coordinates) around the positive pixels of
    low-resolution mask logits ``(N, h, w)``; an empty mask gives the whole input.

    Example:
        >>> m = torch.full((2, 4, 4), -1.0); m[0, 1:3, 2] = 1.0
        >>> boxes_around(m, 8).tolist()
        [[4.0, 2.0, 6.0, 6.0], [0.0, 0.0, 8.0, 8.0]]
    """
    on = logits > 0
    n, h, w = on.shape
    rows, cols = on.any(2), on.any(1)
    first = lambda a: a.float().argmax(1)  # noqa: E731 - index of the first True
    last = lambda a: a.shape[1] - 1 - a.flip(1).float().argmax(1)  # noqa: E731
    y0, y1, x0, x1 = first(rows), last(rows) + 1, first(cols), last(cols) + 1
    box = torch.stack([x0 * size / w, y0 * size / h, x1 * size / w, y1 * size / h], 1).float()
    whole = torch.tensor([0.0, 0.0, float(size), float(size)], device=logits.device)
    return torch.where(rows.any(1)[:, None], box, whole)


def mask_terms(s_masks: torch.Tensor, t_masks: torch.Tensor, s_iou: torch.Tensor,
               t_iou: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mask, iou)`` losses: the student's logits upsampled (bilinear) to the teacher's size, BCE
    against the teacher's probabilities + soft Dice; MSE between IoU predictions.

    Example:
        >>> t = torch.full((1, 4, 8, 8), -20.0); t[..., 2:6, 2:6] = 20.0
        >>> good, bad = mask_terms(t[..., ::2, ::2], t, torch.zeros(1, 4), torch.zeros(1, 4)), mask_terms(-t, t, torch.zeros(1, 4), torch.ones(1, 4))
        >>> bool(good[0] < 0.5 < bad[0]), float(good[1]), float(bad[1])
        (True, 0.0, 1.0)
    """
    s = F.interpolate(s_masks.float(), size=t_masks.shape[-2:], mode="bilinear", align_corners=False)
    target = torch.sigmoid(t_masks.float())
    bce = F.binary_cross_entropy_with_logits(s, target)
    p = torch.sigmoid(s)
    dice = 1 - (2 * (p * target).sum((-1, -2)) + 1) / (p.sum((-1, -2)) + target.sum((-1, -2)) + 1)
    return bce + dice.mean(), F.mse_loss(s_iou.float(), t_iou.float())


def decoder_loss(student: Any, teacher: Any, s_emb: torch.Tensor, t_emb: torch.Tensor,
                 indices: Sequence[int], prompts: str = "random") -> dict[str, torch.Tensor]:
    """``{"loss", "mask", "iou"}`` of one micro-batch: per image (embeddings ``(B, C, g, g)`` of
    both models, ``indices`` seeding its prompts) the point prompts and the boxes around the
    teacher's single-mask answers (``prompts="random+interior"``: and :func:`interior_points`),
    each set weighted alike, averaged over images. Gradients reach only what of ``student``
    requires them (its mask decoder in the ``"decoder"`` phase)."""
    if prompts not in DECODER_PROMPTS:
        raise ValueError(f"unknown decoder prompts {prompts!r}; choose one of: {', '.join(DECODER_PROMPTS)}")
    t_size, s_size = teacher.image_encoder.img_size, student.image_encoder.img_size
    scale = s_size / t_size
    mask_sum = iou_sum = torch.zeros((), device=s_emb.device)
    for i, index in enumerate(indices):
        points = random_points(index, t_size).to(s_emb.device)
        with torch.no_grad():
            tp_masks, tp_iou = decode_all(teacher, t_emb[i:i + 1].float(), points=points)
            sets = [("points", points, tp_masks, tp_iou)]
            boxes = boxes_around(tp_masks[:, 0], t_size)
            sets.append(("boxes", boxes, *decode_all(teacher, t_emb[i:i + 1].float(), boxes=boxes)))
            if prompts == "random+interior":
                inner = interior_points(tp_masks, tp_iou, t_size, points)
                sets.append(("points", inner, *decode_all(teacher, t_emb[i:i + 1].float(), points=inner)))
        for kind, prompt, t_masks, t_iou in sets:
            s_masks, s_iou = decode_all(student, s_emb[i:i + 1], **{kind: prompt * scale})
            terms = mask_terms(s_masks, t_masks, s_iou, t_iou)
            mask_sum, iou_sum = mask_sum + terms[0] / len(sets), iou_sum + terms[1] / len(sets)
    mask, iou = mask_sum / len(indices), iou_sum / len(indices)
    return {"loss": mask + iou, "mask": mask.detach(), "iou": iou.detach()}
