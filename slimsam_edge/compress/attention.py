"""Cheaper global attention, trained: the ``compress --global-attention`` choices.

At 1024x1024 the global-attention blocks of a SAM encoder attend over all 4096 tokens and
dominate its CPU time. ``windowed`` turns every global block into a windowed one (the encoder's
``window_size``), keeping its weights; the relative-position tables keep the rows of the
offsets a window still sees (the centre of the table), which is exactly what those offsets
learned. Distillation then teaches the student to do without the global context. ``keep``
leaves the architecture alone. Each choice is a small class in :data:`GLOBAL_ATTENTION`.

Example:
    >>> from slimsam_edge.models.spec import PRESETS
    >>> spec = GLOBAL_ATTENTION["windowed"].spec(PRESETS["sam_mini"])
    >>> spec.encoder.global_attn_indexes
    ()
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ..errors import UsageError
from ..models.spec import ModelSpec


class KeepGlobal:
    """Leave the global-attention blocks as they are."""

    name = "keep"
    help = "global blocks unchanged (SlimSAM)"

    def spec(self, spec: ModelSpec) -> ModelSpec:
        return spec

    def apply(self, sam: Any, spec: ModelSpec) -> tuple[Any, ModelSpec]:
        return sam, spec


class WindowedGlobal:
    """Every global block becomes a windowed block of the encoder's window size."""

    name = "windowed"
    help = "global blocks attend within windows (all-windowed encoder; trained by distillation)"

    def spec(self, spec: ModelSpec) -> ModelSpec:
        return replace(spec, encoder=replace(spec.encoder, global_attn_indexes=()))

    def apply(self, sam: Any, spec: ModelSpec) -> tuple[Any, ModelSpec]:
        """A new model with ``spec(spec)`` and ``sam``'s weights (centre rows of the resized tables).

        Example:
            >>> from slimsam_edge.models.build import build_sam
            >>> from slimsam_edge.models.spec import PRESETS
            >>> sam = build_sam(PRESETS["sam_mini"])
            >>> small, spec = WindowedGlobal().apply(sam, PRESETS["sam_mini"])
            >>> tuple(small.image_encoder.blocks[2].attn.rel_pos_h.shape)
            (15, 16)
        """
        from ..models.build import build_sam

        new_spec = self.spec(spec)
        if new_spec == spec:
            return sam, spec
        window = spec.encoder.window_size
        sd = {}
        for key, value in sam.state_dict().items():
            if key.endswith((".rel_pos_h", ".rel_pos_w")) and value.shape[0] != 2 * window - 1:
                centre = (value.shape[0] - 1) // 2
                if centre < window - 1:
                    raise UsageError(f"{key}: a global table of {value.shape[0]} rows is smaller than a "
                                     f"window of {window}; this encoder's grid is smaller than its window")
                value = value[centre - (window - 1): centre + window].clone()
            sd[key] = value
        new = build_sam(new_spec)
        new.load_state_dict(sd, strict=True)
        return new.train(sam.training), new_spec


#: ``--global-attention`` choice -> its transformation
GLOBAL_ATTENTION: dict[str, Any] = {c.name: c for c in (KeepGlobal(), WindowedGlobal())}


def global_attention(name: str):
    """The :data:`GLOBAL_ATTENTION` entry called ``name``; a one-line error for an unknown one.

    Example:
        >>> global_attention("keep").name
        'keep'
    """
    try:
        return GLOBAL_ATTENTION[name]
    except KeyError:
        raise UsageError(f"unknown --global-attention {name!r}; choose one of: "
                         f"{', '.join(GLOBAL_ATTENTION)}") from None
