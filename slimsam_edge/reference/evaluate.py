"""Held-out evaluation of a SAM-family torch model on procedural images.

Point mIoU: one point per mask, the most interior pixel (:func:`point_inside_mask`, the
annotation's stored point), single-mask output. Box mIoU: the mask's tight box, single output.
``point_multi`` is also reported: one point, the multimask output with the highest predicted IoU.
:func:`evaluate_model` batches prompts on a torch ``Sam``; :func:`evaluate_predictor` runs the same
protocol through the ``SamPredictor`` API of any backend (torch is imported only by the former).
mIoU is SlimSAM's (per-image mean, then mean over images; see :class:`MiouAccumulator`).

Example:
    >>> res = evaluate_model(sam, n_images=32, seed=1001)    # doctest: +SKIP
    >>> res["point"]["miou"], res["box"]["miou"]              # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import numpy as np

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
                pts = torch.tensor([a.point_coords[0] for a in s.annotations], dtype=torch.float32)[:, None]
                lab = torch.ones(len(gts), 1, dtype=torch.int64)
                low, iou = decode(sam, e, points=(pts, lab))
                masks = (upscale(low, size) > 0).numpy()
                accs["point"].add_image(list(masks[:, 0]), gts)
                best = iou[:, 1:].argmax(1).numpy() + 1
                accs["point_multi"].add_image([masks[n, b] for n, b in enumerate(best)], gts)
                boxes = torch.tensor([a.bbox_xyxy for a in s.annotations], dtype=torch.float32)
                low, _ = decode(sam, e, boxes=boxes)
                accs["box"].add_image(list((upscale(low, size) > 0).numpy()[:, 0]), gts)
    sam.train(was_training)
    out: dict[str, Any] = {k: a.summary() for k, a in accs.items()}
    out.update(n_images=n_images, n_masks=n_masks, seed=seed)
    return out


def evaluate_predictor(
    predictor: Any, *, n_images: int = 32, seed: int = 1001, size: int = 256, corrective: int = 0
) -> dict[str, Any]:
    """The same metrics through the ``SamPredictor`` API (any backend; torch-free here).

    ``predictor`` is e.g. ``EdgePredictor.from_model(sam)`` or ``EdgePredictor.from_bundle``;
    one prompt per call, single-mask output. With ``corrective=k`` also reports ``point+k``:
    the point prompt followed by ``k`` deterministic corrective clicks (previous low-res logits
    as mask input).

    Example:
        >>> from slimsam_edge.predictor import EdgePredictor                 # doctest: +SKIP
        >>> evaluate_predictor(EdgePredictor.from_model(sam))["box"]["miou"]  # doctest: +SKIP
    """
    from .prompts import corrective_point

    if n_images < 1:
        raise UsageError(f"n_images must be >= 1, got {n_images}")
    keys = ["point", "box"] + ([f"point+{corrective}"] if corrective else [])
    accs = {k: MiouAccumulator() for k in keys}
    n_masks = 0
    for i in range(n_images):
        s = procedural_sample(seed, i, size)
        predictor.set_image(s.image)
        gts = [a.mask for a in s.annotations]
        n_masks += len(gts)
        preds: dict[str, list[np.ndarray]] = {k: [] for k in keys}
        for a in s.annotations:
            pts, labels = [list(a.point_coords[0])], [1]
            masks, _, low = predictor.predict(point_coords=np.array(pts, np.float32),
                                              point_labels=np.array(labels), multimask_output=False)
            preds["point"].append(masks[0])
            for _ in range(corrective):
                (x, y), lab = corrective_point(masks[0], a.mask)
                pts.append([x, y])
                labels.append(lab)
                masks, _, low = predictor.predict(point_coords=np.array(pts, np.float32),
                                                  point_labels=np.array(labels), mask_input=low[:1],
                                                  multimask_output=False)
            if corrective:
                preds[f"point+{corrective}"].append(masks[0])
            masks, _, _ = predictor.predict(box=np.array(a.bbox_xyxy, np.float32), multimask_output=False)
            preds["box"].append(masks[0])
        for k in keys:
            accs[k].add_image(preds[k], gts)
    out: dict[str, Any] = {k: a.summary() for k, a in accs.items()}
    out.update(n_images=n_images, n_masks=n_masks, seed=seed)
    return out
