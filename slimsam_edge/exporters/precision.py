"""Reduced-precision artifacts for a bundle: one small recipe class per (backend, precision).

``add_precision`` builds the runtime graphs (``image_encoder``, ``mask_decoder_lowres``) of every
backend the target lists for the precision, calibrates where needed (one feed iterable per graph
serves every backend), then gates each backend's pair against its fp32 pair on held-out images
(:mod:`slimsam_edge.exporters.gate`). The official-I/O ``mask_decoder`` stays fp32.

Example:
    >>> RECIPES[("openvino", "int8")].calibrated
    True
    >>> sorted(p for b, p in RECIPES if b == "onnxruntime")
    ['fp16', 'int8']
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

from ..bundle import Artifact
from ..calibration import DEFAULT_CALIB_IMAGES, CalibrationFeeds
from ..errors import BackendUnavailableError, UsageError
from ..models.graph_spec import RUNTIME_GRAPHS
from .gate import DEFAULT_THRESHOLDS
from .quantize_ort import FP16_KEEP_FP32, OrtInt8Options
from .quantize_ov import NncfOptions



@dataclass(frozen=True)
class PrecisionOptions:
    """How reduced-precision artifacts are made and gated.

    Arguments:
        calib_data: image / SA-1B folder for calibration (``None`` = procedural images).
        calib_images: number of calibration images.
        gate_images: held-out procedural images (with labels) for the accuracy gate.
        threshold: minimum agreement; ``None`` = :data:`DEFAULT_THRESHOLDS` of the precision.
        allow_accuracy_drop: keep artifacts below the threshold (numbers are recorded anyway).
        fp16_keep_fp32: ONNX op types kept in fp32 in ORT fp16 graphs.
        ort_int8 / nncf: INT8 settings (exclusions, calibration method, subset size).
        int8_decoder: quantize the mask decoder too. Off by default: on sam-mini its int8 form
            cost about as much agreement as the whole int8 encoder (ONNX Runtime 0.957, OpenVINO
            0.951 with only the decoder in int8) for little time; the int8 pair then holds the
            fp32 decoder, said in its artifact's ``method``.
    """

    calib_data: Path | None = None
    calib_images: int = DEFAULT_CALIB_IMAGES
    gate_images: int = 8
    threshold: float | None = None
    allow_accuracy_drop: bool = False
    fp16_keep_fp32: tuple[str, ...] = FP16_KEEP_FP32
    ort_int8: OrtInt8Options = field(default_factory=OrtInt8Options)
    nncf: NncfOptions = field(default_factory=NncfOptions)
    int8_decoder: bool = False


@dataclass
class BuildContext:
    """What a recipe gets: the bundle folder, the graph, its fp32 files, its calibration feeds."""

    root: Path
    graph: str
    onnx: Path  # fp32 ONNX graph
    fp32: Artifact  # the fp32 artifact of the recipe's backend
    feeds: CalibrationFeeds | None
    options: PrecisionOptions


class Recipe:
    """Makes one reduced-precision artifact from the fp32 one; subclasses register themselves."""

    backend: ClassVar[str]
    precision: ClassVar[str]
    calibrated: ClassVar[bool] = False
    #: RunnerOptions.precision the artifact is opened with
    runner_precision: ClassVar[str] = "fp32"
    #: python modules the recipe needs, checked before any slow work
    requires: ClassVar[tuple[str, ...]] = ()

    def build(self, ctx: BuildContext) -> Artifact:
        raise NotImplementedError

    def keep_fp32(self, ctx: BuildContext, why: str) -> Artifact:
        """This precision's artifact for ``ctx.graph`` is the fp32 file itself (run in fp32)."""
        art = self._artifact(ctx, [ctx.root / f for f in ctx.fp32.files], {"method": f"fp32 graph kept: {why}"})
        art.extra["precision_hint"] = "fp32"
        return art

    def _artifact(self, ctx: BuildContext, files: list[Path], extra: dict[str, Any]) -> Artifact:
        rel = [f.relative_to(ctx.root).as_posix() for f in files]
        return Artifact.from_files(ctx.root, ctx.graph, self.backend, self.precision, rel[0], rel[1:],
                                   extra={"precision_hint": self.runner_precision, **extra})


RECIPES: dict[tuple[str, str], Recipe] = {}


def register_recipe(cls: type[Recipe]) -> type[Recipe]:
    """Class decorator adding a recipe to :data:`RECIPES`."""
    RECIPES[(cls.backend, cls.precision)] = cls()
    return cls


@register_recipe
class OrtFp16(Recipe):
    backend, precision = "onnxruntime", "fp16"

    def build(self, ctx: BuildContext) -> Artifact:
        from .quantize_ort import to_fp16

        files = to_fp16(ctx.onnx, ctx.root / "onnx" / f"{ctx.graph}.fp16.onnx", keep_fp32_ops=ctx.options.fp16_keep_fp32)
        return self._artifact(ctx, files, {"method": "float16 weights+compute, fp32 I/O",
                                           "kept_fp32": list(ctx.options.fp16_keep_fp32)})


