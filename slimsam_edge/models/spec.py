"""Architecture specs (torch-free): what a SAM-family model looks like, as JSON.

A :class:`ModelSpec` describes the image encoder block by block (a pruned encoder may have a
different q/k/v width and MLP width in every block), the prompt encoder and the mask decoder.
``compress`` writes it next to the weights; ``export`` and the bundle manifest carry it.
:func:`spec_from_shapes` recovers a spec from a state dict's tensor shapes, which is how the
model type of a checkpoint is detected.

Example:
    >>> spec = PRESETS["vit_p77"]
    >>> spec.encoder.embed_dim, spec.encoder.mlp_dims[0], spec.encoder.head_dims()[0]
    (168, 696, 14)
    >>> ModelSpec.from_dict(spec.to_dict()) == spec
    True
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Mapping

from ..errors import ModelTypeError, SpecError
from ..limits import (MAX_BLOCKS, MAX_DECODER_DEPTH, MAX_HEADS, MAX_IMAGE_SIZE, MAX_PARAMS, MAX_SPEC_BYTES,
                      MAX_WIDTH)

SAM_PIXEL_MEAN = (123.675, 116.28, 103.53)
SAM_PIXEL_STD = (58.395, 57.12, 57.375)
SPEC_FORMAT = "slimsam-edge/model-spec"
SPEC_VERSION = 1


@dataclass(frozen=True)
class EncoderSpec:
    """ViT image encoder (segment-anything's ``ImageEncoderViT`` with per-block widths).

    Arguments:
        img_size: square input side in pixels (1024 for SAM).
        patch_size: patch side; the token grid is ``img_size // patch_size``.
        embed_dim: residual-stream width (shared by all blocks).
        num_heads: attention heads (the same in every block; pruning narrows each head).
        window_size: side of the windows of windowed-attention blocks.
        global_attn_indexes: blocks that attend over the whole token grid.
        qkv_dims: per block, the width of each of q, k and v (= num_heads * head_dim).
        mlp_dims: per block, the MLP hidden width.
        out_chans: channels of the image embedding (the neck's output).
    """

    img_size: int
    patch_size: int
    embed_dim: int
    num_heads: int
    window_size: int
    global_attn_indexes: tuple[int, ...]
    qkv_dims: tuple[int, ...]
    mlp_dims: tuple[int, ...]
    out_chans: int = 256
    in_chans: int = 3
    use_rel_pos: bool = True

    @property
    def depth(self) -> int:
        return len(self.qkv_dims)

    @property
    def grid(self) -> int:
        return self.img_size // self.patch_size

    def head_dims(self) -> list[int]:
        return [q // self.num_heads for q in self.qkv_dims]

    def is_uniform(self) -> bool:
        return len(set(self.qkv_dims)) == 1 and len(set(self.mlp_dims)) == 1

    def validate(self) -> None:
        """Raise :class:`SpecError` naming every inconsistency and every value outside the limits of
        :mod:`slimsam_edge.limits` (checked before any module is built: a spec with 20,000 blocks
        or a 2**40 image is refused at once).

        Example:
            >>> replace(PRESETS["vit_b"].encoder, num_heads=0).validate()
            Traceback (most recent call last):
            ...
            slimsam_edge.errors.SpecError: invalid encoder spec: num_heads 0 must be a whole number in 1..1024
        """
        problems: list[str] = []
        ok = all(_whole(problems, name, getattr(self, name), lo, hi) for name, lo, hi in (
            ("img_size", 1, MAX_IMAGE_SIZE), ("patch_size", 1, MAX_IMAGE_SIZE), ("embed_dim", 1, MAX_WIDTH),
            ("num_heads", 1, MAX_HEADS), ("window_size", 1, MAX_IMAGE_SIZE), ("out_chans", 1, MAX_WIDTH),
            ("in_chans", 1, 4)))
        for name in ("qkv_dims", "mlp_dims", "global_attn_indexes"):
            seq = getattr(self, name)
            if not isinstance(seq, tuple) or not (name == "global_attn_indexes" or 1 <= len(seq) <= MAX_BLOCKS):
                problems.append(f"{name} must list 1..{MAX_BLOCKS} blocks (limits.MAX_BLOCKS), "
                                f"got {len(seq) if isinstance(seq, (tuple, list)) else type(seq).__name__}")
                ok = False
            elif not all(_whole(problems, f"{name}[{i}]", v, 0 if name == "global_attn_indexes" else 1,
                                MAX_BLOCKS - 1 if name == "global_attn_indexes" else MAX_WIDTH)
                         for i, v in enumerate(seq)):
                ok = False
        if not isinstance(self.use_rel_pos, bool):
            problems.append(f"use_rel_pos must be true or false, not {self.use_rel_pos!r}")
        if not ok:
            raise SpecError("invalid encoder spec: " + "; ".join(problems[:3]))
        if self.img_size % self.patch_size:
            problems.append(f"img_size {self.img_size} is not a multiple of patch_size {self.patch_size}")
        if len(self.qkv_dims) != len(self.mlp_dims):
            problems.append(f"{len(self.qkv_dims)} qkv_dims but {len(self.mlp_dims)} mlp_dims")
        for i, q in enumerate(self.qkv_dims):
            if q % self.num_heads:
                problems.append(f"block {i}: qkv width {q} is not a positive multiple of {self.num_heads} heads")
        bad = [g for g in self.global_attn_indexes if not 0 <= g < len(self.qkv_dims)]
        if bad:
            problems.append(f"global_attn_indexes {bad} outside 0..{len(self.qkv_dims) - 1}")
        if not problems and self.param_count() > MAX_PARAMS:
            problems.append(f"about {self.param_count() / 1e9:.1f} G parameters, more than the "
                            f"{MAX_PARAMS / 1e9:.1f} G of limits.MAX_PARAMS")
        if problems:
            raise SpecError("invalid encoder spec: " + "; ".join(problems[:3])
                            + (f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""))

    def param_count(self) -> int:
        """The encoder's parameter count, from the spec alone (to refuse before building).

        Example:
            >>> round(PRESETS["vit_b"].encoder.param_count() / 1e6, 1)   # SAM ViT-B's encoder: 89.7 M
            89.7
        """
        e, g = self.embed_dim, self.grid
        n = self.patch_size ** 2 * self.in_chans * e + e + g * g * e  # patch embedding, position embedding
        n += e * self.out_chans + 2 * self.out_chans + 9 * self.out_chans ** 2 + 2 * self.out_chans  # neck
        for i, (q, m) in enumerate(zip(self.qkv_dims, self.mlp_dims)):
            side = g if i in self.global_attn_indexes else self.window_size
            rel = 2 * (2 * side - 1) * (q // self.num_heads) if self.use_rel_pos else 0
            n += 4 * e + (e * 3 * q + 3 * q) + (q * e + e) + (e * m + m) + (m * e + e) + rel
        return n


def _whole(problems: list[str], name: str, value: object, lo: int, hi: int) -> bool:
    """Append a problem unless ``value`` is an int (not a bool) in ``lo..hi``; True when it is."""
    if isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi:
        return True
    limit = {MAX_BLOCKS - 1: "", MAX_IMAGE_SIZE: " (limits.MAX_IMAGE_SIZE)", MAX_WIDTH: " (limits.MAX_WIDTH)",
             MAX_HEADS: "", MAX_DECODER_DEPTH: " (limits.MAX_DECODER_DEPTH)"}.get(hi, "")
    shown = value if isinstance(value, (int, float, str)) and len(str(value)) < 40 else type(value).__name__
    problems.append(f"{name} {shown} must be a whole number in {lo}..{hi}{limit}")
    return False


@dataclass(frozen=True)
class DecoderSpec:
    """Prompt encoder + mask decoder dimensions (SAM's defaults)."""

    transformer_depth: int = 2
    transformer_mlp_dim: int = 2048
    transformer_heads: int = 8
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256
    num_multimask_outputs: int = 3
    mask_in_chans: int = 16

    def validate(self, embed_dim: int) -> None:
        """Raise :class:`SpecError` naming each value outside the limits of :mod:`slimsam_edge.limits`
        or that SAM's decoder cannot be built with (``embed_dim``: the prompt embedding width, the
        encoder's ``out_chans``; cross-attention halves it, so half of it must split into the heads).

        Example:
            >>> DecoderSpec(transformer_heads=0).validate(256)
            Traceback (most recent call last):
            ...
            slimsam_edge.errors.SpecError: invalid decoder spec: transformer_heads 0 must be a whole number in 1..1024
        """
        problems: list[str] = []
        ok = all([_whole(problems, name, getattr(self, name), lo, hi) for name, lo, hi in (
            ("transformer_depth", 1, MAX_DECODER_DEPTH), ("transformer_mlp_dim", 1, MAX_WIDTH),
            ("transformer_heads", 1, MAX_HEADS), ("iou_head_depth", 1, MAX_DECODER_DEPTH),
            ("iou_head_hidden_dim", 1, MAX_WIDTH), ("num_multimask_outputs", 1, MAX_DECODER_DEPTH),
            ("mask_in_chans", 4, MAX_WIDTH))])
        if ok and (embed_dim % 2 or (embed_dim // 2) % self.transformer_heads):
            problems.append(f"half the prompt embedding width ({embed_dim} / 2) must be a multiple of "
                            f"transformer_heads {self.transformer_heads}")
        if problems:
            raise SpecError("invalid decoder spec: " + "; ".join(problems[:3]))


@dataclass(frozen=True)
class ModelSpec:
    """A whole SAM-family model: encoder, decoder, preprocessing constants and a type name."""

    model_type: str
    encoder: EncoderSpec
    decoder: DecoderSpec = field(default_factory=DecoderSpec)
    pixel_mean: tuple[float, float, float] = SAM_PIXEL_MEAN
    pixel_std: tuple[float, float, float] = SAM_PIXEL_STD

    @property
    def image_size(self) -> int:
        return self.encoder.img_size

    def validate(self) -> None:
        """Raise :class:`SpecError` unless the encoder, the decoder and the normalisation constants
        are buildable and within :mod:`slimsam_edge.limits` (nothing is built or allocated).

        Example:
            >>> PRESETS["sam_mini"].validate()
            >>> replace(PRESETS["sam_mini"], pixel_std=(1.0, 0.0, 1.0)).validate()
            Traceback (most recent call last):
            ...
            slimsam_edge.errors.SpecError: invalid model spec: pixel_std must be 3 finite numbers > 0, got (1.0, 0.0, 1.0)
        """
        self.encoder.validate()
        self.decoder.validate(self.encoder.out_chans)
        for name, values, positive in (("pixel_mean", self.pixel_mean, False), ("pixel_std", self.pixel_std, True)):
            fine = isinstance(values, tuple) and len(values) == 3 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and abs(v) <= 1e4 and (v > 0 or not positive)
                for v in values)
            if not fine:
                raise SpecError(f"invalid model spec: {name} must be 3 finite numbers{' > 0' if positive else ''}, "
                                f"got {values if len(str(values)) < 80 else type(values).__name__}")

    @property
    def embed_grid(self) -> int:
        return self.encoder.grid

    @property
    def prompt_embed_dim(self) -> int:
        return self.encoder.out_chans

    @property
    def low_res_size(self) -> int:
        """Side of the decoder's low-resolution masks (4x the embedding grid; 256 for SAM)."""
        return 4 * self.encoder.grid

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["format"] = SPEC_FORMAT
        d["version"] = SPEC_VERSION
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ModelSpec":
        """Parse a spec dict (as written by :meth:`to_dict`); raises :class:`SpecError`."""
        try:
            if d.get("format", SPEC_FORMAT) != SPEC_FORMAT:
                raise SpecError(f"not a model spec (format {d.get('format')!r})")
            if int(d.get("version", SPEC_VERSION)) > SPEC_VERSION:
                raise SpecError(
                    f"spec version {d['version']} is newer than this slimsam-edge supports "
                    f"({SPEC_VERSION}); upgrade slimsam-edge"
                )
            e = dict(d["encoder"])
            for k in ("global_attn_indexes", "qkv_dims", "mlp_dims"):
                e[k] = tuple(int(v) for v in e[k])
            enc = EncoderSpec(**e)
            dec = DecoderSpec(**dict(d.get("decoder", {})))
            spec = cls(
                model_type=str(d.get("model_type", "custom")),
                encoder=enc,
                decoder=dec,
                pixel_mean=tuple(float(v) for v in d.get("pixel_mean", SAM_PIXEL_MEAN)),
                pixel_std=tuple(float(v) for v in d.get("pixel_std", SAM_PIXEL_STD)),
            )
        except SpecError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as err:
            raise SpecError(f"malformed model spec: {type(err).__name__}: {str(err)[:160]}") from None
        spec.validate()
        return spec

    @classmethod
    def from_json(cls, text: str) -> "ModelSpec":
        """Parse a spec JSON text (at most :data:`~slimsam_edge.limits.MAX_SPEC_BYTES`); raises
        :class:`SpecError` in one line for anything else.

        Example:
            >>> ModelSpec.from_json("[" * 100000)
            Traceback (most recent call last):
            ...
            slimsam_edge.errors.SpecError: model spec is not valid JSON: nested too deeply
        """
        if len(text) > MAX_SPEC_BYTES:
            raise SpecError(f"model spec is {len(text)} characters, more than {MAX_SPEC_BYTES} "
                            "(limits.MAX_SPEC_BYTES); is it a spec written by slimsam-edge?")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise SpecError(f"model spec is not valid JSON: {err}") from None
        except RecursionError:
            raise SpecError("model spec is not valid JSON: nested too deeply") from None
        if not isinstance(data, dict):
            raise SpecError(f"model spec must be a JSON object, not {type(data).__name__}")
        return cls.from_dict(data)

    def with_type(self, model_type: str) -> "ModelSpec":
        return replace(self, model_type=model_type)


def _uniform(
    embed: int, depth: int, heads: int, globals_: tuple[int, ...], qkv: int, mlp: int,
    img: int = 1024, patch: int = 16, window: int = 14, out: int = 256,
) -> EncoderSpec:
    return EncoderSpec(
        img_size=img, patch_size=patch, embed_dim=embed, num_heads=heads, window_size=window,
        global_attn_indexes=globals_, qkv_dims=(qkv,) * depth, mlp_dims=(mlp,) * depth,
        out_chans=out,
    )


#: Built-in model types. ``sam_mini`` is the project's own small SAM (see models/sam_mini.py).
PRESETS: dict[str, ModelSpec] = {
    "vit_h": ModelSpec("vit_h", _uniform(1280, 32, 16, (7, 15, 23, 31), 1280, 5120)),
    "vit_l": ModelSpec("vit_l", _uniform(1024, 24, 16, (5, 11, 17, 23), 1024, 4096)),
    "vit_b": ModelSpec("vit_b", _uniform(768, 12, 12, (2, 5, 8, 11), 768, 3072)),
    # SlimSAM "uniform" checkpoints: SAM-B pruned; every block keeps 12 heads.
    "vit_p50": ModelSpec("vit_p50", _uniform(384, 12, 12, (2, 5, 8, 11), 384, 1536)),
    "vit_p77": ModelSpec("vit_p77", _uniform(168, 12, 12, (2, 5, 8, 11), 168, 696)),
    "sam_mini": ModelSpec(
        "sam_mini",
        _uniform(192, 12, 12, (2, 5, 8, 11), 192, 768, img=256, patch=16, window=8, out=128),
        DecoderSpec(transformer_mlp_dim=512, transformer_heads=8, iou_head_hidden_dim=128),
    ),
}


def preset(model_type: str) -> ModelSpec:
    """Return the built-in spec for ``model_type`` or raise :class:`ModelTypeError`."""
    try:
        return PRESETS[model_type]
    except KeyError:
        raise ModelTypeError(
            f"unknown model type {model_type!r}; choose one of: {', '.join(PRESETS)} "
            "(or omit --model-type to detect it from the weights)"
        ) from None


_BLOCK = re.compile(r"^image_encoder\.blocks\.(\d+)\.")
_DEC_LAYER = re.compile(r"^mask_decoder\.transformer\.layers\.(\d+)\.")
_IOU_LAYER = re.compile(r"^mask_decoder\.iou_prediction_head\.layers\.(\d+)\.weight$")


def spec_from_shapes(
    shapes: Mapping[str, tuple[int, ...]], *, decoder_heads: int = 8
) -> ModelSpec:
    """Infer a :class:`ModelSpec` from the tensor shapes of a SAM-format state dict.

    Window size and the global blocks come from the relative-position tables (a global block's
    table spans the whole token grid). The result is named after the preset it equals, else
    ``"custom"``. The decoder's head count cannot be read from weights (``decoder_heads``).

    Raises:
        ModelTypeError: when the keys are not those of a SAM-family model.
    """
    need = "image_encoder.patch_embed.proj.weight"
    if need not in shapes:
        sample = ", ".join(sorted(shapes)[:3]) or "no tensors"
        raise ModelTypeError(
            f"not a SAM-family checkpoint: no {need} (found {sample}, ...); "
            "pass an official SAM / SlimSAM checkpoint or one written by slimsam-edge"
        )
    try:
        embed, in_chans, patch, _ = shapes[need]
        _, gh, gw, _ = shapes["image_encoder.pos_embed"]
        depth = 1 + max(int(m.group(1)) for k in shapes if (m := _BLOCK.match(k)))
        qkv_dims, mlp_dims, head_dims, globals_, windows = [], [], [], [], set()
        for i in range(depth):
            p = f"image_encoder.blocks.{i}."
            qkv_dims.append(shapes[p + "attn.qkv.weight"][0] // 3)
            mlp_dims.append(shapes[p + "mlp.lin1.weight"][0])
            rel = shapes[p + "attn.rel_pos_h"]
            head_dims.append(rel[1])
            size = (rel[0] + 1) // 2
            if size == gh and (i not in globals_):
                globals_.append(i)
            else:
                windows.add(size)
        heads = {q // h for q, h in zip(qkv_dims, head_dims)}
        if len(heads) != 1:
            raise ModelTypeError(f"blocks disagree on the number of heads: {sorted(heads)}")
        window = windows.pop() if len(windows) == 1 else (14 if not windows else -1)
        if window < 0:
            raise ModelTypeError(f"blocks use different window sizes: {sorted(windows)}")
        out_chans = shapes["image_encoder.neck.0.weight"][0]
        enc = EncoderSpec(
            img_size=gh * patch, patch_size=patch, embed_dim=embed, num_heads=heads.pop(),
            window_size=window, global_attn_indexes=tuple(globals_), qkv_dims=tuple(qkv_dims),
            mlp_dims=tuple(mlp_dims), out_chans=out_chans, in_chans=in_chans,
        )
        dec_depth = 1 + max(int(m.group(1)) for k in shapes if (m := _DEC_LAYER.match(k)))
        iou_layers = [int(m.group(1)) for k in shapes if (m := _IOU_LAYER.match(k))]
        dec = DecoderSpec(
            transformer_depth=dec_depth,
            transformer_mlp_dim=shapes["mask_decoder.transformer.layers.0.mlp.lin1.weight"][0],
            transformer_heads=decoder_heads,
            iou_head_depth=1 + max(iou_layers),
            iou_head_hidden_dim=shapes["mask_decoder.iou_prediction_head.layers.0.weight"][0],
            num_multimask_outputs=shapes["mask_decoder.mask_tokens.weight"][0] - 1,
            mask_in_chans=shapes["prompt_encoder.mask_downscaling.3.weight"][0],
        )
    except KeyError as err:
        raise ModelTypeError(
            f"incomplete SAM checkpoint: tensor {err.args[0]} is missing; "
            "is this a full SAM model (image encoder + prompt encoder + mask decoder)?"
        ) from None
    if gh != gw:
        raise ModelTypeError(f"non-square position embedding {gh}x{gw} is not supported")
    spec = ModelSpec("custom", enc, dec)
    spec.validate()
    return name_spec(spec)


def name_spec(spec: ModelSpec) -> ModelSpec:
    """Rename ``spec`` after the preset whose architecture it equals (else keep its name)."""
    for name, p in PRESETS.items():
        if p.encoder == spec.encoder and _same_decoder(p.decoder, spec.decoder):
            return spec.with_type(name)
    return spec


def _same_decoder(a: DecoderSpec, b: DecoderSpec) -> bool:
    # Head count is not recoverable from weights; compare the rest.
    return replace(a, transformer_heads=0) == replace(b, transformer_heads=0)
