"""Move a ViT-SAM's weights to a finer token grid: smaller patches, windows that cover the same pixels.

A model trained with patch ``p`` and window ``w`` becomes one with patch ``p / f`` and window
``w * f`` (``f`` an integer) on the same input size, so its image embedding -- and the mask
decoder's low-resolution masks, 4x the embedding -- are ``f`` times finer. The weights keep what
they learned:

- patch embedding: the kernel is summed over ``f x f`` blocks, so the new patch embedding of an
  image equals the old one of the image enlarged ``f`` times by pixel repetition (FlexiViT's
  observation, exact here);
- absolute position embedding: bilinear interpolation to the finer grid;
- decomposed relative position tables (window and global blocks): linear interpolation, so an
  offset of ``k`` new tokens reads the old table at ``k / f`` tokens -- the same distance in pixels.

Everything else (attention, MLPs, neck, prompt encoder, mask decoder) is copied unchanged. The
result is a starting point to fine-tune at the finer grid (``train-reference --init ...
--patch-size 8 --window-size 16``), not a finished model.

Example:
    >>> from slimsam_edge.models.spec import PRESETS
    >>> src = PRESETS["sam_mini"].encoder
    >>> dst = finer_grid(src, 2)
    >>> (dst.patch_size, dst.window_size, dst.grid), (src.patch_size, src.window_size, src.grid)
    ((8, 16, 32), (16, 8, 16))
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import TYPE_CHECKING

from ..errors import ModelTypeError

if TYPE_CHECKING:
    import torch

    from .spec import EncoderSpec

#: encoder fields a regrid may change; every other field must match
GRID_FIELDS = ("patch_size", "window_size")


def finer_grid(spec: "EncoderSpec", factor: int) -> "EncoderSpec":
    """``spec`` with patches ``factor`` times smaller and windows ``factor`` times larger (in tokens).

    Example:
        >>> from slimsam_edge.models.spec import PRESETS
        >>> finer_grid(PRESETS["sam_mini"].encoder, 4).patch_size
        4
    """
    if factor < 1 or spec.patch_size % factor:
        raise ModelTypeError(f"cannot split patch {spec.patch_size} into {factor}x{factor} smaller patches; "
                             f"pick a factor that divides {spec.patch_size}")
    return replace(spec, patch_size=spec.patch_size // factor, window_size=spec.window_size * factor)


def non_grid_differences(src: "EncoderSpec", dst: "EncoderSpec") -> list[str]:
    """The encoder fields, other than :data:`GRID_FIELDS`, in which ``src`` and ``dst`` differ.

    Example:
        >>> from slimsam_edge.models.spec import PRESETS
        >>> src = PRESETS["sam_mini"].encoder
        >>> non_grid_differences(src, finer_grid(src, 2)), non_grid_differences(src, replace(src, embed_dim=96))
        ([], ['embed_dim'])
    """
    return [f.name for f in fields(src) if f.name not in GRID_FIELDS and getattr(src, f.name) != getattr(dst, f.name)]


def regrid_factor(src: "EncoderSpec", dst: "EncoderSpec") -> int:
    """The integer ``f`` with ``dst = finer_grid(src, f)``, or a :class:`ModelTypeError` saying why none is.

    Example:
        >>> from slimsam_edge.models.spec import PRESETS
        >>> src = PRESETS["sam_mini"].encoder
        >>> regrid_factor(src, finer_grid(src, 2)), regrid_factor(src, src)
        (2, 1)
    """
    other = non_grid_differences(src, dst)
    if other:
        raise ModelTypeError(f"the encoders differ in {', '.join(other)}, not only in patch and window size; "
                             "pass weights of the same model")
    if dst.patch_size <= 0 or src.patch_size % dst.patch_size:
        raise ModelTypeError(f"patch {dst.patch_size} does not divide patch {src.patch_size}; "
                             "weights move only to a finer grid by an integer factor")
    factor = src.patch_size // dst.patch_size
    if dst.window_size != src.window_size * factor:
        raise ModelTypeError(f"patch {src.patch_size} -> {dst.patch_size} needs window {src.window_size * factor} "
                             f"(the same pixels as window {src.window_size}), got {dst.window_size}")
    return factor


def regrid_state_dict(state: dict[str, "torch.Tensor"], src: "EncoderSpec", dst: "EncoderSpec") -> dict[str, "torch.Tensor"]:
    """A full SAM state dict (``image_encoder.*`` and the rest) for encoder ``dst`` from one for ``src``.

    Example:
        >>> from slimsam_edge.models.build import build_sam
        >>> from slimsam_edge.models.spec import PRESETS
        >>> spec = PRESETS["sam_mini"]
        >>> fine = finer_grid(spec.encoder, 2)
        >>> sd = regrid_state_dict(build_sam(spec).state_dict(), spec.encoder, fine)
        >>> tuple(sd["image_encoder.pos_embed"].shape)
        (1, 32, 32, 192)
    """
    import torch.nn.functional as F

    factor = regrid_factor(src, dst)
    if factor == 1:
        return dict(state)
    out = {}
    for key, t in state.items():
        if not key.startswith("image_encoder."):
            out[key] = t
        elif key.endswith("patch_embed.proj.weight"):  # (C, in, p, p) -> (C, in, p/f, p/f), summed blocks
            c, i, p, _ = t.shape
            q = p // factor
            out[key] = t.reshape(c, i, q, factor, q, factor).sum((3, 5))
        elif key.endswith("pos_embed"):  # (1, g, g, C) -> (1, g*f, g*f, C)
            g = t.shape[1] * factor
            grid = F.interpolate(t.permute(0, 3, 1, 2).float(), size=(g, g), mode="bilinear", align_corners=False)
            out[key] = grid.permute(0, 2, 3, 1).to(t.dtype).contiguous()
        elif ".rel_pos_" in key:  # (2s-1, hd) -> (2sf-1, hd); the end offsets stay the end offsets
            n = 2 * ((t.shape[0] + 1) // 2) * factor - 1
            line = F.interpolate(t.T[None].float(), size=n, mode="linear", align_corners=True)
            out[key] = line[0].T.to(t.dtype).contiguous()
        else:
            out[key] = t
    return out
