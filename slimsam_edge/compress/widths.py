"""Target widths of a pruned encoder: ratios, presets, parameter targets (torch-free).

SlimSAM's "uniform" models apply the pruning ratio to every width (embedding, q/k/v, MLP hidden)
and round down to a multiple of the head count, so every block keeps all its heads.

Example:
    >>> from slimsam_edge.models.spec import PRESETS
    >>> e = uniform_encoder(PRESETS["vit_b"].encoder, RATIO_PRESETS["slimsam-77"])
    >>> e.embed_dim, e.mlp_dims[0], e.head_dims()[0], encoder_params(e)
    (168, 696, 14, 5658968)
"""

from __future__ import annotations

import math
import re
from dataclasses import replace

from ..errors import UsageError
from ..models.spec import EncoderSpec

#: named pruning ratios (the paper's SlimSAM-50 and SlimSAM-77)
RATIO_PRESETS: dict[str, float] = {"slimsam-50": 0.5, "slimsam-77": 0.77}


def check_ratio(ratio: float) -> float:
    """Return ``ratio`` if it lies strictly between 0 and 1, else raise :class:`UsageError`.

    Example:
        >>> check_ratio(0.5)
        0.5
    """
    if not (isinstance(ratio, (int, float)) and 0.0 < float(ratio) < 1.0):
        raise UsageError(f"pruning ratio {ratio} is outside (0, 1); e.g. --ratio 0.5 keeps half the channels")
    return float(ratio)


def keep_width(width: int, ratio: float, multiple: int) -> int:
    """Channels kept of ``width`` at ``ratio``: rounded down to ``multiple``, at least ``multiple``.

    Example:
        >>> keep_width(768, 0.77, 12), keep_width(3072, 0.77, 12)
        (168, 696)
    """
    kept = int(math.floor(width * (1.0 - ratio) / multiple + 1e-9)) * multiple
    return max(multiple, min(width, kept))


def uniform_encoder(e: EncoderSpec, ratio: float) -> EncoderSpec:
    """``e`` with every width pruned by ``ratio`` (local scope, SlimSAM "uniform").

    Example:
        >>> from slimsam_edge.models.spec import PRESETS
        >>> uniform_encoder(PRESETS["vit_b"].encoder, 0.5).embed_dim
        384
    """
    check_ratio(ratio)
    h = e.num_heads
    return replace(
        e,
        embed_dim=keep_width(e.embed_dim, ratio, h),
        qkv_dims=tuple(keep_width(q, ratio, h) for q in e.qkv_dims),
        mlp_dims=tuple(keep_width(m, ratio, h) for m in e.mlp_dims),
    )


def encoder_params(e: EncoderSpec) -> int:
    """Parameter count of a :class:`FlexImageEncoderViT` built from ``e`` (analytic).

    Example:
        >>> from slimsam_edge.models.spec import PRESETS
        >>> encoder_params(PRESETS["vit_p50"].encoder)
        23897216
    """
    c, g, o = e.embed_dim, e.grid, e.out_chans
    n = c * e.in_chans * e.patch_size**2 + c + g * g * c
    for i in range(e.depth):
        q, m = e.qkv_dims[i], e.mlp_dims[i]
        side = g if i in e.global_attn_indexes else e.window_size
        n += 4 * c + (c * 3 * q + 3 * q) + (q * c + c) + (c * m + m) + (m * c + c)
        if e.use_rel_pos:
            n += 2 * (2 * side - 1) * (q // e.num_heads)
    return n + c * o + 2 * o + o * o * 9 + 2 * o


_UNITS = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}


def parse_count(text: str | int | float) -> int:
    """Parse a parameter count such as ``"5.7M"``, ``"500k"``, ``"5700000"`` or ``5.7e6``.

    Example:
        >>> parse_count("5.7M"), parse_count("500k"), parse_count(1000)
        (5700000, 500000, 1000)
    """
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([kmgKMG]?)\s*", str(text))
        if not m:
            raise UsageError(f"target parameter count {text!r} is not a number like 5.7M, 500k or 5700000")
        value = float(m.group(1)) * _UNITS[m.group(2).lower()]
    if not math.isfinite(value) or value <= 0:
        raise UsageError(f"target parameter count {str(text)[:40]!r} must be a positive finite number like 5.7M")
    return int(round(value))


def ratio_for_params(e: EncoderSpec, target: int) -> float:
    """The smallest uniform ratio whose encoder has at most ``target`` parameters.

    Raises :class:`UsageError` when ``target`` is not below the unpruned encoder's count or
    below the smallest encoder the head count allows.

    Example:
        >>> from slimsam_edge.models.spec import PRESETS
        >>> e = uniform_encoder(PRESETS["vit_b"].encoder, ratio_for_params(PRESETS["vit_b"].encoder, 5_700_000))
        >>> e.embed_dim, e.mlp_dims[0]
        (168, 696)
    """
    full = encoder_params(e)
    if target >= full:
        raise UsageError(f"target of {target:,} parameters is unreachable: the unpruned encoder has "
                         f"{full:,}; ask for fewer")
    lo, hi = 1e-6, 1.0 - 1e-9
    smallest = encoder_params(uniform_encoder(e, hi))
    if target < smallest:
        raise UsageError(f"target of {target:,} parameters is unreachable: the smallest encoder with "
                         f"{e.num_heads} heads has {smallest:,}; ask for more")
    for _ in range(60):  # bisection: params are non-increasing in the ratio
        mid = (lo + hi) / 2
        if encoder_params(uniform_encoder(e, mid)) <= target:
            hi = mid
        else:
            lo = mid
    return hi
