"""Peer SAM architectures (random weights) that ``bench --peer NAME`` times beside our bundles.

Torch-free registry: :data:`PEERS` says, per peer, its input size, embedding grid, pixel mean /
std, the builder of its encoder (imported only when called), its encoder MACs counted at its input
size (conv + linear + attention matmuls, :func:`slimsam_edge.models.peers.sam.count_macs`; a test
recounts them), its published parameter count and the label every report row carries: the weights
are random, so a peer's numbers are **latency only**, never accuracy. The torch side is
:mod:`.sam` (``build_peer_sam``); :func:`slimsam_edge.exporters.peer_export.export_peer` writes a
peer as a bundle.

Example:
    >>> list(PEERS)
    ['mobilesam', 'sam-b', 'efficientvit-sam-l0']
    >>> p = get_peer("efficientvit-sam-l0")
    >>> p.image_size, p.embed_grid, round(p.encoder_macs["total"] / 1e9, 1)
    (512, 64, 34.8)
    >>> p.label
    'EfficientViT-SAM-L0 architecture (512 px), random weights: latency only'
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

from ...errors import UsageError
from ..spec import SAM_PIXEL_MEAN, SAM_PIXEL_STD

__all__ = ["PEERS", "Peer", "get_peer", "peer_names"]


@dataclass(frozen=True)
class Peer:
    """One peer architecture.

    Arguments:
        name: registry key (``--peer NAME``).
        title: the model's public name and encoder.
        image_size: square encoder input side in pixels (the prompt frame's long side too).
        stride: input pixels per embedding cell (embedding grid = image_size // stride).
        size_multiple: a reduced ``image_size`` (tests) must be a multiple of this.
        builder: ``"module:function"`` of the encoder builder, ``function(seed=, img_size=)``
            returning an eval-mode module 1x3xSxS -> 1x256xGxG (imported when called).
        encoder_macs: ``linear_conv`` / ``attention`` / ``total`` MACs of one encoder forward at
            ``image_size``, counted (see :func:`slimsam_edge.models.peers.sam.count_macs`).
        params: parameters of our build (encoder + SAM prompt encoder + mask decoder; BatchNorm
            running statistics not counted).
        published_params: the model's published parameter count, and ``source`` where from.
        vit_preset: for SAM itself, the :data:`~slimsam_edge.models.spec.PRESETS` entry the whole
            model is built from (``build_peer_sam``); ``None``: the peer's encoder in front of
            SAM's prompt encoder and mask decoder.
    """

    name: str
    title: str
    image_size: int
    stride: int
    size_multiple: int
    builder: str
    encoder_macs: dict[str, int]
    params: int
    published_params: int
    source: str
    vit_preset: str | None = None
    pixel_mean: tuple[float, float, float] = SAM_PIXEL_MEAN
    pixel_std: tuple[float, float, float] = SAM_PIXEL_STD
    embed_dim: int = 256

    @property
    def embed_grid(self) -> int:
        return self.image_size // self.stride

    @property
    def label(self) -> str:
        """The one line every row of this peer carries."""
        return self.label_at(self.image_size)

    def label_at(self, image_size: int) -> str:
        """:attr:`label` for an export at ``image_size`` (tests export peers smaller).

        Example:
            >>> get_peer("mobilesam").label_at(256)
            'MobileSAM (TinyViT-5M encoder) architecture (256 px), random weights: latency only'
        """
        return f"{self.title} architecture ({int(image_size)} px), random weights: latency only"

    def check_size(self, image_size: int | None) -> int:
        """``image_size`` (default: the peer's own), refused (UsageError) unless it is a positive
        multiple of :attr:`size_multiple`.

        Example:
            >>> get_peer("mobilesam").check_size(None), get_peer("mobilesam").check_size(256)
            (1024, 256)
        """
        size = self.image_size if image_size is None else int(image_size)
        if size <= 0 or size % self.size_multiple:
            raise UsageError(f"peer {self.name}: image size {image_size} is not a positive multiple of "
                             f"{self.size_multiple}; omit it for the peer's own {self.image_size}")
        return size

    def load_builder(self) -> Callable[..., Any]:
        """The encoder builder (imports torch)."""
        module, func = self.builder.split(":")
        return getattr(importlib.import_module(module, __name__), func)


#: the peers, in report order (smallest encoder first after ours)
PEERS: dict[str, Peer] = {
    "mobilesam": Peer(
        name="mobilesam", title="MobileSAM (TinyViT-5M encoder)", image_size=1024, stride=16, size_multiple=16,
        builder=".tinyvit:build_mobilesam_encoder",
        encoder_macs={"linear_conv": 36_173_217_792, "attention": 2_595_077_632, "total": 38_768_295_424},
        params=9_808_452, published_params=9_660_000,
        source="MobileSAM paper (Zhang et al. 2023): encoder 5.78M + decoder 3.876M",
    ),
    "sam-b": Peer(
        name="sam-b", title="SAM-B (ViT-B encoder)", image_size=1024, stride=16, size_multiple=16,
        builder=".sam:build_sam_b_encoder",
        encoder_macs={"linear_conv": 368_704_487_424, "attention": 117_334_179_840, "total": 486_038_667_264},
        params=93_735_472, published_params=93_735_472,
        source="segment-anything's sam_vit_b_01ec64.pth", vit_preset="vit_b",
    ),
    "efficientvit-sam-l0": Peer(
        name="efficientvit-sam-l0", title="EfficientViT-SAM-L0", image_size=512, stride=8, size_multiple=32,
        builder=".efficientvit:build_efficientvit_sam_l0_encoder",
        encoder_macs={"linear_conv": 34_705_768_448, "attention": 69_206_016, "total": 34_774_974_464},
        params=34_792_784, published_params=34_800_000,
        source="EfficientViT-SAM paper (Zhang et al. 2024), table 1: 34.8M params, 35G MACs",
    ),
}


def peer_names() -> list[str]:
    """The registered peer names, in report order."""
    return list(PEERS)


def get_peer(name: str) -> Peer:
    """The peer called ``name``; an unknown name is a UsageError listing the peers.

    Example:
        >>> get_peer("sam-h")
        Traceback (most recent call last):
        ...
        slimsam_edge.errors.UsageError: unknown peer 'sam-h'; choose one of: mobilesam, sam-b, efficientvit-sam-l0
    """
    try:
        return PEERS[name]
    except (KeyError, TypeError):
        raise UsageError(f"unknown peer {name!r}; choose one of: {', '.join(PEERS)}") from None
