"""Reduced-precision artifacts for a bundle, made by each backend's recipes (``runtimes/<backend>/``).

``add_precision`` builds the runtime graphs (``image_encoder``, ``mask_decoder_lowres``) of every
backend the target lists for the precision, calibrates where needed (one feed iterable per graph
serves every backend), then gates each backend's pair against its fp32 pair on held-out images
(:mod:`slimsam_edge.exporters.gate`). The official-I/O ``mask_decoder`` stays fp32.

Example:
    >>> [r.backend for r in recipes_for(("openvino",), "int8")]
    ['openvino']
    >>> type(PrecisionOptions().options_for("onnxruntime")).__name__
    'OrtPrecisionOptions'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from ..bundle import Artifact
from ..calibration import CALIB_SIZE, DEFAULT_CALIB_IMAGES, CalibrationFeeds
from ..deploy.verify import DEFAULT_THRESHOLDS
from ..devices import quantized
from ..errors import BackendUnavailableError, UsageError
from ..models.graph_spec import DECODER_LOWRES, RUNTIME_GRAPHS
from ..runtimes import BuildContext, Recipe, get_backend


@dataclass(frozen=True)
class PrecisionOptions:
    """How reduced-precision artifacts are made and gated.

    Arguments:
        calib_data: image / SA-1B folder for calibration (``None`` = procedural images).
        calib_images: number of calibration images.
        calib_size: side of the procedural calibration images (without ``calib_data``): 256 by
            default; a model exported at another input size may calibrate at its own (peers do).
        gate_images: held-out procedural images (with labels) for the accuracy gate.
        threshold: minimum agreement; ``None`` = :data:`DEFAULT_THRESHOLDS` of the precision.
        allow_accuracy_drop: keep artifacts below the threshold (numbers are recorded anyway).
        backend_options: per backend name, that backend's own settings (its ``Backend.options``
            type, e.g. ONNX Runtime's fp16 keep-list and int8 exclusions, OpenVINO's NNCF
            settings); a backend left out gets its defaults.
        int8_decoder: quantize the mask decoder too. Off by default: on sam-mini its int8 form
            cost about as much agreement as the whole int8 encoder (ONNX Runtime 0.957, OpenVINO
            0.951 with only the decoder in int8) for little time; the int8 pair then holds the
            fp32 decoder (int8-bf16: the fp32 decoder with the bf16 hint), said in its artifact's
            ``method``.
    """

    calib_data: Path | None = None
    calib_images: int = DEFAULT_CALIB_IMAGES
    calib_size: int = CALIB_SIZE
    gate_images: int = 8
    threshold: float | None = None
    allow_accuracy_drop: bool = False
    backend_options: Mapping[str, Any] = field(default_factory=dict)
    int8_decoder: bool = False

    def options_for(self, backend: str) -> Any:
        """``backend``'s settings: the given ones, else its defaults."""
        given = self.backend_options.get(backend)
        return given if given is not None else get_backend(backend).default_options()


def recipes_for(backends: tuple[str, ...], precision: str) -> list[Recipe]:
    """The recipes of ``precision`` for ``backends``; refuses a pair without one or without its
    packages (before any slow work).

    Example:
        >>> [r.backend for r in recipes_for(("onnxruntime",), "fp16")]
        ['onnxruntime']
    """
    found = {b: get_backend(b).recipe(precision) for b in backends}
    missing = [b for b, r in found.items() if r is None]
    if missing:
        why = "".join(get_backend(b).why_cannot(precision) for b in missing)
        raise UsageError(f"no {precision} export for backend(s) {', '.join(missing)}{why}; choose another precision")
    recipes = [r for r in found.values() if r is not None]
    absent = _absent(recipes)
    if absent:
        extras = ",".join(dict.fromkeys(["export", *(get_backend(b).extra for b in backends if get_backend(b).extra)]))
        raise BackendUnavailableError(
            f"{precision} export for {', '.join(backends)} needs {', '.join(absent)}; pip install "
            f"'slimsam-edge[{extras}]'{_targets_without(precision, absent)}")
    return recipes


def _absent(recipes: list[Recipe]) -> list[str]:
    import importlib.util

    return sorted({m for r in recipes for m in r.requires if importlib.util.find_spec(m) is None})


