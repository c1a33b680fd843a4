"""``slimsam-edge build BUNDLE``: build a bundle's TensorRT engines on the device that runs them (torch-free).

Reads the manifest's ``build_plan["tensorrt"]`` (written by ``export --target jetson-…|x86-gpu``),
re-validates its settings with the profile code, builds each graph with this TensorRT's way of
giving the precision (:func:`~slimsam_edge.runtimes.tensorrt.precision.build_engine_for`; a
timing cache in ``engines/``), records each engine's fingerprint (TensorRT version, GPU and
compute capability, L4T release, builder settings) and sha256 as ``tensorrt`` artifacts, then
verifies the engines against the bundle's reference I/O. Below the accuracy gate the engines are
deleted and the manifest is untouched; otherwise the engines are renamed into place and the
manifest rewritten atomically. Every refusal is one line (exit 2) before anything is written.

Illustration (not run as a doctest: it needs files or a model)::

    report = build_bundle("bundle/", precision="fp16")
    report.engines[0]["path"]
    # -> 'engines/image_encoder.fp16.3f2a9c1d0b4e.engine'
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from ..bundle import Artifact, Bundle, load_bundle, write_manifest
from ..errors import AccuracyGateError, BackendUnavailableError, BundleError, UsageError

#: the backend whose engines this builds, and where they go in the bundle
BACKEND = "tensorrt"
ENGINES_DIR = "engines"
TIMING_CACHE = f"{ENGINES_DIR}/timing.cache"
Progress = Callable[[str], None]


@dataclass
class BuildReport:
    """What a build did: the engines (graph, precision, path, build description), the fingerprint,
    the verification and notes."""

    bundle: str
    precision: str
    dla_core: int | None
    fingerprint: dict[str, Any]
    engines: list[dict[str, Any]] = field(default_factory=list)
    verification: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """For ``--json``.

        Example:
            >>> BuildReport("b", "fp16", None, {"gpu": "Orin"}).to_dict()["precision"]
            'fp16'
        """
        return {"bundle": self.bundle, "precision": self.precision, "dla_core": self.dla_core,
                "fingerprint": self.fingerprint, "engines": self.engines, "verification": self.verification,
                "notes": self.notes}


def build_plan(bundle: Bundle) -> dict[str, Any]:
    """The bundle's TensorRT build plan, or a one-line UsageError saying which export writes one.

    Raises:
        UsageError: the bundle has no TensorRT plan.
        BundleError: the plan names something that is not a graph (graph names become file
            names: a path there would put an engine outside ``engines/``), or a graph without
            its fp32 ONNX source.
    """
    plan = bundle.manifest.build_plan.get(BACKEND)
    if plan:
        from ..models.graph_spec import ONNX_SPECS

        named = [*plan.get("graphs", {}), *plan.get("calibration", {})]
        stray = [g for g in named if g not in ONNX_SPECS]
        if stray:
            raise BundleError(f"bundle {bundle.root}: build_plan.{BACKEND} names {stray[0]!r}, which is not a "
                              f"graph ({', '.join(ONNX_SPECS)}); re-export the bundle")
        no_fp32 = [g for g, sources in plan.get("graphs", {}).items() if "fp32" not in sources]
        if no_fp32:  # every engine precision may be built from it (TensorRT 10 fp16, DLA int8)
            raise BundleError(f"bundle {bundle.root}: build_plan.{BACKEND}.graphs.{no_fp32[0]} has no fp32 "
                              "ONNX source; re-export the bundle")
    if not plan:
        from ..devices import list_profiles, load_profile

        targets = [n for n in list_profiles() if BACKEND in load_profile(n).backends]
        raise UsageError(f"bundle {bundle.root} (target {bundle.manifest.target}) has no TensorRT build plan; "
                         f"export it for a TensorRT target first: slimsam-edge export --target "
                         f"{' | '.join(targets)} --out DIR")
    return plan


def choose_precision(bundle: Bundle, plan: dict[str, Any], precision: str | None) -> str:
    """``precision`` if every graph of the plan has a source for it; default: the target's default.

    Example:
        >>> b = Bundle(Path("b"), __import__("slimsam_edge.bundle").bundle.Manifest(
        ...     model={"id": "x", "type": "t"}, target="jetson-orin-nano"))
        >>> choose_precision(b, {"graphs": {"image_encoder": {"fp32": "e.onnx"}}}, "int8")
        Traceback (most recent call last):
        ...
        slimsam_edge.errors.UsageError: precision int8 is not in the build plan of bundle b (it has fp32); export with a target that lists int8 for tensorrt
    """
    have = [p for p in ("fp32", "fp16", "int8") if all(p in s for s in plan["graphs"].values())]
    if precision is None:
        from ..devices import list_profiles, load_profile

        target = bundle.manifest.target
        default = load_profile(target).default_precision if target in list_profiles() else "fp32"
        precision = default if default in have else "fp32"
    if precision not in have:
        raise UsageError(f"precision {precision} is not in the build plan of bundle {bundle.root} (it has "
                         f"{', '.join(have)}); export with a target that lists {precision} for {BACKEND}")
    return precision


def check_dla(bundle: Bundle, precision: str, dla_core: int | None, info: dict[str, Any]) -> None:
    """Refuse ``--dla`` with fp32, on a board without DLA, or a core the board lacks (``info``: detect())."""
    if dla_core is None:
        return
    from ..devices import default_profile, list_profiles, load_profile

    if precision == "fp32":
        raise UsageError("--dla needs --precision fp16 or int8 (DLA cores run no fp32 layers)")
    if info.get("is_jetson"):
        board = load_profile(default_profile(info))
        what = f"this board ({info.get('jetson_model') or board.name})"
    elif bundle.manifest.target in list_profiles():
        board = load_profile(bundle.manifest.target)
        what = f"target {board.name}"
    else:
        raise UsageError(f"--dla {dla_core}: cannot tell whether this machine has DLA cores (not a Jetson); drop --dla")
    if board.dla_cores == 0:
        raise UsageError(f"--dla {dla_core}: {what} has no DLA cores; drop --dla (the GPU builds every engine)")
    if not 0 <= dla_core < board.dla_cores:
        raise UsageError(f"--dla {dla_core}: {what} has {board.dla_cores} DLA cores; use --dla 0.."
                         f"{board.dla_cores - 1}")


def import_tensorrt_here(info: dict[str, Any]) -> Any:
    """``tensorrt``, or a one-line error saying how to get it on this kind of machine."""
    from ..runtimes.tensorrt.cuda import import_tensorrt

    try:
        return import_tensorrt()
    except BackendUnavailableError:
        how = ("on Jetson TensorRT comes with JetPack: sudo apt install python3-libnvinfer, and run "
               "slimsam-edge with the system python3 (or a venv made with --system-site-packages)"
               if info.get("is_jetson") else
               "pip install 'slimsam-edge[tensorrt]' (TensorRT and cuda-python wheels for x86-64 with an NVIDIA GPU)")
        raise BackendUnavailableError(f"slimsam-edge build needs TensorRT, which is not installed; {how}") from None


def _calibration_feeds(bundle: Bundle, rel: str) -> Iterator[dict[str, np.ndarray]]:
    """The encoder's calibration feeds from the bundle's npz (see :func:`calibration_arrays`),
    normalised and padded with the manifest's pixel mean / std one at a time. The file is read
    and checked here, before the build (declared size bounded: :func:`~.reference_io.load_npz`),
    not inside TensorRT's calibrator callback, where an error would be swallowed."""
    from ..transforms import normalize_and_pad
    from .reference_io import load_npz

    m = bundle.manifest
    where = f"bundle {bundle.root}: calibration file {rel}"
    data = load_npz(bundle.read(rel), where)  # hashed as it is read
    pixels, input_hw = data.get("pixels"), data.get("input_hw")
    size = m.image_size
    if (pixels is None or input_hw is None or pixels.dtype != np.uint8 or pixels.ndim != 4
            or pixels.shape[1:] != (size, size, 3) or not len(pixels) or input_hw.dtype.kind not in "iu"
            or input_hw.shape != (len(pixels), 2) or not ((input_hw >= 1) & (input_hw <= size)).all()):
        raise BundleError(f"{where} does not hold N x {size} x {size} x 3 uint8 images with their sizes "
                          "(integers); re-export the bundle")
    mean, std = tuple(m.pixel_mean), tuple(m.pixel_std)
    return ({"image": normalize_and_pad(image[:h, :w], size, mean, std)} for image, (h, w) in zip(pixels, input_hw))


