"""A compression job as a user asks for it: files and a size goal in, a report out.

:class:`CompressRequest` holds what ``slimsam-edge compress`` takes — the teacher (and base)
checkpoint files, a data folder, exactly one of a preset, a ratio or a parameter budget, where
to run — plus the job's settings (:class:`~slimsam_edge.compress.pipeline.CompressConfig` fields).
:func:`run_request` checks it before anything heavy is loaded, picks the device, joins torchrun's
process group, loads the models, turns the size goal into a ratio and runs
:func:`~slimsam_edge.compress.pipeline.compress`. Importing this module does not import torch.

Example:
    >>> req = CompressRequest("runs/slim77", preset="slimsam-77", settings={"steps": 200})
    >>> req.check()                                      # raises a one-line UsageError when wrong
    >>> # report = run_request(req) would now run it (minutes; the report dict comes back)
    >>> CompressRequest("runs/x", ratio=0.5, preset="slimsam-50").check()
    Traceback (most recent call last):
    ...
    slimsam_edge.errors.UsageError: give exactly one of --preset slimsam-50|slimsam-77, --ratio R, --target-params N (got --preset, --ratio)
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from ..errors import UsageError
from .widths import RATIO_PRESETS, check_ratio, parse_count

#: embedding pruning engines (same weights); CompressConfig.validate checks against this tuple too
ENGINES = ("slice", "torch-pruning")
#: CompressConfig fields a request sets itself (from its size goal and ``device``)
_DERIVED = ("ratio", "device")


@dataclass(frozen=True)
class CompressRequest:
    """What to compress, how small, with what, where: ``slimsam-edge compress``'s options.

    Arguments:
        out: output folder (see :mod:`.pipeline` for its files).
        teacher: checkpoint distilled from (and pruned, without ``base``); None: shipped sam-mini.
        base: checkpoint pruned when it is not the teacher.
        data: folder of unlabelled images; None: procedural images.
        preset, ratio, target_params: the size goal, exactly one (``target_params`` like "5.7M").
        images: distillation images (procedural count; 0 = all of ``data``).
        cache_teacher: folder caching the teacher's embeddings.
        resume: continue from ``out/checkpoint.pt``.
        threads: torch CPU threads.
        device: auto | cpu | cuda.
        settings: other :class:`~slimsam_edge.compress.pipeline.CompressConfig` fields (steps,
            batch, lr, importance, ``image_size`` (the student's input size), ...); their defaults
            are CompressConfig's.
    """

    out: Path | str
    teacher: Path | str | None = None
    base: Path | str | None = None
    data: Path | str | None = None
    preset: str | None = None
    ratio: float | None = None
    target_params: str | None = None
    images: int = 1000
    cache_teacher: Path | str | None = None
    resume: bool = False
    threads: int | None = None
    device: str = "auto"
    settings: Mapping[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        """Refuse a wrong request in one line before anything is loaded (:class:`UsageError`,
        or :class:`~slimsam_edge.errors.DataError` for a missing or empty ``data`` folder).

        Example:
            >>> CompressRequest("runs/x", preset="slimsam-90").check()
            Traceback (most recent call last):
            ...
            slimsam_edge.errors.UsageError: unknown preset 'slimsam-90'; choose one of: slimsam-50, slimsam-77
        """
        goals = (("--preset", self.preset), ("--ratio", self.ratio), ("--target-params", self.target_params))
        chosen = [n for n, v in goals if v is not None]
        if len(chosen) != 1:
            raise UsageError("give exactly one of --preset slimsam-50|slimsam-77, --ratio R, --target-params N "
                             f"(got {', '.join(chosen) or 'none'})")
        if self.preset is not None and self.preset not in RATIO_PRESETS:
            raise UsageError(f"unknown preset {self.preset!r}; choose one of: {', '.join(RATIO_PRESETS)}")
        if self.ratio is not None:
            check_ratio(self.ratio)
        engine = self.settings.get("engine", "slice")
        if engine not in ENGINES:
            raise UsageError(f"unknown --engine {engine!r}; choose {' or '.join(ENGINES)}")
        unknown = sorted(set(self.settings) - _config_fields())
        if unknown:
            raise UsageError(f"unknown compression settings: {', '.join(unknown)}")
        if self.target_params is not None:
            parse_count(self.target_params)
        out = Path(self.out)
        if out.exists() and not out.is_dir():
            raise UsageError(f"--out {out} exists and is not a folder")
        if self.resume and not (out / "checkpoint.pt").exists():
            raise UsageError(f"--resume: no checkpoint in {out}; run without --resume to start")
        if self.data is not None:
            from ..data.images import list_images

            list_images(Path(self.data))  # one-line DataError for a missing or empty folder

    def pruning_ratio(self, encoder: Any) -> float:
        """The ratio of the size goal; ``encoder`` (the pruned model's EncoderSpec) sizes a budget.

        Example:
            >>> from slimsam_edge.models.spec import PRESETS
            >>> CompressRequest("o", preset="slimsam-77").pruning_ratio(PRESETS["vit_b"].encoder)
            0.77
            >>> round(CompressRequest("o", target_params="5.7M").pruning_ratio(PRESETS["vit_b"].encoder), 2)
            0.77
        """
        if self.target_params is not None:
            from .widths import ratio_for_params

            return ratio_for_params(encoder, parse_count(self.target_params))
        if self.preset is not None:
            return RATIO_PRESETS[self.preset]
        return float(self.ratio)  # type: ignore[arg-type]


def _config_fields() -> set[str]:
    from .pipeline import CompressConfig

    return {f.name for f in fields(CompressConfig)} - set(_DERIVED)


def run_request(request: CompressRequest, *, quiet: bool = False) -> dict[str, Any] | None:
    """Check and run a compression request; the report on the main process, None on the others.

    Under torchrun every process runs this and joins the process group (gloo on the CPU, nccl on
    CUDA); the group is shut down at the end, also after an error. ``quiet`` silences progress.

    Illustration (not run as a doctest: it needs files or a model)::

        report = run_request(CompressRequest("runs/slim50", ratio=0.5))
        report["student"]["params"]["image_encoder"]
        # -> 2930000
    """
    request.check()
    kind = _prepare_device(request)
    from . import runtime

    runtime.init_from_env(kind)  # joins torchrun's process group (gloo / nccl) when WORLD_SIZE > 1
    main = runtime.is_main()
    try:
        report = _run(request, kind, quiet)
    finally:
        runtime.shutdown()
    return report if main else None


def _prepare_device(request: CompressRequest) -> str:
    """Resolve the device (one line for cuda without a GPU), set threads, check bf16 there."""
    import torch

    from .device import resolve_device

    kind = resolve_device(request.device)
    if request.threads:
        torch.set_num_threads(request.threads)
    if request.settings.get("bf16", False):
        from .runtime import check_bf16

        check_bf16(kind)  # one-line error where bf16 cannot run; a warning where it is emulated
    return kind


def _run(request: CompressRequest, kind: str, quiet: bool) -> dict[str, Any]:
    """Load the models and the images, build the config, run the job."""
    from ..models.io import load_model
    from .data import ImageSource
    from .pipeline import CompressConfig, compress

    teacher = request.teacher
    if teacher is None:
        from ..assets import require_reference_model

        teacher = require_reference_model()
    teacher = Path(teacher)
    sam, spec = load_model(teacher)
    if request.settings.get("image_size") is not None:  # one line before images, base or student exist
        from ..models.regrid import check_image_size

        check_image_size(spec.encoder, request.settings["image_size"])
    base = load_model(Path(request.base)) if request.base is not None else None
    ratio = request.pruning_ratio((base[1] if base is not None else spec).encoder)
    source = (ImageSource.from_folder(Path(request.data), spec.image_size, request.images)
              if request.data is not None
              else ImageSource.procedural(count=max(1, request.images), size=spec.image_size))
    cfg = CompressConfig(ratio=float(ratio), device=kind, **request.settings)
    return compress(cfg, Path(request.out), teacher=(sam, spec), source=source, teacher_id=str(teacher.resolve()),
                    base=base, base_id=str(Path(request.base).resolve()) if request.base is not None else "base",
                    cache_dir=request.cache_teacher, resume=request.resume, quiet=quiet)
