"""Export a model to a bundle directory for a target: ONNX graphs, each backend's artifacts, weights,
manifest.json.

The target is a device profile (:mod:`slimsam_edge.devices`): its backends, in preference order,
each get the graphs it lists, made by the backend's converter
(:class:`~slimsam_edge.runtimes.Converter`). Every graph is validated against PyTorch on each
backend before it is listed. A backend whose artifacts are built on the device
(:class:`~slimsam_edge.runtimes.plugin.OnDeviceBuild`, e.g. TensorRT) gets a ``build_plan`` entry
instead: its ONNX sources per graph and precision (validated here with ONNX Runtime; reduced ones
through the accuracy gate), calibration inputs and build settings, every file hashed. A reduced
precision (fp16 / bf16 / int8) adds its artifacts next to the fp32 ones and passes the accuracy
gate (:mod:`slimsam_edge.exporters.gate`) first. The bundle is built in a temporary directory and
moved into place only when complete, so a refused export leaves nothing behind.

Illustration (not run as a doctest: it needs files or a model)::

    sam, spec = load_model("sam_vit_b_01ec64.pth")
    manifest = export_bundle(sam, spec, "bundle/", target="cpu")
    manifest = export_bundle(sam, spec, "b8/", precision="int8")
    manifest.accuracy["openvino/int8"]["agreement"]
    # -> 0.97
"""

from __future__ import annotations

import platform
from importlib import metadata
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch

from ..bundle import Artifact, Manifest, write_manifest
from ..devices import PRECISIONS, DeviceProfile, list_profiles, load_profile
from ..errors import UsageError
from ..fsutil import atomic_dir, sha256_file, write_bytes_atomic
from ..models.graph_spec import ALL_GRAPHS, DECODER, DECODER_LOWRES, ENCODER, RUNTIME_GRAPHS, prompt_frame
from ..models.io import save_model
from ..models.spec import ModelSpec
from ..runtimes import RunnerOptions, backends, get_backend, open_runner, runtime_distributions
from ..runtimes.plugin import OnDeviceBuild
from ..runtimes.onnxruntime.onnx_files import external_files
from .onnx_export import export_onnx
from .validate import validate_onnx

Progress = Callable[[str], None]
#: where a build plan's calibration inputs go inside the bundle
CALIBRATION_DIR = "calibration"

if TYPE_CHECKING:  # pragma: no cover
    from .precision import PrecisionOptions


