"""The whole compression job: prune -> distil (-> prune -> distil), validate, evaluate, report.

Schedules (:data:`SCHEDULES`): ``alternate`` (SlimSAM): embedding pruning + bottleneck aligning,
then bottleneck pruning + embedding aligning; ``one-step``: everything pruned at once, then
embedding distillation. With ``decoder_steps`` (``compress --decoder-steps``) a last phase tunes the
student's mask decoder (``decoder_trains``: and the encoder) on the teacher's masks (:mod:`.decoder_tune`), starting
from the best validated weights of the encoder's last phase; a finished job gains that phase with
``--decoder-steps N --resume`` (:data:`LATER_PHASES`). With ``base`` (a model other than the teacher, e.g. SAM-B pruned toward
SAM-H) the pruned model is the base's encoder with the teacher's prompt encoder and mask decoder;
phase 1 aligns intermediate features only when the two encoders have the same depth and bottleneck
widths, else the final embedding alone. Files under ``out`` (rank 0 only under torchrun):
``checkpoint.pt`` (resumable), ``step1.safetensors`` (the step-1 model, the block-output target of
step 2), ``model.safetensors`` (the best validated weights of the final phase, with its spec),
``report.json`` / ``report.md`` and ``log.jsonl``.

``CompressConfig.device`` (``auto``, ``cpu`` or ``cuda``; see :mod:`.device`) says where the job
runs; it is not part of what ``--resume`` checks (:meth:`CompressConfig.identity`): a checkpoint
holds device-independent weights, optimiser state and CPU RNG state, so a job started on the CPU
can continue on a GPU and back (the weights then differ by float rounding, not by design). On
CUDA, TF32 matmuls are on for the job.

Illustration (not run as a doctest: it needs files or a model)::

    cfg = CompressConfig(ratio=0.5, steps=200)
    report = compress(cfg, "runs/slim50", teacher=(sam, spec), source=src)
"""

from __future__ import annotations

import copy
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

import torch

from ..errors import CheckpointError, UsageError
from ..models.build import build_sam
from ..models.io import save_model
from ..models.spec import ModelSpec
from . import runtime
from .attention import global_attention
from .cache import TeacherEmbeddings, teacher_fingerprint
from .choices import DECODER_PROMPTS, DECODER_TRAINS, EMBEDDING_TARGETS, LATER_DEFAULTS
from .data import ImageSource
from .device import DEVICE_CHOICES, describe, on_device, rank_device, resolve_device, tf32
from .distill import DistillSpec, distill, load_checkpoint, save_checkpoint
from .importance import importance_keep, make_criterion
from .job import ENGINES
from .progress import JobLog
from .prune import prune_sam
from .report import write_report
from .validate import Validator
from .widths import check_ratio, uniform_encoder

__all__ = ["CompressConfig", "SCHEDULES", "compress", "importance_keep", "apply_keep", "hybrid_base"]

