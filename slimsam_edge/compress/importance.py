"""Importance criteria (a registry of small classes) and the choice of channels to keep.

A criterion turns each parameter (and its accumulated gradient, if it needs one) into element
scores; :func:`unit_scores` sums them per prunable unit through the encoder's channel map
(:func:`~slimsam_edge.compress.prune.channel_map`): one score per embedding channel, per
(block, head-dim position) and per (block, MLP hidden unit).

- ``random``: uniform noise (a baseline);
- ``magnitude``: ``|w|``;
- ``taylor``: ``|w * dL/dw|`` with ``L`` SAM's mask loss on labelled images (the paper's Taylor
  baseline; needs labels, e.g. the procedural data);
- ``disturbed-taylor``: ``|w * dL/dw|`` with ``L = MSE(student, teacher + N(0, sigma^2))`` on the
  image embeddings, label-free (SlimSAM). With ``sigma=0`` and an unpruned student the gradient
  is exactly zero: the noise is what makes the criterion informative.

Example:
    >>> crit = make_criterion("disturbed-taylor", sigma=0.01)
    >>> crit.needs, sorted(CRITERIA)
    ('embedding', ['disturbed-taylor', 'magnitude', 'random', 'taylor'])
"""

from __future__ import annotations

from typing import Callable, ClassVar, Iterable, Mapping

import torch
import torch.nn.functional as F

from ..errors import UsageError
from ..models.spec import ModelSpec
from .prune import Unit, channel_map, select_top, unit_size

CRITERIA: dict[str, type["Criterion"]] = {}


def register(name: str) -> Callable[[type["Criterion"]], type["Criterion"]]:
    """Class decorator adding a criterion to :data:`CRITERIA` under ``name``."""

    def deco(cls: type["Criterion"]) -> type["Criterion"]:
        cls.name = name
        CRITERIA[name] = cls
        return cls

    return deco


