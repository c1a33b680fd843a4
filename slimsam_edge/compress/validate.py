"""Validation during distillation and best-checkpoint selection.

Every ``every`` steps of each phase (and at its last step) the student's point mIoU is measured
with the one evaluator (:func:`~slimsam_edge.eval.evaluate.evaluate_sam`) on
``n_images`` held-out procedural images (``compress`` uses seed 1002). Every measurement is kept in
``history``; the best one of the *final* phase (earliest step on ties) keeps a copy of its weights,
which become ``model.safetensors``. With a decoder phase (``--decoder-steps``) the encoder's last
phase is tracked as well: its best weights start the decoder phase, whose best then replaces them.
The whole state goes into ``checkpoint.pt`` so a resumed job selects exactly as an uninterrupted one.

The report's held-out mIoU uses images of seed 1001, so ``compress`` selects on seed 1002 by
default: the selection never sees the report's images. A model on a GPU is measured there (the
evaluator decodes each image's prompts on the model's device); the best weights are kept on the CPU.

Example:
    >>> v = Validator(every=0, n_images=2)
    >>> v.due(step=5, steps=10), v.enabled
    (False, False)
    >>> Validator(every=5, n_images=2).due(step=5, steps=10)
    True
"""

from __future__ import annotations

from typing import Any

import torch


class Validator:
    """Point-mIoU validation every ``every`` steps; keeps the best weights of the final phase."""

    def __init__(self, every: int, n_images: int, seed: int = 1002, size: int = 256):
        self.every, self.n_images, self.seed, self.size = int(every), int(n_images), int(seed), int(size)
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None  # {"phase", "step", "miou", "state"}

    @property
    def enabled(self) -> bool:
        return self.every > 0

    def due(self, step: int, steps: int) -> bool:
        """Whether to validate after 1-based ``step`` of a phase of ``steps`` steps."""
        return self.enabled and (step % self.every == 0 or step == steps)

    def measure(self, sam: torch.nn.Module) -> float:
        """Point mIoU of ``sam`` (on its device) on the validation images."""
        from ..eval.evaluate import evaluate_sam

        return round(float(evaluate_sam(sam, n_images=self.n_images, seed=self.seed,
                                        size=self.size)["point"]["miou"]), 6)

    def __call__(self, sam: torch.nn.Module, phase: int, step: int, *, final_phase: bool) -> float:
        """Validate ``sam`` after ``step`` of ``phase``; remember its weights if best so far."""
        miou = self.measure(sam)
        self.history.append({"phase": phase, "step": step, "miou": miou})
        if final_phase and (self.best is None or self.best["phase"] != phase or miou > self.best["miou"]):
            state = {k: v.detach().to("cpu", copy=True) for k, v in sam.state_dict().items()}
            self.best = {"phase": phase, "step": step, "miou": miou, "state": state}
        return miou

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume (tensors, numbers and strings only)."""
        return {"history": list(self.history), "best": self.best}

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if state:
            self.history, self.best = list(state["history"]), state["best"]

    def select(self, sam: torch.nn.Module, phase: int) -> dict[str, Any] | None:
        """Load the best weights of ``phase`` into ``sam``; a summary for the report (or ``None``)."""
        if self.best is None or self.best["phase"] != phase:
            return None
        sam.load_state_dict(self.best["state"])
        return {"phase": phase, "step": self.best["step"], "miou": self.best["miou"],
                "n_images": self.n_images, "seed": self.seed, "every": self.every}

    def summary(self) -> dict[str, Any]:
        return {"every": self.every, "n_images": self.n_images, "seed": self.seed, "history": self.history}
