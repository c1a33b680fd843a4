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
- ``"decoder"`` (``compress --decoder-steps``): the mask decoder (with ``decoder_trains=
  "encoder+decoder"`` the encoder too, through it) learns the teacher's masks for random prompts
  (:mod:`.decoder_tune`).

Intermediate terms are averaged over the aligned tensors; with ``relative_inter`` (default) each
image's MSE is divided by that image's teacher-feature mean square (:func:`feature_mse`), because
residual-stream block outputs are orders of magnitude larger than the layer-normed image embedding
and would otherwise drown it; per-image terms keep a batch's loss independent of how it is split.

Training: AdamW, linear warmup + cosine LR, gradient accumulation; the images of step ``s`` are a
pure function of ``s``, so a run resumed from a checkpoint (model, optimiser, scheduler, RNG,
step) ends with the same weights as an uninterrupted one on CPU. Under torchrun each rank takes
its shard of every global micro-batch and gradients are averaged (:mod:`.runtime`); with
``bf16`` the forwards run under bf16 autocast, losses and optimiser state stay fp32.

Illustration (not run as a doctest: it needs files or a model)::

    losses = distill(student, DistillSpec("final", steps=10), teacher=teacher,
                     source=src)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F

from ..errors import CheckpointError
from ..fsutil import atomic_path
from ..models.batch import preprocess
from ..models.regrid import resize_embedding, resize_input
from . import runtime
from .cache import TeacherEmbeddings
from .choices import DECODER_TRAINS
from .runtime import autocast


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
    bf16: bool = False  # forwards under bf16 autocast
    decoder_trains: str = "decoder"  # "decoder" mode: what the mask loss trains (see DECODER_TRAINS)
    decoder_prompts: str = "random"  # "decoder" mode: its prompt sets (see decoder_tune.DECODER_PROMPTS)

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


def trainable(student: torch.nn.Module, mode: str, decoder_trains: str = "decoder") -> list[torch.nn.Parameter]:
    """The parameters a phase of ``mode`` trains: in ``"decoder"`` those of :data:`DECODER_TRAINS`
    ``[decoder_trains]``, else the image encoder's (the prompt encoder and whatever is not listed
    stay as they are).

    Example:
        >>> from slimsam_edge.models.build import build_sam
        >>> from slimsam_edge.models.spec import PRESETS
        >>> sam = build_sam(PRESETS["sam_mini"])
        >>> len(trainable(sam, "decoder")) == len(list(sam.mask_decoder.parameters()))
        True
        >>> len(trainable(sam, "decoder", "encoder+decoder")) == len(trainable(sam, "decoder")) + len(trainable(sam, "final"))
        True
    """
    names = DECODER_TRAINS[decoder_trains] if mode == "decoder" else ("image_encoder",)
    return [p for name in names for p in getattr(student, name).parameters()]


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

    Illustration (not run as a doctest: it needs files or a model)::

        with Capture(hooked_modules(sam, "embedding")) as cap:
            sam.image_encoder(x)
        len(cap.outputs)
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


def feature_mse(s: torch.Tensor, t: torch.Tensor, batch: int, relative: bool = True) -> torch.Tensor:
    """Mean over images of the MSE between features ``s`` and ``t`` (image-major rows), each
    divided by that image's teacher mean square when ``relative``.

    Per-image terms make the loss of a batch the mean of its images' losses, so it does not depend
    on how a batch is split (DDP shards, micro-batches).

    Example:
        >>> t = torch.ones(2, 3); float(feature_mse(2 * t, t, 2))
        1.0
    """
    s, t = s.float().reshape(batch, -1), t.float().reshape(batch, -1)
    mse = (s - t).pow(2).mean(1)
    return (mse / (t.pow(2).mean(1) + 1e-8) if relative else mse).mean()


def distill_loss(student: torch.nn.Module, x: torch.Tensor, spec: DistillSpec, step: int, *,
                 teacher: torch.nn.Module, inter_teacher: torch.nn.Module | None = None,
                 targets: TeacherEmbeddings | None = None, images: list | None = None,
                 indices: list[int] | None = None) -> dict[str, torch.Tensor]:
    """``{"loss", "embed", "inter"}`` of one micro-batch ``x`` (normalised ``images`` at the teacher's
    input size); in the ``"decoder"`` mode ``{"loss", "mask", "iou"}`` of
    :func:`~.decoder_tune.decoder_loss` (``indices``, the images' indices, seed their prompts).

    ``targets`` supplies the teacher's embeddings (cached or computed); without it the teacher
    runs. A student (or ``inter_teacher``) of a smaller input size (``compress --image-size``) sees
    ``x`` resized to its size, and the teacher's embedding is resized (bilinear) to its grid. Forwards run under bf16 autocast (of ``x``'s device type) when ``spec.bf16``; the losses
    are computed in fp32.
    """
    inter_teacher = inter_teacher if inter_teacher is not None else teacher
    targets = targets if targets is not None else TeacherEmbeddings(teacher, bf16=spec.bf16)
    if spec.mode == "decoder":
        return _decoder_step(student, x, spec, teacher=teacher, targets=targets, images=images,
                             indices=indices if indices is not None else list(range(x.shape[0])))
    w = spec.inter_weight_at(step)
    use_inter = w > 0 and spec.mode in ("bottleneck", "embedding")
    computed = None
    t_hooks = hooked_modules(inter_teacher, spec.mode) if use_inter else []
    kind = x.device.type
    with torch.no_grad(), autocast(spec.bf16, kind), Capture(t_hooks) as tcap:
        if use_inter:
            e = inter_teacher.image_encoder(resize_input(x, inter_teacher.image_encoder.img_size))
            computed = e if inter_teacher is getattr(targets, "teacher", teacher) else None
    t_emb = targets(images, x, computed)
    with autocast(spec.bf16, kind), Capture(hooked_modules(student, spec.mode) if use_inter else []) as scap:
        s_emb = student.image_encoder(resize_input(x, student.image_encoder.img_size))
    embed = F.mse_loss(s_emb.float(), resize_embedding(t_emb, s_emb.shape[-1]))
    inter = torch.zeros((), device=x.device)
    if use_inter:
        terms = [feature_mse(s, t, x.shape[0], spec.relative_inter) for s, t in zip(scap.outputs, tcap.outputs)]
        inter = sum(terms) / len(terms)
    return {"loss": embed + w * inter, "embed": embed.detach(), "inter": inter.detach()}