@register_recipe
class OrtInt8(Recipe):
    backend, precision, calibrated = "onnxruntime", "int8", True

    def build(self, ctx: BuildContext) -> Artifact:
        from .quantize_ort import quantize_int8_static

        o = ctx.options.ort_int8
        files = quantize_int8_static(ctx.onnx, ctx.root / "onnx" / f"{ctx.graph}.int8.onnx", ctx.feeds or [], options=o)
        return self._artifact(ctx, files, {
            "method": "static QDQ, symmetric s8 activations + s8 per-channel weights" if o.per_channel
            else "static QDQ, symmetric s8 activations + weights",
            "calibrate_method": o.calibrate_method, "excluded_ops": list(o.exclude_ops),
            "excluded_nodes": list(o.exclude_nodes), "calibration_feeds": len(ctx.feeds or []),
        })


@register_recipe
class OvFp16(Recipe):
    backend, precision = "openvino", "fp16"

    def build(self, ctx: BuildContext) -> Artifact:
        from .quantize_ov import ir_fp16

        files = ir_fp16(ctx.root / ctx.fp32.path, ctx.root / "openvino" / f"{ctx.graph}.fp16.xml")
        return self._artifact(ctx, files, {"method": "IR with compress_to_fp16 (weights fp16)"})


@register_recipe
class OvBf16(Recipe):
    """No new file: the fp32 IR with OpenVINO's bf16 inference precision hint."""

    backend, precision, runner_precision = "openvino", "bf16", "bf16"

    def build(self, ctx: BuildContext) -> Artifact:
        files = [ctx.root / f for f in ctx.fp32.files]
        return self._artifact(ctx, files, {"method": "fp32 IR + INFERENCE_PRECISION_HINT=bf16"})


@register_recipe
class OvInt8(Recipe):
    backend, precision, calibrated, runner_precision = "openvino", "int8", True, "int8"
    requires = ("nncf", "openvino")

    def build(self, ctx: BuildContext) -> Artifact:
        from .quantize_ov import quantize_int8_nncf

        o = ctx.options.nncf
        files = quantize_int8_nncf(ctx.root / ctx.fp32.path, ctx.root / "openvino" / f"{ctx.graph}.int8.xml",
                                   ctx.feeds or [], options=o)
        return self._artifact(ctx, files, {
            "method": "NNCF post-training quantization, model_type=TRANSFORMER",
            "subset_size": min(o.subset_size, len(ctx.feeds or [])), "ignored_types": list(o.ignored_types),
            "ignored_names": list(o.ignored_names),
        })


def recipes_for(backends: tuple[str, ...], precision: str) -> list[Recipe]:
    """The recipes of ``precision`` for ``backends``; refuses a pair without one or without its
    packages (before any slow work).

    Example:
        >>> [r.backend for r in recipes_for(("onnxruntime",), "fp16")]
        ['onnxruntime']
    """
    import importlib.util

    missing = [b for b in backends if (b, precision) not in RECIPES]
    if missing:
        raise UsageError(f"no {precision} export for backend(s) {', '.join(missing)}; choose another precision")
    recipes = [RECIPES[(b, precision)] for b in backends]
    absent = sorted({m for r in recipes for m in r.requires if importlib.util.find_spec(m) is None})
    if absent:
        raise BackendUnavailableError(
            f"{precision} export for {', '.join(backends)} needs {', '.join(absent)}; pip install "
            f"'slimsam-edge[export,openvino]' (or --target onnx for ONNX Runtime only)")
    return recipes


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

    Example:
        >>> arts, acc, notes = add_precision(root, "int8", ("onnxruntime",), fp32, onnx_paths,  # doctest: +SKIP
        ...                                  image_size=256, pixel_mean=m, pixel_std=s)
        >>> acc["onnxruntime/int8"]["agreement"]                                                  # doctest: +SKIP
        0.97
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
            ctx = BuildContext(root, graph, onnx_paths[graph], fp32[(graph, recipe.backend)], feeds.get(graph), opts)
            if precision == "int8" and graph == "mask_decoder_lowres" and not opts.int8_decoder:
                art = recipe.keep_fp32(ctx, "int8 decoder off (export --int8-decoder quantizes it)")
                artifacts.append(art)
                continue
            art = recipe.build(ctx)
            if calib:
                art.extra["calibration"] = calib
            artifacts.append(art)
    say(f"accuracy gate ({precision})")
    accuracy, notes = gate.run_gate(root, precision, recipes, artifacts, fp32, image_size=image_size,
                                    pixel_mean=pixel_mean, pixel_std=pixel_std, options=opts)
    covered = [g for g in RUNTIME_GRAPHS if precision != "int8" or opts.int8_decoder or g != "mask_decoder_lowres"]
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

    images = calibration_images(opts.calib_data, opts.calib_images)
    kw = {"image_size": image_size, "pixel_mean": mean, "pixel_std": std}
    encoder = open_runner(onnx_paths["image_encoder"], backend="onnxruntime")  # fp32 embeddings
    feeds = {"image_encoder": encoder_feeds(images, **kw)}
    if opts.int8_decoder:
        feeds["mask_decoder_lowres"] = decoder_feeds(images, encoder, **kw)
    return feeds, images.describe()
