"""One training step's forward pass: encode a batch of images, prompt masks, decode, score.

Prompts of all images are decoded in one call per prompt kind and round (the decoder's
transformer is run on per-prompt copies of the image embedding, which segment-anything's
``MaskDecoder.forward`` cannot batch across images).

Example:
    >>> from slimsam_edge.models.build import build_sam            # doctest: +SKIP
    >>> from slimsam_edge.reference.recipe import Recipe           # doctest: +SKIP
    >>> out = batch_loss(build_sam(spec).train(), Recipe(), images, masks, rng)  # doctest: +SKIP
    >>> out["loss"].backward()                                     # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .losses import mask_losses
from .prompts import corrective_point, noisy_box, random_point
from .recipe import Recipe


def preprocess(sam: Any, images: Sequence[np.ndarray]) -> torch.Tensor:
    """Normalise ``HxWx3`` uint8 RGB images of the model's input size into an NCHW float batch.

    Example:
        >>> import numpy as np, torch
        >>> from types import SimpleNamespace
        >>> sam = SimpleNamespace(pixel_mean=torch.zeros(3, 1, 1), pixel_std=torch.ones(3, 1, 1))
        >>> preprocess(sam, [np.zeros((4, 4, 3), np.uint8)]).shape
        torch.Size([1, 3, 4, 4])
    """
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float()
    return (x - sam.pixel_mean.view(1, 3, 1, 1)) / sam.pixel_std.view(1, 3, 1, 1)


def decode(
    sam: Any,
    embeddings: torch.Tensor,
    points: tuple[torch.Tensor, torch.Tensor] | None = None,
    boxes: torch.Tensor | None = None,
    mask_input: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """All mask tokens' low-res logits ``(N, 4, 4g, 4g)`` and IoU predictions ``(N, 4)``.

    ``embeddings`` holds one image embedding per prompt ``(N, C, g, g)``; output 0 is SAM's
    single-mask output, outputs 1..3 its multimask outputs.

    Example:
        >>> logits, iou = decode(sam, emb[[0, 0]], points=(xy, labels))  # doctest: +SKIP
    """
    sparse, dense = sam.prompt_encoder(points=points, boxes=boxes, masks=mask_input)
    dec = sam.mask_decoder
    n = sparse.shape[0]
    out_tokens = torch.cat([dec.iou_token.weight, dec.mask_tokens.weight], 0)
    tokens = torch.cat([out_tokens.unsqueeze(0).expand(n, -1, -1), sparse], 1)
    src = embeddings + dense
    pos = sam.prompt_encoder.get_dense_pe().expand(n, -1, -1, -1)
    b, c, h, w = src.shape
    hs, src = dec.transformer(src, pos, tokens)
    iou_out, mask_out = hs[:, 0], hs[:, 1 : 1 + dec.num_mask_tokens]
    up = dec.output_upscaling(src.transpose(1, 2).reshape(b, c, h, w))
    hyper = torch.stack([mlp(mask_out[:, i]) for i, mlp in enumerate(dec.output_hypernetworks_mlps)], 1)
    b, c, h, w = up.shape
    masks = (hyper @ up.view(b, c, h * w)).view(b, -1, h, w)
    return masks, dec.iou_prediction_head(iou_out)


def upscale(low_res: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear upsampling of low-res logits to the image size (SAM's postprocessing)."""
    return F.interpolate(low_res, (size, size), mode="bilinear", align_corners=False)


