"""Parameters and MACs per part. Encoder MACs count the attention matmuls, not only linear/conv.

SlimSAM's paper counts linear and conv layers only; at 1024x1024 the attention matmuls of the four
global blocks add about as much again for SlimSAM-77, so both are reported.

Example:
    >>> from slimsam_edge.models.spec import PRESETS
    >>> m = encoder_macs(PRESETS["vit_p77"].encoder)
    >>> round(m["linear_conv"] / 1e9, 1), m["attention"] > 20e9
    (20.7, True)
"""

from __future__ import annotations

import math
from typing import Any

from .spec import EncoderSpec, ModelSpec


def encoder_macs(e: EncoderSpec) -> dict[str, int]:
    """Multiply-accumulates of one encoder forward at ``e.img_size``, split by kind."""
    g = e.grid
    tokens = g * g
    lin = tokens * e.embed_dim * e.in_chans * e.patch_size**2  # patch embedding conv
    attn = 0
    for i in range(e.depth):
        q, m, c = e.qkv_dims[i], e.mlp_dims[i], e.embed_dim
        if i in e.global_attn_indexes:
            n_windows, side = 1, g
        else:
            n_windows, side = math.ceil(g / e.window_size) ** 2, e.window_size
        t_pad = n_windows * side * side  # padded token count
        lin += t_pad * c * 3 * q + tokens * (q * c + 2 * c * m)
        per_window = side * side
        attn += n_windows * 2 * per_window * per_window * q  # q@k^T and attn@v, all heads
        if e.use_rel_pos:
            attn += t_pad * 2 * side * q  # decomposed rel-pos einsums (h and w)
    lin += tokens * e.embed_dim * e.out_chans + tokens * e.out_chans * e.out_chans * 9  # neck
    return {"linear_conv": lin, "attention": attn, "total": lin + attn}


def count_params(module: Any) -> int:
    return sum(int(p.numel()) for p in module.parameters())


def model_report(model: Any, spec: ModelSpec, *, decoder_points: int = 1) -> dict[str, Any]:
    """Parameters per part and MACs (encoder analytic; decoder counted by torch per prompt)."""
    macs = encoder_macs(spec.encoder)
    e = spec.encoder
    return {
        "model_type": spec.model_type,
        "image_size": spec.image_size,
        "embedding_shape": [spec.prompt_embed_dim, spec.embed_grid, spec.embed_grid],
        "encoder": {
            "embed_dim": e.embed_dim,
            "depth": e.depth,
            "num_heads": e.num_heads,
            "window_size": e.window_size,
            "global_attn_indexes": list(e.global_attn_indexes),
            "patch_size": e.patch_size,
            "uniform": e.is_uniform(),
            "blocks": [
                {
                    "index": i,
                    "attention": "global" if i in e.global_attn_indexes else f"window {e.window_size}",
                    "qkv_dim": e.qkv_dims[i],
                    "head_dim": e.head_dims()[i],
                    "mlp_dim": e.mlp_dims[i],
                }
                for i in range(e.depth)
            ],
        },
        "params": {
            "image_encoder": count_params(model.image_encoder),
            "prompt_encoder": count_params(model.prompt_encoder),
            "mask_decoder": count_params(model.mask_decoder),
            "total": count_params(model),
        },
        "macs": {
            "image_encoder": macs,
            "decoder_per_prompt": decoder_macs(model, spec, decoder_points),
        },
    }


def decoder_macs(model: Any, spec: ModelSpec, points: int = 1) -> int:
    """MACs of prompt encoder + mask decoder for one prompt of ``points`` points (+ pad point)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from .graphs import LowResDecoder

    dec = LowResDecoder(model).eval()
    feed = dec.example_inputs(points)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        dec(*feed)
    return int(counter.get_total_flops() // 2)