def build_bundle(path: Path | str, *, precision: str | None = None, dla_core: int | None = None,
                 progress: Progress | None = None) -> BuildReport:
    """Build, verify and record the TensorRT engines of the bundle at ``path`` (see the module doc).

    Raises:
        UsageError: no build plan, a precision it lacks, a bad ``--dla``, no NVIDIA GPU.
        BackendUnavailableError: TensorRT is not installed (says how, here).
        AccuracyGateError: the engines disagree with the reference I/O (engines deleted, manifest untouched).

    Illustration (not run as a doctest: it needs files or a model)::

        build_bundle("bundle/", precision="int8", dla_core=0)
    """
    from ..devices import detect
    from ..devices.profile import TensorRTSettings

    say = progress or (lambda _msg: None)
    bundle = load_bundle(path)
    root = bundle.root
    plan = build_plan(bundle)
    settings = TensorRTSettings.from_dict(plan.get("settings", {}), f"bundle {root}: build_plan.{BACKEND}.settings")
    precision = choose_precision(bundle, plan, precision)
    info = detect()
    check_dla(bundle, precision, dla_core, info)
    trt = import_tensorrt_here(info)
    from ..runtimes.tensorrt.cuda import import_cudart
    from ..runtimes.tensorrt.fingerprint import machine_fingerprint

    fingerprint = machine_fingerprint(trt, import_cudart())
    report = BuildReport(str(root), precision, dla_core, fingerprint)
    engines_dir = root / ENGINES_DIR
    engines_dir.mkdir(exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=engines_dir))
    try:
        built = [_build_graph(bundle, tmp, graph, sources, plan, settings, precision, dla_core, trt, fingerprint,
                              report, say) for graph, sources in plan["graphs"].items()]
        say(f"verify the {precision} engines against the reference I/O")
        verification = _verify(bundle, built, say)
        report.verification = verification.to_dict()
        if not verification.passed:
            raise AccuracyGateError(
                f"build: the {precision} engines disagree with the bundle's reference outputs ("
                + "; ".join(verification.failures()) + "); nothing was kept. Try another --precision "
                "(fp32 is the safe one)", report.verification)
        _install(bundle, tmp, built, report)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return report


