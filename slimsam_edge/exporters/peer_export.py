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

Illustration (not run as a doctest: exporting takes seconds to minutes)::

    export_peer("efficientvit-sam-l0", "runs/peers/efficientvit-sam-l0")
    # -> PosixPath('runs/peers/efficientvit-sam-l0')
    EdgePredictor.from_bundle("runs/peers/efficientvit-sam-l0", backend="openvino")
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import Iterable

from ..bundle import Manifest, write_manifest
from ..devices import load_profile
from ..errors import UsageError
from ..fsutil import atomic_dir
from ..models.graph_spec import RUNTIME_GRAPHS
from ..models.peers import Peer, get_peer
from ..runtimes import backends as registered_backends
from .bundle_export import Progress, _convert, _export_graphs, _prompt_frame, _reference_io, resolve_target, tool_versions

__all__ = ["PEER_SPEC_FORMAT", "export_peer", "peer_model_entry"]

#: ``format`` of a peer bundle's ``model.spec`` (not a ModelSpec: the encoder is not a ViT)
PEER_SPEC_FORMAT = "slimsam-edge/peer-spec"
#: the profile a peer bundle is written for (its backends narrowed to those asked for)
PEER_TARGET = "cpu"


def export_peer(
    name: str,
    out_dir: Path | str,
    *,
    backends: Iterable[str] = ("onnxruntime", "openvino"),
    seed: int = 0,
    image_size: int | None = None,
    validate: bool = True,
    simplify: bool = True,
    reference: bool = True,
    progress: Progress | None = None,
) -> Path:
    """Export peer ``name`` with random weights as an fp32 bundle in ``out_dir`` (replaced
    atomically) holding ``image_encoder`` and ``mask_decoder_lowres`` for each of ``backends``.

    Arguments:
        name: a key of :data:`~slimsam_edge.models.peers.PEERS` (else UsageError listing them).
        backends: registered backends whose converter runs here (on-device builders such as
            TensorRT are refused), in preference order.
        seed: the random weights' seed.
        image_size: the encoder input side; ``None`` = the peer's own. Smaller sizes (a multiple
            of the peer's ``size_multiple``) exist for tests: the MACs are recounted, the timing
            is not the peer's.
        validate: compare every graph with PyTorch on each backend (the export's usual check).
        simplify: run onnxsim on the graphs.
        reference: write the reference I/O (``slimsam-edge verify`` compares a device with it);
            a bundle without it still loads, runs and benchmarks.
        progress: called with a short description of each step.

    Returns the bundle directory.
    """
    peer = get_peer(name)
    size = peer.check_size(image_size)
    profile = _peer_profile(tuple(backends))
    say = progress or (lambda _msg: None)
    from ..models.peers.sam import build_peer_sam

    say(f"build {peer.name} ({size} px, random weights, seed {seed})")
    sam = build_peer_sam(peer.name, seed=seed, image_size=size)
    model_id = f"peer:{peer.name}"
    out = Path(out_dir)
    with atomic_dir(out) as root:
        onnx_files, notes = _export_graphs(sam, sam, root, profile, simplify, say, model_id)
        artifacts, validation = _convert(sam, root, profile, onnx_files, validate, say)
        ref_entry, files, reference_notes = {}, {}, ["no reference I/O (exported with reference=False)"]
        if reference:
            ref_entry, files, reference_notes = _reference_io(sam, sam.spec, root, list(RUNTIME_GRAPHS), say)
        manifest = Manifest(
            model=peer_model_entry(peer, size, sam), target=profile.name, artifacts=artifacts,
            image_size=size, pixel_mean=list(peer.pixel_mean), pixel_std=list(peer.pixel_std),
            mask_threshold=0.0, tool_versions=tool_versions(), validation=validation,
            notes=[f"{peer.label_at(size)}: no accuracy is measured for it"] + notes + reference_notes,
            backend_preference=list(profile.backends), prompt_frame=_prompt_frame(sam.spec, profile),
            reference=ref_entry, files=files,
        )
        say("manifest")
        write_manifest(root, manifest)
    return out


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


def _peer_profile(backends: tuple[str, ...]):
    """The ``cpu`` profile narrowed to ``backends``, fp32 only, the runtime pair of graphs each.

    Example:
        >>> _peer_profile(("openvino",)).graphs
        {'openvino': ('image_encoder', 'mask_decoder_lowres')}
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
    return resolve_target(replace(base, backends=backends, precisions={b: ("fp32",) for b in backends},
                                  graphs={b: RUNTIME_GRAPHS for b in backends}, default_backend=backends[0],
                                  default_precision="fp32"))
