"""Structural pruning of SAM's image encoder by slicing, with one channel map for all users.

:func:`channel_map` says, for each prunable unit, which slices of which tensors belong to it:

- ``"embed"``: the residual width: patch-embed output, ``pos_embed`` (dim 3), both norms of
  every block, the *inputs* of ``attn.qkv`` / ``mlp.lin1``, the *outputs* of ``attn.proj`` /
  ``mlp.lin2`` and the input of the neck's first conv;
- ``("head", i)``: head-dim position ``d`` of block ``i``: rows ``d`` of q, k and v of every head
  of ``attn.qkv``, the matching ``attn.proj`` input columns and column ``d`` of the relative
  position tables (kept, not re-initialised);
- ``("mlp", i)``: hidden unit ``j`` of block ``i``: ``mlp.lin1`` row, ``mlp.lin2`` column.

Importance criteria reduce element scores with the same map, so scores and slices cannot drift
apart. Slicing (rather than torch-pruning's dependency graph, which runs out of memory on the
window reshapes of the bottlenecks) keeps pruning exact and cheap on SAM-B shapes;
:func:`prune_embedding_tp` does embedding pruning with torch-pruning as a cross-check.

Illustration (not run as a doctest: it needs files or a model)::

    sam2, spec2 = prune_sam(sam, spec, keep={"embed": torch.arange(32)})
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Mapping

import torch

from ..models.build import build_sam
from ..models.spec import EncoderSpec, ModelSpec
from .device import model_device

Unit = str | tuple[str, int]
P = "image_encoder."


@dataclass(frozen=True)
class Slot:
    """Tensor ``name`` holds unit positions along ``dim`` as ``reps`` repeats of ``units`` entries."""

    name: str
    dim: int
    units: int

    def expand(self, kept: torch.Tensor, size: int) -> torch.Tensor:
        """Indices along ``dim`` for kept unit positions ``kept`` (``size`` = current dim length)."""
        reps = size // self.units
        return (torch.arange(reps)[:, None] * self.units + kept[None, :]).reshape(-1)

    def reduce(self, scores: torch.Tensor) -> torch.Tensor:
        """Sum element scores of this tensor into one score per unit position."""
        s = scores.transpose(0, self.dim).reshape(scores.shape[self.dim], -1).sum(1)
        return s.view(-1, self.units).sum(0)


def channel_map(e: EncoderSpec) -> dict[Unit, list[Slot]]:
    """The tensors (SAM state-dict keys) and dims of every prunable unit of encoder ``e``.

    Example:
        >>> from slimsam_edge.models.spec import PRESETS
        >>> m = channel_map(PRESETS["sam_mini"].encoder)
        >>> [s.name for s in m[("head", 0)]][:2]
        ['image_encoder.blocks.0.attn.qkv.weight', 'image_encoder.blocks.0.attn.qkv.bias']
    """
    c = e.embed_dim
    emb = [Slot(P + "patch_embed.proj.weight", 0, c), Slot(P + "patch_embed.proj.bias", 0, c),
           Slot(P + "pos_embed", 3, c), Slot(P + "neck.0.weight", 1, c)]
    out: dict[Unit, list[Slot]] = {"embed": emb}
    for i, hd in enumerate(e.head_dims()):
        b = f"{P}blocks.{i}."
        emb += [Slot(b + n, d, c) for n, d in (
            ("norm1.weight", 0), ("norm1.bias", 0), ("attn.qkv.weight", 1), ("attn.proj.weight", 0),
            ("attn.proj.bias", 0), ("norm2.weight", 0), ("norm2.bias", 0), ("mlp.lin1.weight", 1),
            ("mlp.lin2.weight", 0), ("mlp.lin2.bias", 0))]
        head = [Slot(b + "attn.qkv.weight", 0, hd), Slot(b + "attn.qkv.bias", 0, hd),
                Slot(b + "attn.proj.weight", 1, hd)]
        if e.use_rel_pos:
            head += [Slot(b + "attn.rel_pos_h", 1, hd), Slot(b + "attn.rel_pos_w", 1, hd)]
        out[("head", i)] = head
        m = e.mlp_dims[i]
        out[("mlp", i)] = [Slot(b + "mlp.lin1.weight", 0, m), Slot(b + "mlp.lin1.bias", 0, m),
                           Slot(b + "mlp.lin2.weight", 1, m)]
    return out


def unit_size(e: EncoderSpec, unit: Unit) -> int:
    """Number of positions of ``unit`` (embed width, head dim or MLP width of a block)."""
    if unit == "embed":
        return e.embed_dim
    kind, i = unit  # type: ignore[misc]
    return e.head_dims()[i] if kind == "head" else e.mlp_dims[i]


def pruned_spec(spec: ModelSpec, keep: Mapping[Unit, torch.Tensor]) -> ModelSpec:
    """``spec`` with the widths implied by ``keep`` (units absent from ``keep`` stay whole)."""
    e = spec.encoder
    h = e.num_heads
    qkv = tuple(h * len(keep[("head", i)]) if ("head", i) in keep else q for i, q in enumerate(e.qkv_dims))
    mlp = tuple(len(keep[("mlp", i)]) if ("mlp", i) in keep else m for i, m in enumerate(e.mlp_dims))
    embed = len(keep["embed"]) if "embed" in keep else e.embed_dim
    enc = replace(e, embed_dim=embed, qkv_dims=qkv, mlp_dims=mlp)
    enc.validate()
    return replace(spec, model_type="custom", encoder=enc)


def prune_state_dict(sd: Mapping[str, torch.Tensor], e: EncoderSpec,
                     keep: Mapping[Unit, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Slice every tensor of ``sd`` along the dims of the kept unit positions.

    Illustration (not run as a doctest: it needs files or a model)::

        sd2 = prune_state_dict(sam.state_dict(), spec.encoder, {("mlp", 0): torch.arange(8)})
    """
    out = dict(sd)
    cmap = channel_map(e)
    for unit, kept in keep.items():
        kept = torch.as_tensor(kept, dtype=torch.long).sort().values
        n = unit_size(e, unit)
        if len(kept) == 0 or int(kept.min()) < 0 or int(kept.max()) >= n or len(kept.unique()) != len(kept):
            raise ValueError(f"kept positions of {unit} must be distinct indices in 0..{n - 1}")
        for slot in cmap[unit]:
            t = out[slot.name]
            idx = slot.expand(kept, t.shape[slot.dim]).to(t.device)
            out[slot.name] = t.index_select(slot.dim, idx).contiguous()
    return out


