"""Export a model to a bundle directory: ONNX graphs, OpenVINO IR, weights, manifest.json.

Every graph is validated against PyTorch on each backend before it is listed; a reduced
precision (fp16 / bf16 / int8) adds its artifacts next to the fp32 ones and passes the accuracy
gate (:mod:`slimsam_edge.exporters.gate`) first. The bundle is built in a temporary directory and
moved into place only when complete, so a refused export leaves nothing behind.

Example:
    >>> sam, spec = load_model("sam_vit_b_01ec64.pth")            # doctest: +SKIP
    >>> manifest = export_bundle(sam, spec, "bundle/", target="cpu")  # doctest: +SKIP
    >>> manifest = export_bundle(sam, spec, "b8/", precision="int8")   # doctest: +SKIP
    >>> manifest.accuracy["openvino/int8"]["agreement"]                # doctest: +SKIP
    0.97
"""

from __future__ import annotations

import platform
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch

from ..bundle import Artifact, Manifest, write_manifest
from ..fsutil import atomic_dir
from ..models.io import save_model
from ..models.spec import ModelSpec
from .onnx_export import export_onnx, external_files
from .targets import check_precision, get_target
from .validate import validate_onnx

Progress = Callable[[str], None]

if TYPE_CHECKING:  # pragma: no cover
    from .precision import PrecisionOptions


def tool_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("slimsam-edge", "torch", "onnx", "onnxruntime", "openvino", "onnxsim", "nncf", "segment-anything"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    return out


def export_bundle(
    sam: torch.nn.Module,
    spec: ModelSpec,
    out: Path | str,
    *,
    target: str = "cpu",
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
        target: a name from :data:`slimsam_edge.exporters.targets.TARGETS`.
        precision: "fp32", or a reduced precision the target lists (fp32 artifacts are kept as
            the reference); refused with UsageError when the target lacks it.
        precision_options: calibration data, gate threshold, exclusions
            (:class:`~slimsam_edge.exporters.precision.PrecisionOptions`).
        validate: compare every artifact with PyTorch (raises ValidationError on mismatch).
        progress: callback receiving a short description of each step.
        attention: an exact formulation of the global-attention blocks for the exported encoder
            (:data:`slimsam_edge.exporters.attention.ATTENTION_VARIANTS`); validation still compares
            with the plain model.
    """
    tgt = get_target(target)
    reduced_backends = check_precision(tgt, precision) if precision != "fp32" else ()
    if reduced_backends:
        from .precision import recipes_for

        recipes_for(reduced_backends, precision)  # missing packages: fail before the slow part
    say = progress or (lambda _msg: None)
    validation: dict[str, dict] = {}
    from .attention import with_attention

    exported, notes = with_attention(sam, attention, tuple(tgt.backends))
    accuracy: dict = {}
    with atomic_dir(out) as root:
        artifacts: list[Artifact] = []
        say("weights")
        save_model(sam, spec, root / "model.safetensors")
        onnx_paths: dict[str, Path] = {}
        for graph in tgt.graphs["onnxruntime"]:
            say(f"export {graph} to ONNX")
            source = exported if graph == "image_encoder" else sam
            path, graph_notes = export_onnx(source, graph, root / "onnx" / f"{graph}.onnx", simplify=simplify)
            notes += graph_notes
            onnx_paths[graph] = path
            if validate:
                say(f"validate {graph} (onnxruntime)")
                validation[f"{graph}/onnxruntime/fp32"] = validate_onnx(sam, graph, path).summary()
            files = [p.relative_to(root).as_posix() for p in external_files(path)]
            artifacts.append(Artifact.from_files(root, graph, "onnxruntime", "fp32", files[0], files[1:]))
        if "openvino" in tgt.backends:
            from ..runtimes import RunnerOptions, open_runner
            from .openvino_ir import onnx_to_ir

            for graph in tgt.graphs["openvino"]:
                say(f"convert {graph} to OpenVINO IR")
                xml, bin_ = onnx_to_ir(onnx_paths[graph], root / "openvino" / f"{graph}.xml")
                if validate:
                    say(f"validate {graph} (openvino)")
                    runner = open_runner(xml, backend="openvino", options=RunnerOptions(precision="fp32"))
                    with runner:
                        rep = validate_onnx(sam, graph, xml, run=runner.infer, backend="openvino")
                    validation[f"{graph}/openvino/fp32"] = rep.summary()
                rel = [p.relative_to(root).as_posix() for p in (xml, bin_)]
                artifacts.append(Artifact.from_files(root, graph, "openvino", "fp32", rel[0], rel[1:]))
        for graph in ("image_encoder", "mask_decoder_lowres", "mask_decoder"):
            artifacts.append(Artifact.from_files(root, graph, "torch", "fp32", "model.safetensors"))
        if reduced_backends:
            from .precision import add_precision

            fp32 = {(a.graph, a.backend): a for a in artifacts}
            extra_arts, accuracy, extra_notes = add_precision(
                root, precision, reduced_backends, fp32, onnx_paths, image_size=spec.image_size,
                pixel_mean=list(spec.pixel_mean), pixel_std=list(spec.pixel_std),
                options=precision_options, progress=say,
            )
            artifacts += extra_arts
            notes += extra_notes
        manifest = Manifest(
            model={"id": model_id or spec.model_type, "type": spec.model_type, "spec": spec.to_dict()},
            target=tgt.name,
            artifacts=artifacts,
            image_size=spec.image_size,
            pixel_mean=list(spec.pixel_mean),
            pixel_std=list(spec.pixel_std),
            mask_threshold=0.0,
            tool_versions=tool_versions(),
            validation=validation,
            accuracy=accuracy,
            notes=notes,
        )
        say("manifest")
        write_manifest(root, manifest)
    return manifest