def _decoder_step(student: torch.nn.Module, x: torch.Tensor, spec: DistillSpec, *, teacher: torch.nn.Module,
                  targets: TeacherEmbeddings, images: list | None, indices: list[int]) -> dict[str, torch.Tensor]:
    """The ``"decoder"`` mode's loss: the teacher's embedding, the student's (with gradients only
    when its encoder trains too), then :func:`~.decoder_tune.decoder_loss`; forwards under autocast
    when ``spec.bf16``."""
    from .decoder_tune import decoder_loss

    kind = x.device.type
    t_emb = targets(images, x, None)
    with torch.set_grad_enabled("image_encoder" in DECODER_TRAINS[spec.decoder_trains]), autocast(spec.bf16, kind):
        s_emb = student.image_encoder(resize_input(x, student.image_encoder.img_size))
    with autocast(spec.bf16, kind):
        return decoder_loss(student, teacher, s_emb.float(), t_emb.float(), indices, spec.decoder_prompts)


def make_optimizer(student: torch.nn.Module, spec: DistillSpec):
    """AdamW over what ``spec.mode`` trains (:func:`trainable`: the image encoder, or the mask decoder
    in ``"decoder"``; the rest is frozen) + schedule."""
    params = trainable(student, spec.mode, spec.decoder_trains)
    for p in student.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=spec.lr, weight_decay=spec.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, spec.lr_factor)
    return opt, sched


def batch_indices(spec: DistillSpec, step: int, micro: int) -> list[int]:
    """Image indices of the global micro-batch ``micro`` of ``step`` (a pure function of both)."""
    start = spec.offset + (step * spec.accum + micro) * spec.batch
    return list(range(start, start + spec.batch))


def distill(student: torch.nn.Module, spec: DistillSpec, *, teacher: torch.nn.Module, source: Any,
            inter_teacher: torch.nn.Module | None = None, state: dict | None = None,
            save: Callable[[int, Any, Any], None] | None = None, checkpoint_every: int = 0,
            on_step: Callable[[int, dict[str, float]], None] | None = None,
            targets: TeacherEmbeddings | None = None) -> torch.nn.Module:
    """Train ``student``'s encoder for ``spec.steps`` steps (continuing from ``state`` if given).

    Arguments:
        student, teacher, inter_teacher: ``Sam`` models (see the module doc for who aligns to whom).
        source: an :class:`~slimsam_edge.compress.data.ImageSource`.
        state: a checkpoint dict (``optimizer``, ``scheduler``, ``rng``, ``step``) to resume from.
        save: ``save(step, optimizer, scheduler)`` called every ``checkpoint_every`` steps and at the end.
        on_step: called after each step with ``(step, losses)`` (losses averaged over the ranks).
        targets: the teacher's embeddings (e.g. cached); default: run the teacher.

    Under torchrun each rank trains on its shard of every global micro-batch and the gradients
    are averaged before the optimiser step (:mod:`~slimsam_edge.compress.runtime`). Everything runs
    on ``student``'s device (teachers there too); put the student there *before* calling, so the
    optimiser state of ``state`` loads onto it.

    Illustration (not run as a doctest: it needs files or a model)::

        distill(student, DistillSpec("final", steps=4), teacher=teacher, source=src)
    """
    opt, sched = make_optimizer(student, spec)
    runtime.check_batch(spec.batch)
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
    params = trainable(student, spec.mode, spec.decoder_trains)
    for step in range(start, spec.steps):
        opt.zero_grad(set_to_none=True)
        sums: dict[str, float] = {}
        for micro in range(spec.accum):
            indices = runtime.shard(batch_indices(spec, step, micro))
            images = source.images(indices)
            x = preprocess(teacher, images)  # at the teacher's size; the student's is resized from it
            res = distill_loss(student, x, spec, step, teacher=teacher, inter_teacher=inter_teacher,
                               targets=targets, images=images, indices=indices)
            (res["loss"] / spec.accum).backward()
            for k, v in res.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach()) / spec.accum
        runtime.average_grads_(params)
        opt.step()
        sched.step()
        if on_step is not None:
            on_step(step + 1, {**runtime.mean_values(sums), "lr": sched.get_last_lr()[0],
                               "w_inter": spec.inter_weight_at(step)})
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
