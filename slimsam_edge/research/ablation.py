"""A miniature of SlimSAM's ablation: importance x schedule at two pruning ratios -> a Markdown table.

Runs :func:`~slimsam_edge.compress.pipeline.compress` on the shipped sam-mini (or ``--teacher``)
for every combination of ``--importances`` x ``--schedules`` x ``--ratios`` and writes
``docs/results/ablation.md``: held-out point mIoU of each student and of the teacher, the share of
the teacher's mIoU kept, the exact command, the machine and the time. The runs share one
teacher-embedding cache, a run whose ``report.json`` already holds the same configuration is
reused and an interrupted run resumes from its checkpoint, so a stopped ablation continues where it
stopped.

    python scripts/ablation.py --threads 2                       # the full grid, ~1 h (see docs/compress.md)
    python -m slimsam_edge.research.ablation --steps 1 --ratios 0.5 --importances random
    python scripts/ablation.py --device cuda --steps 400         # every run on the GPU (TF32)

Example:
    >>> plan = Plan(steps=1)
    >>> len(plan.runs()), plan.runs()[0]
    (16, (0.5, 'alternate', 'random'))
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..errors import CheckpointError, UsageError
from ..fsutil import write_text_atomic

IMPORTANCES = ("random", "magnitude", "taylor", "disturbed-taylor")
SCHEDULE_NAMES = ("alternate", "one-step")
RATIOS = (0.5, 0.77)
#: the paper's targets for alternate + disturbed Taylor: share of the teacher's mIoU kept
TARGETS = {0.5: 0.95, 0.77: 0.88}


@dataclass
class Plan:
    """The grid and the per-run settings (step counts sized to the time available)."""

    steps: int = 100  # per phase; ~1 h for the grid on 2 cores (docs/compress.md)
    batch: int = 2
    lr: float = 3e-4
    images: int = 1000
    importance_images: int = 32
    eval_images: int = 32
    val_every: int = 50
    val_images: int = 8
    val_seed: int = 1002  # validation images apart from the report's (seed 1001)
    seed: int = 0
    device: str = "cpu"  # auto | cpu | cuda (where each run trains; a finished run is reused on any)
    ratios: Sequence[float] = RATIOS
    schedules: Sequence[str] = SCHEDULE_NAMES
    importances: Sequence[str] = IMPORTANCES
    extra: dict = field(default_factory=dict)

    def runs(self) -> list[tuple[float, str, str]]:
        return [(r, s, i) for r in self.ratios for s in self.schedules for i in self.importances]

    def config(self, ratio: float, schedule: str, importance: str):
        from ..compress.pipeline import CompressConfig

        return CompressConfig(ratio=ratio, importance=importance, schedule=schedule, steps=self.steps,
                              batch=self.batch, lr=self.lr, importance_images=self.importance_images,
                              eval_images=self.eval_images, val_every=self.val_every, val_images=self.val_images,
                              val_seed=self.val_seed, seed=self.seed, checkpoint_every=max(1, min(50, self.steps)),
                              device=self.device, **self.extra)


def machine(device: str = "cpu") -> str:
    """One line: CPU model, cores, threads used, Python and torch versions (and the GPU's name
    when ``device`` is ``cuda``).

    Example:
        >>> "torch" in machine()
        True
    """
    import torch

    from ..devices.profile import detect

    info = detect()
    gpu = f"{torch.cuda.get_device_name()} (TF32), " if device == "cuda" else ""
    return (f"{gpu}{info['cpu_model']}, {info['cores_logical']} cores, {torch.get_num_threads()} torch threads, "
            f"Python {info['python']}, torch {torch.__version__}, {info['os']}")


def run_ablation(plan: Plan, out_dir: Path | str, *, teacher: Path | str | None = None,
                 results: Path | str = "docs/results/ablation.md", command: str = "",
                 quiet: bool = True) -> dict[str, Any]:
    """Run (or reuse) every job of ``plan`` under ``out_dir`` and write the table to ``results``.

    Illustration (not run as a doctest: it needs files or a model)::

        run_ablation(Plan(steps=1, ratios=[0.5]), "runs/abl", results="abl.md")
    """
    from ..compress.data import ImageSource
    from ..compress.pipeline import compress
    from ..models.io import load_model

    if teacher is None:
        from ..assets import require_reference_model

        teacher = require_reference_model()
    sam, spec = load_model(teacher)
    source = ImageSource.procedural(count=plan.images, size=spec.image_size)
    out_dir, t0 = Path(out_dir), time.time()
    from ..compress.report import model_summary

    teacher_summary = model_summary(sam, spec, plan.eval_images)  # once, not once per run
    from ..compress.cache import teacher_fingerprint

    teacher_weights = teacher_fingerprint(sam, spec)  # a run of another (e.g. retrained) teacher is not reused
    rows = []
    for ratio, schedule, importance in plan.runs():
        cfg = plan.config(ratio, schedule, importance)
        run_dir = out_dir / f"r{round(ratio * 100)}-{schedule}-{importance}"
        rep = _reusable(run_dir, cfg, teacher_weights)
        if rep is None:
            kw = dict(teacher=(sam, spec), source=source, teacher_id=str(teacher), cache_dir=out_dir / "teacher-cache",
                      quiet=quiet, teacher_summary=teacher_summary)
            try:  # an interrupted run continues from its last checkpoint
                rep = compress(cfg, run_dir, resume=(run_dir / "checkpoint.pt").exists(), **kw)
            except CheckpointError:  # a checkpoint of other settings: start over
                rep = compress(cfg, run_dir, **kw)
        rows.append({"ratio": ratio, "schedule": schedule, "importance": importance,
                     "point": rep["student"]["miou"]["point"], "box": rep["student"]["miou"]["box"],
                     "teacher_point": rep["teacher"]["miou"]["point"], "kept": rep["point_miou_kept"],
                     "encoder_params": rep["student"]["params"]["image_encoder"],
                     "best_step": (rep.get("best") or {}).get("step"), "seconds": rep["elapsed_s"]})
    summary = {"plan": asdict(plan), "teacher": str(teacher), "rows": rows, "machine": machine(plan.device),
               "command": command, "minutes": round((time.time() - t0) / 60, 1),
               "teacher_params": count_encoder(sam)}
    write_text_atomic(Path(results), markdown(summary))
    write_text_atomic(Path(results).with_suffix(".json"), json.dumps(summary, indent=2))
    return summary


def count_encoder(sam) -> int:
    return sum(p.numel() for p in sam.image_encoder.parameters())


def _reusable(run_dir: Path, cfg, teacher_weights: str) -> dict | None:
    """The finished run's report when it holds ``cfg``'s job (whatever device ran it), else ``None``."""
    from ..compress.pipeline import RUN_ONLY

    path = run_dir / "report.json"
    try:
        rep = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    done = {k: v for k, v in (rep.get("config") or {}).items() if k not in RUN_ONLY}
    same = done == json.loads(json.dumps(cfg.identity())) and rep.get("teacher_weights") == teacher_weights
    return rep if same else None


def markdown(s: dict[str, Any]) -> str:
    """The results page: table (point mIoU and share of the teacher's), targets, command, machine."""
    rows, plan = s["rows"], s["plan"]
    ratios = list(dict.fromkeys(r["ratio"] for r in rows))
    teacher = rows[0]["teacher_point"] if rows else float("nan")
    head = "| importance | schedule | " + " | ".join(f"{round(r * 100)}%: point mIoU (kept)" for r in ratios) + " |"
    lines = ["# SlimSAM ablation on sam-mini (miniature)", "",
             f"Teacher `{Path(s['teacher']).name}`: point mIoU **{teacher:.4f}**, encoder "
             f"{s['teacher_params']:,} params. Students: {plan['steps']} distillation steps per phase, batch "
             f"{plan['batch']}, {plan['importance_images']} importance images, lr {plan['lr']}; mIoU on "
             f"{plan['eval_images']} held-out procedural images (seed 1001, one point per mask); best-checkpoint "
             f"validation on {plan['val_images']} images of seed {plan['val_seed']}.", "", head,
             "|---|---|" + "---|" * len(ratios)]
    by = {(r["importance"], r["schedule"], r["ratio"]): r for r in rows}
    for imp in dict.fromkeys(r["importance"] for r in rows):
        for sch in dict.fromkeys(r["schedule"] for r in rows):
            cells = []
            for ratio in ratios:
                r = by.get((imp, sch, ratio))
                cells.append(f"{r['point']:.4f} ({r['kept']:.1%})" if r and r["kept"] is not None else "—")
            lines.append(f"| {imp} | {sch} | " + " | ".join(cells) + " |")
    lines += ["", "Targets (alternate + disturbed-taylor):"]
    for ratio in ratios:
        r = by.get(("disturbed-taylor", "alternate", ratio))
        if r and r["kept"] is not None and ratio in TARGETS:
            ok = "met" if r["kept"] >= TARGETS[ratio] else "NOT met"
            lines.append(f"- {round(ratio * 100)}%: keeps {r['kept']:.1%} of the teacher's mIoU "
                         f"(target >= {TARGETS[ratio]:.0%}): {ok}")
    lines += ["", "Ordering as measured, reported as it came out; a miniature on procedural images, not SA-1B.", "",
              f"Command: `{s['command']}`", "", f"Machine: {s['machine']}", "",
              f"Time: {s['minutes']} min for {len(rows)} runs (runs reused from an earlier invocation count 0).", ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command-line entry (``python scripts/ablation.py --help``)."""
    from ..compress.device import DEVICE_CHOICES, resolve_device

    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description="SlimSAM ablation on sam-mini -> docs/results/ablation.md")
    d = Plan()
    ap.add_argument("--teacher", type=Path, default=None, help="checkpoint (default: the shipped sam-mini)")
    ap.add_argument("--out", type=Path, default=Path("runs/ablation"), help="run folders + teacher cache")
    ap.add_argument("--results", type=Path, default=Path("docs/results/ablation.md"))
    for name in ("steps", "batch", "images", "importance_images", "eval_images", "val_every", "val_images",
                 "val_seed", "seed"):
        ap.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(d, name))
    ap.add_argument("--lr", type=float, default=d.lr)
    ap.add_argument("--ratios", type=float, nargs="+", default=list(RATIOS))
    ap.add_argument("--schedules", nargs="+", choices=SCHEDULE_NAMES, default=list(SCHEDULE_NAMES))
    ap.add_argument("--importances", nargs="+", choices=IMPORTANCES, default=list(IMPORTANCES))
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--device", choices=DEVICE_CHOICES, default="auto",
                    help="where the runs train: auto (cuda when a CUDA GPU is visible), cpu or cuda")
    ap.add_argument("--progress", action="store_true", help="show each run's progress bar")
    a = ap.parse_args(argv)
    import torch

    if a.threads:
        torch.set_num_threads(a.threads)
    try:
        device = resolve_device(a.device)
    except UsageError as err:
        ap.error(str(err))  # one line, exit 2
    plan = Plan(device=device, **{k: getattr(a, k) for k in (
        "steps", "batch", "lr", "images", "importance_images", "eval_images", "val_every", "val_images", "val_seed",
        "seed", "ratios", "schedules", "importances")})
    command = "python scripts/ablation.py " + shlex.join(argv)
    summary = run_ablation(plan, a.out, teacher=a.teacher, results=a.results, command=command.strip(),
                           quiet=not a.progress)
    print(f"wrote {a.results} ({len(summary['rows'])} runs, {summary['minutes']} min)")
    return summary


if __name__ == "__main__":  # python -m slimsam_edge.research.ablation
    main()
