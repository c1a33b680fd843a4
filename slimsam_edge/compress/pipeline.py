"""The whole compression job: prune -> distil (-> prune -> distil), evaluate, report.

Schedules: ``alternate`` (SlimSAM): embedding pruning + bottleneck aligning, then bottleneck
pruning + embedding aligning; ``one-step``: everything pruned at once, then embedding
distillation. Files under ``out``: ``checkpoint.pt`` (resumable), ``step1.safetensors`` (the
step-1 model, the block-output target of step 2), ``model.safetensors`` (the result, with its
spec), ``report.json`` / ``report.md`` and ``log.jsonl``.

Example:
    >>> cfg = CompressConfig(ratio=0.5, steps=200)                     # doctest: +SKIP
    >>> report = compress(cfg, "runs/slim50")                          # doctest: +SKIP
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..errors import CheckpointError, UsageError
from ..models.build import build_sam
from ..models.io import save_model
from ..models.spec import ModelSpec
from .data import ImageSource
from .distill import DistillSpec, distill, load_checkpoint, save_checkpoint
from .importance import accumulate_grads, choose_keep, make_criterion, unit_scores
from .prune import prune_sam
from .report import write_report
from .widths import check_ratio, uniform_encoder

ENGINES = ("slice", "torch-pruning")
CHECKPOINT, STEP1, MODEL, LOG = "checkpoint.pt", "step1.safetensors", "model.safetensors", "log.jsonl"


@dataclass(frozen=True)
class CompressConfig:
    """Settings of a compression job (everything that must match to ``--resume``)."""

    ratio: float
    importance: str = "disturbed-taylor"
    sigma: float = 0.01
    importance_images: int = 16
    scope: str = "local"
    schedule: str = "alternate"
    steps: int = 100  # per distillation phase
    batch: int = 2
    accum: int = 1
    lr: float = 1e-4
    inter_weight: float = 0.5
    checkpoint_every: int = 50
    seed: int = 0
    eval_images: int = 32
    engine: str = "slice"  # embedding pruning: "slice" or "torch-pruning" (same result)

    def validate(self) -> None:
        check_ratio(self.ratio)
        make_criterion(self.importance)
        if self.scope not in ("local", "global"):
            raise UsageError(f"unknown scope {self.scope!r}; choose local or global")
        if self.schedule not in ("alternate", "one-step"):
            raise UsageError(f"unknown schedule {self.schedule!r}; choose alternate or one-step")
        for k in ("steps", "batch", "accum", "importance_images", "eval_images"):
            if getattr(self, k) < 1:
                raise UsageError(f"{k} must be >= 1, got {getattr(self, k)}")
        if self.engine not in ENGINES:
            raise UsageError(f"unknown pruning engine {self.engine!r}; choose one of: {', '.join(ENGINES)}")
        if self.sigma < 0 or self.lr <= 0:
            raise UsageError("sigma must be >= 0 and lr > 0")

    def phase_units(self) -> list[list]:
        """Units pruned before each distillation phase."""
        return [["embed"], ["bottleneck"]] if self.schedule == "alternate" else [["embed", "bottleneck"]]


def _units(kinds: list[str], spec: ModelSpec) -> list:
    out: list = []
    for k in kinds:
        out += ["embed"] if k == "embed" else [(n, i) for i in range(spec.encoder.depth) for n in ("head", "mlp")]
    return out


def importance_keep(sam, spec: ModelSpec, target: ModelSpec, cfg: CompressConfig, units: list,
                    source: ImageSource, teacher) -> dict:
    """Score ``units`` of ``sam`` with the configured criterion and choose the positions to keep."""
    crit = make_criterion(cfg.importance, sigma=cfg.sigma, seed=cfg.seed)
    grads = None
    n, b = cfg.importance_images, cfg.batch
    chunks = [list(range(i, min(n, i + b))) for i in range(0, n, b)]
    if crit.needs == "embedding":
        from ..reference.batch import preprocess

        gen = torch.Generator().manual_seed(cfg.seed + 17)

        def loss(idx):
            x = preprocess(sam, source.images(idx))
            with torch.no_grad():
                t = teacher.image_encoder(x)
            return crit.embedding_loss(sam.image_encoder(x), t, gen) * len(idx)

        grads = accumulate_grads(sam, (lambda idx=idx: loss(idx) for idx in chunks))
    elif crit.needs == "labels":
        from ..reference.batch import batch_loss
        from ..reference.recipe import Recipe

        recipe = Recipe(image_size=spec.image_size, corrective_rounds=0, loss_size=spec.image_size // 2)
        rng = np.random.default_rng(cfg.seed)

        def loss(idx):
            samples = source.samples(idx)
            return batch_loss(sam, recipe, [s.image for s in samples],
                              [[a.mask for a in s.annotations] for s in samples], rng)["loss"]

        grads = accumulate_grads(sam, (lambda idx=idx: loss(idx) for idx in chunks))
    scores = unit_scores(sam, spec, crit, grads, units)
    return choose_keep(scores, spec, target, cfg.scope)


def apply_keep(sam, spec: ModelSpec, keep: dict, engine: str = "slice"):
    """Prune ``sam`` to ``keep``; with ``engine="torch-pruning"`` the embedding goes through
    torch-pruning's dependency graph (the bottlenecks are always sliced).

    Example:
        >>> small, small_spec = apply_keep(sam, spec, {"embed": torch.arange(24)}, "torch-pruning")  # doctest: +SKIP
    """
    keep = dict(keep)
    if engine == "torch-pruning" and "embed" in keep:
        from .prune import prune_embedding_tp

        sam, spec = prune_embedding_tp(sam, spec, keep.pop("embed"))
    return prune_sam(sam, spec, keep) if keep else (sam, spec)


def compress(cfg: CompressConfig, out: Path | str, *, teacher: tuple[Any, ModelSpec], source: ImageSource,
             teacher_id: str = "teacher", resume: bool = False, quiet: bool = True,
             on_step: Callable[[int, int, dict], None] | None = None) -> dict[str, Any]:
    """Run (or resume) the job; returns the report dict (also written to ``out``).

    Arguments:
        cfg: the job's settings.
        out: output folder.
        teacher: ``(sam, spec)`` of the model to compress (it is also the distillation teacher).
        source: distillation / importance images.
        teacher_id: recorded in the config fingerprint that ``resume`` checks.
        on_step: ``on_step(phase, step, losses)`` after each optimiser step (tests interrupt here).

    Example:
        >>> compress(CompressConfig(ratio=0.5, steps=2), "out", teacher=(sam, spec), source=src)  # doctest: +SKIP
    """
    cfg.validate()
    t_sam, t_spec = teacher
    if source.size != t_spec.image_size:
        raise UsageError(f"images of {source.size}px do not fit the teacher's input {t_spec.image_size}px")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fingerprint = json.dumps({"config": asdict(cfg), "teacher": teacher_id, "teacher_spec": t_spec.to_dict(),
                              "data": source.describe()}, sort_keys=True)
    t0 = time.time()
    torch.manual_seed(cfg.seed)
    target = ModelSpec(t_spec.model_type, uniform_encoder(t_spec.encoder, cfg.ratio), t_spec.decoder,
                       t_spec.pixel_mean, t_spec.pixel_std)
    t_sam.eval()
    for p in t_sam.parameters():
        p.requires_grad_(False)
    state = _resume_state(out / CHECKPOINT, fingerprint) if resume else None
    if not resume and (out / CHECKPOINT).exists():
        (out / CHECKPOINT).unlink()
    log = _Log(out / LOG, quiet)
    log.write({"event": "resume" if state else "start", "config": asdict(cfg), "teacher": teacher_id})
    phases = cfg.phase_units()
    phase, student, spec, step1 = 0, None, None, None
    if state is not None:
        phase, spec = int(state["phase"]), ModelSpec.from_json(state["spec"])
        t0 -= float(state.get("elapsed_s", 0.0))
        student = build_sam(spec)
        student.load_state_dict(state["model"])
        if phase == 1:
            from ..models.io import load_model

            step1 = load_model(out / STEP1)[0]
    try:
        for p in range(phase, len(phases)):
            dspec = DistillSpec(
                "final" if cfg.schedule == "one-step" else ("bottleneck" if p == 0 else "embedding"),
                steps=cfg.steps, lr=cfg.lr, batch=cfg.batch, accum=cfg.accum, inter_weight=cfg.inter_weight,
                offset=p * 1_000_003)
            resumed = state if (state is not None and p == phase) else None
            if resumed is None:
                base, base_spec = (copy.deepcopy(t_sam), t_spec) if p == 0 else (student, spec)
                for q in base.parameters():
                    q.requires_grad_(True)
                keep = importance_keep(base, base_spec, target, cfg, _units(phases[p], base_spec), source, t_sam)
                student, spec = apply_keep(base, base_spec, keep, cfg.engine)
                log.write({"event": "pruned", "phase": p, "spec": spec.to_dict()["encoder"]})

            def save(step, opt, sched, p=p, student=student, spec=spec):
                save_checkpoint(out / CHECKPOINT, {
                    "phase": p, "step": step, "model": student.state_dict(), "spec": spec.to_json(),
                    "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "rng": torch.get_rng_state(),
                    "fingerprint": fingerprint, "elapsed_s": time.time() - t0})

            def step_cb(step, losses, p=p):
                log.step(p, step, cfg.steps, len(phases), losses)
                if on_step is not None:
                    on_step(p, step, losses)

            if resumed is None or int(resumed["step"]) < cfg.steps:
                distill(student, dspec, teacher=t_sam, source=source,
                        inter_teacher=step1 if dspec.mode == "embedding" else None, state=resumed,
                        save=save, checkpoint_every=cfg.checkpoint_every, on_step=step_cb)
            if p == 0 and len(phases) > 1:
                save_model(student, spec, out / STEP1)
                step1 = copy.deepcopy(student).eval()
                for q in step1.parameters():
                    q.requires_grad_(False)
    finally:
        log.close()
    student.eval()
    for q in student.parameters():
        q.requires_grad_(False)
    save_model(student, spec, out / MODEL, ratio=str(cfg.ratio), schedule=cfg.schedule, importance=cfg.importance)
    return write_report(out, cfg, t_sam, t_spec, student, spec, elapsed=time.time() - t0,
                        teacher_id=teacher_id, source=source.describe())


def _resume_state(path: Path, fingerprint: str) -> dict | None:
    if not path.exists():
        return None
    state = load_checkpoint(path)
    if state.get("fingerprint") != fingerprint:
        raise CheckpointError(f"{path}: was written by a job with another configuration (teacher, data or "
                              "settings differ); use the same flags or another --out")
    return state


class _Log:
    """JSONL log + a rich progress bar (ETA, losses) on stderr."""

    def __init__(self, path: Path, quiet: bool):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.path = path
        console = Console(stderr=True, quiet=quiet)
        self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeRemainingColumn(), TextColumn("{task.fields[info]}"), console=console,
                            disable=quiet)
        self.bar.start()
        self.task = self.bar.add_task("distil", total=None, info="")

    def write(self, record: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record, default=str) + "\n")

    def step(self, phase: int, step: int, steps: int, n_phases: int, losses: dict) -> None:
        info = f"loss {losses['loss']:.5f} emb {losses['embed']:.5f} inter {losses['inter']:.5f}"
        self.bar.update(self.task, description=f"phase {phase + 1}/{n_phases}", total=steps,
                        completed=step, info=info)
        self.write({"event": "step", "phase": phase, "step": step,
                    **{k: round(float(v), 7) for k, v in losses.items()}})

    def close(self) -> None:
        self.bar.stop()