#: schedule -> per phase: (unit kinds pruned before it, distillation mode)
SCHEDULES: dict[str, list[tuple[list[str], str]]] = {
    "alternate": [(["embed"], "bottleneck"), (["bottleneck"], "embedding")],
    "one-step": [(["embed", "bottleneck"], "final")],
}
CHECKPOINT, STEP1, MODEL, LOG = "checkpoint.pt", "step1.safetensors", "model.safetensors", "log.jsonl"
#: settings of where a job runs, not of what it computes: left out of the resume fingerprint
RUN_ONLY = ("device",)
#: settings of phases after the encoder's: left out of the resume fingerprint, so a finished (or
#: interrupted) job continues with a decoder phase added (``--decoder-steps N --resume``); a job stopped
#: inside its decoder phase resumes only with the same value (:func:`_resume_state`)
LATER_PHASES = ("decoder_steps", "decoder_lr", "decoder_trains", "decoder_prompts")
#: settings added after jobs were recorded: left out of the record while they have this value, so
#: older checkpoints resume and older reports are reused
ABSENT = LATER_DEFAULTS


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
    val_every: int = 50  # validation interval in steps (0: no validation, last weights kept)
    val_images: int = 8
    val_seed: int = 1002  # best-checkpoint images apart from the report's (seed 1001)
    bf16: bool = False
    global_attention: str = "keep"  # see .attention.GLOBAL_ATTENTION
    # the settings added later (defaults: choices.LATER_DEFAULTS)
    image_size: int | None = LATER_DEFAULTS["image_size"]  # the student's input size (None: the teacher's; models/regrid.py)
    embedding_target: str = LATER_DEFAULTS["embedding_target"]  # at another size: see choices.EMBEDDING_TARGETS
    decoder_steps: int = LATER_DEFAULTS["decoder_steps"]  # of the last phase tuning the mask decoder (0: none)
    decoder_lr: float = LATER_DEFAULTS["decoder_lr"]  # its peak learning rate (a trained decoder is fine-tuned)
    decoder_trains: str = LATER_DEFAULTS["decoder_trains"]  # what its mask loss trains: choices.DECODER_TRAINS
    decoder_prompts: str = LATER_DEFAULTS["decoder_prompts"]  # its prompt sets: choices.DECODER_PROMPTS
    device: str = "cpu"  # auto | cpu | cuda (see .device); not part of identity()

    def validate(self) -> None:
        check_ratio(self.ratio)
        if self.device not in DEVICE_CHOICES:
            raise UsageError(f"unknown device {self.device!r}; choose one of: {', '.join(DEVICE_CHOICES)}")
        global_attention(self.global_attention)
        make_criterion(self.importance)
        if self.scope not in ("local", "global"):
            raise UsageError(f"unknown scope {self.scope!r}; choose local or global")
        if self.schedule not in SCHEDULES:
            raise UsageError(f"unknown schedule {self.schedule!r}; choose one of: {', '.join(SCHEDULES)}")
        if self.decoder_trains not in DECODER_TRAINS:
            raise UsageError(f"unknown --decoder-trains {self.decoder_trains!r}; choose one of: {', '.join(DECODER_TRAINS)}")
        if self.decoder_prompts not in DECODER_PROMPTS:
            raise UsageError(f"unknown --decoder-prompts {self.decoder_prompts!r}; choose one of: "
                             f"{', '.join(DECODER_PROMPTS)}")
        if self.embedding_target not in EMBEDDING_TARGETS:
            raise UsageError(f"unknown --embedding-target {self.embedding_target!r}; choose one of: "
                             f"{', '.join(EMBEDDING_TARGETS)}")
        if self.val_every < 0 or self.decoder_steps < 0:
            raise UsageError(f"val_every and decoder_steps must be >= 0, got {self.val_every} and {self.decoder_steps}")
        for k in ("steps", "batch", "accum", "importance_images", "eval_images", "val_images"):
            if getattr(self, k) < 1:
                raise UsageError(f"{k} must be >= 1, got {getattr(self, k)}")
        if self.engine not in ENGINES:
            raise UsageError(f"unknown pruning engine {self.engine!r}; choose one of: {', '.join(ENGINES)}")
        if not (0 <= self.sigma < math.inf and 0 < self.lr < math.inf and 0 < self.decoder_lr < math.inf):
            raise UsageError(f"--sigma must be a finite number >= 0 and --lr / --decoder-lr finite numbers > 0, got "
                             f"{self.sigma}, {self.lr} and {self.decoder_lr}")
        if self.image_size is not None and (not isinstance(self.image_size, int) or self.image_size < 1):
            raise UsageError(f"--image-size must be a positive number of pixels, got {self.image_size!r}")

    def record(self) -> dict[str, Any]:
        """The settings as recorded in logs and reports: every field but those of :data:`ABSENT` at
        their absent value.

        Example:
            >>> "image_size" in CompressConfig(0.5).record(), CompressConfig(0.5, image_size=192).record()["image_size"]
            (False, 192)
        """
        return {k: v for k, v in asdict(self).items() if not (k in ABSENT and v == ABSENT[k])}

    def identity(self) -> dict[str, Any]:
        """The settings that define the job's result (everything but :data:`RUN_ONLY`): what
        ``--resume`` and the ablation's reuse of finished runs compare.

        Example:
            >>> CompressConfig(0.5, device="cuda").identity() == CompressConfig(0.5).identity()
            True
        """
        return {k: v for k, v in self.record().items() if k not in RUN_ONLY}

    def phase_units(self) -> list[list]:
        """Units pruned before each distillation phase."""
        return [units for units, _ in SCHEDULES[self.schedule]]

    def phases(self, aligned: bool = True) -> list[tuple[list[str], str]]:
        """``(units pruned before it, mode)`` of every phase: the schedule's (phase 1 aligns the final
        embedding alone when the model is not ``aligned`` with the teacher's intermediate features),
        then ``"decoder"`` with ``decoder_steps``.

        Example:
            >>> [m for _, m in CompressConfig(0.5, decoder_steps=10).phases()]
            ['bottleneck', 'embedding', 'decoder']
            >>> [m for _, m in CompressConfig(0.5, schedule="one-step").phases(aligned=False)]
            ['final']
        """
        out = [(units, "final" if mode == "bottleneck" and not aligned else mode)
               for units, mode in SCHEDULES[self.schedule]]
        return out + ([([], "decoder")] if self.decoder_steps else [])

    def later_phases(self) -> dict[str, Any]:
        """The :data:`LATER_PHASES` settings (kept in the checkpoint; checked when resuming inside them).

        Example:
            >>> CompressConfig(0.5, decoder_steps=10).later_phases()["decoder_steps"]
            10
        """
        return {k: getattr(self, k) for k in LATER_PHASES}

    def phase_schedule(self, mode: str) -> tuple[int, float]:
        """``(optimiser steps, peak learning rate)`` of a phase of ``mode``.

        Example:
            >>> CompressConfig(0.5, steps=40, lr=1e-3, decoder_steps=10).phase_schedule("decoder")
            (10, 0.0001)
        """
        return (self.decoder_steps, self.decoder_lr) if mode == "decoder" else (self.steps, self.lr)