class Criterion:
    """Base class. ``needs``: ``"none"``, ``"embedding"`` (teacher embeddings) or ``"labels"``."""

    name: ClassVar[str] = ""
    needs: ClassVar[str] = "none"

    def __init__(self, *, sigma: float = 0.01, seed: int = 0):
        self.sigma, self.seed = float(sigma), int(seed)

    def element_scores(self, param: torch.Tensor, grad: torch.Tensor | None,
                       gen: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def embedding_loss(self, student: torch.Tensor, teacher: torch.Tensor,
                       gen: torch.Generator) -> torch.Tensor:
        raise NotImplementedError(f"{self.name} does not use embeddings")


@register("random")
class RandomImportance(Criterion):
    def element_scores(self, param, grad, gen):
        return torch.rand(param.shape, generator=gen, dtype=torch.float64)


@register("magnitude")
class MagnitudeImportance(Criterion):
    def element_scores(self, param, grad, gen):
        return param.detach().double().abs()


class _Taylor(Criterion):
    def element_scores(self, param, grad, gen):
        if grad is None:
            return torch.zeros(param.shape, dtype=torch.float64)
        return (param.detach().double() * grad.double()).abs()


@register("taylor")
class TaylorImportance(_Taylor):
    needs = "labels"


@register("disturbed-taylor")
class DisturbedTaylorImportance(_Taylor):
    needs = "embedding"

    def embedding_loss(self, student, teacher, gen):
        noise = torch.randn(teacher.shape, generator=gen, dtype=teacher.dtype) * self.sigma
        return F.mse_loss(student, teacher + noise.to(teacher.device))


def make_criterion(name: str, **kw) -> Criterion:
    """Instantiate the criterion ``name`` (one-line :class:`UsageError` if unknown).

    Example:
        >>> make_criterion("magnitude").name
        'magnitude'
    """
    try:
        return CRITERIA[name](**kw)
    except KeyError:
        raise UsageError(f"unknown importance {name!r}; choose one of: {', '.join(sorted(CRITERIA))}") from None


def unit_scores(sam: torch.nn.Module, spec: ModelSpec, criterion: Criterion,
                grads: Mapping[str, torch.Tensor] | None = None,
                units: Iterable[Unit] | None = None) -> dict[Unit, torch.Tensor]:
    """One score per position of each unit, summed over every tensor slice the unit owns.

    Illustration (not run as a doctest: it needs files or a model)::

        s = unit_scores(sam, spec, make_criterion("magnitude"))
        s["embed"].shape, s[("head", 0)].shape
    """
    sd = dict(sam.named_parameters())
    gen = torch.Generator().manual_seed(criterion.seed)
    cache: dict[str, torch.Tensor] = {}
    out: dict[Unit, torch.Tensor] = {}
    cmap = channel_map(spec.encoder)
    for unit in (units if units is not None else cmap):
        total = torch.zeros(unit_size(spec.encoder, unit), dtype=torch.float64)
        for slot in cmap[unit]:
            if slot.name not in cache:
                p = sd[slot.name]
                g = None if grads is None else grads.get(slot.name)
                cache[slot.name] = criterion.element_scores(p, g, gen).cpu()
            total += slot.reduce(cache[slot.name])
        out[unit] = total
    return out


def accumulate_grads(sam: torch.nn.Module, losses: Iterable[torch.Tensor | Callable[[], torch.Tensor]]
                     ) -> dict[str, torch.Tensor]:
    """Sum the encoder's gradients over ``losses`` (callables are called lazily, one at a time).

    Illustration (not run as a doctest: it needs files or a model)::

        grads = accumulate_grads(sam, (lambda: loss_of(b) for b in batches))
    """
    params = {n: p for n, p in sam.named_parameters() if n.startswith("image_encoder.")}
    for p in params.values():
        p.grad = None
    for loss in losses:
        (loss() if callable(loss) else loss).backward()
    grads = {n: p.grad.detach().clone() for n, p in params.items() if p.grad is not None}
    sam.zero_grad(set_to_none=True)
    return grads


def choose_keep(scores: Mapping[Unit, torch.Tensor], spec: ModelSpec, target: ModelSpec,
                scope: str = "local") -> dict[Unit, torch.Tensor]:
    """Positions to keep per unit so that the widths reach ``target``'s.

    ``local``: each unit keeps its own top scores up to the target width of that block.
    ``global``: the head-dim and MLP budgets (sums of the target widths) are filled with the
    best positions over all blocks, each block's scores normalised by their mean; every block
    keeps at least one position. The embedding width is shared, so it is always local.

    Illustration (not run as a doctest: it needs files or a model)::

        keep = choose_keep(scores, spec, target_spec, "global")
    """
    if scope not in ("local", "global"):
        raise UsageError(f"unknown scope {scope!r}; choose local or global")
    e, t = spec.encoder, target.encoder
    want: dict[Unit, int] = {"embed": t.embed_dim}
    for i in range(e.depth):
        want[("head", i)] = t.head_dims()[i]
        want[("mlp", i)] = t.mlp_dims[i]
    keep = {u: select_top(s, want[u]) for u, s in scores.items() if u == "embed" or scope == "local"}
    if scope == "global":
        for kind in ("head", "mlp"):
            units = [u for u in scores if isinstance(u, tuple) and u[0] == kind]
            if units:
                keep.update(_global_pick({u: scores[u] for u in units}, sum(want[u] for u in units)))
    return keep


def _global_pick(scores: Mapping[Unit, torch.Tensor], budget: int) -> dict[Unit, torch.Tensor]:
    norm = {u: s.double() / (s.double().abs().mean() + 1e-30) for u, s in scores.items()}
    keep = {u: [int(torch.argmax(s))] for u, s in norm.items()}  # at least one per block
    pool = [(float(v), str(u), u, j) for u, s in norm.items() for j, v in enumerate(s.tolist())
            if j != keep[u][0]]
    pool.sort(key=lambda r: (-r[0], r[1], r[3]))
    for _, _, u, j in pool[: max(0, budget - len(keep))]:
        keep[u].append(j)
    return {u: torch.tensor(sorted(v), dtype=torch.long) for u, v in keep.items()}


def importance_keep(sam: torch.nn.Module, spec: ModelSpec, target: ModelSpec, cfg, units: list, source,
                    teacher: torch.nn.Module, targets=None) -> dict[Unit, torch.Tensor]:
    """Score ``units`` of ``sam`` with ``cfg.importance`` and choose the positions to keep.

    ``disturbed-taylor`` accumulates gradients of ``MSE(student, teacher + noise)`` over
    ``cfg.importance_images`` images (noise seeded per image, so the sum does not depend on how
    the images are batched or split over DDP ranks: each rank takes every ``world``-th image and
    the gradients are summed with one all-reduce). ``targets`` supplies (cached) teacher
    embeddings. ``taylor`` (labels) runs identically on every rank, on ``sam``'s device. Noise
    comes from seeded CPU generators and scores are reduced on the CPU, so every device chooses
    from the same noise.

    Illustration (not run as a doctest: it needs files or a model)::

        keep = importance_keep(sam, spec, target, cfg, ["embed"], source, teacher)
    """
    from ..models.batch import preprocess
    from ..models.regrid import resize_embedding, resize_input
    from . import runtime
    from .cache import TeacherEmbeddings

    crit = make_criterion(cfg.importance, sigma=cfg.sigma, seed=cfg.seed)
    grads = None
    n, b = cfg.importance_images, cfg.batch
    if crit.needs == "embedding":
        targets = targets if targets is not None else TeacherEmbeddings(teacher)
        mine = runtime.strided(range(n))
        chunks = [mine[i:i + b] for i in range(0, len(mine), b)]

        def loss(idx):  # a student of a smaller input size: its input and the teacher's target resized
            images = source.images(idx)
            x = preprocess(teacher, images)
            s = sam.image_encoder(resize_input(x, sam.image_encoder.img_size))
            t = resize_embedding(targets(images, x), s.shape[-1])
            gens = [torch.Generator().manual_seed(cfg.seed * 1_000_003 + 17 + i) for i in idx]
            return sum(crit.embedding_loss(s[j:j + 1], t[j:j + 1], g) for j, g in enumerate(gens))

        grads = accumulate_grads(sam, (lambda idx=idx: loss(idx) for idx in chunks))
        enc = [(k, p) for k, p in sam.named_parameters() if k.startswith("image_encoder.")]
        grads = {k: grads.get(k, torch.zeros_like(p)) for k, p in enc}
        runtime.all_reduce_(list(grads.values()), mean=False)
    elif crit.needs == "labels":
        import numpy as np

        from ..models.batch import BatchRecipe, batch_loss

        recipe = BatchRecipe(image_size=spec.image_size, corrective_rounds=0, loss_size=spec.image_size // 2)
        rng = np.random.default_rng(cfg.seed)
        chunks = [list(range(i, min(n, i + b))) for i in range(0, n, b)]

        def loss(idx):
            samples = source.samples(idx)
            return batch_loss(sam, recipe, [s.image for s in samples],
                              [[a.mask for a in s.annotations] for s in samples], rng)["loss"]

        grads = accumulate_grads(sam, (lambda idx=idx: loss(idx) for idx in chunks))
    scores = unit_scores(sam, spec, crit, grads, units)
    return choose_keep(scores, spec, target, cfg.scope)