def tool_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    dists = [d for ds in runtime_distributions().values() for d in ds]
    for pkg in ("slimsam-edge", "torch", "onnx", *dists, "onnxsim", "nncf", "segment-anything"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    return out


def resolve_target(target: "str | Path | DeviceProfile") -> DeviceProfile:
    """The profile of ``target`` (a shipped name or a ``.toml`` path), checked for export here.

    Raises:
        UsageError: an unknown target (the message lists the known ones and how to add one), a
            backend or graph the registry does not know (naming the file and key), a backend
            without a converter, or an on-device backend without its build settings.

    Example:
        >>> resolve_target("onnx").graphs["onnxruntime"]
        ('image_encoder', 'image_encoder_pixels', 'mask_decoder', 'mask_decoder_single', 'mask_decoder_lowres')
        >>> resolve_target("jetson-orin-nano").backends
        ('tensorrt', 'onnxruntime')
    """
    profile = target if isinstance(target, DeviceProfile) else load_profile(target)
    where = f"device profile {profile.source}"
    known = backends()
    for name in profile.backends:
        if name not in known:
            raise UsageError(f"{where}: 'backends' names {name!r}, not a registered backend "
                             f"({', '.join(sorted(known))})")
    for name, graphs in profile.graphs.items():
        bad = [g for g in graphs if g not in ALL_GRAPHS]
        if bad:
            raise UsageError(f"{where}: 'graphs.{name}' names {bad[0]!r}, not a graph ({', '.join(ALL_GRAPHS)})")
    for name in profile.backends:
        converter = known[name].converter
        if converter is None:
            raise UsageError(f"target {profile.name} cannot be exported here: backend {name} has no converter "
                             f"({known[name].no_converter}); export --target onnx for the ONNX graphs")
        if isinstance(converter, OnDeviceBuild):
            converter.settings(profile)  # a missing [tensorrt]-like table: refused before any work
            lacking = [g for g in RUNTIME_GRAPHS if g not in profile.graphs[name]]
            if lacking and set(profile.precisions[name]) - {"fp32"}:
                raise UsageError(f"{where}: 'graphs.{name}' lacks {lacking[0]}, which its reduced-precision "
                                 f"builds need; add it or list only fp32 in 'precisions.{name}'")
    return profile


def _on_device(name: str) -> bool:
    return bool(getattr(get_backend(name).converter, "on_device", False))


def precision_backends(profile: DeviceProfile, precision: str) -> tuple[str, ...]:
    """The backends of ``profile`` that get ``precision`` artifacts; refuses a precision it lacks.

    Example:
        >>> precision_backends(resolve_target("onnx"), "bf16")
        Traceback (most recent call last):
        ...
        slimsam_edge.errors.UsageError: precision bf16 is not available for target onnx (supported: fp32, fp16, int8); use --target cpu
    """
    listed = profile.backends_for(precision)
    if not listed:
        others = [n for n in list_profiles() if n != profile.name and precision in load_profile(n).all_precisions()]
        hint = f"; use --target {' or --target '.join(others)}" if others else ""
        raise UsageError(f"precision {precision} is not available for target {profile.name} (supported: "
                         f"{', '.join(profile.all_precisions())}){hint}")
    # on-device backends get every precision they list through their build plan
    chosen = tuple(b for b in listed if not _on_device(b))
    if precision != "fp32" and chosen:
        for name in chosen:
            lacking = [g for g in RUNTIME_GRAPHS if g not in profile.graphs[name]]
            if lacking:
                raise UsageError(f"device profile {profile.source}: 'graphs.{name}' lacks {lacking[0]}, which "
                                 f"its {precision} artifacts need; add it or drop {precision} from "
                                 f"'precisions.{name}'")
        from .precision import recipes_for

        recipes_for(chosen, precision)  # a missing recipe or package: refused before the slow part
    return chosen


def add_reduced_precision(root: Path, precision: str, reduced: tuple[str, ...], artifacts: list[Artifact],
                          onnx_files: dict[str, list[Path]], spec: ModelSpec, options: "PrecisionOptions | None",
                          say: Progress) -> tuple[list[Artifact], dict, list[str]]:
    """The ``precision`` artifacts of backends ``reduced`` (:func:`precision_backends`), made from
    the fp32 ones among ``artifacts`` by :func:`~slimsam_edge.exporters.precision.add_precision`
    (calibrated, then gated against fp32) at ``spec``'s input size and pixel mean / std:
    ``(artifacts, {"backend/precision": gate result}, notes)``.

    Illustration (not run as a doctest: it needs a model)::

        made, accuracy, notes = add_reduced_precision(root, "int8", ("onnxruntime",), artifacts,
                                                      onnx_files, spec, None, print)
        accuracy["onnxruntime/int8"]["agreement"]
        # -> 0.97
    """
    from .precision import add_precision

    fp32 = {(a.graph, a.backend): a for a in artifacts if a.precision == "fp32"}
    return add_precision(
        root, precision, reduced, fp32, {g: files[0] for g, files in onnx_files.items()},
        image_size=spec.image_size, pixel_mean=list(spec.pixel_mean), pixel_std=list(spec.pixel_std),
        options=options, progress=say,
    )


def export_bundle(
    sam: torch.nn.Module,
    spec: ModelSpec,
    out: Path | str,
    *,
    target: "str | Path | DeviceProfile" = "cpu",
    precision: str = "fp32",
    precision_options: "PrecisionOptions | None" = None,
    model_id: str | None = None,
    validate: bool = True,
    simplify: bool = True,
    progress: Progress | None = None,
    attention: str = "plain",
) -> Manifest:
    """Write a complete, validated bundle for ``target`` to ``out`` (replaced atomically).

    Arguments:
        sam: the model (``segment_anything.modeling.Sam``).
        spec: its architecture spec (stored in the manifest).
        out: bundle directory.
        target: a shipped profile name (:func:`slimsam_edge.devices.list_profiles`), the path of
            a ``.toml`` profile, or a loaded :class:`~slimsam_edge.devices.DeviceProfile`.
        precision: "fp32", or a reduced precision the target lists (fp32 artifacts are kept as
            the reference); refused with UsageError when the target lacks it.
        precision_options: calibration data, gate threshold, per-backend settings
            (:class:`~slimsam_edge.exporters.precision.PrecisionOptions`).
        validate: compare every artifact with PyTorch (raises ValidationError on mismatch).
        progress: callback receiving a short description of each step.
        attention: an exact formulation of the global-attention blocks for the exported encoder
            (:data:`slimsam_edge.exporters.attention.ATTENTION_VARIANTS`); validation still compares
            with the plain model.
    """
    from .attention import with_attention

    profile = resolve_target(target)
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}; choose one of: {', '.join(PRECISIONS)}")
    reduced = precision_backends(profile, precision) if precision != "fp32" else ()
    say = progress or (lambda _msg: None)
    exported, notes = with_attention(sam, attention, profile.backends)
    with atomic_dir(out) as root:
        say("weights")
        save_model(sam, spec, root / "model.safetensors")
        onnx_files, graph_notes = export_graphs(sam, exported, root, profile, simplify, say,
                                                model_id or spec.model_type)
        artifacts, validation = convert_graphs(sam, root, profile, onnx_files, validate, say)
        artifacts += _reference_artifacts(root)
        graphs = [g for g in ALL_GRAPHS if g in onnx_files or any(a.graph == g for a in artifacts)]
        reference, reference_files, reference_notes = write_reference_io(sam, spec, root, graphs, say)
        accuracy: dict = {}
        extra_notes: list[str] = []
        if reduced:
            extra_arts, accuracy, extra_notes = add_reduced_precision(
                root, precision, reduced, artifacts, onnx_files, spec, precision_options, say)
            artifacts += extra_arts
        plan = _plan(root, profile, onnx_files, artifacts, spec, precision_options, say)
        accuracy.update(plan.accuracy)
        extra_notes += plan.notes
        manifest = Manifest(
            model={"id": model_id or spec.model_type, "type": spec.model_type, "spec": spec.to_dict()},
            target=profile.name, artifacts=artifacts, image_size=spec.image_size,
            pixel_mean=list(spec.pixel_mean), pixel_std=list(spec.pixel_std), mask_threshold=0.0,
            tool_versions=tool_versions(), validation=validation, accuracy=accuracy,
            notes=notes + graph_notes + reference_notes + extra_notes, backend_preference=list(profile.backends),
            prompt_frame=bundle_prompt_frame(spec, profile), reference=reference,
            files={**reference_files, **plan.files}, build_plan=plan.entries,
        )
        say("manifest")
        write_manifest(root, manifest)
    return manifest


