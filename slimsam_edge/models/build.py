"""Build a SAM model (torch) from a :class:`ModelSpec`, by composition as segment-anything does.

Example:
    >>> from slimsam_edge.models.spec import PRESETS
    >>> sam = build_sam(PRESETS["sam_mini"])
    >>> sam.image_encoder.img_size
    256
"""

from __future__ import annotations

import torch
from segment_anything.modeling import MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

from .encoder import FlexImageEncoderViT
from .spec import ModelSpec


def build_sam(spec: ModelSpec, *, device: str | torch.device = "cpu") -> Sam:
    """Return an ``eval()``-mode ``segment_anything.modeling.Sam`` with random weights."""
    enc = FlexImageEncoderViT(spec.encoder)
    dim = spec.prompt_embed_dim
    grid = spec.embed_grid
    d = spec.decoder
    prompt = PromptEncoder(
        embed_dim=dim,
        image_embedding_size=(grid, grid),
        input_image_size=(spec.image_size, spec.image_size),
        mask_in_chans=d.mask_in_chans,
    )
    decoder = MaskDecoder(
        num_multimask_outputs=d.num_multimask_outputs,
        transformer=TwoWayTransformer(
            depth=d.transformer_depth, embedding_dim=dim, mlp_dim=d.transformer_mlp_dim,
            num_heads=d.transformer_heads,
        ),
        transformer_dim=dim,
        iou_head_depth=d.iou_head_depth,
        iou_head_hidden_dim=d.iou_head_hidden_dim,
    )
    sam = Sam(enc, prompt, decoder, pixel_mean=list(spec.pixel_mean), pixel_std=list(spec.pixel_std))
    sam.spec = spec  # type: ignore[attr-defined]
    return sam.to(device).eval()


def random_init_(sam: Sam, *, seed: int = 0, std: float = 0.02) -> Sam:
    """Give every parameter small random values (tests: zero rel-pos tables hide bugs)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sam.named_parameters():
            if name.endswith("weight") and "norm" in name:
                p.copy_(1.0 + std * torch.randn(p.shape, generator=g))
            else:
                p.copy_(std * torch.randn(p.shape, generator=g))
    return sam