def _tensor(values: list, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.as_tensor(np.asarray(values), dtype=dtype)


def batch_loss(
    sam: Any,
    recipe: Recipe,
    images: Sequence[np.ndarray],
    masks: Sequence[Sequence[np.ndarray]],
    rng: np.random.Generator,
) -> dict[str, torch.Tensor]:
    """Loss of one batch: up to ``masks_per_image`` masks per image, point or box prompts.

    Round 0: a random foreground point (loss = min over the 3 multimask outputs + the single
    output) or a noisy box (single output). Each corrective round adds a click from the error
    region of the previous single-output mask, whose low-res logits become the mask input.
    Losses are computed at ``recipe.loss_size`` (logits upsampled, targets area-downsampled).
    Returns ``loss`` (to backpropagate) and detached ``focal``, ``dice``, ``iou``, ``train_iou``.
    """
    size = recipe.image_size
    emb = sam.image_encoder(preprocess(sam, images))
    img_idx, gts, kinds, coords, labels, boxes = [], [], [], [], [], []
    for i, image_masks in enumerate(masks):
        chosen = rng.permutation(len(image_masks))[: recipe.masks_per_image]
        for j in chosen:
            m = image_masks[int(j)]
            img_idx.append(i)
            gts.append(m)
            is_box = bool(rng.random() < recipe.box_fraction)
            kinds.append(is_box)
            coords.append([] if is_box else [random_point(m, rng)])
            labels.append([] if is_box else [1])
            boxes.append(noisy_box(m, rng, recipe.box_noise) if is_box else None)
    groups = [np.flatnonzero(~np.array(kinds)), np.flatnonzero(np.array(kinds))]
    gt_full = torch.from_numpy(np.stack(gts))
    ls_size = min(recipe.loss_size, size)
    gt_all = gt_full.float()[:, None]
    gt_all = (F.interpolate(gt_all, (ls_size, ls_size), mode="area") if ls_size != size else gt_all)[:, 0]
    terms: dict[str, list[torch.Tensor]] = {"mask": [], "focal": [], "dice": [], "iou": [], "acc": []}
    prev: dict[int, torch.Tensor] = {}
    for rnd in range(1 + recipe.corrective_rounds):
        for is_box, idx in enumerate(groups):
            if len(idx) == 0:
                continue
            pts = None
            if coords[idx[0]]:
                pts = (_tensor([coords[k] for k in idx]), _tensor([labels[k] for k in idx], torch.int64))
            bx = _tensor([boxes[k] for k in idx]) if is_box else None
            m_in = prev[is_box] if rnd > 0 else None
            low, iou_pred = decode(sam, emb[_tensor([img_idx[k] for k in idx], torch.int64)], pts, bx, m_in)
            logits = upscale(low, ls_size)
            gt = gt_all[torch.as_tensor(idx)]
            sel = slice(0, 4) if (rnd == 0 and not is_box) else slice(0, 1)
            ls = mask_losses(logits[:, sel], gt, iou_pred[:, sel], focal_weight=recipe.focal_weight,
                             dice_weight=recipe.dice_weight, iou_weight=recipe.iou_weight)
            if sel.stop == 4:  # SAM: only the best multimask output gets the mask loss
                best = ls["mask"][:, 1:].argmin(1, keepdim=True) + 1
                pick = lambda t: t[:, 0] + t.gather(1, best)[:, 0]  # noqa: E731
                mask_l, iou_l = pick(ls["mask"]), ls["iou"].mean(1) * 2
                focal_l, dice_l = pick(ls["focal"]) / 2, pick(ls["dice"]) / 2
            else:
                mask_l, iou_l, focal_l, dice_l = (ls[k][:, 0] for k in ("mask", "iou", "focal", "dice"))
            terms["mask"].append(mask_l + iou_l)
            terms["focal"].append(focal_l.detach())
            terms["dice"].append(dice_l.detach())
            terms["iou"].append(iou_l.detach())
            with torch.no_grad():
                pred = (upscale(low[:, 0:1], size)[:, 0] > 0).numpy()
                g = gt_full[torch.as_tensor(idx)].numpy()
                inter = (pred & g).sum((1, 2))
                union = (pred | g).sum((1, 2))
                terms["acc"].append(torch.as_tensor(inter / np.maximum(union, 1)))
            if rnd < recipe.corrective_rounds:
                prev[is_box] = low[:, 0:1].detach()
                for n, k in enumerate(idx):
                    (x, y), lab = corrective_point(pred[n], gts[k], rng)
                    coords[k] = coords[k] + [(x, y)]
                    labels[k] = labels[k] + [lab]
    n_terms = 1 + recipe.corrective_rounds
    return {
        "loss": torch.cat(terms["mask"]).sum() / (len(gts) * n_terms),
        "focal": torch.cat(terms["focal"]).mean(),
        "dice": torch.cat(terms["dice"]).mean(),
        "iou": torch.cat(terms["iou"]).mean(),
        "train_iou": torch.cat(terms["acc"]).float().mean(),
    }