def export_graphs(sam: torch.nn.Module, exported: torch.nn.Module, root: Path, profile: DeviceProfile,
                  simplify: bool, say: Progress, model_id: str | None = None) -> tuple[dict[str, list[Path]], list[str]]:
    """Phase 1: every graph some backend of ``profile`` gets, to ONNX under ``root/onnx`` (the
    converters' source): ``({graph: [file, external data files...]}, notes)``. ``exported`` is the
    model the encoder graph is traced from (an attention variant of ``sam``, or ``sam`` itself).

    Illustration (not run as a doctest: it needs a model)::

        files, notes = export_graphs(sam, sam, root, resolve_target("cpu"), True, print)
        files["image_encoder"][0]
        # -> PosixPath('root/onnx/image_encoder.onnx')
    """
    wanted = {g for graphs in profile.graphs.values() for g in graphs}
    files: dict[str, list[Path]] = {}
    notes: list[str] = []
    for graph in (g for g in ALL_GRAPHS if g in wanted):
        say(f"export {graph} to ONNX")
        source = exported if graph == ENCODER else sam
        path, graph_notes = export_onnx(source, graph, root / "onnx" / f"{graph}.onnx", simplify=simplify,
                                        model_id=model_id)
        notes += graph_notes
        files[graph] = external_files(path)
    return files, notes


