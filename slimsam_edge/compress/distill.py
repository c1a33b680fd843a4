"""Label-free distillation with forward hooks: bottleneck aligning and embedding aligning.

Modes (``DistillSpec.mode``):

- ``"bottleneck"`` (after embedding pruning): MSE on the q/k/v features (``attn.qkv`` outputs)
  and MLP hidden activations of every block, windowed and global alike, student against teacher,
  plus MSE on the image embedding; the intermediate weight applies for the first
  ``align_fraction`` of the steps, then only the embedding term remains.
- ``"embedding"`` (after bottleneck pruning): MSE on every block's output against the step-1
  model and on the image embedding against the original teacher; the intermediate weight decays
  linearly to zero.
- ``"final"`` (one-step schedule): the image-embedding MSE only.

Intermediate terms are averaged over the aligned tensors; with ``relative_inter`` (default) each
MSE is divided by the teacher tensor's mean square, because residual-stream block outputs are
orders of magnitude larger than the layer-normed image embedding and would otherwise drown it.

Training: AdamW, linear warmup + cosine LR, gradient accumulation; the images of step ``s`` are a
pure function of ``s``, so a run resumed from a checkpoint (model, optimiser, scheduler, RNG,
step) ends with the same weights as an uninterrupted one on CPU.

Example:
    >>> losses = distill(student, DistillSpec("final", steps=10), teacher=teacher,
    ...                  source=src)                                   # doctest: +SKIP
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F

from ..errors import CheckpointError
from ..fsutil import atomic_path
from ..reference.batch import preprocess


@dataclass(frozen=True)
class DistillSpec:
    """One distillation phase: mode, schedule and optimiser settings."""

    mode: str
    steps: int
    lr: float = 1e-4
    weight_decay: float = 0.0
    batch: int = 2
    accum: int = 1
    warmup: int = 0
    min_lr_ratio: float = 0.05
    inter_weight: float = 0.5
    align_fraction: float = 0.5
    relative_inter: bool = True  # intermediate MSE divided by the teacher feature's mean square
    offset: int = 0  # first image index of this phase

    def inter_weight_at(self, step: int) -> float:
        """Weight of the intermediate terms at ``step`` (0-based).

        Example:
            >>> s = DistillSpec("embedding", steps=10)
            >>> s.inter_weight_at(0), s.inter_weight_at(5), DistillSpec("bottleneck", 10).inter_weight_at(6)
            (0.5, 0.25, 0.0)
        """
        if self.mode == "bottleneck":
            return self.inter_weight if step < self.align_fraction * self.steps else 0.0
        if self.mode == "embedding":
            return self.inter_weight * max(0.0, 1.0 - step / self.steps)
        return 0.0

    def lr_factor(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        t = (step - self.warmup) / max(1, self.steps - self.warmup)
        return self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


def hooked_modules(sam: torch.nn.Module, mode: str) -> list[torch.nn.Module]:
    """The modules whose outputs are aligned in ``mode``."""
    blocks = list(sam.image_encoder.blocks)
    if mode == "bottleneck":
        return [b.attn.qkv for b in blocks] + [b.mlp.act for b in blocks]
    if mode == "embedding":
        return blocks
    return []


class Capture:
    """Context manager recording the outputs of ``modules`` (forward hooks) in ``.outputs``.

    Example:
        >>> with Capture(hooked_modules(sam, "embedding")) as cap:   # doctest: +SKIP
        ...     sam.image_encoder(x)
        >>> len(cap.outputs)                                          # doctest: +SKIP
    """

    def __init__(self, modules: list[torch.nn.Module]):
        self.modules, self.outputs, self._handles = modules, [None] * len(modules), []

    def __enter__(self) -> "Capture":
        for i, m in enumerate(self.modules):
            self._handles.append(m.register_forward_hook(self._hook(i)))
        return self

    def _hook(self, i: int) -> Callable:
        def hook(_m, _inp, out):
            self.outputs[i] = out
        return hook

    def __exit__(self, *exc: Any) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()


def distill_loss(student: torch.nn.Module, x: torch.Tensor, spec: DistillSpec, step: int, *,
                 teacher: torch.nn.Module, inter_teacher: torch.nn.Module | None = None
                 ) -> dict[str, torch.Tensor]:
    """``{"loss", "embed", "inter"}`` of one micro-batch ``x`` (normalised images)."""
    inter_teacher = inter_teacher if inter_teacher is not None else teacher
    w = spec.inter_weight_at(step)
    use_inter = w > 0 and spec.mode in ("bottleneck", "embedding")
    with torch.no_grad():
        with Capture(hooked_modules(inter_teacher, spec.mode) if use_inter else []) as tcap:
            t_inter_emb = inter_teacher.image_encoder(x)
        t_emb = t_inter_emb if inter_teacher is teacher else teacher.image_encoder(x)
    with Capture(hooked_modules(student, spec.mode) if use_inter else []) as scap:
        s_emb = student.image_encoder(x)
    embed = F.mse_loss(s_emb, t_emb)
    inter = torch.zeros(())
    if use_inter:
        terms = [F.mse_loss(s, t) / (t.pow(2).mean() + 1e-8 if spec.relative_inter else 1.0)
                 for s, t in zip(scap.outputs, tcap.outputs)]
        inter = sum(terms) / len(terms)
    return {"loss": embed + w * inter, "embed": embed.detach(), "inter": inter.detach()}


def make_optimizer(student: torch.nn.Module, spec: DistillSpec):
    """AdamW over the image encoder (prompt encoder and decoder stay the teacher's) + schedule."""
    params = [p for p in student.image_encoder.parameters()]
    for p in student.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=spec.lr, weight_decay=spec.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, spec.lr_factor)
    return opt, sched


