"""Agreement of a reduced-precision predictor with its fp32 reference (torch-free).

Both predictors see the same held-out images and the same prompts (per annotation: its point and
its box, as in :func:`~slimsam_edge.eval.evaluate.evaluate`; images without annotations get a
3x3 grid of points). Agreement is the mean mask IoU between the two predictors' single masks;
when annotations exist, the mIoU of each against them is reported too.

Illustration (not run as a doctest: it needs files or a model)::

    ref = EdgePredictor.from_bundle("bundle/", precision="fp32")
    cand = EdgePredictor.from_bundle("bundle/", precision="int8")
    compare_predictors(ref, cand, default_eval_data(8))["agreement"]
    # -> 0.97
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator

import numpy as np

from ..errors import DataError
from .evaluate import prompt_box, prompt_point
from .metrics import MiouAccumulator, mask_iou

Prompt = dict[str, Any]


def _prompts(sample: Any, image: np.ndarray) -> Iterator[tuple[Prompt, np.ndarray | None]]:
    hw = image.shape[:2]
    anns = [a for a in getattr(sample, "annotations", []) if a.mask.shape == hw and a.mask.any()]
    for ann in anns:
        x, y = prompt_point(ann, hw)
        yield {"point_coords": np.array([[x, y]]), "point_labels": np.array([1])}, ann.mask
        yield {"box": prompt_box(ann, hw)}, ann.mask
    if not anns:
        h, w = hw
        for fy in (0.25, 0.5, 0.75):
            for fx in (0.25, 0.5, 0.75):
                yield {"point_coords": np.array([[fx * w, fy * h]]), "point_labels": np.array([1])}, None


def _image(sample: Any) -> np.ndarray:
    return sample if isinstance(sample, np.ndarray) else sample.load_image()


def compare_predictors(reference: Any, candidate: Any, samples: Iterable[Any]) -> dict[str, Any]:
    """Mask agreement of ``candidate`` with ``reference`` on ``samples`` (Samples or RGB arrays).

    Returns:
        ``agreement`` (mean mask IoU between the two), ``agreement_min``, ``agreement_p05``,
        ``embedding_rel_err`` (mean ||e_c - e_r|| / ||e_r||), ``images``, ``prompts``, and, when
        samples carry annotations, ``miou_reference`` / ``miou`` (against the annotations).

    Raises:
        DataError: no image could be compared.

    Example:
        >>> class Same:
        ...     def set_image(self, image): self.image = image
        ...     def get_image_embedding(self): return np.ones(4)
        ...     def predict(self, multimask_output, **prompt): return self.image[None, ..., 0] > 9, None, None
        >>> r = compare_predictors(Same(), Same(), [np.arange(48, dtype=np.uint8).reshape(4, 4, 3)])
        >>> r["agreement"], r["prompts"], r["miou"]
        (1.0, 9, None)
    """
    agree: list[float] = []
    emb_err: list[float] = []
    acc_ref, acc_cand = MiouAccumulator(), MiouAccumulator()
    images = 0
    for sample in samples:
        image = _image(sample)
        reference.set_image(image)
        candidate.set_image(image)
        e_r = np.asarray(reference.get_image_embedding(), np.float64)
        e_c = np.asarray(candidate.get_image_embedding(), np.float64)
        emb_err.append(float(np.linalg.norm(e_c - e_r) / max(np.linalg.norm(e_r), 1e-12)))
        gt_ref, gt_cand = [], []
        for prompt, gt in _prompts(sample, image):
            m_r = reference.predict(multimask_output=False, **prompt)[0][0]
            m_c = candidate.predict(multimask_output=False, **prompt)[0][0]
            agree.append(mask_iou(m_r, m_c))
            if gt is not None:
                gt_ref.append(mask_iou(m_r, gt))
                gt_cand.append(mask_iou(m_c, gt))
        acc_ref.add_ious(gt_ref)
        acc_cand.add_ious(gt_cand)
        images += 1
    if not agree:
        raise DataError("no held-out image to compare the reduced-precision artifact on")
    values = np.asarray(agree)
    return {
        "agreement": round(float(values.mean()), 5),
        "agreement_min": round(float(values.min()), 5),
        "agreement_p05": round(float(np.percentile(values, 5)), 5),
        "embedding_rel_err": round(float(np.mean(emb_err)), 6),
        "images": images,
        "prompts": int(values.size),
        "miou_reference": _round(acc_ref.summary()["miou"]),
        "miou": _round(acc_cand.summary()["miou"]),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 5)
