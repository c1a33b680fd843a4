"""Every hyperparameter of a reference-model training run, as one frozen dataclass.

The recipe is written into each checkpoint and into the shipped weights' metadata, so a run can
be reproduced from ``Recipe.from_json(meta["recipe"])``.

Example:
    >>> r = Recipe(steps=100)
    >>> Recipe.from_json(r.to_json()) == r
    True
    >>> r.eval_seed != r.data_seed
    True
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from typing import TYPE_CHECKING, Any

from ..errors import UsageError

if TYPE_CHECKING:
    from ..models.spec import ModelSpec

SCHEDULES = ("cosine", "constant")
#: held-out score that picks ``best.safetensors``: point mIoU, box mIoU, or their mean
SELECTS = ("point", "box", "mean")


@dataclass(frozen=True)
class Recipe:
    """Hyperparameters of :func:`slimsam_edge.reference.train.train`.

    Arguments:
        model_type: preset architecture name (``sam_mini``).
        seed: torch / numpy seed for initialisation and prompt sampling.
        steps: optimiser steps.
        batch_images: freshly generated images per step.
        masks_per_image: at most this many masks (chosen at random) are prompted per image.
        lr, min_lr_ratio, warmup_steps, weight_decay, schedule: AdamW with linear warmup, then
            cosine decay to ``lr * min_lr_ratio`` (or constant).
        betas: AdamW betas.
        grad_clip: max global gradient norm.
        focal_weight, dice_weight, iou_weight: loss weights (SAM: 20, 1, 1).
        box_fraction: fraction of masks prompted with a (noisy) box, the rest with one point.
        box_noise: box coordinate noise as a fraction of the box side.
        corrective_rounds: rounds of corrective clicks after the first prompt (mask input = the
            previous low-resolution logits).
        data_seed, eval_seed: procedural seeds of the training stream and the held-out split.
        image_size: procedural image side (= the model's input side).
        loss_size: side at which mask losses are computed (low-res logits upsampled to it).
        eval_images: held-out images per evaluation.
        eval_every, checkpoint_every, log_every: intervals in steps.
        select: the held-out score that picks ``best.safetensors`` (one of :data:`SELECTS`).
        patch_size, window_size: the encoder's patch side and attention window (in tokens);
            0 keeps the preset's. Finer patches give a finer image embedding and 4x finer
            low-resolution masks, at about 4x the encoder's cost per halving.
        init_sha256: sha256 of the weights the run started from (``train(init=...)``); empty for
            a run from scratch. Part of the recipe so that a continued run names its parent.
    """

    model_type: str = "sam_mini"
    seed: int = 0
    steps: int = 2400
    batch_images: int = 4
    masks_per_image: int = 5
    lr: float = 4e-4
    min_lr_ratio: float = 0.02
    warmup_steps: int = 100
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.999)
    schedule: str = "cosine"
    grad_clip: float = 1.0
    focal_weight: float = 20.0
    dice_weight: float = 1.0
    iou_weight: float = 1.0
    box_fraction: float = 0.4
    box_noise: float = 0.1
    corrective_rounds: int = 1
    data_seed: int = 1
    eval_seed: int = 1001
    image_size: int = 256
    loss_size: int = 128
    eval_images: int = 32
    eval_every: int = 250
    checkpoint_every: int = 100
    log_every: int = 10
    select: str = "point"
    patch_size: int = 0
    window_size: int = 0
    init_sha256: str = ""

    def validate(self) -> None:
        """Raise :class:`UsageError` naming the first bad value."""
        positive = ("steps", "batch_images", "masks_per_image", "image_size", "loss_size", "eval_images",
                    "eval_every", "checkpoint_every", "log_every")
        for name in positive:
            if getattr(self, name) < 1:
                raise UsageError(f"recipe {name} must be >= 1, got {getattr(self, name)}")
        if self.seed < 0 or self.data_seed < 0 or self.eval_seed < 0:
            raise UsageError("recipe seeds must be >= 0")
        if self.data_seed == self.eval_seed:
            raise UsageError(f"data_seed and eval_seed are both {self.data_seed}; use disjoint seeds")
        from ..eval.evaluate import TEST_SEED, UNSEEN_SEED

        for seed in (TEST_SEED, UNSEEN_SEED):
            if seed in (self.data_seed, self.eval_seed):
                raise UsageError(f"seed {seed} is a model card's test split; train and select on other seeds")
        if not self.lr > 0 or self.warmup_steps < 0 or self.corrective_rounds < 0:
            raise UsageError("recipe lr must be > 0, warmup_steps and corrective_rounds >= 0")
        if not 0.0 <= self.box_fraction <= 1.0:
            raise UsageError(f"box_fraction must be in [0, 1], got {self.box_fraction}")
        if self.schedule not in SCHEDULES:
            raise UsageError(f"schedule {self.schedule!r}: choose one of {', '.join(SCHEDULES)}")
        if self.patch_size < 0 or self.window_size < 0:
            raise UsageError("recipe patch_size and window_size must be >= 0 (0: the preset's)")
        if self.patch_size and self.image_size % self.patch_size:
            raise UsageError(f"patch size {self.patch_size} does not divide the image size {self.image_size}")
        if self.select not in SELECTS:
            raise UsageError(f"select {self.select!r}: choose one of {', '.join(SELECTS)}")

    def model_spec(self, spec: "ModelSpec") -> "ModelSpec":
        """``spec`` with this recipe's patch and window size (where set).

        Example:
            >>> from slimsam_edge.models.spec import PRESETS
            >>> Recipe(patch_size=8, window_size=16).model_spec(PRESETS["sam_mini"]).encoder.grid
            32
        """
        from ..models.regrid import GRID_FIELDS

        changes = {k: getattr(self, k) for k in GRID_FIELDS if getattr(self, k)}
        return replace(spec, encoder=replace(spec.encoder, **changes)) if changes else spec

    def selection_score(self, score: dict[str, float]) -> float:
        """The number that ranks held-out evaluations ``{"point": .., "box": ..}`` for ``best.safetensors``.

        Example:
            >>> Recipe(select="mean").selection_score({"point": 0.8, "box": 0.9})
            0.85
            >>> Recipe().selection_score({"point": 0.8, "box": 0.9})
            0.8
        """
        if self.select == "mean":
            return round((score["point"] + score["box"]) / 2, 6)
        return score[self.select]

    def lr_at(self, step: int) -> float:
        """Learning rate used for optimiser step ``step`` (0-based).

        Example:
            >>> r = Recipe(steps=100, warmup_steps=10, lr=1.0, min_lr_ratio=0.0)
            >>> r.lr_at(0), r.lr_at(9), round(r.lr_at(55), 3), r.lr_at(100)
            (0.1, 1.0, 0.5, 0.0)
        """
        import math

        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        if self.schedule == "constant":
            return self.lr
        span = max(1, self.steps - self.warmup_steps)
        t = min(1.0, (step - self.warmup_steps) / span)
        floor = self.lr * self.min_lr_ratio
        return floor + (self.lr - floor) * 0.5 * (1 + math.cos(math.pi * t))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Recipe":
        """Parse a dict written by :meth:`to_dict`; unknown keys raise :class:`UsageError`."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise UsageError(f"unknown recipe fields: {', '.join(unknown)}")
        values = dict(d)
        if "betas" in values:
            values["betas"] = tuple(float(b) for b in values["betas"])
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> "Recipe":
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as err:
            raise UsageError(f"recipe is not valid JSON: {err}") from None

    def with_(self, **changes: Any) -> "Recipe":
        """A copy with ``changes`` applied (``None`` values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})
