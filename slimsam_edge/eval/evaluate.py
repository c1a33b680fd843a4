"""SlimSAM's mIoU evaluation of a predictor on labelled data (torch-free at import).

Protocol (SlimSAM): one prompt per annotation, a single mask per prompt
(``multimask_output=False``), the IoU of each annotation averaged within its image, then the
per-image means averaged over images (:class:`~slimsam_edge.eval.metrics.MiouAccumulator`).

* point prompt: the annotation's first SA-1B ``point_coords`` when present and inside the image,
  else :func:`~slimsam_edge.data.prompts.point_inside_mask` (deterministic);
* box prompt: the annotation's ``bbox_xyxy`` clipped to the image (the mask's tight box when that
  is degenerate).

A predictor with ``predict_batch`` (:class:`slimsam_edge.models.batch.BatchPredictor`, a torch
model during training and compression: :func:`evaluate_sam`) gets all prompts of an image in one
call; any other predictor one ``predict`` per prompt. The protocol and the numbers are the same.

Illustration (not run as a doctest: it needs files or a model)::

    predictor, about = open_model("bundle/")
    result = evaluate(predictor, default_eval_data(8), prompt="both")
    result["point"]["miou"], result["box"]["miou"]
    # -> (0.71, 0.83)
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

import numpy as np

from ..data.records import SkipReport
from ..errors import CheckpointError, DataError, ImageError, UsageError
from ..data.prompts import point_inside_mask
from .metrics import MiouAccumulator, mask_iou

if TYPE_CHECKING:  # pragma: no cover
    from ..data.records import Annotation, Sample
    from ..predictor import EdgePredictor

#: Seed of the held-out procedural set (training data uses other seeds).
HELDOUT_SEED = 1001
#: procedural seed of the model card's test split, which no training or selection may see
TEST_SEED = 2002
#: procedural seed used for nothing but the model card's "what to expect" line
UNSEEN_SEED = 7777
DEFAULT_EVAL_SIZE = 256
DEFAULT_EVAL_COUNT = 64
PROMPTS = ("point", "box", "both")

Progress = Callable[[int, "int | None"], None]


class ProceduralEvalData:
    """Procedural samples served like a data reader: iterable of ``Sample``, ``len``, ``skipped``.

    Example:
        >>> data = ProceduralEvalData(2, seed=HELDOUT_SEED, size=64)
        >>> len(data), data.layout, [s.image_id for s in data]
        (2, 'procedural', ['proc_1001_000000', 'proc_1001_000001'])
    """

    layout = "procedural"

    def __init__(self, count: int = DEFAULT_EVAL_COUNT, seed: int = HELDOUT_SEED,
                 size: int | tuple[int, int] = DEFAULT_EVAL_SIZE):
        from ..data.procedural import ProceduralDataset

        self.dataset = ProceduralDataset(count, seed=seed, size=size)
        self.seed, self.size = seed, size
        self.report = SkipReport(source=f"procedural seed {seed}")
        self.root = f"procedural:seed={seed},count={count},size={size}"

    def __len__(self) -> int:
        return len(self.dataset)

    def __iter__(self) -> Iterator["Sample"]:
        self.report.reset()
        for i in range(len(self.dataset)):
            yield self.dataset[i]

    @property
    def skipped(self) -> dict[str, int]:
        """Skip counts per reason, for the latest pass."""
        return dict(self.report.counts)


def default_eval_data(count: int = DEFAULT_EVAL_COUNT, *, seed: int = HELDOUT_SEED,
                      size: int = DEFAULT_EVAL_SIZE) -> ProceduralEvalData:
    """The data evaluated when none is given: ``count`` held-out procedural images.

    Example:
        >>> data = default_eval_data(3, size=64)
        >>> len(data), next(iter(data)).image.shape
        (3, (64, 64, 3))
    """
    if count < 1:
        raise UsageError(f"count must be >= 1, got {count}")
    return ProceduralEvalData(count, seed=seed, size=size)


def prompt_point(ann: "Annotation", hw: tuple[int, int]) -> tuple[float, float]:
    """The point prompt of an annotation: its first SA-1B point if inside the image, else the
    deterministic :func:`point_inside_mask`.

    Example:
        >>> from slimsam_edge.data.records import Annotation
        >>> m = np.zeros((9, 9), bool); m[2:7, 1:8] = True
        >>> prompt_point(Annotation(m, (1, 2, 8, 7)), (9, 9))
        (4.0, 4.0)
        >>> prompt_point(Annotation(m, (1, 2, 8, 7), point_coords=[(3, 5)]), (9, 9))
        (3.0, 5.0)
    """
    h, w = hw
    if ann.point_coords:
        x, y = ann.point_coords[0]
        if np.isfinite(x) and np.isfinite(y) and 0 <= x <= w and 0 <= y <= h:
            return (float(x), float(y))
    return point_inside_mask(ann.mask)


def prompt_box(ann: "Annotation", hw: tuple[int, int]) -> np.ndarray:
    """The box prompt of an annotation: ``bbox_xyxy`` clipped to the image (the mask's tight box,
    ``x1 = x_max + 1``, when the stored box is degenerate).

    Example:
        >>> from slimsam_edge.data.records import Annotation
        >>> m = np.zeros((8, 8), bool); m[2:4, 3:6] = True
        >>> prompt_box(Annotation(m, (3, 2, 6, 4)), (8, 8)).tolist()
        [3.0, 2.0, 6.0, 4.0]
        >>> prompt_box(Annotation(m, (3, 2, 3, 2)), (8, 8)).tolist()
        [3.0, 2.0, 6.0, 4.0]
    """
    h, w = hw
    b = np.asarray(ann.bbox_xyxy, dtype=np.float64)
    b = np.clip(np.nan_to_num(b, nan=-1.0), 0, [w, h, w, h])
    if not (b[2] > b[0] and b[3] > b[1]):
        ys, xs = np.nonzero(ann.mask)
        b = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float64)
    return b


def evaluate(
    predictor: "EdgePredictor",
    samples: Iterable["Sample"],
    *,
    prompt: str = "point",
    limit: int | None = None,
    progress: Progress | None = None,
    point_multi: bool = False,
) -> dict:
    """Evaluate ``predictor`` on ``samples`` with SlimSAM's single-prompt, single-mask protocol.

    Arguments:
        predictor: an :class:`~slimsam_edge.predictor.EdgePredictor` (or anything with
            ``set_image`` and ``predict`` of ``SamPredictor``).
        samples: a reader from :func:`~slimsam_edge.data.auto.open_labelled`,
            :func:`default_eval_data`, or any iterable of ``Sample``.
        prompt: "point", "box", or "both" (one embedding per image, both prompt kinds).
        limit: evaluate at most this many images.
        progress: called as ``progress(done, total)`` after each image (``total`` may be None).
        point_multi: also score the point prompt's multimask output with the highest predicted
            IoU (key ``point_multi``), as training logs do.

    Returns:
        ``{"prompt", "point", "box", "n_images", "n_annotations", "skipped", "seconds"}``;
        ``point`` / ``box`` are :meth:`MiouAccumulator.summary` dicts, ``None`` when not asked.
        Images that cannot be decoded are skipped and counted in ``skipped`` (by reason).

    Raises:
        DataError: when no image with annotations could be evaluated.

    Example:
        >>> data = default_eval_data(2, size=64)
        >>> class Oracle:  # answers a point with the ground-truth mask under it
        ...     def set_image(self, image):
        ...         self.masks = next(s.masks for s in data if np.array_equal(s.image, image))
        ...     def predict(self, point_coords, point_labels, multimask_output):
        ...         x, y = point_coords[0].astype(int)
        ...         return np.stack([next(m for m in self.masks if m[y, x])]), None, None
        >>> r = evaluate(Oracle(), data, prompt="point")
        >>> r["point"]["miou"], r["n_images"], r["box"]
        (1.0, 2, None)
    """
    if prompt not in PROMPTS:
        raise UsageError(f"prompt must be one of {', '.join(PROMPTS)}, not {prompt!r}")
    if limit is not None and limit < 1:
        raise UsageError(f"limit must be >= 1, got {limit}")
    kinds = (("point", "box") if prompt == "both" else (prompt,)) + (("point_multi",) if point_multi else ())
    accs = {k: MiouAccumulator() for k in kinds}
    report = getattr(samples, "report", None)  # the reader's, so skips count in one place
    report = report if isinstance(report, SkipReport) else None
    skips = report or SkipReport(source=str(getattr(samples, "root", "")))
    n = len(samples) if hasattr(samples, "__len__") else None  # type: ignore[arg-type]
    total = n if limit is None else (limit if n is None else min(n, limit))
    t0 = time.perf_counter()
    done = 0
    for sample in samples:
        done += 1
        try:
            image = sample.load_image()
        except (ImageError, DataError) as err:
            skips.skip("bad_image", sample.image_path or sample.image_id, str(err))
        else:
            _evaluate_image(predictor, sample, image, kinds, accs, skips)
        if progress is not None:
            progress(done, total)
        if limit is not None and done >= limit:
            break
    if progress is not None:
        progress(done, done)
    seconds = time.perf_counter() - t0
    skipped = dict(getattr(samples, "skipped", None) or {})
    if report is None:  # our own skips are not in the reader's counts
        for reason, n in skips.counts.items():
            skipped[reason] = skipped.get(reason, 0) + n
    first = accs[kinds[0]]
    if first.n_images == 0:
        where = getattr(samples, "root", None)
        what = f" in {where}" if where else ""
        detail = ", ".join(f"{n} {r}" for r, n in sorted(skipped.items())) or "none"
        raise DataError(
            f"no image with annotations to evaluate{what} (skipped: {detail}); "
            "pass a folder of SA-1B pairs or a COCO instances file with masks"
        )
    return {
        "prompt": prompt,
        "point": accs["point"].summary() if "point" in accs else None,
        "box": accs["box"].summary() if "box" in accs else None,
        **({"point_multi": accs["point_multi"].summary()} if point_multi else {}),
        "n_images": first.n_images,
        "n_annotations": first.n_annotations,
        "skipped": skipped,
        "seconds": seconds,
    }


def evaluate_sam(sam: Any, *, n_images: int = 32, seed: int = HELDOUT_SEED, size: int = DEFAULT_EVAL_SIZE,
                 point_multi: bool = False) -> dict:
    """:func:`evaluate` of a torch ``Sam`` (on its device, in eval mode, prompts of each image batched)
    on ``n_images`` procedural images of ``seed``, both prompt kinds: training-time selection and
    compression reports. The images are rendered at ``size``; a model of another input size (a
    ``compress --image-size`` student) gets them resized and answers at ``size``.

    Example:
        >>> from slimsam_edge.models.build import build_sam, random_init_
        >>> from slimsam_edge.models.spec import PRESETS
        >>> sam = random_init_(build_sam(PRESETS["sam_mini"]), seed=0).train()
        >>> r = evaluate_sam(sam, n_images=1, point_multi=True)
        >>> r["n_images"], sorted(k for k in ("point", "box", "point_multi") if r[k]), sam.training
        (1, ['box', 'point', 'point_multi'], True)
    """
    from ..models.batch import BatchPredictor

    data = default_eval_data(n_images, seed=seed, size=size)
    was_training = sam.training
    sam.eval()
    try:
        return evaluate(BatchPredictor(sam), data, prompt="both", point_multi=point_multi)
    finally:
        sam.train(was_training)


def _evaluate_image(predictor: Any, sample: "Sample", image: np.ndarray, kinds: tuple[str, ...],
                    accs: dict[str, MiouAccumulator], skips: Any) -> None:
    hw = (int(image.shape[0]), int(image.shape[1]))
    anns = []
    for i, ann in enumerate(sample.annotations):
        mask = ann.mask
        if mask.shape != hw:
            skips.skip("size_mismatch", f"{sample.image_id} annotation #{i}",
                       f"mask {mask.shape} differs from image {hw}")
        elif mask.any():
            anns.append(ann)
    if not anns:
        skips.skip("empty_annotations", sample.image_path or sample.image_id, "no usable annotation")
        return
    predictor.set_image(image)
    areas = [float(a.area) if a.area > 0 else float(np.count_nonzero(a.mask)) for a in anns]
    for kind in kinds:
        masks = _masks(predictor, kind, anns, hw)
        accs[kind].add_ious([mask_iou(m, ann.mask) for m, ann in zip(masks, anns)], areas)


def _masks(predictor: Any, kind: str, anns: list, hw: tuple[int, int]) -> list[np.ndarray]:
    """One predicted mask per annotation for prompt ``kind`` (``point_multi``: the point's multimask
    output with the highest predicted IoU)."""
    multi = kind == "point_multi"
    if kind == "box":
        boxes = [prompt_box(ann, hw) for ann in anns]
        prompts = [{"box": b} for b in boxes]
        batch = {"boxes": np.stack(boxes)}
    else:
        points = [np.array([prompt_point(ann, hw)]) for ann in anns]
        prompts = [{"point_coords": p, "point_labels": np.array([1])} for p in points]
        batch = {"points": np.stack(points), "labels": np.ones((len(points), 1))}
    if hasattr(predictor, "predict_batch"):
        masks, scores, _ = predictor.predict_batch(**batch, multimask_output=multi)
        outputs = list(zip(masks, scores if multi else [None] * len(masks)))
    else:
        outputs = [predictor.predict(**p, multimask_output=multi)[:2] for p in prompts]
    return [m[int(np.argmax(s))] if multi else m[0] for m, s in outputs]


def open_model(
    model_or_bundle: Path | str,
    *,
    backend: str | None = None,
    precision: str | None = None,
    threads: int | None = None,
    model_type: str | None = None,
    trust_pickle: bool = False,
    decoder_precision: str | None = None,
) -> tuple["EdgePredictor", dict]:
    """Open a bundle folder (with ``manifest.json``) or a PyTorch checkpoint as an EdgePredictor.

    A checkpoint runs in PyTorch (needs the ``export`` extra) and accepts only ``backend`` None or
    "torch", precision fp32/bf16 and no ``decoder_precision``; export a bundle to evaluate other
    runtimes. A bundle's ``decoder_precision`` is :meth:`EdgePredictor.from_bundle`'s.

    Returns:
        ``(predictor, description)``; the description says what was opened (``kind``, ``path``,
        ``model``, ``backend``, ``precision``, ``threads``; a bundle's ``decoder_precision`` too).

    Illustration (not run as a doctest: it needs files or a model)::

        p, about = open_model("bundle/", backend="onnxruntime")
        about["kind"], about["backend"]
        # -> ('bundle', 'onnxruntime')
    """
    from ..bundle import MANIFEST
    from ..predictor import EdgePredictor

    path = Path(model_or_bundle)
    if not path.exists():
        raise UsageError(
            f"{path} does not exist; pass a bundle folder (with {MANIFEST}) or a checkpoint file"
        )
    bundle_dir = path.parent if path.name == MANIFEST and path.is_file() else path
    if bundle_dir.is_dir() and (bundle_dir / MANIFEST).is_file():
        if model_type is not None:
            raise UsageError("--model-type applies to checkpoints only; a bundle records its model")
        from ..bundle import load_bundle

        bundle = load_bundle(bundle_dir)  # read and hashed once, for the predictor and the description
        predictor = EdgePredictor.from_bundle(bundle, backend=backend, precision=precision, threads=threads,
                                              decoder_precision=decoder_precision)
        model = bundle.manifest.model
        about = {"kind": "bundle", "path": str(bundle_dir), "model": model.get("id") or model.get("type"),
                 "backend": getattr(predictor.encoder, "backend", backend),
                 "precision": predictor.precision, "decoder_precision": predictor.decoder_precision,
                 "threads": threads}
        return predictor, about
    if decoder_precision is not None:
        raise UsageError(f"--decoder-precision applies to bundles; the checkpoint {path} runs in one precision "
                         "(export a bundle to give its decoder another)")
    if backend not in (None, "torch"):
        raise UsageError(
            f"{path} is a PyTorch checkpoint, which runs only with --backend torch; to evaluate "
            f"{backend}, first export a bundle (slimsam-edge export {path} --out bundle/) and pass it"
        )
    if precision not in (None, "fp32", "bf16"):
        raise UsageError(f"a checkpoint runs in fp32 or bf16 (PyTorch), not {precision}; "
                         "export a bundle for other precisions")
    try:
        from ..models.io import load_model
    except ImportError as err:
        raise CheckpointError(
            f"evaluating a checkpoint needs PyTorch ({err.name} is missing); install "
            "slimsam-edge[export] or pass an exported bundle"
        ) from None
    sam, spec = load_model(path, model_type=model_type, trust_pickle=trust_pickle)
    predictor = EdgePredictor.from_model(sam, threads=threads, precision=precision or "fp32")
    about = {"kind": "checkpoint", "path": str(path), "model": spec.model_type, "backend": "torch",
             "precision": precision or "fp32", "threads": threads}
    return predictor, about
