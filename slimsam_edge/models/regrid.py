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

The same interpolation moves a model to a *smaller input size* (``compress --image-size S``):
the patch stays, the token grid shrinks to ``S / patch``, the position embedding and the
relative-position tables are resampled to it, and windows are re-tiled by
:func:`resolution_window` (global blocks stay global). :func:`resample_model` does it;
:func:`resize_input` and :func:`resize_embedding` give the student its input and the teacher's
target at the student's size.

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

from ..errors import ModelTypeError, UsageError

if TYPE_CHECKING:
    import torch

    from .spec import EncoderSpec, ModelSpec

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
    factor = regrid_factor(src, dst)
    if factor == 1:
        return dict(state)
    out = move_position_tables(state, dst)
    for key, t in state.items():
        if key.startswith("image_encoder.") and key.endswith("patch_embed.proj.weight"):
            c, i, p, _ = t.shape  # (C, in, p, p) -> (C, in, p/f, p/f), summed blocks
            q = p // factor
            out[key] = t.reshape(c, i, q, factor, q, factor).sum((3, 5))
    return out


def interpolate_pos_embed(t: "torch.Tensor", grid: int) -> "torch.Tensor":
    """An absolute position embedding ``(1, g, g, C)`` resampled bilinearly to ``(1, grid, grid, C)``.

    Example:
        >>> import torch
        >>> tuple(interpolate_pos_embed(torch.ones(1, 4, 4, 3), 2).shape)
        (1, 2, 2, 3)
    """
    import torch.nn.functional as F

    if t.shape[1] == grid:
        return t
    out = F.interpolate(t.permute(0, 3, 1, 2).float(), size=(grid, grid), mode="bilinear", align_corners=False)
    return out.permute(0, 2, 3, 1).to(t.dtype).contiguous()


def interpolate_rel_pos(t: "torch.Tensor", rows: int) -> "torch.Tensor":
    """A decomposed relative-position table ``(2s-1, hd)`` resampled linearly to ``(rows, hd)``; the end
    offsets stay the end offsets (``align_corners``), so an offset reads the old table at the same
    fraction of the attention span.

    Example:
        >>> import torch
        >>> interpolate_rel_pos(torch.arange(5.0)[:, None], 3)[:, 0].tolist()
        [0.0, 2.0, 4.0]
    """
    import torch.nn.functional as F

    if t.shape[0] == rows:
        return t
    line = F.interpolate(t.T[None].float(), size=rows, mode="linear", align_corners=True)
    return line[0].T.to(t.dtype).contiguous()


def attention_span(e: "EncoderSpec", block: int) -> int:
    """Tokens per side that block ``block`` attends over: the grid (global) or the window.

    Example:
        >>> from slimsam_edge.models.spec import PRESETS
        >>> e = PRESETS["sam_mini"].encoder
        >>> attention_span(e, 2), attention_span(e, 0)
        (16, 8)
    """
    return e.grid if block in e.global_attn_indexes else e.window_size


def move_position_tables(state: dict[str, "torch.Tensor"], dst: "EncoderSpec") -> dict[str, "torch.Tensor"]:
    """``state`` with the encoder's position embedding resampled to ``dst``'s grid and every block's
    relative-position tables to ``dst``'s attention span of that block (2 x span - 1 rows); other
    tensors are passed through.

    Example:
        >>> from slimsam_edge.models.build import build_sam
        >>> from slimsam_edge.models.spec import PRESETS
        >>> spec = PRESETS["sam_mini"]
        >>> sd = move_position_tables(build_sam(spec).state_dict(), at_image_size(spec, 128).encoder)
        >>> tuple(sd["image_encoder.pos_embed"].shape), tuple(sd["image_encoder.blocks.0.attn.rel_pos_h"].shape)
        ((1, 8, 8, 192), (7, 16))
    """
    out = {}
    for key, t in state.items():
        if key == "image_encoder.pos_embed":
            t = interpolate_pos_embed(t, dst.grid)
        elif key.startswith("image_encoder.blocks.") and key.endswith((".rel_pos_h", ".rel_pos_w")):
            t = interpolate_rel_pos(t, 2 * attention_span(dst, int(key.split(".")[2])) - 1)
        out[key] = t
    return out


# --- a smaller input size (compress --image-size) ---------------------------------------------------

def resolution_window(e: "EncoderSpec", image_size: int) -> int | None:
    """The window (in tokens) of ``e`` moved to input ``image_size``, or None where no window fits.

    The rule: the smallest divisor of the new grid that is at least ``window * image_size / img_size``
    (the same pixels of the original image, or more) and at most ``window`` (never more tokens than
    the teacher's window). Windows then tile the new grid exactly (no padding); global blocks stay
    global. At the encoder's own size the window is unchanged (SAM's 14 pads its 64x64 grid).

    Example:
        >>> from slimsam_edge.models.spec import PRESETS
        >>> b, mini = PRESETS["vit_b"].encoder, PRESETS["sam_mini"].encoder
        >>> resolution_window(b, 768), resolution_window(b, 512), resolution_window(b, 960)
        (12, 8, None)
        >>> resolution_window(mini, 192), resolution_window(mini, 128), resolution_window(mini, 240)
        (6, 4, None)
    """
    if image_size == e.img_size:
        return e.window_size
    if image_size <= 0 or image_size % e.patch_size or image_size > e.img_size:
        return None
    grid = image_size // e.patch_size
    low = e.window_size * image_size / e.img_size
    return next((d for d in range(1, min(grid, e.window_size) + 1) if grid % d == 0 and d >= low - 1e-9), None)