def prune_sam(sam: torch.nn.Module, spec: ModelSpec,
              keep: Mapping[Unit, torch.Tensor]) -> tuple[torch.nn.Module, ModelSpec]:
    """A new ``Sam`` holding only the kept unit positions of ``sam``'s encoder, and its spec.

    Arguments:
        sam: a ``Sam`` built from ``spec`` (not modified).
        spec: its architecture.
        keep: per unit (``"embed"``, ``("head", i)``, ``("mlp", i)``) the positions to keep.

    Illustration (not run as a doctest: it needs files or a model)::

        small, small_spec = prune_sam(sam, spec, {"embed": torch.arange(48)})
        small_spec.encoder.embed_dim
        # -> 48
    """
    new_spec = pruned_spec(spec, keep)
    sd = prune_state_dict(sam.state_dict(), spec.encoder, keep)
    device = model_device(sam)
    new = build_sam(new_spec, device=device)
    new.load_state_dict(sd, strict=True)
    return new.train(sam.training), new_spec


def select_top(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Sorted indices of the ``k`` highest scores (ties broken by position).

    Example:
        >>> select_top(torch.tensor([0.1, 3.0, 2.0, 0.5]), 2).tolist()
        [1, 2]
    """
    order = torch.argsort(scores.detach().double().cpu(), descending=True, stable=True)
    return order[:k].sort().values


def prune_embedding_tp(sam: torch.nn.Module, spec: ModelSpec,
                       kept: torch.Tensor) -> tuple[torch.nn.Module, ModelSpec]:
    """Embedding pruning through torch-pruning's dependency graph (in place on a copy).

    Produces the same weights as :func:`prune_sam` with ``{"embed": kept}``; used as a
    cross-check of the channel map and where torch-pruning's grouping is wanted.

    Illustration (not run as a doctest: it needs files or a model)::

        small, s = prune_embedding_tp(sam, spec, torch.arange(32))
    """
    import copy
    import warnings

    import torch_pruning as tp

    new_spec = pruned_spec(spec, {"embed": kept})
    device = model_device(sam)  # traced and rebuilt where ``sam`` is
    model = copy.deepcopy(sam).eval()
    enc = model.image_encoder.requires_grad_(True)  # the graph is traced through autograd
    with warnings.catch_warnings():  # rel-pos / neck-norm tables are outside this group anyway
        warnings.filterwarnings("ignore", message="Unwrapped parameters detected")
        dg = tp.DependencyGraph().build_dependency(
            enc, example_inputs=torch.zeros(1, 3, spec.image_size, spec.image_size, device=device),
            unwrapped_parameters=[(enc.pos_embed, 3)],
        )
    drop = sorted(set(range(spec.encoder.embed_dim)) - set(int(i) for i in kept))
    group = dg.get_pruning_group(enc.patch_embed.proj, tp.prune_conv_out_channels, idxs=drop)
    group.prune()
    model.image_encoder.spec = new_spec.encoder
    fresh = build_sam(new_spec, device=device)
    fresh.load_state_dict(model.state_dict(), strict=True)
    return fresh, new_spec
