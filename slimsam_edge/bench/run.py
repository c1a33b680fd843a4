"""Benchmark a bundle on each of its (backend, precision) pairs: ``slimsam-edge bench``'s job.

:func:`runnable_pairs` picks the pairs a bundle can run (a requested pair it cannot is skipped with
the reason, never swapped for another precision); :func:`bench_bundle` runs each pair in its own
process (:func:`~slimsam_edge.bench.harness.run_config`) and returns one report with the machine.

Illustration (not run as a doctest: it needs files or a model)::

    report = bench_bundle("bundle/", backends=["onnxruntime"], runs=3)
    [(r["config"]["backend"], r["encoder"]["p50_ms"]) for r in report["results"]]
    # -> [('onnxruntime', 812.4)]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Sequence

from ..errors import UsageError

#: precisions in the order a bundle's pairs are listed
PRECISION_ORDER = ("fp32", "fp16", "bf16", "int8", "int8-bf16")
#: ``progress(done, total, label)``: label names the pair running (``done`` pairs finished)
BenchProgress = Callable[[int, int, str], None]


def runnable_pairs(bundle: Any, backends: Sequence[str],
                   wanted: Sequence[str] | None) -> tuple[list[tuple[str, str]], list[dict]]:
    """(backend, precision) pairs ``bundle`` (a loaded Bundle) can run, and the requested ones
    it cannot, each with the reason; ``wanted`` None: every precision each backend holds.

    Raises:
        UsageError: when no pair is runnable.

    Illustration (not run as a doctest: it needs files or a model)::

        pairs, skipped = runnable_pairs(load_bundle("bundle/"), ["torch"], ["fp32", "int8"])
        pairs, skipped[0]["reason"]
        # -> ([('torch', 'fp32')], 'no int8 artifact for torch (it has fp32)')
    """
    from ..errors import BundleError
    from ..predictor import ENCODER, find_artifact
    from ..runtimes import get_backend, registered_backends

    pairs, skipped = [], []
    for be in backends:
        have = sorted({a.precision for a in bundle.manifest.artifacts if a.backend == be},
                      key=lambda p: PRECISION_ORDER.index(p) if p in PRECISION_ORDER else len(PRECISION_ORDER))
        for pr in wanted or have:
            try:
                find_artifact(bundle, ENCODER, be, pr)
            except BundleError:
                why = get_backend(be).why_cannot(pr) if be in registered_backends() else ""
                skipped.append({"backend": be, "precision": pr,
                                "reason": f"no {pr} artifact for {be} (it has {', '.join(have)}){why}"})
                continue
            pairs.append((be, pr))
    if not pairs:
        raise UsageError("nothing to benchmark: " + "; ".join(s["reason"] for s in skipped)
                         + "; export that precision (slimsam-edge export --precision ...)")
    return pairs, skipped


def bench_bundle(
    bundle: Path | str,
    *,
    backends: Sequence[str] | None = None,
    precisions: Sequence[str] | None = None,
    threads: int | None = None,
    runs: int = 10,
    warmup: int = 2,
    prompts: int = 50,
    points: int = 1,
    image_hw: tuple[int, int] = (1500, 2250),
    image: Path | str | None = None,
    resize: str = "sam",
    out: Path | str | None = None,
    progress: BenchProgress | None = None,
    all_pairs: bool = False,
) -> dict[str, Any]:
    """Benchmark runnable (backend, precision) pairs of a bundle, each in its own process.

    Without ``backends`` and ``precisions`` it measures the pair picked for this machine
    (:func:`~slimsam_edge.predictor.auto_pick`, what ``segment`` runs), or every pair with
    ``all_pairs``. A precision the machine cannot run (bf16 on a CPU without BF16) is refused when
    asked for and skipped, with the reason, when it would only be listed.

    Arguments:
        bundle: bundle folder (hashes verified).
        backends: backends to measure; None: every backend in the bundle (``all_pairs`` or
            ``precisions`` given), else the one picked for this machine.
        precisions: precisions to measure; None: every precision each backend holds (``all_pairs``
            or ``backends`` given), else the one picked for this machine.
        threads, runs, warmup, prompts, points, image_hw, image, resize: as
            :class:`~slimsam_edge.bench.harness.BenchConfig`.
        out: also write the report there (JSON, atomically).
        progress: told ``(done, total, "backend/precision")`` before and after each pair.

    Returns:
        ``{"bundle", "model", "machine", "results": [run_config results], "skipped": [...]}``;
        a pair that fails with a UsageError is skipped with the reason (raised when it is the only one).

    Raises:
        UsageError: a backend the bundle lacks, or nothing runnable.
        UnsupportedOnThisMachineError: a precision asked for that this machine cannot run.

    Illustration (not run as a doctest: it needs files or a model)::

        bench_bundle("bundle/", backends=["tensorrt"])
        # -> Traceback (most recent call last):

        # -> slimsam_edge.errors.UsageError: bundle bundle/ has no tensorrt artifacts; it has onnxruntime, openvino
    """
    from ..bundle import load_bundle
    from ..devices import detect, detected, why_not
    from ..errors import UnsupportedOnThisMachineError
    from ..predictor import auto_pick
    from ..runtimes import runtime_distributions
    from ..fsutil import write_text_atomic
    from .harness import BenchConfig, run_config

    b = load_bundle(bundle)
    info = detected()
    for pr in precisions or []:
        if why_not(pr, info):
            raise UnsupportedOnThisMachineError(why_not(pr, info))
    if not (backends or precisions or all_pairs):
        picked_backend, picked_precision = auto_pick(b, None, None, info)
        backends = [picked_backend] if picked_backend else None
        precisions = [picked_precision] if picked_backend and picked_precision else None
    backends = list(backends) if backends else b.backends()
    missing = [x for x in backends if x not in b.backends()]
    if missing:
        raise UsageError(f"bundle {bundle} has no {', '.join(missing)} artifacts; it has {', '.join(b.backends())}")
    pairs, skipped = runnable_pairs(b, backends, list(precisions) if precisions else None)
    lacking = [(be, pr) for be, pr in pairs if why_not(pr, info)]  # listed, never asked for
    skipped += [{"backend": be, "precision": pr, "reason": why_not(pr, info)} for be, pr in lacking]
    pairs = [pair for pair in pairs if pair not in lacking]
    if not pairs:
        raise UsageError("nothing to benchmark on this machine: " + "; ".join(s["reason"] for s in skipped))
    configs = [
        BenchConfig(bundle=str(bundle), backend=be, precision=pr, threads=threads, image_hw=image_hw,
                    image=str(image) if image else None, warmup=warmup, runs=runs, prompts=prompts,
                    points=points, resize=resize)
        for be, pr in pairs
    ]
    tell = progress or (lambda done, total, label: None)
    results = []
    for i, cfg in enumerate(configs):
        label = f"{cfg.backend}/{cfg.precision}"
        tell(i, len(configs), label)
        try:
            results.append(run_config(cfg))
        except UsageError as err:
            if len(configs) == 1:
                raise
            skipped.append({"backend": cfg.backend, "precision": cfg.precision, "reason": str(err)})
        tell(i + 1, len(configs), label)
    report = {"bundle": str(bundle), "model": b.manifest.model.get("type"), "machine": detect(runtime_distributions()),
              "results": results, "skipped": skipped}
    if out:
        write_text_atomic(Path(out), json.dumps(report, indent=2, default=str))
    return report
