"""Peer models as ``segment_anything.modeling.Sam`` objects (random weights), and their MACs counted.

A peer's Sam has the peer's image encoder and SAM's prompt encoder + mask decoder (256 channels,
two-way transformer of depth 2), sized for the peer's input and embedding grid, so the exporters
turn it into the same graphs as one of our models (``image_encoder``: ``image`` 1x3xSxS ->
``image_embeddings`` 1x256xGxG; ``mask_decoder_lowres``) and :class:`~slimsam_edge.EdgePredictor`
runs it unchanged.

Example:
    >>> import torch
    >>> sam = build_peer_sam("mobilesam", image_size=64)
    >>> tuple(sam.image_encoder(torch.zeros(1, 3, 64, 64)).shape), sam.spec.embed_grid
    ((1, 256, 4, 4), 4)
"""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import torch
from torch import nn

from ..build import build_sam, random_init_
from ..encoder import FlexImageEncoderViT
from ..spec import PRESETS, EncoderSpec, ModelSpec
from . import Peer, get_peer

__all__ = ["PeerImageEncoder", "build_peer_encoder", "build_peer_sam", "build_sam_b_encoder", "count_macs"]


class PeerImageEncoder(nn.Module):
    """A peer's encoder body with what the exporters read from a SAM image encoder: ``img_size``
    and the embedding stride as ``patch_embed.proj.kernel_size`` (the decoder graphs size their
    example inputs from ``img_size // patch_embed.proj.kernel_size[0]``; a plain attribute here,
    no weights)."""

    def __init__(self, body: nn.Module, img_size: int, stride: int):
        super().__init__()
        self.body = body
        self.img_size = int(img_size)
        self.patch_embed = SimpleNamespace(proj=SimpleNamespace(kernel_size=(stride, stride)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def build_peer_encoder(name: str, *, seed: int = 0, image_size: int | None = None) -> nn.Module:
    """The image encoder of peer ``name`` with seeded random weights, in eval mode.

    Example:
        >>> enc = build_peer_encoder("efficientvit-sam-l0", image_size=64)
        >>> enc.img_size, enc.training
        (64, False)
    """
    peer = get_peer(name)
    size = peer.check_size(image_size)
    return PeerImageEncoder(peer.load_builder()(seed=seed, img_size=size), size, peer.stride).eval()


def build_peer_sam(name: str, *, seed: int = 0, image_size: int | None = None) -> nn.Module:
    """Peer ``name`` as an eval-mode ``Sam`` with seeded random weights, ``.spec`` set.

    SAM-B is SAM's own ViT-B (:data:`~slimsam_edge.models.spec.PRESETS` ``vit_b``); the others get
    the peer's encoder in front of SAM's prompt encoder and mask decoder. Their ``.spec`` is a
    :class:`~slimsam_edge.models.spec.ModelSpec` named ``peer:<name>`` whose image size, embedding
    grid, pixel mean / std and decoder are the peer's; its encoder entry is a one-block ViT
    stand-in of the same grid (used to size the decoder), not the peer's encoder.
    """
    peer = get_peer(name)
    size = peer.check_size(image_size)
    if peer.vit_preset:  # SAM itself: the whole model from the preset
        return random_init_(build_sam(_vit_spec(peer, size)), seed=seed)
    stand_in = EncoderSpec(img_size=size, patch_size=peer.stride, embed_dim=16, num_heads=1, window_size=1,
                           global_attn_indexes=(), qkv_dims=(16,), mlp_dims=(16,), out_chans=peer.embed_dim)
    spec = ModelSpec(f"peer:{peer.name}", stand_in, PRESETS["vit_b"].decoder, peer.pixel_mean, peer.pixel_std)
    sam = random_init_(build_sam(spec), seed=seed)
    sam.image_encoder = build_peer_encoder(name, seed=seed, image_size=size)
    return sam.eval()


def build_sam_b_encoder(seed: int = 0, img_size: int = 1024) -> nn.Module:
    """SAM's ViT-B image encoder at ``img_size`` with seeded random weights (the sam-b peer's builder)."""
    spec = _vit_spec(get_peer("sam-b"), img_size)
    return random_init_(FlexImageEncoderViT(spec.encoder), seed=seed).eval()  # type: ignore[arg-type]


def _vit_spec(peer: Peer, size: int) -> ModelSpec:
    """The ModelSpec of a SAM peer (``vit_preset``) at input ``size``, named ``peer:<name>``."""
    base = PRESETS[peer.vit_preset]  # type: ignore[index]
    return replace(base, encoder=replace(base.encoder, img_size=size)).with_type(f"peer:{peer.name}")


def count_macs(peer: "Peer | str", image_size: int | None = None) -> dict[str, int]:
    """Multiply-accumulates of one encoder forward, counted by torch's FlopCounterMode on the meta
    device (no arithmetic runs): ``linear_conv`` (convolutions, linear layers), ``attention``
    (the batched matmuls: attention scores and weighted sums, SAM's relative-position terms),
    ``total``. Elementwise ops, norms and softmax are not counted.

    Example:
        >>> m = count_macs("mobilesam", 64)
        >>> m["total"] == m["linear_conv"] + m["attention"] > 0
        True
    """
    from torch.utils.flop_counter import FlopCounterMode

    peer = get_peer(peer) if isinstance(peer, str) else peer
    size = peer.check_size(image_size)
    with torch.device("meta"):
        enc = build_peer_encoder(peer.name, image_size=size)
        x = torch.empty(1, 3, size, size)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        enc(x)
    flops = {str(op).split(".")[-1]: int(n) for op, n in counter.get_flop_counts()["Global"].items()}
    attention = sum(n for op, n in flops.items() if op in ("bmm", "baddbmm")) // 2
    total = sum(flops.values()) // 2
    return {"linear_conv": total - attention, "attention": attention, "total": total}
