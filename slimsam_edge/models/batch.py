"""Batched torch SAM passes shared by training (reference/) and compression (compress/).

:func:`batch_loss` is one training step's forward pass: encode a batch of images, prompt masks,
decode, score. Prompts of all images are decoded in one call per prompt kind and round (the
decoder's transformer is run on per-prompt copies of the image embedding, which
segment-anything's ``MaskDecoder.forward`` cannot batch across images). :class:`BatchPredictor`
serves the same batched decoding to the one evaluator (:func:`slimsam_edge.eval.evaluate.evaluate`).

Example:
    >>> import numpy as np
    >>> from slimsam_edge.models.build import build_sam, random_init_
    >>> from slimsam_edge.models.spec import PRESETS
    >>> sam = random_init_(build_sam(PRESETS["sam_mini"]), seed=0)
    >>> image = np.zeros((256, 256, 3), np.uint8); mask = np.zeros((256, 256), bool); mask[64:128, 64:128] = True
    >>> out = batch_loss(sam, BatchRecipe(), [image], [[mask]], np.random.default_rng(0))
    >>> sorted(out), out["loss"].requires_grad
    (['dice', 'focal', 'iou', 'loss', 'train_iou'], True)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..data.prompts import corrective_point, noisy_box, random_point
from .losses import mask_losses


@dataclass(frozen=True)
class BatchRecipe:
    """What :func:`batch_loss` needs of a recipe: prompting and loss weights (SAM's by default).

    :class:`slimsam_edge.reference.recipe.Recipe` has these fields (with these defaults) among its
    own, so a training recipe is passed as is; compression's Taylor importance builds one.

    Example:
        >>> BatchRecipe().focal_weight, BatchRecipe(corrective_rounds=0).corrective_rounds
        (20.0, 0)
    """

    image_size: int = 256
    loss_size: int = 128
    masks_per_image: int = 5
    box_fraction: float = 0.4
    box_noise: float = 0.1
    corrective_rounds: int = 1
    focal_weight: float = 20.0
    dice_weight: float = 1.0
    iou_weight: float = 1.0


def preprocess(sam: Any, images: Sequence[np.ndarray]) -> torch.Tensor:
    """Normalise ``HxWx3`` uint8 RGB images of the model's input size into an NCHW float batch.

    The batch is on the model's device (that of ``sam.pixel_mean``).

    Example:
        >>> import numpy as np, torch
        >>> from types import SimpleNamespace
        >>> sam = SimpleNamespace(pixel_mean=torch.zeros(3, 1, 1), pixel_std=torch.ones(3, 1, 1))
        >>> preprocess(sam, [np.zeros((4, 4, 3), np.uint8)]).shape
        torch.Size([1, 3, 4, 4])
    """
    x = torch.from_numpy(np.stack(images)).to(sam.pixel_mean.device).permute(0, 3, 1, 2).float()
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

    Illustration (not run as a doctest: it needs files or a model)::

        logits, iou = decode(sam, emb[[0, 0]], points=(xy, labels))
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


def _tensor(values: list, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> torch.Tensor:
    return torch.as_tensor(np.asarray(values), dtype=dtype, device=device)


def interior_depth(region: torch.Tensor, max_depth: int = 64) -> torch.Tensor:
    """Chessboard distance of each pixel of ``region`` ``(N, H, W)`` to its border (the image edge
    counts as border), capped at ``max_depth``; 0 outside. Iterated 3x3 erosions, batched.

    Example:
        >>> import torch
        >>> r = torch.zeros(1, 5, 5, dtype=torch.bool); r[0, :, :] = True
        >>> interior_depth(r)[0, 2].tolist()
        [1.0, 2.0, 3.0, 2.0, 1.0]
    """
    cur = region[:, None].float()
    depth = torch.zeros_like(cur)
    for i in range(max_depth):
        depth += cur
        cur = -F.max_pool2d(-F.pad(cur, (1, 1, 1, 1), value=0.0), 3, stride=1)
        if i % 8 == 7 and not bool(cur.any()):
            break
    return depth[:, 0]


def corrective_clicks(pred: torch.Tensor, gt: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched :func:`corrective_point` in torch (for the GPU): ``(xy (N, 2), labels (N,))``.

    The larger error region of each mask gives the click (false negative → label 1, false
    positive → 0; a perfect mask → a positive click inside the truth), at a random pixel (drawn
    with ``gen``) among those at least half the region's maximal depth from its border, depth being
    the chessboard distance of :func:`interior_depth` instead of the CPU path's Euclidean one.

    Example:
        >>> import torch
        >>> gt = torch.zeros(1, 8, 8, dtype=torch.bool); gt[0, 2:6, 2:6] = True
        >>> xy, lab = corrective_clicks(torch.zeros_like(gt), gt, torch.Generator().manual_seed(0))
        >>> int(lab[0]), bool(gt[0, int(xy[0, 1]), int(xy[0, 0])])
        (1, True)
    """
    fn, fp = gt & ~pred, pred & ~gt
    n_fn, n_fp = fn.flatten(1).sum(1), fp.flatten(1).sum(1)
    perfect = (n_fn == 0) & (n_fp == 0)
    use_fn = n_fn >= n_fp
    region = torch.where(perfect[:, None, None], gt, torch.where(use_fn[:, None, None], fn, fp))
    depth = interior_depth(region)
    keep = depth >= 0.5 * depth.flatten(1).amax(1).clamp(min=1)[:, None, None]
    noise = torch.rand(keep.shape, generator=gen, device=gen.device) + 1.0  # > 0 on every kept pixel
    flat = (noise * keep).flatten(1).argmax(1)
    w = pred.shape[-1]
    xy = torch.stack([flat % w, flat // w], 1).float()
    return xy, (use_fn | perfect).long()


def batch_loss(
    sam: Any,
    recipe: BatchRecipe | Any,
    images: Sequence[np.ndarray],
    masks: Sequence[Sequence[np.ndarray]],
    rng: np.random.Generator,
    gen: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """Loss of one batch: up to ``masks_per_image`` masks per image, point or box prompts.

    Round 0: a random foreground point (loss = min over the 3 multimask outputs + the single
    output) or a noisy box (single output). Each corrective round adds a click from the error
    region of the previous single-output mask, whose low-res logits become the mask input.
    Losses are computed at ``recipe.loss_size`` (logits upsampled, targets area-downsampled).
    Returns ``loss`` (to backpropagate) and detached ``focal``, ``dice``, ``iou``, ``train_iou``.
    With a torch generator ``gen`` (on the model's device) the corrective clicks are computed on
    the device by :func:`corrective_clicks`; without one, on the CPU by :func:`corrective_point`.
    """
    size = recipe.image_size
    dev = sam.pixel_mean.device
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
    gt_full = torch.from_numpy(np.stack(gts)).to(dev)
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
                pts = (_tensor([coords[k] for k in idx], device=dev),
                       _tensor([labels[k] for k in idx], torch.int64, dev))
            bx = _tensor([boxes[k] for k in idx], device=dev) if is_box else None
            m_in = prev[is_box] if rnd > 0 else None
            low, iou_pred = decode(sam, emb[_tensor([img_idx[k] for k in idx], torch.int64, dev)], pts, bx, m_in)
            logits = upscale(low, ls_size)
            sel_idx = torch.as_tensor(idx, device=dev)
            gt = gt_all[sel_idx]
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
                pred_t = upscale(low[:, 0:1], size)[:, 0] > 0
                g = gt_full[sel_idx]
                inter = (pred_t & g).sum((1, 2)).float()
                union = (pred_t | g).sum((1, 2)).float()
                terms["acc"].append(inter / union.clamp(min=1))
            if rnd < recipe.corrective_rounds:
                prev[is_box] = low[:, 0:1].detach()
                if gen is not None:
                    xy, lab_t = corrective_clicks(pred_t, g, gen)
                    clicks = list(zip(map(tuple, xy.tolist()), lab_t.tolist()))
                else:
                    clicks = [corrective_point(p, gts[k], rng) for p, k in zip(pred_t.cpu().numpy(), idx)]
                for k, ((x, y), lab) in zip(idx, clicks):
                    coords[k] = coords[k] + [(x, y)]
                    labels[k] = labels[k] + [lab]
    n_terms = 1 + recipe.corrective_rounds
    return {
        "loss": torch.cat(terms["mask"]).sum() / (len(gts) * n_terms),
        "focal": torch.cat(terms["focal"]).mean(),
        "dice": torch.cat(terms["dice"]).mean(),
        "iou": torch.cat(terms["iou"]).mean(),
        "train_iou": torch.cat(terms["acc"]).mean(),
    }


class BatchPredictor:
    """A torch ``Sam`` behind ``set_image`` / ``predict_batch``: all prompts of an image in one decoder call.

    For the one evaluator (:func:`slimsam_edge.eval.evaluate.evaluate`) during training and
    compression: the model stays on its device, images must be square (no padding, as procedural
    data), and masks are thresholded bilinear upsamplings of the low-resolution logits to the
    image's size (:func:`upscale`). A square image of another size than the model's input (a
    ``compress --image-size`` student evaluated on the teacher's images) is resized to it
    (:func:`~slimsam_edge.models.regrid.resize_input`) and the prompts scaled with it. Use
    :class:`slimsam_edge.predictor.EdgePredictor` for images of any shape.

    Example:
        >>> import numpy as np
        >>> from slimsam_edge.models.build import build_sam, random_init_
        >>> from slimsam_edge.models.spec import PRESETS
        >>> p = BatchPredictor(random_init_(build_sam(PRESETS["sam_mini"]), seed=0).eval())
        >>> p.set_image(np.zeros((256, 256, 3), np.uint8))
        >>> masks, scores, low = p.predict_batch(points=np.array([[[10.0, 20.0]], [[30.0, 40.0]]]),
        ...                                      labels=np.ones((2, 1)), multimask_output=False)
        >>> masks.shape, scores.shape, masks.dtype
        ((2, 1, 256, 256), (2, 1), dtype('bool'))
    """

    def __init__(self, sam: Any):
        self.sam = sam
        self.size = int(sam.image_encoder.img_size)
        self.embedding: torch.Tensor | None = None
        self.image_size = self.size

    def set_image(self, image: np.ndarray) -> None:
        from ..errors import ImageError
        from .regrid import resize_input

        if image.shape[0] != image.shape[1]:
            raise ImageError(f"image is {image.shape[1]}x{image.shape[0]}; this predictor takes square images only")
        self.image_size = int(image.shape[0])
        with torch.no_grad():
            self.embedding = self.sam.image_encoder(resize_input(preprocess(self.sam, [image]), self.size))

    def predict_batch(self, points: np.ndarray | None = None, labels: np.ndarray | None = None,
                      boxes: np.ndarray | None = None, multimask_output: bool = True
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Masks ``(N, C, S, S)`` (bool), scores ``(N, C)`` and low-res logits of ``N`` prompts:
        ``points`` ``(N, P, 2)`` with ``labels`` ``(N, P)``, and/or ``boxes`` ``(N, 4)``; C is 3
        with ``multimask_output``, else 1 (SamPredictor's convention)."""
        if self.embedding is None:
            raise RuntimeError("call set_image before predict_batch")
        dev = self.sam.pixel_mean.device
        n = len(points if points is not None else boxes)  # type: ignore[arg-type]
        f = self.size / self.image_size  # prompts in the model's input frame
        pts = None if points is None else (_tensor(points, device=dev) * f, _tensor(labels, torch.int64, dev))
        bx = None if boxes is None else _tensor(boxes, device=dev) * f
        with torch.no_grad():
            low, iou = decode(self.sam, self.embedding.expand(n, -1, -1, -1), pts, bx)
            sel = slice(1, 4) if multimask_output else slice(0, 1)
            masks = upscale(low[:, sel], self.image_size) > 0
        return masks.cpu().numpy(), iou[:, sel].cpu().numpy(), low[:, sel].cpu().numpy()