def resolution_sizes(e: "EncoderSpec") -> list[int]:
    """Every input size that ``e`` can move to (:func:`resolution_window` finds a window), ascending.

    Example:
        >>> from slimsam_edge.models.spec import PRESETS
        >>> resolution_sizes(PRESETS["sam_mini"].encoder)[-5:]
        [128, 160, 192, 224, 256]
        >>> 768 in resolution_sizes(PRESETS["vit_b"].encoder), 960 in resolution_sizes(PRESETS["vit_b"].encoder)
        (True, False)
    """
    return [s for s in range(e.patch_size, e.img_size + 1, e.patch_size) if resolution_window(e, s) is not None]


def check_image_size(e: "EncoderSpec", image_size: int) -> None:
    """Refuse an input size ``e`` cannot move to, in one line that lists the sizes that work.

    Example:
        >>> from slimsam_edge.models.spec import PRESETS
        >>> check_image_size(PRESETS["sam_mini"].encoder, 200)
        Traceback (most recent call last):
        ...
        slimsam_edge.errors.UsageError: --image-size 200 is not a multiple of the patch size 16; sizes that work for this 256 px teacher (patch 16, window 8): 16, 32, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256
    """
    if resolution_window(e, image_size) is not None:
        return
    if image_size > e.img_size:
        why = f"is larger than the teacher's input {e.img_size} px (the student cannot see more than its teacher)"
    elif image_size <= 0 or image_size % e.patch_size:
        why = f"is not a multiple of the patch size {e.patch_size}"
    else:
        g = image_size // e.patch_size
        why = (f"leaves a {g}x{g} token grid that no window of {e.window_size * image_size / e.img_size:g} to "
               f"{e.window_size} tokens tiles")
    sizes = ", ".join(map(str, resolution_sizes(e)))
    raise UsageError(f"--image-size {image_size} {why}; sizes that work for this {e.img_size} px teacher "
                     f"(patch {e.patch_size}, window {e.window_size}): {sizes}")


def at_image_size(spec: "ModelSpec", image_size: int) -> "ModelSpec":
    """``spec`` with input ``image_size`` and the window of :func:`resolution_window`; the prompt encoder
    and mask decoder follow the grid (they are built from the encoder's size). One-line
    :class:`UsageError` for a size that does not work.

    Example:
        >>> from slimsam_edge.models.spec import PRESETS
        >>> s = at_image_size(PRESETS["sam_mini"], 192)
        >>> s.image_size, s.embed_grid, s.encoder.window_size, s.low_res_size, s.encoder.global_attn_indexes
        (192, 12, 6, 48, (2, 5, 8, 11))
    """
    check_image_size(spec.encoder, image_size)
    if image_size == spec.image_size:
        return spec
    enc = replace(spec.encoder, img_size=int(image_size), window_size=resolution_window(spec.encoder, image_size))
    return replace(spec, model_type="custom", encoder=enc)


def resample_model(sam: "torch.nn.Module", spec: "ModelSpec", image_size: int) -> tuple["torch.nn.Module", "ModelSpec"]:
    """A new model for input ``image_size`` with ``sam``'s weights: position embedding and
    relative-position tables interpolated (:func:`move_position_tables`), everything else copied.

    Example:
        >>> import torch
        >>> from slimsam_edge.models.build import build_sam
        >>> from slimsam_edge.models.spec import PRESETS
        >>> small, spec = resample_model(build_sam(PRESETS["sam_mini"]), PRESETS["sam_mini"], 128)
        >>> tuple(small.image_encoder(torch.zeros(1, 3, 128, 128)).shape), spec.image_size
        ((1, 128, 8, 8), 128)
    """
    from .build import build_sam

    new_spec = at_image_size(spec, image_size)
    if new_spec == spec:
        return sam, spec
    new = build_sam(new_spec, device=next(sam.parameters()).device)
    new.load_state_dict(move_position_tables(sam.state_dict(), new_spec.encoder), strict=True)
    return new.train(sam.training), new_spec


def resize_input(x: "torch.Tensor", size: int) -> "torch.Tensor":
    """A normalised NCHW batch of (longest-side resized, padded) square model inputs resized to ``size``
    (antialiased bilinear, like the predictor's resize of the image; the padding scales with it, so the
    result is the image resized to ``size`` and padded).

    Example:
        >>> import torch
        >>> tuple(resize_input(torch.zeros(2, 3, 256, 256), 192).shape)
        (2, 3, 192, 192)
    """
    return _resize_square(x, size, antialias=True)


def resize_embedding(t: "torch.Tensor", grid: int) -> "torch.Tensor":
    """Image embeddings ``(N, C, g, g)`` resized (bilinear) to ``grid x grid``: the teacher's target
    for a student of a smaller input size.

    Example:
        >>> import torch
        >>> tuple(resize_embedding(torch.zeros(1, 128, 16, 16), 12).shape)
        (1, 128, 12, 12)
    """
    return _resize_square(t, grid, antialias=False)


def _resize_square(t: "torch.Tensor", side: int, antialias: bool) -> "torch.Tensor":
    import torch.nn.functional as F

    if t.shape[-1] == side:
        return t
    return F.interpolate(t, size=(side, side), mode="bilinear", align_corners=False, antialias=antialias)