def _build_graph(bundle: Bundle, tmp: Path, graph: str, sources: dict[str, str], plan: dict[str, Any],
                 settings: Any, precision: str, dla_core: int | None, trt: Any, fingerprint: dict[str, Any],
                 report: BuildReport, say: Progress) -> Artifact:
    """One engine in ``tmp``, described as an artifact (path relative to the bundle)."""
    from ..runtimes.tensorrt.build import entropy_calibrator_class
    from ..runtimes.tensorrt.precision import ENGINE_PRECISIONS, build_engine_for, onnx_facts

    root = bundle.root
    major = int(str(trt.__version__).split(".")[0])
    rel, implicit = ENGINE_PRECISIONS[precision].source(major, sources, dla_core is not None)
    calibration = plan.get("calibration", {}).get(graph)
    calibrator = None
    if implicit and calibration:
        calibrator = entropy_calibrator_class()(_calibration_feeds(bundle, calibration), tmp / f"{graph}.calib")
    elif implicit:
        rel = sources[precision]
    source = bundle.copy_verified(rel, tmp / f"{graph}.src")  # TensorRT parses what was hashed
    build_as = precision
    if precision == "int8" and calibrator is None and not onnx_facts(source)["qdq"]:
        build_as = "fp32"
        report.notes.append(f"{graph}: the plan has no int8 form of it (no Q/DQ graph, no calibration inputs); "
                            "its int8 engine runs fp32")
    dla = dla_core if build_as != "fp32" else None
    if dla_core is not None and dla is None:
        report.notes.append(f"{graph}: built for the GPU (fp32 layers do not run on DLA)")
    engine = tmp / f"{graph}.{precision}.engine"
    say(f"build {graph} ({precision}{f', DLA {dla}' if dla is not None else ''}) from {rel}")
    try:
        _, extra = build_engine_for(
            source, engine, build_as, calibrator=calibrator, timing_cache=root / TIMING_CACHE,
            workspace_gb=settings.workspace_gb, optimization_level=settings.optimization_level,
            dynamic_range=decoder_ranges(settings), dla_core=dla, fp32_layers=tuple(settings.fp32_layers))
    finally:
        if calibrator is not None:
            calibrator.free()
    builder = {"precision": build_as, "dla_core": dla, "source": rel, **settings.to_dict()}
    extra.update(fingerprint={**fingerprint, "builder": builder}, source=rel)
    report.engines.append({"graph": graph, "precision": precision, "build": extra["build"], "source": rel})
    return Artifact.from_files(root, graph, BACKEND, precision, engine.relative_to(root).as_posix(), extra=extra)


