"""Held-out evaluation of a SAM-family torch model on procedural images.

Point mIoU: one point per mask, the most interior pixel (:func:`point_inside_mask`, the
annotation's stored point), single-mask output. Box mIoU: the mask's tight box, single output.
``point_multi`` is also reported: one point, the multimask output with the highest predicted IoU.
:func:`evaluate_model` batches prompts on a torch ``Sam`` (training-time evaluation); the same
protocol through the ``SamPredictor`` API of any backend is :func:`slimsam_edge.eval.evaluate.evaluate`.
mIoU is SlimSAM's (per-image mean, then mean over images; see :class:`MiouAccumulator`).

Example:
    >>> res = evaluate_model(sam, n_images=32, seed=1001)    # doctest: +SKIP
    >>> res["point"]["miou"], res["box"]["miou"]              # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from ..data.procedural import procedural_sample
from ..errors import UsageError
from ..eval.metrics import MiouAccumulator


def evaluate_model(
    sam: Any, *, n_images: int = 32, seed: int = 1001, size: int = 256, batch: int = 8
) -> dict[str, Any]:
    """mIoU of ``sam`` on procedural images ``0..n_images-1`` of ``seed``.

    Returns ``{"point": summary, "box": summary, "point_multi": summary, "n_images",
    "n_masks", "seed"}`` where each summary is :meth:`MiouAccumulator.summary`.

    Example:
        >>> evaluate_model(sam, n_images=4)["n_images"]          # doctest: +SKIP
        4
    """
    import torch

    from .batch import decode, preprocess, upscale

    if n_images < 1:
        raise UsageError(f"n_images must be >= 1, got {n_images}")
    if size != sam.image_encoder.img_size:
        raise UsageError(f"image size {size} differs from the model's input {sam.image_encoder.img_size}")
    accs = {k: MiouAccumulator() for k in ("point", "box", "point_multi")}
    dev = sam.pixel_mean.device
    was_training = sam.training
    sam.eval()
    n_masks = 0
    with torch.no_grad():
        for start in range(0, n_images, batch):
            samples = [procedural_sample(seed, i, size) for i in range(start, min(n_images, start + batch))]
            emb = sam.image_encoder(preprocess(sam, [s.image for s in samples]))
            for i, s in enumerate(samples):
                gts = [a.mask for a in s.annotations]
                n_masks += len(gts)
                e = emb[i : i + 1].expand(len(gts), -1, -1, -1)
                pts = torch.tensor([a.point_coords[0] for a in s.annotations], dtype=torch.float32, device=dev)[:, None]
                lab = torch.ones(len(gts), 1, dtype=torch.int64, device=dev)
                low, iou = decode(sam, e, points=(pts, lab))
                masks = (upscale(low, size) > 0).cpu().numpy()
                accs["point"].add_image(list(masks[:, 0]), gts)
                best = iou[:, 1:].argmax(1).cpu().numpy() + 1
                accs["point_multi"].add_image([masks[n, b] for n, b in enumerate(best)], gts)
                boxes = torch.tensor([a.bbox_xyxy for a in s.annotations], dtype=torch.float32, device=dev)
                low, _ = decode(sam, e, boxes=boxes)
                accs["box"].add_image(list((upscale(low, size) > 0).cpu().numpy()[:, 0]), gts)
    sam.train(was_training)
    out: dict[str, Any] = {k: a.summary() for k, a in accs.items()}
    out.update(n_images=n_images, n_masks=n_masks, seed=seed)
    return out

