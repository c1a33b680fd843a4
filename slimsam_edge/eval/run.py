"""One evaluation job, as ``slimsam-edge eval`` runs it: open a model, open data, measure, report.

:func:`run_eval` resolves the defaults (the shipped reference model, held-out procedural data),
checks the arguments, evaluates with :func:`~slimsam_edge.eval.evaluate.evaluate`, and writes the
JSON report when asked. Torch-free at import; a checkpoint needs PyTorch when it is opened.

Illustration (not run as a doctest: it needs files or a model)::

    report = run_eval("bundle/", backend="onnxruntime", limit=8)
    report["model"]["backend"], round(report["point"]["miou"], 2)
    # -> ('onnxruntime', 0.71)
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Callable

from ..assets import REFERENCE_MODEL
from ..errors import CheckpointError, UsageError

#: ``progress(done, total, label)``: label names the model and backend; total may be None
EvalProgress = Callable[[int, "int | None", str], None]


def run_eval(
    model_or_bundle: Path | str | None = None,
    *,
    data: Path | str | None = None,
    image_dir: Path | str | None = None,
    prompt: str = "both",
    backend: str | None = None,
    precision: str | None = None,
    threads: int | None = None,
    limit: int | None = None,
    strict: bool = False,
    model_type: str | None = None,
    trust_pickle: bool = False,
    out: Path | str | None = None,
    progress: EvalProgress | None = None,
    decoder_precision: str | None = None,
) -> dict:
    """Evaluate a bundle or checkpoint on labelled data with SlimSAM's protocol.

    Arguments:
        model_or_bundle: a bundle folder or a checkpoint; ``None``: the shipped reference model.
        data: SA-1B folder, COCO instances file or COCO root; ``None``: held-out procedural data
            (:func:`~slimsam_edge.eval.evaluate.default_eval_data`).
        image_dir: COCO image folder (needs ``data``).
        prompt, limit: as :func:`~slimsam_edge.eval.evaluate.evaluate`.
        backend, precision, threads, model_type, trust_pickle, decoder_precision: as
            :func:`~slimsam_edge.eval.evaluate.open_model`.
        strict: stop at the first bad image or annotation instead of skipping it.
        out: also write the report there (JSON, atomically).
        progress: called once before the first image (``done`` 0, ``total`` None) and after each.

    Returns:
        ``{"model": <open_model's description>, "data": <what was read>, **evaluate's result}``.

    Raises:
        UsageError: ``image_dir`` without ``data``, ``out`` a folder, a backend or precision a
            checkpoint cannot run. CheckpointError: no model given and the reference is missing.

    Example:
        >>> run_eval("model.safetensors", image_dir="images/")
        Traceback (most recent call last):
        ...
        slimsam_edge.errors.UsageError: --image-dir needs --data (a COCO annotation file or folder)
    """
    from ..data.records import DataSkipWarning
    from ..fsutil import write_text_atomic
    from .evaluate import evaluate, open_model

    model_or_bundle = _model_or_reference(model_or_bundle)
    if image_dir is not None and data is None:
        raise UsageError("--image-dir needs --data (a COCO annotation file or folder)")
    if out is not None and Path(out).is_dir():
        raise UsageError(f"--out {out} is a folder; pass a file name such as report.json")
    predictor, about = open_model(model_or_bundle, backend=backend, precision=precision, threads=threads,
                                  model_type=model_type, trust_pickle=trust_pickle,
                                  decoder_precision=decoder_precision)
    samples, data_about = _open_data(data, image_dir, strict)
    label = f"{about['model']} ({about['backend']})"
    tick = None if progress is None else (lambda done, total: progress(done, total, label))
    if tick is not None:
        tick(0, None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataSkipWarning)  # the report counts every skip
        result = evaluate(predictor, samples, prompt=prompt, limit=limit, progress=tick)
    report = {"model": about, "data": data_about, **result}
    if out is not None:
        write_text_atomic(Path(out), json.dumps(report, indent=2, default=str) + "\n")
    return report


def _model_or_reference(model_or_bundle: Path | str | None) -> Path | str:
    if model_or_bundle is not None:
        return model_or_bundle
    if not REFERENCE_MODEL.is_file():
        raise CheckpointError(
            f"the reference model {REFERENCE_MODEL} is missing from this install; "
            "pass MODEL_OR_BUNDLE (a bundle folder or a checkpoint)"
        )
    return REFERENCE_MODEL


def _open_data(data: Path | str | None, image_dir: Path | str | None, strict: bool) -> tuple:
    """The samples to evaluate and a description of them."""
    if data is None:
        from .evaluate import default_eval_data

        samples = default_eval_data()
        return samples, {"source": "procedural (held-out)", "layout": "procedural",
                         "seed": samples.seed, "size": samples.size, "images": len(samples)}
    from ..data.auto import open_labelled

    samples = open_labelled(Path(data), strict=strict, image_dir=Path(image_dir) if image_dir else None)
    return samples, {"source": str(data), "layout": samples.layout, "images": len(samples)}