def decoder_ranges(settings: Any) -> dict[int, tuple[int, int, int]]:
    """The optimisation-profile ranges of the low-res decoder's dynamic axes from the ``[tensorrt]``
    settings: axis 0 = prompts per call (``decoder_batch``), axis 1 = points per prompt
    (``decoder_points``). A decoder exported before the prompt axis existed has a static axis 0,
    which keeps its size.

    Example:
        >>> from slimsam_edge.devices import load_profile
        >>> decoder_ranges(load_profile("jetson-orin-nano").tensorrt)
        {0: (1, 16, 64), 1: (1, 4, 16)}
    """
    return {0: tuple(settings.decoder_batch), 1: tuple(settings.decoder_points)}


def _verify(bundle: Bundle, artifacts: list[Artifact], say: Progress) -> Any:
    from .verify import verify_artifacts

    return verify_artifacts(bundle, artifacts, progress=say)


def _install(bundle: Bundle, tmp: Path, built: list[Artifact], report: BuildReport) -> None:
    """Rename the verified engines into ``engines/`` (names carry their hash, so the old manifest
    stays true until the new one replaces it atomically), then drop the engines it replaced."""
    root, manifest = bundle.root, bundle.manifest
    named = set(bundle.hashed_files())  # what the manifest on disk names: never removed on failure
    final: list[Artifact] = []
    try:
        for art in built:
            digest = art.files[art.path]
            name = f"{ENGINES_DIR}/{art.graph}.{art.precision}.{digest[:12]}.engine"
            final.append(Artifact(art.graph, art.backend, art.precision, name, {name: digest}, art.extra))
            (root / art.path).replace(root / name)
        replaced = {(a.graph, a.precision) for a in final}
        old = [a for a in manifest.artifacts if a.backend == BACKEND and (a.graph, a.precision) in replaced]
        manifest.artifacts = [a for a in manifest.artifacts if a not in old] + final
        if BACKEND not in manifest.backend_preference:
            manifest.backend_preference.insert(0, BACKEND)
        manifest.accuracy[f"{BACKEND}/{report.precision} (build)"] = report.verification
        write_manifest(root, manifest)
    except BaseException:  # the old manifest stays; the engines renamed for the new one go
        for art in final:
            if art.path not in named:
                (root / art.path).unlink(missing_ok=True)
        raise
    keep = {f for a in manifest.artifacts for f in a.files}
    for art in old:
        for rel in art.files:
            if rel not in keep:
                (root / rel).unlink(missing_ok=True)
    for art in final:
        for e in report.engines:
            if (e["graph"], e["precision"]) == (art.graph, art.precision):
                e["path"] = art.path