def _targets_without(precision: str, absent: list[str]) -> str:
    """" (or --target X)" naming shipped targets whose ``precision`` export needs none of ``absent``."""
    from ..devices import list_profiles, load_profile

    ok = []
    for name in list_profiles():
        profile = load_profile(name)
        chosen = profile.backends_for(precision)
        recipes = [get_backend(b).recipe(precision) for b in chosen]
        if chosen and all(r is not None and not set(r.requires) & set(absent) for r in recipes):
            ok.append(name)
    return f" (or --target {' / --target '.join(ok)})" if ok else ""


def add_precision(
    root: Path,
    precision: str,
    backends: tuple[str, ...],
    fp32: dict[tuple[str, str], Artifact],
    onnx_paths: dict[str, Path],
    *,
    image_size: int,
    pixel_mean: list[float],
    pixel_std: list[float],
    options: PrecisionOptions | None = None,
    progress: Callable[[str], None] | None = None,
) -> tuple[list[Artifact], dict[str, Any], list[str]]:
    """Build, then gate, the ``precision`` artifacts of ``backends``; returns (artifacts, accuracy, notes).

    Arguments:
        root: the bundle folder being written (fp32 artifacts already there).
        fp32: ``{(graph, backend): artifact}`` of the fp32 artifacts.
        onnx_paths: ``{graph: fp32 ONNX path}``.

    Raises:
        AccuracyGateError: agreement below the threshold without ``allow_accuracy_drop``.
        DataError: too few calibration images.

    Illustration (not run as a doctest: it needs files or a model)::

        arts, acc, notes = add_precision(root, "int8", ("onnxruntime",), fp32, onnx_paths,
                                         image_size=256, pixel_mean=m, pixel_std=s)
        acc["onnxruntime/int8"]["agreement"]
        # -> 0.97
    """
    from . import gate

    opts = options or PrecisionOptions()
    say = progress or (lambda _msg: None)
    recipes = recipes_for(backends, precision)
    feeds, calib = _feeds(recipes, opts, onnx_paths, image_size, pixel_mean, pixel_std)
    artifacts: list[Artifact] = []
    for recipe in recipes:
        for graph in RUNTIME_GRAPHS:
            say(f"{precision} {graph} ({recipe.backend})")
            ctx = BuildContext(root, graph, onnx_paths[graph], fp32[(graph, recipe.backend)], feeds.get(graph),
                               opts.options_for(recipe.backend))
            if quantized(precision) and graph == DECODER_LOWRES and not opts.int8_decoder:
                art = recipe.keep_unquantized(ctx, "int8 decoder off (export --int8-decoder quantizes it)")
                artifacts.append(art)
                continue
            art = recipe.build(ctx)
            if calib:
                art.extra["calibration"] = calib
            artifacts.append(art)
    say(f"accuracy gate ({precision})")
    accuracy, notes = gate.run_gate(root, precision, recipes, artifacts, fp32, image_size=image_size,
                                    pixel_mean=pixel_mean, pixel_std=pixel_std, options=opts, progress=say)
    covered = [g for g in RUNTIME_GRAPHS if not quantized(precision) or opts.int8_decoder or g != DECODER_LOWRES]
    notes.append(f"{precision} artifacts cover {', '.join(covered)}; the other graphs (mask_decoder with the "
                 "official I/O always) stay fp32")
    return artifacts, accuracy, notes


def _feeds(recipes: list[Recipe], opts: PrecisionOptions, onnx_paths: dict[str, Path], image_size: int,
           mean: list[float], std: list[float]) -> tuple[dict[str, CalibrationFeeds], str | None]:
    if not any(r.calibrated for r in recipes):
        if opts.calib_data is not None:
            raise UsageError("--calib-data is used by int8 only; drop it for this precision")
        return {}, None
    from ..calibration import calibration_images, decoder_feeds, encoder_feeds
    from ..runtimes import open_runner

    images = calibration_images(opts.calib_data, opts.calib_images, size=opts.calib_size)
    kw = {"image_size": image_size, "pixel_mean": mean, "pixel_std": std}
    encoder = open_runner(onnx_paths["image_encoder"], backend="onnxruntime")  # fp32 embeddings
    feeds = {"image_encoder": encoder_feeds(images, **kw)}
    if opts.int8_decoder:
        feeds["mask_decoder_lowres"] = decoder_feeds(images, encoder, **kw)
    return feeds, images.describe()
