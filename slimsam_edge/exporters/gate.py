"""The accuracy gate: each backend's reduced-precision pair against its fp32 pair (torch-free).

Both pairs run the same held-out procedural images (labelled, so mIoU is reported too) through
:class:`~slimsam_edge.predictor.EdgePredictor`. Agreement below the threshold raises
:class:`~slimsam_edge.errors.AccuracyGateError` unless the drop is allowed; the numbers are
returned for the manifest either way. A precision this machine cannot run (bf16 on a CPU
without BF16: the backend raises :class:`~slimsam_edge.errors.UnsupportedOnThisMachineError`)
is skipped: said through ``progress`` and recorded as not measured, with the reason, in the
accuracy entry and the notes. Any other error (a bad precision hint, a bad thread count) fails.

Illustration (not run as a doctest: it needs files or a model)::

    accuracy, notes = run_gate(root, "int8", recipes, artifacts, fp32,
                               image_size=256, pixel_mean=m, pixel_std=s)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from ..bundle import Artifact
from ..deploy.verify import DEFAULT_THRESHOLDS
from ..errors import AccuracyGateError, BackendUnavailableError, UnsupportedOnThisMachineError
from ..models.graph_spec import DECODER_LOWRES as DECODER
from ..models.graph_spec import ENCODER

__all__ = ["DEFAULT_THRESHOLDS", "run_gate"]  # the thresholds live in deploy/verify.py


def _predictor(root: Path, arts: dict[str, Artifact], image_size: int, mean: list[float], std: list[float]) -> Any:
    from ..predictor import EdgePredictor, open_artifact

    runners = [open_artifact(root, arts[g]) for g in (ENCODER, DECODER)]
    return EdgePredictor(runners[0], runners[1], image_size=image_size, pixel_mean=tuple(mean),
                         pixel_std=tuple(std)).activate()


def run_gate(root: Path, precision: str, recipes: list[Any], artifacts: list[Artifact],
             fp32: dict[tuple[str, str], Artifact], *, image_size: int, pixel_mean: list[float],
             pixel_std: list[float], options: Any,
             progress: Callable[[str], None] | None = None) -> tuple[dict[str, Any], list[str]]:
    """Measure every backend's ``precision`` pair; returns ``({"backend/precision": result}, notes)``.

    Raises:
        AccuracyGateError: some pair is below the threshold and ``options.allow_accuracy_drop`` is off.
    """
    from ..eval.agreement import compare_predictors
    from ..eval.evaluate import default_eval_data

    say = progress or (lambda _msg: None)
    threshold = options.threshold if options.threshold is not None else DEFAULT_THRESHOLDS[precision]
    data = default_eval_data(options.gate_images)
    accuracy: dict[str, Any] = {}
    notes: list[str] = []
    failures: list[str] = []
    for recipe in recipes:
        key = f"{recipe.backend}/{precision}"
        cand = {a.graph: a for a in artifacts if a.backend == recipe.backend and a.precision == precision}
        ref = {g: fp32[(g, recipe.backend)] for g in (ENCODER, DECODER)}
        try:
            candidate = _predictor(root, cand, image_size, pixel_mean, pixel_std)
        except (UnsupportedOnThisMachineError, BackendUnavailableError) as err:
            # bf16 on a CPU without BF16; a GPU backend (onnxruntime-cuda) on a host without one
            accuracy[key] = {"measured": False, "reason": str(err), "threshold": threshold}
            skipped = (f"{key} not measured on this machine ({err}); the accuracy gate was skipped for it: "
                       f"run `slimsam-edge verify BUNDLE --backend {recipe.backend} --precision {precision}` "
                       "where it runs (it is refused at run time where unsupported)")
            say(f"accuracy gate skipped: {skipped}")
            notes.append(skipped)
            continue
        with candidate, _predictor(root, ref, image_size, pixel_mean, pixel_std) as reference:
            result = compare_predictors(reference, candidate, data)
        passed = result["agreement"] >= threshold
        accuracy[key] = {"measured": True, **result, "threshold": threshold, "passed": passed,
                         "reference": f"{recipe.backend}/fp32", "held_out": data.root}
        if not passed:
            failures.append(f"{key} mask IoU agreement with fp32 {result['agreement']:.4f} < {threshold:g} "
                            f"({result['prompts']} prompts on {result['images']} held-out images)")
    if failures and not options.allow_accuracy_drop:
        raise AccuracyGateError(
            "accuracy gate: " + "; ".join(failures) + "; pass --allow-accuracy-drop to keep it (numbers go "
            "into the manifest), or calibrate on more / more typical images (--calib-data)",
            accuracy,
        )
    notes += [f"accepted below the accuracy gate: {f}" for f in failures]
    return accuracy, notes