def batch_indices(spec: DistillSpec, step: int, micro: int) -> list[int]:
    start = spec.offset + (step * spec.accum + micro) * spec.batch
    return list(range(start, start + spec.batch))


def distill(student: torch.nn.Module, spec: DistillSpec, *, teacher: torch.nn.Module, source: Any,
            inter_teacher: torch.nn.Module | None = None, state: dict | None = None,
            save: Callable[[int, Any, Any], None] | None = None, checkpoint_every: int = 0,
            on_step: Callable[[int, dict[str, float]], None] | None = None) -> torch.nn.Module:
    """Train ``student``'s encoder for ``spec.steps`` steps (continuing from ``state`` if given).

    Arguments:
        student, teacher, inter_teacher: ``Sam`` models (see the module doc for who aligns to whom).
        source: an :class:`~slimsam_edge.compress.data.ImageSource`.
        state: a checkpoint dict (``optimizer``, ``scheduler``, ``rng``, ``step``) to resume from.
        save: ``save(step, optimizer, scheduler)`` called every ``checkpoint_every`` steps and at the end.
        on_step: called after each step with ``(step, losses)``.

    Example:
        >>> distill(student, DistillSpec("final", steps=4), teacher=teacher, source=src)  # doctest: +SKIP
    """
    opt, sched = make_optimizer(student, spec)
    start = 0
    if state is not None:
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        start = int(state["step"])
    teacher.eval()
    if inter_teacher is not None:
        inter_teacher.eval()
    student.train()
    for step in range(start, spec.steps):
        opt.zero_grad(set_to_none=True)
        sums = {"loss": 0.0, "embed": 0.0, "inter": 0.0}
        for micro in range(spec.accum):
            x = preprocess(student, source.images(batch_indices(spec, step, micro)))
            res = distill_loss(student, x, spec, step, teacher=teacher, inter_teacher=inter_teacher)
            (res["loss"] / spec.accum).backward()
            for k in sums:
                sums[k] += float(res[k].detach()) / spec.accum
        opt.step()
        sched.step()
        if on_step is not None:
            on_step(step + 1, {**sums, "lr": sched.get_last_lr()[0], "w_inter": spec.inter_weight_at(step)})
        done = step + 1
        if save is not None and ((checkpoint_every and done % checkpoint_every == 0) or done == spec.steps):
            save(done, opt, sched)
    student.eval()
    return student


def save_checkpoint(path, payload: dict) -> None:
    """Write ``payload`` (tensors, numbers, strings only) atomically with ``torch.save``."""
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path) -> dict:
    """Read a checkpoint with ``torch.load(weights_only=True)`` (no code runs from the file)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # damaged file: one line
        raise CheckpointError(f"{path}: cannot read compression checkpoint ({type(err).__name__}); "
                              "delete it or run without --resume") from None