def convert_graphs(sam: torch.nn.Module, root: Path, profile: DeviceProfile, onnx_files: dict[str, list[Path]],
                   validate: bool, say: Progress) -> tuple[list[Artifact], dict[str, dict]]:
    """Phase 2: each backend's converter makes its fp32 artifact of each graph of
    :func:`export_graphs`; validated against ``sam`` (when ``validate``), listed:
    ``(fp32 artifacts, {"graph/backend/fp32": validation summary})``.

    An on-device backend's converter gives the ONNX it ships instead: validated here with its
    ``source_backend``'s runner, listed later in the build plan (:func:`_plan`). A backend whose
    runtime is not installed here (onnxruntime-cuda on a CPU host) is validated with its converter's
    ``validate_with`` backend, which reads the same files.

    Illustration (not run as a doctest: it needs a model)::

        artifacts, validation = convert_graphs(sam, root, profile, files, True, print)
        validation["image_encoder/onnxruntime/fp32"]["ok"]
        # -> True
    """
    artifacts: list[Artifact] = []
    validation: dict[str, dict] = {}
    done: dict[tuple[Path, str], dict] = {}  # (file, runner backend) -> its validation summary
    for name in profile.backends:
        converter = get_backend(name).converter
        assert converter is not None  # resolve_target refused the target otherwise
        on_device = isinstance(converter, OnDeviceBuild)
        run_with = converter.source_backend if on_device else name
        stand_in = not on_device and converter.validate_with and not get_backend(name).runner.available()
        if stand_in:
            run_with = converter.validate_with
        for graph in profile.graphs[name]:
            say(f"{converter.describe}: {graph} ({name})")
            files = converter.convert(onnx_files[graph], root, graph)
            if validate:
                if (files[0], run_with) not in done:
                    say(f"validate {graph} ({run_with})")
                    with open_runner(files[0], backend=run_with, options=RunnerOptions()) as runner:
                        report = validate_onnx(sam, graph, files[0], run=runner.infer, backend=run_with)
                    done[(files[0], run_with)] = report.summary()
                summary = dict(done[(files[0], run_with)])
                if on_device:
                    summary["validated_with"] = f"{run_with} (the ONNX source the device builds from)"
                elif stand_in:
                    summary["validated_with"] = f"{run_with} (the same files; {name} is not installed here)"
                validation[f"{graph}/{name}/fp32"] = summary
            if on_device:
                continue
            rel = [p.relative_to(root).as_posix() for p in files]
            artifacts.append(Artifact.from_files(root, graph, name, "fp32", rel[0], rel[1:]))
    return artifacts, validation


def bundle_prompt_frame(spec: ModelSpec, profile: DeviceProfile) -> dict:
    """The manifest's ``prompt_frame``: the coordinate frame and ``mask_input`` size of the graphs
    the target holds (the same facts every exported ONNX file carries in its metadata).

    Example:
        >>> from slimsam_edge.models.spec import PRESETS
        >>> bundle_prompt_frame(PRESETS["sam_mini"], resolve_target("onnx"))["mask_input_size"]
        [64, 64]
    """
    held = [g for graphs in profile.graphs.values() for g in graphs]
    return prompt_frame(spec.image_size, 4 * spec.embed_grid, held)


@dataclass
class _Plan:
    """What the plan phase adds to the manifest."""

    entries: dict[str, dict] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    accuracy: dict[str, dict] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _plan(root: Path, profile: DeviceProfile, onnx_files: dict[str, list[Path]], artifacts: list[Artifact],
          spec: ModelSpec, options: "PrecisionOptions | None", say: Progress) -> _Plan:
    """Phase 3: each on-device backend's build plan: ONNX source per graph and precision (reduced
    ones made by the source backend's recipes and gated, unless an artifact already holds them),
    calibration inputs, settings. Every file it names is hashed (``files`` when no artifact lists it)."""
    plan = _Plan()
    hashed = {f for a in artifacts for f in a.files}
    made: dict[tuple[str, str], dict[str, Artifact]] = {}

    def ship(paths: list[Path] | list[str]) -> str:
        # files under root (a converter's output; root may be relative) or bundle-relative names
        rels = [Path(p).relative_to(root).as_posix() if Path(p).is_relative_to(root) else Path(p).as_posix()
                for p in paths]
        for rel in rels:
            if rel not in hashed:
                plan.files[rel] = sha256_file(root / rel)
                hashed.add(rel)
        return rels[0]

    for name in profile.backends:
        converter = get_backend(name).converter
        if not isinstance(converter, OnDeviceBuild):
            continue
        graphs = {g: {"fp32": ship(converter.convert(onnx_files[g], root, g))} for g in profile.graphs[name]}
        for precision in (p for p in profile.precisions[name] if p != "fp32"):
            key = (converter.source_backend, precision)
            if key not in made:
                made[key] = _reduced_sources(root, *key, onnx_files, artifacts, spec, options, plan, say)
            for graph, art in made[key].items():
                if graph in graphs:
                    ship(list(art.files))
                    graphs[graph][precision] = art.path
        calibration = {}
        if set(converter.calibrated) & set(profile.precisions[name]):
            say(f"calibration inputs ({name})")
            calibration[ENCODER] = ship([_write_calibration(root, spec, options)])
        plan.entries[name] = {"settings": converter.settings(profile), "graphs": graphs, "calibration": calibration}
        plan.notes.append(f"{name} engines are built on the device: run `slimsam-edge build BUNDLE` there "
                          f"(sources for {', '.join(profile.precisions[name])})")
    return plan


