"""What a backend plugs in: a :class:`Backend` descriptor listing its runner, converter and recipes.

Each backend folder (``runtimes/<name>/``) defines one ``BACKEND = Backend(...)``; the registry
(:mod:`slimsam_edge.runtimes.registry`) lists the folders. Nothing here names a backend, and
nothing here imports a runtime: converters and recipes import theirs inside their methods.

Example:
    >>> from slimsam_edge.runtimes.base import Runner
    >>> b = Backend("echo", runner=Runner, suffixes=(".echo",))
    >>> b.name, b.converter is None, b.recipe("int8") is None
    ('echo', True, True)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterable, Mapping, Sequence

from .. import manifest_schema as schema
from ..devices.profile import PRECISIONS
from ..errors import DataError
from ..models.graph_spec import FeedDict

if TYPE_CHECKING:  # pragma: no cover
    from ..bundle import Artifact
    from .base import Runner


class Converter:
    """Turns one fp32 ONNX graph into this backend's fp32 artifact files inside the bundle.

    ``convert`` returns the written files, the file a runner opens first.
    """

    #: one line for progress messages ("convert image_encoder to OpenVINO IR")
    describe: ClassVar[str] = "convert"
    #: True where the artifacts are built on the device that runs them (``slimsam-edge build``):
    #: export then records a build plan (:class:`OnDeviceBuild`) instead of an artifact
    on_device: ClassVar[bool] = False
    #: where this backend's runtime is not installed (a GPU build on a CPU host), the backend whose
    #: runner validates the same files instead (None: the export needs this backend's runtime)
    validate_with: str | None = None

    def convert(self, onnx_files: list[Path], root: Path, graph: str) -> list[Path]:
        raise NotImplementedError


class OnnxAsIs(Converter):
    """The backend reads the exported ONNX graph itself: nothing to write.

    Example:
        >>> OnnxAsIs().convert([Path("onnx/x.onnx")], Path("."), "x")
        [PosixPath('onnx/x.onnx')]
        >>> OnnxAsIs(validate_with="onnxruntime").validate_with
        'onnxruntime'
    """

    describe = "use the ONNX graph as is"

    def __init__(self, validate_with: str | None = None) -> None:
        self.validate_with = validate_with

    def convert(self, onnx_files: list[Path], root: Path, graph: str) -> list[Path]:
        return list(onnx_files)


class OnDeviceBuild(Converter):
    """The backend builds its artifacts on the device (engines tied to GPU and runtime version).

    ``convert`` returns the ONNX files shipped as the fp32 source (validated here with
    ``source_backend``'s runner); the reduced-precision sources are made by ``source_backend``'s
    recipes, and ``calibrated`` precisions also ship the encoder's calibration inputs.

    Example:
        >>> OnDeviceBuild.on_device, OnDeviceBuild().convert([Path("onnx/x.onnx")], Path("."), "x")
        (True, [PosixPath('onnx/x.onnx')])
    """

    on_device = True
    describe = "ship the ONNX source for the on-device build"
    #: the backend whose runner validates the shipped ONNX and whose recipes make reduced sources
    source_backend: ClassVar[str] = ""
    #: precisions whose builds may need an implicit calibrator (their plan ships calibration inputs)
    calibrated: ClassVar[tuple[str, ...]] = ()

    def convert(self, onnx_files: list[Path], root: Path, graph: str) -> list[Path]:
        return list(onnx_files)

    def settings(self, profile: Any) -> dict[str, Any]:
        """The build settings of ``profile`` (a DeviceProfile) copied into the manifest's plan."""
        return {}


@dataclass
class BuildContext:
    """What a recipe gets: the bundle folder, the graph, its fp32 files, its calibration feeds and
    this backend's precision options (its :attr:`Backend.options` type)."""

    root: Path
    graph: str
    onnx: Path  # fp32 ONNX graph
    fp32: "Artifact"  # the fp32 artifact of the recipe's backend
    feeds: "Iterable[FeedDict] | None"  # a re-iterable (calibration.CalibrationFeeds)
    options: Any


class Recipe:
    """Makes one reduced-precision artifact from the fp32 one (one subclass per precision)."""

    backend: ClassVar[str] = ""  # set by the Backend that lists the recipe
    precision: ClassVar[str]
    calibrated: ClassVar[bool] = False
    #: RunnerOptions.precision the artifact is opened with
    runner_precision: ClassVar[str] = "fp32"
    #: python modules the recipe needs, checked before any slow work
    requires: ClassVar[tuple[str, ...]] = ()

    def build(self, ctx: BuildContext) -> "Artifact":
        raise NotImplementedError

    def keep_unquantized(self, ctx: BuildContext, why: str) -> "Artifact":
        """This precision's artifact for ``ctx.graph`` when it is not quantized (the int8 decoder is
        off by default): the fp32 file itself, run in fp32 (a recipe whose other ops compute in
        bf16 overrides it with the bf16 hint)."""
        art = self._artifact(ctx, [ctx.root / f for f in ctx.fp32.files], {"method": f"fp32 graph kept: {why}"})
        art.extra["precision_hint"] = "fp32"
        return art

    def _artifact(self, ctx: BuildContext, files: list[Path], extra: dict[str, Any]) -> "Artifact":
        from ..bundle import Artifact

        rel = [f.relative_to(ctx.root).as_posix() for f in files]
        return Artifact.from_files(ctx.root, ctx.graph, self.backend, self.precision, rel[0], rel[1:],
                                   extra={"precision_hint": self.runner_precision, **extra})


#: the ``extra`` keys every :class:`Recipe` writes (:meth:`Recipe._artifact`; the export adds
#: ``calibration``): descriptions, and the precision a runner computes the file in (read by
#: ``predictor.open_artifact`` through ``Artifact.precision_hint``, never from ``extra``)
RECIPE_EXTRA: dict[str, schema.ExtraKey] = {
    "method": schema.text(),
    "precision_hint": schema.one_of(PRECISIONS),
    "calibration": schema.text(),
}


@dataclass(frozen=True)
class Backend:
    """Everything one backend means, in one entry.

    Arguments:
        name: the backend's name in bundles, profiles and ``--backend``.
        runner: its :class:`~slimsam_edge.runtimes.base.Runner` subclass.
        suffixes: artifact file suffixes it loads (picks a backend from a path).
        converter: makes its fp32 artifact from an ONNX graph at export time, or ``None`` where
            export cannot make one here (``no_converter`` says why).
        recipes: one :class:`Recipe` subclass per reduced precision it can export.
        options: the type of its precision options (``PrecisionOptions.backend_options[name]``);
            called without arguments for the defaults.
        extra: the pip extra that installs it ("" = a core dependency).
        distributions: pip distributions that provide its runtime, for version detection.
        no_converter: why there is no converter (shown when an export is refused).
        auto: picked when no backend is asked for (``predictor.auto_pick``, ``verify``); False for
            a backend only run on request (torch: the reference, it imports torch).
        describe_devices: optional; lists the devices the runtime sees (``[{"device": ..., ...}]``,
            importing the runtime inside), for ``slimsam-edge devices --detect``.
        cannot: precision -> why the backend cannot run it (said when it is asked for, instead of
            a bare "no such artifact").
        artifact_extra: the keys its artifacts may carry in the manifest's ``extra`` and what
            each may hold (:mod:`slimsam_edge.manifest_schema`); any other key is refused, and
            only those marked ``runtime`` reach its runner (:meth:`runner_extra`).
    """

    name: str
    runner: "type[Runner]"
    suffixes: tuple[str, ...] = ()
    converter: Converter | None = None
    recipes: tuple[type[Recipe], ...] = ()
    options: Callable[[], Any] | None = None
    extra: str = ""
    distributions: tuple[str, ...] = ()
    no_converter: str = ""
    auto: bool = True
    describe_devices: Callable[[], list[dict[str, Any]]] | None = None
    cannot: Mapping[str, str] = field(default_factory=dict, compare=False)
    artifact_extra: Mapping[str, schema.ExtraKey] = field(default_factory=dict, compare=False)
    _recipes: dict[str, Recipe] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for cls in self.recipes:
            cls.backend = self.name
            self._recipes[cls.precision] = cls()

    def recipe(self, precision: str) -> Recipe | None:
        """Its recipe for ``precision`` (``None`` where it has none)."""
        return self._recipes.get(precision)

    def why_cannot(self, precision: str) -> str:
        """" (why)" when the backend says why it cannot run ``precision``, else "".

        Example:
            >>> from slimsam_edge.runtimes.base import Runner
            >>> Backend("echo", runner=Runner, cannot={"bf16": "no bf16 kernels"}).why_cannot("bf16")
            ' (no bf16 kernels)'
        """
        why = self.cannot.get(precision)
        return f" ({why})" if why else ""

    def default_options(self) -> Any:
        return self.options() if self.options is not None else None

    def runner_extra(self, artifact: "Artifact", where: str = "") -> dict[str, Any]:
        """What a runner of ``artifact`` gets as ``RunnerOptions.extra``: its graph and the
        ``runtime`` keys of its ``extra``, after every key was checked against
        :attr:`artifact_extra` (one-line BundleError naming ``where``, the artifact and the key).

        Example:
            >>> from slimsam_edge.bundle import Artifact
            >>> from slimsam_edge.runtimes.base import Runner
            >>> b = Backend("echo", runner=Runner, artifact_extra=RECIPE_EXTRA)
            >>> b.runner_extra(Artifact("e", "echo", "fp16", "e.x", extra={"method": "fp16 weights"}))
            {'graph': 'e'}
            >>> b.runner_extra(Artifact("e", "echo", "fp16", "e.x", extra={"providers": ["X"]}), "b/manifest.json")
            Traceback (most recent call last):
            ...
            slimsam_edge.errors.BundleError: b/manifest.json: artifact e/echo/fp16: extra key 'providers' is not one its backend reads (calibration, method, precision_hint); re-export the bundle
        """
        at = f"{where + ': ' if where else ''}artifact {artifact.graph}/{artifact.backend}/{artifact.precision}"
        return {"graph": artifact.graph, **schema.check_extra(artifact.extra, self.artifact_extra, at)}


def select_inputs(feed: FeedDict, names: Sequence[str], where: str) -> FeedDict:
    """The entries of ``feed`` a graph with inputs ``names`` takes; a one-line DataError if one lacks.

    Example:
        >>> select_inputs({}, ["image"], "onnxruntime calibration")
        Traceback (most recent call last):
        ...
        slimsam_edge.errors.DataError: onnxruntime calibration: calibration feed lacks inputs ['image']; it has []
    """
    missing = [n for n in names if n not in feed]
    if missing:
        raise DataError(f"{where}: calibration feed lacks inputs {missing}; it has {sorted(feed)}")
    return {n: feed[n] for n in names}
