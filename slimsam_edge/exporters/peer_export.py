"""Write a peer architecture (random weights) as a bundle that ``bench`` and EdgePredictor run.

A peer (:data:`slimsam_edge.models.peers.PEERS`: MobileSAM, SAM-B, EfficientViT-SAM-L0) is built
with seeded random weights (:func:`slimsam_edge.models.peers.sam.build_peer_sam`) and exported
through the same path as our models (:mod:`.bundle_export`): the runtime pair of graphs
(``image_encoder``: ``image`` 1x3xSxS -> ``image_embeddings`` 1x256xGxG, and
``mask_decoder_lowres``) to ONNX, each backend's converter, validation against PyTorch, the
reference I/O, a hashed manifest, all in a temporary directory moved into place when complete.
There is no weights file and no torch artifact: the graphs are the model.

The manifest's ``image_size``, ``pixel_mean`` / ``pixel_std`` and ``prompt_frame`` are the peer's,
so EdgePredictor needs no special case (EfficientViT-SAM-L0: 512 px input, 64x64 grid, prompts in
the 512 frame, 256x256 low-res masks upscaled 2x). Its ``model`` entry says what it is::

    {"id": "peer:<name>", "type": "peer:<name>", "weights": "random", "label": "... random weights:
     latency only", "note": ..., "encoder_macs": {"linear_conv", "attention", "total"},
     "params": ..., "published_params": ..., "source": ...,
     "spec": {"format": "slimsam-edge/peer-spec", "image_size", "embed_grid", "embed_dim",
              "low_res_size", "pixel_mean", "pixel_std", "decoder", ...}}

Reduced precisions (``precisions=("fp32", "int8")``; fp16, bf16 and int8-bf16 where the backends
have them) are made exactly as our bundles' are (:func:`.bundle_export.add_reduced_precision`:
each backend's recipe, int8 calibrated on procedural images at the peer's input size, the accuracy
gate against the same backend's fp32 artifacts). The weights being random, that gate measures the
reduced artifacts' mask agreement with fp32, not accuracy: the manifest's notes and each accuracy
entry say so.

Illustration (not run as a doctest: exporting takes seconds to minutes)::

    export_peer("mobilesam", "runs/peers/mobilesam", precisions=("fp32", "int8"))
    # -> PosixPath('runs/peers/mobilesam')
    EdgePredictor.from_bundle("runs/peers/mobilesam", backend="openvino", precision="int8")
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from ..bundle import Manifest, write_manifest
from ..devices import PRECISION_PARTS, PRECISIONS, load_profile
from ..errors import UsageError
from ..fsutil import atomic_dir
from ..models.graph_spec import RUNTIME_GRAPHS
from ..models.peers import Peer, get_peer
from ..runtimes import backends as registered_backends
from .bundle_export import (Progress, add_reduced_precision, bundle_prompt_frame, convert_graphs, export_graphs,
                            precision_backends, resolve_target, tool_versions, write_reference_io)

if TYPE_CHECKING:  # pragma: no cover
    from ..devices import DeviceProfile
    from .precision import PrecisionOptions

__all__ = ["PEER_BACKENDS", "PEER_SPEC_FORMAT", "RANDOM_WEIGHTS_GATE", "export_peer", "peer_artifact_precisions", "peer_model_entry"]

#: ``format`` of a peer bundle's ``model.spec`` (not a ModelSpec: the encoder is not a ViT)
PEER_SPEC_FORMAT = "slimsam-edge/peer-spec"
#: the profile a peer bundle is written for (its backends narrowed to those asked for)
PEER_TARGET = "cpu"
#: the backends a peer bundle holds by default (those of :data:`PEER_TARGET` converted here)
PEER_BACKENDS = ("onnxruntime", "openvino")
#: what a peer bundle's accuracy gate measures (its weights are random), in its accuracy entries
RANDOM_WEIGHTS_GATE = ("random weights: agreement with this bundle's fp32 artifacts of the same random model "
                       "(how much the precision changes the masks), not accuracy")


def export_peer(
    name: str,
    out_dir: Path | str,
    *,
    backends: Iterable[str] = PEER_BACKENDS,
    precisions: Iterable[str] = ("fp32",),
    seed: int = 0,
    image_size: int | None = None,
    validate: bool = True,
    simplify: bool = True,
    reference: bool = True,
    precision_options: "PrecisionOptions | None" = None,
    progress: Progress | None = None,
) -> Path:
    """Export peer ``name`` with random weights as a bundle in ``out_dir`` (replaced atomically)
    holding ``image_encoder`` and ``mask_decoder_lowres`` for each of ``backends`` in fp32 and in
    each of ``precisions``.

    Arguments:
        name: a key of :data:`~slimsam_edge.models.peers.PEERS` (else UsageError listing them).
        backends: registered backends whose converter runs here (on-device builders such as
            TensorRT are refused), in preference order.
        precisions: the artifact precisions to write (fp32 is always written: the reference):
            each goes to the backends of ``backends`` whose ``cpu`` profile lists it (int8: ONNX
            Runtime's QDQ graph and OpenVINO's NNCF IR; int8-bf16 and bf16: OpenVINO), made and
            gated as ``export --precision`` makes them. A precision none of ``backends`` has is
            refused before any work. bf16 / int8-bf16 need no artifact of their own to run (the
            fp32 / int8 one with the bf16 hint): :func:`peer_artifact_precisions`.
        seed: the random weights' seed.
        image_size: the encoder input side; ``None`` = the peer's own. Smaller sizes (a multiple
            of the peer's ``size_multiple``) exist for tests: the MACs are recounted, the timing
            is not the peer's.
        validate: compare every fp32 graph with PyTorch on each backend (the export's usual check).
        simplify: run onnxsim on the graphs.
        reference: write the reference I/O (``slimsam-edge verify`` compares a device with it);
            a bundle without it still loads, runs and benchmarks.
        precision_options: calibration and gate settings of the reduced precisions
            (:class:`~slimsam_edge.exporters.precision.PrecisionOptions`); its ``calib_size`` is
            set to the peer's input size (procedural calibration images drawn at that size).
            ``None``: the defaults with ``allow_accuracy_drop`` on (random weights quantize
            poorly: MobileSAM's int8 encoder agrees with fp32 at mask IoU ~0.7-0.9, which says
            nothing of the trained model; the numbers are recorded and the notes say the drop was
            accepted); pass options with it off to enforce the threshold.
        progress: called with a short description of each step.

    Returns the bundle directory.

    Raises:
        UsageError: an unknown peer, backend or precision, a precision none of ``backends`` has.
        AccuracyGateError: a reduced precision's agreement with fp32 below the threshold (unless
            ``precision_options.allow_accuracy_drop``).
    """
    from .precision import PrecisionOptions, recipes_for

    peer = get_peer(name)
    size = peer.check_size(image_size)
    reduced = _reduced(precisions)
    profile = _peer_profile(tuple(backends), reduced)
    chosen = {p: precision_backends(profile, p) for p in reduced}
    for p, bs in chosen.items():
        recipes_for(bs, p)  # a missing package (nncf) is refused before the slow part
    opts = replace(precision_options or PrecisionOptions(allow_accuracy_drop=True), calib_size=size)
    say = progress or (lambda _msg: None)
    from ..models.peers.sam import build_peer_sam

    say(f"build {peer.name} ({size} px, random weights, seed {seed})")
    sam = build_peer_sam(peer.name, seed=seed, image_size=size)
    model_id = f"peer:{peer.name}"
    out = Path(out_dir)
    with atomic_dir(out) as root:
        onnx_files, notes = export_graphs(sam, sam, root, profile, simplify, say, model_id)
        artifacts, validation = convert_graphs(sam, root, profile, onnx_files, validate, say)
        accuracy: dict = {}
        for p, bs in chosen.items():
            made, gated, more = add_reduced_precision(root, p, bs, artifacts, onnx_files, sam.spec, opts, say)
            artifacts += made
            accuracy.update({k: {**v, "meaning": RANDOM_WEIGHTS_GATE} for k, v in gated.items()})
            notes += more
        if accuracy:
            notes.append(f"{peer.title}: the weights are random, so the accuracy gate of the "
                         f"{', '.join(chosen)} artifacts measured their mask agreement with the fp32 artifacts "
                         "(the same random model), not accuracy")
        ref_entry, files, reference_notes = {}, {}, ["no reference I/O (exported with reference=False)"]
        if reference:
            ref_entry, files, reference_notes = write_reference_io(sam, sam.spec, root, list(RUNTIME_GRAPHS), say)
        manifest = Manifest(
            model=peer_model_entry(peer, size, sam), target=profile.name, artifacts=artifacts,
            image_size=size, pixel_mean=list(peer.pixel_mean), pixel_std=list(peer.pixel_std),
            mask_threshold=0.0, tool_versions=tool_versions(), validation=validation, accuracy=accuracy,
            notes=[f"{peer.label_at(size)}: no accuracy is measured for it"] + notes + reference_notes,
            backend_preference=list(profile.backends), prompt_frame=bundle_prompt_frame(sam.spec, profile),
            reference=ref_entry, files=files,
        )
        say("manifest")
        write_manifest(root, manifest)
    return out


def peer_artifact_precisions(precisions: Iterable[str]) -> tuple[str, ...]:
    """The artifact precisions a peer bundle needs to run ``precisions`` (fp32 first, always):
    a precision that is a run-time hint on another's graph needs that graph (bf16: the fp32
    artifact; int8-bf16: the int8 one, its other ops in bf16), ``bench --peer`` exports these.

    Example:
        >>> peer_artifact_precisions(["bf16", "int8-bf16", "int8"])
        ('fp32', 'int8')
        >>> peer_artifact_precisions(["fp16"])
        ('fp32', 'fp16')
    """
    graphs = [PRECISION_PARTS[p][0] for p in precisions if p in PRECISION_PARTS]
    return tuple(dict.fromkeys(["fp32", *graphs]))


def peer_model_entry(peer: Peer, image_size: int, sam=None) -> dict:
    """The manifest's ``model`` entry of ``peer`` exported at ``image_size`` (``sam``: the built
    model, whose parameters are counted; else the registry's count).

    Example:
        >>> m = peer_model_entry(get_peer("efficientvit-sam-l0"), 512)
        >>> m["type"], m["weights"], m["spec"]["embed_grid"], m["spec"]["low_res_size"]
        ('peer:efficientvit-sam-l0', 'random', 64, 256)
    """
    grid = image_size // peer.stride
    if image_size == peer.image_size:
        macs = dict(peer.encoder_macs)
    else:
        from ..models.peers.sam import count_macs

        macs = count_macs(peer, image_size)
    params = sum(int(p.numel()) for p in sam.parameters()) if sam is not None else peer.params
    decoder = asdict(sam.spec.decoder) if sam is not None else None
    if decoder is None:
        from ..models.spec import PRESETS

        decoder = asdict(PRESETS["vit_b"].decoder)
    return {
        "id": f"peer:{peer.name}", "type": f"peer:{peer.name}", "weights": "random", "peer": peer.name,
        "title": peer.title, "label": peer.label_at(image_size),
        "note": f"{peer.label_at(image_size)}: the masks mean nothing, so no accuracy is reported",
        "encoder_macs": macs, "params": params, "published_params": peer.published_params, "source": peer.source,
        "spec": {
            "format": PEER_SPEC_FORMAT, "version": 1, "peer": peer.name, "image_size": image_size,
            "embed_grid": grid, "embed_dim": peer.embed_dim, "low_res_size": 4 * grid,
            "pixel_mean": list(peer.pixel_mean), "pixel_std": list(peer.pixel_std), "decoder": decoder,
        },
    }


def _reduced(precisions: Iterable[str]) -> tuple[str, ...]:
    """The reduced precisions of ``precisions`` (fp32 dropped, duplicates once, order kept).

    Example:
        >>> _reduced(["fp32", "int8", "int8"])
        ('int8',)
        >>> _reduced(["int4"])
        Traceback (most recent call last):
        ...
        slimsam_edge.errors.UsageError: unknown precision 'int4' for a peer bundle; choose from fp32, fp16, bf16, int8, int8-bf16
    """
    asked = tuple(precisions)
    bad = [p for p in asked if p not in PRECISIONS]
    if bad:
        raise UsageError(f"unknown precision {bad[0]!r} for a peer bundle; choose from {', '.join(PRECISIONS)}")
    return tuple(dict.fromkeys(p for p in asked if p != "fp32"))


def _peer_profile(backends: tuple[str, ...], reduced: tuple[str, ...] = ()) -> "DeviceProfile":
    """The ``cpu`` profile narrowed to ``backends``, the runtime pair of graphs each, fp32 plus
    the ``reduced`` precisions each backend has there; a reduced precision none of them has is refused.

    Example:
        >>> _peer_profile(("openvino",)).graphs
        {'openvino': ('image_encoder', 'mask_decoder_lowres')}
        >>> _peer_profile(("onnxruntime", "openvino"), ("int8-bf16",)).precisions
        {'onnxruntime': ('fp32',), 'openvino': ('fp32', 'int8-bf16')}
        >>> _peer_profile(("onnxruntime",), ("int8-bf16",))
        Traceback (most recent call last):
        ...
        slimsam_edge.errors.UsageError: peer precision int8-bf16 is made for openvino only, not for onnxruntime; add that backend or drop int8-bf16
        >>> _peer_profile(("tensorrt",))
        Traceback (most recent call last):
        ...
        slimsam_edge.errors.UsageError: peer bundles hold artifacts converted here; backend tensorrt builds on the device (choose from onnxruntime, openvino, ...)
    """
    if not backends or len(set(backends)) != len(backends):
        raise UsageError(f"peer export needs distinct backends, got {list(backends)}")
    base = load_profile(PEER_TARGET)
    known = registered_backends()
    for b in backends:
        if b in known and getattr(known[b].converter, "on_device", False):
            raise UsageError(f"peer bundles hold artifacts converted here; backend {b} builds on the device "
                             f"(choose from {', '.join(base.backends)}, ...)")
    lists = {b: base.precisions.get(b, ()) for b in backends}
    for p in reduced:
        if not any(p in have for have in lists.values()):
            where = [b for b in base.backends if p in base.precisions.get(b, ())]
            raise UsageError(f"peer precision {p} is made for {', '.join(where)} only, not for "
                             f"{', '.join(backends)}; add that backend or drop {p}")
    precisions = {b: ("fp32", *(p for p in reduced if p in lists[b])) for b in backends}
    return resolve_target(replace(base, backends=backends, precisions=precisions,
                                  graphs={b: RUNTIME_GRAPHS for b in backends}, default_backend=backends[0],
                                  default_precision="fp32"))
