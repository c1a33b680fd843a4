"""Verify a bundle on this machine: its reference I/O through a runtime, against the fp32 outputs.

What ``slimsam-edge verify`` runs after a bundle is copied to a device, and what ``slimsam-edge
build`` runs on the engines it has just built. Torch-free.

Each artifact runs its graph's reference cases (:mod:`slimsam_edge.deploy.reference_io`):

- an output holding mask logits (the graph spec's ``mask_outputs``) is compared by the IoU of the
  masks thresholded at 0: the judged number is the mean over the cases of the single mask (the
  first mask token: what SAM returns with ``multimask_output=False``, and what the export's
  accuracy gate compares), with its min and the mean over every mask token;
- ``iou_predictions``: the largest absolute difference (reported);
- any other output (the encoder's ``image_embeddings``): relative error ``||o - r|| / ||r||``
  (reported) and cosine (the smallest over the cases is judged when the graph has no mask output).

When an encoder and decoders of one backend and precision are verified together, each decoder
case also runs end to end: the candidate encoder's embedding of the case's image into the
candidate decoder, against the reference decoder outputs. That mask-IoU agreement is what catches
an FP16 encoder that collapses. A check passes when its judged number reaches the threshold of
the artifact's precision (:data:`DEFAULT_THRESHOLDS`).

Illustration (not run as a doctest: it needs files or a model)::

    report = verify_bundle("bundle/", backend="onnxruntime")
    report.passed, report.failures()
    # -> (True, [])
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import numpy as np

from ..errors import BackendUnavailableError, BundleError
from ..models.graph_spec import ENCODER, ONNX_SPECS, FeedDict
from ..predictor import open_artifact
from .reference_io import EMBEDDING, ReferenceCase, load_reference

if TYPE_CHECKING:  # pragma: no cover
    from ..bundle import Artifact, Bundle

#: minimum agreement with the fp32 reference outputs, per precision (mask IoU; cosine for graphs
#: without mask outputs)
DEFAULT_THRESHOLDS: dict[str, float] = {"fp32": 0.99, "fp16": 0.99, "bf16": 0.99, "int8": 0.95, "int8-bf16": 0.95}

#: ``progress(message)``: one line per step
Progress = Callable[[str], None]



@dataclass
class Check:
    """One agreement check: a graph (or an encoder -> decoder pair) on one backend and precision.

    ``value`` is the judged number (``metric``: "mask_iou" or "cosine"); ``numbers`` holds every
    number measured (mask_iou, mask_iou_min, mask_iou_all_tokens, iou_predictions_max_diff,
    cosine_min, rel_error_max).
    """

    name: str
    kind: str  # "graph" or "end_to_end"
    graph: str
    backend: str
    precision: str
    metric: str
    value: float
    threshold: float
    cases: int
    numbers: dict[str, float] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not math.isnan(self.value) and self.value >= self.threshold

    def describe(self) -> str:
        """One short phrase, e.g. ``"end_to_end/mask_decoder_lowres/onnxruntime/fp16 mask_iou 0.41 < 0.99"``."""
        sign = ">=" if self.passed else "<"
        return f"{self.name} {self.metric} {self.value:.4f} {sign} {self.threshold:g} ({self.cases} cases)"


@dataclass
class VerifyReport:
    """The checks of one verification; ``passed`` when there was at least one and all passed.

    Example:
        >>> r = VerifyReport("b", [Check("image_encoder/onnxruntime/fp16", "graph", "image_encoder",
        ...                              "onnxruntime", "fp16", "cosine", 0.5, 0.99, 2)])
        >>> r.passed, r.failures()
        (False, ['image_encoder/onnxruntime/fp16 cosine 0.5000 < 0.99 (2 cases)'])
    """

    bundle: str
    checks: list[Check] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    def failures(self) -> list[str]:
        """One short phrase per failed check (or why nothing was checked)."""
        if not self.checks:
            return ["no reference case ran" + (f" ({'; '.join(self.skipped)})" if self.skipped else "")]
        return [c.describe() for c in self.checks if not c.passed]

    def to_dict(self) -> dict[str, Any]:
        """For ``--json`` and the manifest: ``{"passed", "bundle", "checks": [...], "skipped"}``."""
        checks = [{**asdict(c), "passed": c.passed} for c in self.checks]
        return {"passed": self.passed, "bundle": self.bundle, "checks": checks, "skipped": list(self.skipped),
                "failures": [] if self.passed else self.failures()}


def compare(graph: str, reference: Sequence[FeedDict], got: Sequence[FeedDict]) -> dict[str, float]:
    """Agreement numbers of ``got`` with ``reference`` (one output dict per case) for ``graph``.

    Example:
        >>> r = {"low_res_masks": np.array([[[[1.0, -1.0], [1.0, -1.0]]]]), "iou_predictions": np.array([[0.9]])}
        >>> g = {"low_res_masks": np.array([[[[1.0, 1.0], [1.0, -1.0]]]]), "iou_predictions": np.array([[0.8]])}
        >>> {k: round(v, 4) for k, v in compare("mask_decoder_lowres", [r], [g]).items()}
        {'iou_predictions_max_diff': 0.1, 'mask_iou': 0.6667, 'mask_iou_min': 0.6667, 'mask_iou_all_tokens': 0.6667}
        >>> two = {k: np.concatenate([v, r[k]]) for k, v in g.items()}  # 2 prompts: the second exact
        >>> round(compare("mask_decoder_lowres", [{k: np.concatenate([v, v]) for k, v in r.items()}], [two])["mask_iou"], 4)
        0.8333
    """
    from ..eval.metrics import batch_iou

    spec = ONNX_SPECS.get(graph)
    mask_outputs = spec.mask_outputs if spec else ()
    ious: list[float] = []
    single: list[float] = []
    cosines: list[float] = []
    rel: list[float] = []
    score_diff: list[float] = []
    for ref, out in zip(reference, got):
        for name, r in ref.items():
            g = out.get(name)
            if g is None or np.shape(g) != np.shape(r):
                raise BundleError(f"{graph}: output {name} has shape {None if g is None else np.shape(g)}, the "
                                  f"reference {np.shape(r)}; re-export the bundle")
            if name in mask_outputs:  # (prompts, tokens, H, W): token 0 is the single-mask output
                h, w = r.shape[-2:]
                tokens = r.shape[-3] if r.ndim >= 3 else 1
                per_token = batch_iou(g.reshape(-1, h, w) > 0, r.reshape(-1, h, w) > 0).reshape(-1, tokens)
                single += per_token[:, 0].tolist()  # one per prompt (a batched case has several)
                ious += per_token.ravel().tolist()
            elif name == "iou_predictions":
                score_diff.append(float(np.max(np.abs(g.astype(np.float64) - r))))
            else:
                a, b = g.astype(np.float64).ravel(), r.astype(np.float64).ravel()
                nr = float(np.linalg.norm(b))
                rel.append(float(np.linalg.norm(a - b)) / nr if nr else float(np.linalg.norm(a)))
                denom = float(np.linalg.norm(a)) * nr
                cosines.append(float(a @ b) / denom if denom else float(np.array_equal(a, b)))
    numbers: dict[str, float] = {}
    if score_diff:
        numbers["iou_predictions_max_diff"] = max(score_diff)
    if ious:
        numbers["mask_iou"] = float(np.mean(single))
        numbers["mask_iou_min"] = float(np.min(single))
        numbers["mask_iou_all_tokens"] = float(np.mean(ious))
    if cosines:
        numbers["cosine_min"] = min(cosines)
        numbers["rel_error_max"] = max(rel)
    return _nan_safe(numbers)


def _nan_safe(numbers: dict[str, float]) -> dict[str, float]:
    return {k: float("nan") if v is None or not math.isfinite(v) else float(v) for k, v in numbers.items()}


def _judged(numbers: dict[str, float]) -> tuple[str, float]:
    if "mask_iou" in numbers:
        return "mask_iou", numbers["mask_iou"]
    return "cosine", numbers.get("cosine_min", float("nan"))


def _check(name: str, kind: str, art: "Artifact", threshold: float, ref: list[FeedDict],
           got: list[FeedDict], graph: str) -> Check:
    numbers = compare(graph, ref, got)
    metric, value = _judged(numbers)
    return Check(name, kind, graph, art.backend, art.precision, metric, value, threshold, len(ref), numbers)


def verify_artifacts(bundle: "Bundle", artifacts: Iterable["Artifact"], *, progress: Progress | None = None,
                     thresholds: dict[str, float] | None = None, device: str | None = None,
                     threads: int | None = None) -> VerifyReport:
    """Run the reference cases of each artifact's graph through it; compare with the fp32 outputs.

    Artifacts of one backend and precision that include the encoder are also checked end to end
    (encoder -> each decoder). ``thresholds`` overrides :data:`DEFAULT_THRESHOLDS` per precision.

    Raises:
        BundleError: the bundle has no reference I/O (an old bundle: re-export), or it is malformed.
        BackendUnavailableError: an artifact's backend is not installed here.

    Illustration (not run as a doctest: it needs files or a model)::

        b = load_bundle("bundle/")
        report = verify_artifacts(b, [a for a in b.manifest.artifacts if a.backend == "onnxruntime"])
    """
    say = progress or (lambda _msg: None)
    limits = {**DEFAULT_THRESHOLDS, **(thresholds or {})}
    arts = list(artifacts)
    unknown = sorted({a.precision for a in arts} - set(limits))
    if unknown:
        raise BundleError(f"bundle {bundle.root}: artifacts of precision {', '.join(unknown)}, which has no "
                          f"accuracy gate (known: {', '.join(limits)}); re-export the bundle")
    cases = load_reference(bundle)
    by_graph: dict[str, list[ReferenceCase]] = {}
    for case in cases:
        by_graph.setdefault(case.graph, []).append(case)
    report = VerifyReport(str(bundle.root))
    embeddings: dict[tuple[str, str], dict[str, np.ndarray]] = {}  # (backend, precision) -> case key -> emb
    for art in arts:
        mine = by_graph.get(art.graph, [])
        label = f"{art.graph}/{art.backend}/{art.precision}"
        if not mine:
            report.skipped.append(f"{label}: no reference cases for graph {art.graph}")
            continue
        say(f"verify {label} ({len(mine)} cases)")
        with open_artifact(bundle.root, art, device=device, threads=threads) as runner:
            got = [runner.infer(c.inputs) for c in mine]
        report.checks.append(_check(label, "graph", art, limits[art.precision], [c.outputs for c in mine], got,
                                    art.graph))
        if art.graph == ENCODER:
            embeddings[(art.backend, art.precision)] = {c.key: o[EMBEDDING] for c, o in zip(mine, got)}
    for art in arts:
        candidate = embeddings.get((art.backend, art.precision))
        linked = [c for c in by_graph.get(art.graph, []) if c.embedding_from in (candidate or {})]
        if art.graph == ENCODER or not candidate or not linked:
            continue
        label = f"end_to_end/{art.graph}/{art.backend}/{art.precision}"
        say(f"verify {ENCODER} -> {art.graph} end to end ({art.backend}/{art.precision})")
        with open_artifact(bundle.root, art, device=device, threads=threads) as runner:
            got = [runner.infer({**c.inputs, EMBEDDING: candidate[str(c.embedding_from)]}) for c in linked]
        report.checks.append(_check(label, "end_to_end", art, limits[art.precision], [c.outputs for c in linked],
                                    got, art.graph))
    return report


def pick_artifacts(bundle: "Bundle", backend: str | None = None, precision: str | None = None) -> list["Artifact"]:
    """The artifacts ``verify`` runs: every graph of ``backend`` (default: the one
    :func:`~slimsam_edge.predictor.auto_pick` picks for this machine; torch only when asked) in
    ``precision`` (default fp32).

    Raises:
        BundleError: the bundle holds no artifact of that backend / precision (the message lists
            what it holds).
        BackendUnavailableError: ``backend`` is not installed (or, without ``backend``, none of
            the bundle's backends is).
    """
    from ..runtimes import get_backend, runner_class

    precision = precision or "fp32"
    held = sorted({f"{a.backend}/{a.precision}" for a in bundle.manifest.artifacts})
    if backend is None:  # the one rule: predictor.auto_pick (torch only when asked for)
        from ..predictor import auto_pick

        backend, _ = auto_pick(bundle, None, precision)
        if backend is None:
            raise BackendUnavailableError(
                f"bundle {bundle.root}: none of its backends ({', '.join(bundle.backends()) or 'none'}) that run "
                "without being asked for is installed here; install one (e.g. pip install onnxruntime) or pass --backend")
    else:
        runner_class(backend)  # not installed: the registry's one-line error
    arts = [a for a in bundle.manifest.artifacts if a.backend == backend and a.precision == precision]
    if not arts and backend in bundle.manifest.build_plan:
        raise BundleError(f"bundle {bundle.root}: no {backend}/{precision} engines yet: they are built on the "
                          f"device; run `slimsam-edge build {bundle.root} --precision {precision}` there first")
    if not arts:
        raise BundleError(f"bundle {bundle.root}: no {backend}/{precision} artifacts; it holds "
                          f"{', '.join(held) or 'nothing'}; pass one of those as --backend/--precision")
    return arts


def verify_bundle(bundle_or_path: "Bundle | Path | str", *, backend: str | None = None,
                  precision: str | None = None, progress: Progress | None = None,
                  device: str | None = None, threads: int | None = None) -> VerifyReport:
    """Check hashes (when given a path), then run :func:`verify_artifacts` on the artifacts of
    ``backend`` and ``precision`` (:func:`pick_artifacts`).

    Illustration (not run as a doctest: it needs files or a model)::

        verify_bundle("bundle/", precision="int8").to_dict()["checks"][0]["value"]
        # -> 0.97
    """
    from ..bundle import Bundle, load_bundle

    bundle = bundle_or_path if isinstance(bundle_or_path, Bundle) else load_bundle(bundle_or_path)
    arts = pick_artifacts(bundle, backend, precision)
    return verify_artifacts(bundle, arts, progress=progress, device=device, threads=threads)