def _units(kinds: list[str], spec: ModelSpec) -> list:
    out: list = []
    for k in kinds:
        out += ["embed"] if k == "embed" else [(n, i) for i in range(spec.encoder.depth) for n in ("head", "mlp")]
    return out


def apply_keep(sam, spec: ModelSpec, keep: dict, engine: str = "slice"):
    """Prune ``sam`` to ``keep``; with ``engine="torch-pruning"`` the embedding goes through
    torch-pruning's dependency graph (the bottlenecks are always sliced).

    Illustration (not run as a doctest: it needs files or a model)::

        small, small_spec = apply_keep(sam, spec, {"embed": torch.arange(24)}, "torch-pruning")
    """
    keep = dict(keep)
    if engine == "torch-pruning" and "embed" in keep:
        from .prune import prune_embedding_tp

        sam, spec = prune_embedding_tp(sam, spec, keep.pop("embed"))
    return prune_sam(sam, spec, keep) if keep else (sam, spec)


def hybrid_base(teacher: tuple[Any, ModelSpec], base: tuple[Any, ModelSpec] | None):
    """``(sam, spec, aligned)``: the model to prune — ``base``'s encoder with ``teacher``'s prompt
    encoder, mask decoder and pixel statistics (the teacher itself without ``base``) — and whether
    its intermediate features can be aligned with the teacher's (same depth and bottleneck widths).

    Raises a one-line :class:`UsageError` when the embeddings differ in shape.

    Illustration (not run as a doctest: it needs files or a model)::

        sam, spec, aligned = hybrid_base((sam_h, spec_h), (sam_b, spec_b))
    """
    t_sam, t_spec = teacher
    if base is None:
        return t_sam, t_spec, True
    b_sam, b_spec = base
    te, be = t_spec.encoder, b_spec.encoder
    shape_t = (te.out_chans, te.grid, t_spec.image_size)
    shape_b = (be.out_chans, be.grid, b_spec.image_size)
    if shape_t != shape_b:
        raise UsageError(f"the teacher's image embedding ({te.out_chans}x{te.grid}x{te.grid} at {t_spec.image_size}px) "
                         f"differs from the base's ({be.out_chans}x{be.grid}x{be.grid} at {b_spec.image_size}px); "
                         "pick a base of the same family")
    spec = replace(b_spec, model_type="custom", decoder=t_spec.decoder, pixel_mean=t_spec.pixel_mean,
                   pixel_std=t_spec.pixel_std)
    sam = build_sam(spec)
    sd = {k: v for k, v in b_sam.state_dict().items() if k.startswith("image_encoder.")}
    sd.update({k: v for k, v in t_sam.state_dict().items() if not k.startswith("image_encoder.")})
    sam.load_state_dict(sd, strict=True)
    aligned = (te.depth, te.qkv_dims, te.mlp_dims) == (be.depth, be.qkv_dims, be.mlp_dims)
    return sam.eval(), spec, aligned


