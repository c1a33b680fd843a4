"""Which (backend, precision) pairs of a bundle can run: :func:`runnable_pairs` (a requested pair
it cannot run is skipped with the reason, never swapped for another precision). The benchmark
itself is :func:`slimsam_edge.bench.suite.bench_suite`.
"""

from __future__ import annotations

from typing import Any, Sequence

from ..errors import UsageError

#: precisions in the order a bundle's pairs are listed
PRECISION_ORDER = ("fp32", "fp16", "bf16", "int8", "int8-bf16")


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


def runnable_decoder(bundle: Any, backend: str, precision: str) -> str | None:
    """Why ``bundle`` (a loaded Bundle) cannot run its decoder on ``backend`` in ``precision``
    (``--decoder-precision``), or ``None`` when it can: the artifact, or the fp32 / int8 one a
    bf16 / int8-bf16 hint runs on (:func:`~slimsam_edge.predictor.find_artifact`).

    Illustration (not run as a doctest: it needs files or a model)::

        runnable_decoder(load_bundle("bundle/"), "onnxruntime", "fp16")
        # -> 'no fp16 decoder for onnxruntime: ...'
    """
    from ..errors import BundleError
    from ..predictor import DECODER, find_artifact

    try:
        find_artifact(bundle, DECODER, backend, precision)
    except BundleError as err:
        return f"no {precision} decoder for {backend}: {err}"
    return None