def _reduced_sources(root: Path, backend: str, precision: str, onnx_files: dict[str, list[Path]],
                     artifacts: list[Artifact], spec: ModelSpec, options: "PrecisionOptions | None",
                     plan: _Plan, say: Progress) -> dict[str, Artifact]:
    """``backend``'s ``precision`` artifacts per graph: those of the export, else made and gated now."""
    have = {a.graph: a for a in artifacts if a.backend == backend and a.precision == precision}
    if have:
        return have
    from dataclasses import replace

    from .precision import PrecisionOptions, add_precision

    opts = options or PrecisionOptions()
    if opts.threshold is not None:  # a --accuracy-threshold is meant for the --precision asked for
        opts = replace(opts, threshold=None)
    fp32 = {}
    for g, files in onnx_files.items():
        rels = [f.relative_to(root).as_posix() for f in files]
        fp32[(g, backend)] = Artifact.from_files(root, g, backend, "fp32", rels[0], rels[1:])
    say(f"{precision} ONNX source ({backend}) for on-device builds")
    made, accuracy, notes = add_precision(
        root, precision, (backend,), fp32, {g: files[0] for g, files in onnx_files.items()},
        image_size=spec.image_size, pixel_mean=list(spec.pixel_mean), pixel_std=list(spec.pixel_std),
        options=opts, progress=say)
    for k, v in accuracy.items():
        plan.accuracy[f"{k} (on-device source)"] = v
    plan.notes += notes
    return {a.graph: a for a in made}


def _write_calibration(root: Path, spec: ModelSpec, options: "PrecisionOptions | None") -> Path:
    """The encoder's calibration inputs (the images the Q/DQ graph was calibrated on) as one
    compressed npz: ``pixels`` (N x S x S x 3 uint8, each image resized as the runtime resizes it,
    zero beyond ``input_hw``) and ``input_hw`` (N x 2). The device normalises them with the
    manifest's pixel mean / std: a quarter of float32's size, before compression."""
    import io

    import numpy as np

    from ..calibration import calibration_images
    from ..transforms import ResizeLongestSide
    from .precision import PrecisionOptions

    opts = options or PrecisionOptions()
    images = calibration_images(opts.calib_data, opts.calib_images, size=opts.calib_size)
    size = spec.image_size
    pixels = np.zeros((len(images), size, size, 3), np.uint8)
    input_hw = np.zeros((len(images), 2), np.int32)
    for i, image in enumerate(images):
        resized = ResizeLongestSide(size).apply_image(np.ascontiguousarray(image))
        h, w = resized.shape[:2]
        pixels[i, :h, :w], input_hw[i] = resized, (h, w)
    buf = io.BytesIO()
    np.savez_compressed(buf, pixels=pixels, input_hw=input_hw)
    return write_bytes_atomic(root / CALIBRATION_DIR / f"{ENCODER}.npz", buf.getvalue())


def write_reference_io(sam: torch.nn.Module, spec: ModelSpec, root: Path, graphs: list[str],
                       say: Progress) -> tuple[dict, dict[str, str], list[str]]:
    """Phase 4: the reference I/O of ``graphs`` (every graph the bundle has), computed by the PyTorch
    model (the fp32 truth) and written to ``reference/io.npz``: ``(reference entry, hashed files, notes)``.

    Illustration (not run as a doctest: it needs a model)::

        entry, files, notes = write_reference_io(sam, sam.spec, root, ["image_encoder"], print)
        sorted(files)
        # -> ['reference/io.npz']
    """
    from ..deploy.reference_io import reference_cases, write_reference
    from ..models.graph_spec import ONNX_SPECS
    from ..models.graphs import make_wrapper

    say("reference I/O")
    device = next(sam.parameters()).device
    wrappers: dict[str, torch.nn.Module] = {}

    def run(graph: str, feed: dict) -> dict:
        if graph not in wrappers:
            wrappers[graph] = make_wrapper(sam, graph)
        module = wrappers[graph]
        with torch.no_grad():
            out = module(*(torch.from_numpy(feed[n]).to(device) for n in ONNX_SPECS[graph].inputs))
        out = (out,) if isinstance(out, torch.Tensor) else out
        return {n: t.detach().float().cpu().numpy() for n, t in zip(ONNX_SPECS[graph].outputs, out)}

    cases, notes = reference_cases(graphs, run, image_size=spec.image_size,
                                   pixel_mean=spec.pixel_mean, pixel_std=spec.pixel_std)
    entry, files = write_reference(root, cases)
    return entry, files, notes


def _reference_artifacts(root: Path) -> list[Artifact]:
    """Phase 3: the PyTorch reference runs every graph from the bundle's weights."""
    return [Artifact.from_files(root, g, "torch", "fp32", "model.safetensors")
            for g in (ENCODER, DECODER_LOWRES, DECODER)]