def compress(cfg: CompressConfig, out: Path | str, *, teacher: tuple[Any, ModelSpec], source: ImageSource,
             teacher_id: str = "teacher", base: tuple[Any, ModelSpec] | None = None, base_id: str = "base",
             cache_dir: Path | str | None = None, resume: bool = False, quiet: bool = True,
             on_step: Callable[[int, int, dict], None] | None = None,
             teacher_summary: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run (or resume) the job; returns the report dict (also written to ``out``).

    Arguments:
        cfg: the job's settings.
        out: output folder.
        teacher: ``(sam, spec)`` of the distillation teacher (also the model pruned without ``base``).
        source: distillation / importance images.
        teacher_id: recorded in the config fingerprint that ``resume`` checks.
        base: ``(sam, spec)`` of the model to prune when it is not the teacher.
        cache_dir: folder of cached teacher embeddings (fp16; see :mod:`.cache`).
        on_step: ``on_step(phase, step, losses)`` after each optimiser step (tests interrupt here).
        teacher_summary: the teacher's report entry, if already evaluated with ``cfg.eval_images``.

    Under torchrun every rank calls this; rank 0 writes the files and returns the report, the
    others return ``{"rank": r}``. The job runs on ``cfg.device`` (``cuda:{LOCAL_RANK}`` for
    ``cuda``); the caller's models are not moved (copies go to the device).

    Illustration (not run as a doctest: it needs files or a model)::

        compress(CompressConfig(ratio=0.5, steps=2), "out", teacher=(sam, spec), source=src)
        compress(CompressConfig(ratio=0.5, device="cuda"), "out", teacher=(sam, spec), source=src)
    """
    cfg.validate()
    kind = resolve_device(cfg.device)  # one line where cuda is asked for and no GPU is visible
    runtime.init_from_env(kind)  # under torchrun: join the process group (the CLI has already)
    runtime.check_batch(cfg.batch)
    bf16_native = _check_bf16(cfg.bf16, kind, warn=runtime.is_main() and not quiet)
    with tf32(kind == "cuda"):
        return _job(cfg, Path(out), rank_device(kind), bf16_native, teacher=teacher, source=source,
                    teacher_id=teacher_id, base=base, base_id=base_id, cache_dir=cache_dir, resume=resume,
                    quiet=quiet, on_step=on_step, teacher_summary=teacher_summary)


def _check_bf16(bf16: bool, kind: str, warn: bool) -> bool | None:
    """``None`` without bf16; else whether it runs natively on ``kind`` (one line where it cannot
    run at all, a warning on a CPU that emulates it)."""
    if not bf16:
        return None
    native = runtime.check_bf16(kind)
    if not native and kind == "cpu" and warn:
        print("warning: this CPU has no native bf16 (AVX512-BF16/AMX); --bf16 is emulated and slower than fp32",
              file=sys.stderr)
    return native


def _at_image_size(cfg: CompressConfig, sam: Any, spec: ModelSpec) -> tuple[Any, ModelSpec]:
    """The model to prune moved to ``cfg.image_size`` (:func:`~slimsam_edge.models.regrid.resample_model`);
    one line for a size that does not work or an importance that cannot run at another size."""
    if cfg.image_size is None or cfg.image_size == spec.image_size:
        return sam, spec
    from ..models.regrid import resample_model

    if make_criterion(cfg.importance).needs == "labels":
        raise UsageError(f"--importance {cfg.importance} scores with labelled images at the teacher's size; "
                         "with --image-size use disturbed-taylor, magnitude or random")
    sam, spec = resample_model(sam, spec, cfg.image_size)
    return sam.eval().requires_grad_(False), spec


def _place(t_sam: Any, b_sam: Any, device: torch.device) -> tuple[Any, Any]:
    """Teacher and base on ``device`` (one copy when the base is the teacher itself)."""
    t_dev = on_device(t_sam, device)
    return t_dev, (t_dev if b_sam is t_sam else on_device(b_sam, device))


@dataclass
class _Job:
    """What the phases of one job share (built by :func:`_prepare`)."""

    cfg: CompressConfig
    out: Path
    device: torch.device
    main: bool
    t_sam: Any
    t_spec: ModelSpec
    b_sam: Any
    b_spec: ModelSpec
    t_weights: str
    fingerprint: str
    target: ModelSpec
    targets: TeacherEmbeddings
    validator: Validator
    log: JobLog
    phases: list[tuple[list[str], str]]
    t0: float
    # the model being pruned and distilled, and the step-1 model (block-output targets of step 2)
    student: Any = None
    spec: ModelSpec | None = None
    step1: Any = None
    # phase 1's intermediate-feature target when it is not the teacher (another input size)
    bottleneck_teacher: Any = None
    # the encoder phases' (and importance's) embedding targets when they are not ``targets``
    # (``embedding_target="regridded"`` at another input size)
    regridded: TeacherEmbeddings | None = None

    @property
    def encoder_targets(self) -> TeacherEmbeddings:
        """What the encoder phases and importance pull the student's embedding toward; the decoder phase
        and the teacher's masks always use ``targets``."""
        return self.regridded if self.regridded is not None else self.targets

    @property
    def last(self) -> int:
        return len(self.phases) - 1

    @property
    def last_encoder(self) -> int:
        """The last phase that trains the encoder (its best weights start the decoder phase)."""
        return max(i for i, (_, mode) in enumerate(self.phases) if mode != "decoder")


def _job(cfg: CompressConfig, out: Path, device: torch.device, bf16_native: bool | None, *,
         teacher: tuple[Any, ModelSpec], source: ImageSource, teacher_id: str,
         base: tuple[Any, ModelSpec] | None, base_id: str, cache_dir: Path | str | None, resume: bool,
         quiet: bool, on_step: Callable[[int, int, dict], None] | None,
         teacher_summary: dict[str, Any] | None) -> dict[str, Any]:
    """The body of :func:`compress` on ``device`` (arguments as there): prepare, restore a
    checkpoint, run each phase (prune, distil), save and report."""
    job, state = _prepare(cfg, out, device, teacher=teacher, source=source, teacher_id=teacher_id, base=base,
                          base_id=base_id, cache_dir=cache_dir, resume=resume, quiet=quiet)
    phase = _restore(job, state) if state is not None else 0
    try:
        for p in range(phase, len(job.phases)):
            _run_phase(job, p, state if (state is not None and p == phase) else None, source, on_step)
    finally:
        job.log.close()
    return _finish(job, bf16_native, teacher_id=teacher_id, source=source, base_id=base_id if base else None,
                   teacher_summary=teacher_summary)


def _prepare(cfg: CompressConfig, out: Path, device: torch.device, *, teacher: tuple[Any, ModelSpec],
             source: ImageSource, teacher_id: str, base: tuple[Any, ModelSpec] | None, base_id: str,
             cache_dir: Path | str | None, resume: bool, quiet: bool) -> tuple[_Job, dict | None]:
    """The models to prune on ``device``, the resume fingerprint, the teacher's embeddings, the
    validator and the log; the checkpoint's state when resuming (a fresh start clears old files)."""
    t_sam, t_spec = teacher
    if source.size != t_spec.image_size:
        raise UsageError(f"images of {source.size}px do not fit the teacher's input {t_spec.image_size}px")
    b_sam, b_spec, aligned = hybrid_base(teacher, base)
    b_sam, b_spec = global_attention(cfg.global_attention).apply(b_sam, b_spec)
    b_sam, b_spec = _at_image_size(cfg, b_sam, b_spec)
    main = runtime.is_main()
    out.mkdir(parents=True, exist_ok=True)
    t_weights = teacher_fingerprint(t_sam, t_spec)  # the same path with retrained weights is another teacher
    encoder_config = {k: v for k, v in cfg.identity().items() if k not in LATER_PHASES}
    fingerprint = json.dumps({"config": encoder_config, "teacher": teacher_id, "teacher_spec": t_spec.to_dict(),
                              "teacher_weights": t_weights,
                              "base": base_id if base else None, "base_spec": b_spec.to_dict() if base else None,
                              "cached": cache_dir is not None, "data": source.describe()}, sort_keys=True)
    t0 = time.time()
    torch.manual_seed(cfg.seed)
    target = replace(b_spec, encoder=uniform_encoder(b_spec.encoder, cfg.ratio))
    t_sam, b_sam = _place(t_sam, b_sam, device)
    for m in (t_sam, b_sam):
        m.eval().requires_grad_(False)
    targets = TeacherEmbeddings(t_sam, cache_dir, key=t_weights if cache_dir else "",
                                bf16=cfg.bf16)
    validator = Validator(cfg.val_every, cfg.val_images, cfg.val_seed, t_spec.image_size)
    state = _resume_state(out / CHECKPOINT, fingerprint, cfg) if resume else None
    if main and not resume:  # a fresh start: no stale checkpoint or log lines
        for name in (CHECKPOINT, LOG):
            (out / name).unlink(missing_ok=True)
    runtime.barrier()
    log = JobLog(out / LOG, quiet, enabled=main)
    log.write({"event": "resume" if state else "start", "config": cfg.record(), "teacher": teacher_id,
               "base": base_id if base else None, "world_size": runtime.world_size()})
    # without intermediate features to align with (another teacher architecture) phase 1 aligns the embedding
    phases = cfg.phases(aligned)
    job = _Job(cfg, out, device, main, t_sam, t_spec, b_sam, b_spec, t_weights, fingerprint, target, targets,
               validator, log, phases, t0)
    # at another input size the teacher's q/k/v and MLP features live on another token grid: phase 1
    # aligns them with the unpruned model moved to the student's size instead (the embedding stays the teacher's)
    job.bottleneck_teacher = b_sam if b_spec.image_size != t_spec.image_size else None
    # without a base or a change of attention the model to prune is the teacher moved to the student's size
    moved = (b_sam, b_spec) if base is None and cfg.global_attention == "keep" else None
    job.regridded = _regridded_targets(cfg, t_sam, t_spec, cache_dir, moved)
    return job, state


def _regridded_targets(cfg: CompressConfig, t_sam: Any, t_spec: ModelSpec, cache_dir: Path | str | None,
                       moved: tuple[Any, ModelSpec] | None = None) -> TeacherEmbeddings | None:
    """With ``embedding_target="regridded"`` and another input size: the embeddings of the teacher moved to
    the student's size (``moved`` when the caller already has that model — then phase 1, which aligns with
    it too, hands its embedding over instead of running it twice — else
    :func:`~slimsam_edge.models.regrid.resample_model`; cached under its own fingerprint when
    ``cache_dir``); else ``None`` (the teacher's own, resized)."""
    if cfg.embedding_target != "regridded" or cfg.image_size in (None, t_spec.image_size):
        return None
    from ..models.regrid import resample_model

    r_sam, r_spec = moved if moved is not None else resample_model(t_sam, t_spec, cfg.image_size)
    r_sam.eval().requires_grad_(False)
    return TeacherEmbeddings(r_sam, cache_dir, key=teacher_fingerprint(r_sam, r_spec) if cache_dir else "",
                             bf16=cfg.bf16)


def _restore(job: _Job, state: dict) -> int:
    """Load a checkpoint's student, validator and step-1 model into ``job``; the phase to go on with."""
    phase, job.spec = int(state["phase"]), ModelSpec.from_json(state["spec"])
    job.t0 -= float(state.get("elapsed_s", 0.0))
    job.student = build_sam(job.spec, device=job.device)  # before its optimiser state is loaded (distill)
    job.student.load_state_dict(state["model"])
    job.validator.load_state_dict(state.get("validator"))
    if job.phases[phase][1] == "embedding":  # its block-output target
        from ..models.io import load_model

        job.step1 = load_model(job.out / STEP1)[0].to(job.device).requires_grad_(False)
    return phase


def _run_phase(job: _Job, p: int, resumed: dict | None, source: ImageSource,
               on_step: Callable[[int, int, dict], None] | None) -> None:
    """Phase ``p``: prune (unless resumed inside it), distil with checkpoints and validation, and
    after phase 0 of several keep the step-1 model."""
    cfg, (units, mode) = job.cfg, job.phases[p]
    steps, lr = cfg.phase_schedule(mode)
    dspec = DistillSpec(mode, steps=steps, lr=lr, batch=cfg.batch, accum=cfg.accum,
                        inter_weight=cfg.inter_weight, offset=p * 1_000_003, bf16=cfg.bf16,
                        decoder_trains=cfg.decoder_trains, decoder_prompts=cfg.decoder_prompts)
    if resumed is None and mode == "decoder":
        _start_decoder_phase(job, p)
    elif resumed is None:
        src, src_spec = (copy.deepcopy(job.b_sam), job.b_spec) if p == 0 else (job.student, job.spec)
        src.requires_grad_(True)
        keep = importance_keep(src, src_spec, job.target, cfg, _units(units, src_spec), source, job.t_sam,
                               job.encoder_targets)
        job.student, job.spec = apply_keep(src, src_spec, keep, cfg.engine)
        job.log.write({"event": "pruned", "phase": p, "mode": mode, "spec": job.spec.to_dict()["encoder"]})
    student, spec = job.student, job.spec

    def save(step, opt, sched):
        if job.main:
            save_checkpoint(job.out / CHECKPOINT, {
                "phase": p, "step": step, "model": student.state_dict(), "spec": spec.to_json(),
                "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "rng": torch.get_rng_state(), "validator": job.validator.state_dict(),
                "fingerprint": job.fingerprint, "later_phases": cfg.later_phases(),
                "elapsed_s": time.time() - job.t0})

    def step_cb(step, losses):
        job.log.step(p, step, steps, len(job.phases), losses)
        if job.validator.due(step, steps):
            miou = job.validator(student, p, step, final_phase=p >= job.last_encoder)
            job.log.write({"event": "val", "phase": p, "step": step, "point_miou": miou})
        if on_step is not None:
            on_step(p, step, losses)

    if resumed is None or int(resumed["step"]) < steps:
        distill(student, dspec, teacher=job.t_sam, source=source,
                inter_teacher=job.step1 if mode == "embedding" else job.bottleneck_teacher, state=resumed, save=save,
                checkpoint_every=cfg.checkpoint_every, on_step=step_cb,
                targets=job.targets if mode == "decoder" else job.encoder_targets)
    if p == 0 and any(m == "embedding" for _, m in job.phases):  # phase 2 aligns block outputs with it
        if job.main:
            save_model(student, spec, job.out / STEP1)
        job.step1 = copy.deepcopy(student).eval().requires_grad_(False)


def _start_decoder_phase(job: _Job, p: int) -> None:
    """Enter the decoder phase from the best validated weights of the last encoder phase (when
    validation is on), measured again as the phase's step 0: the untuned decoder stays a candidate
    for ``model.safetensors``."""
    if job.validator.select(job.student, job.last_encoder) is not None:
        miou = job.validator(job.student, p, 0, final_phase=True)
        job.log.write({"event": "val", "phase": p, "step": 0, "point_miou": miou})


def _finish(job: _Job, bf16_native: bool | None, *, teacher_id: str, source: ImageSource, base_id: str | None,
            teacher_summary: dict[str, Any] | None) -> dict[str, Any]:
    """Select the best validated weights, save ``model.safetensors`` and write the report (rank 0)."""
    cfg, student, spec = job.cfg, job.student, job.spec
    student.eval().requires_grad_(False)
    best = job.validator.select(student, job.last)
    extra = {"best": best, "teacher_weights": job.t_weights, "validation": job.validator.summary(),
             "teacher_cache": job.targets.stats(),
             **({"regridded_cache": job.regridded.stats()} if job.regridded is not None else {}),
             "world_size": runtime.world_size(), "bf16": cfg.bf16, "bf16_native": bf16_native, **describe(job.device),
             "phase_modes": [m for _, m in job.phases],
             "base": {"id": base_id, "encoder_params": sum(v.numel() for k, v in job.b_sam.state_dict().items()
                                                          if k.startswith("image_encoder."))} if base_id else None}
    report: dict[str, Any] = {"rank": runtime.rank()}
    if job.main:
        save_model(student, spec, job.out / MODEL, ratio=str(cfg.ratio), schedule=cfg.schedule,
                   importance=cfg.importance, best_step=str(best["step"] if best else cfg.steps))
        report = write_report(job.out, cfg, job.t_sam, job.t_spec, student, spec, elapsed=time.time() - job.t0,
                              teacher_id=teacher_id, source=source.describe(), extra=extra,
                              teacher_summary=teacher_summary)
    runtime.barrier()
    return report


def _resume_state(path: Path, fingerprint: str, cfg: CompressConfig) -> dict | None:
    """The checkpoint's state if it continues this job: the same encoder configuration, and — when
    it was written inside the decoder phase — the same :data:`LATER_PHASES` settings (one line otherwise)."""
    if not path.exists():
        return None
    state = load_checkpoint(path)
    n_encoder = len(SCHEDULES[cfg.schedule])
    in_decoder = int(state.get("phase", 0)) >= n_encoder
    if state.get("fingerprint") != fingerprint or (in_decoder and state.get("later_phases") != cfg.later_phases()):
        raise CheckpointError(f"{path}: was written by a job with another configuration (teacher, data or "
                              "settings differ); use the same flags or another --out")
    return state
