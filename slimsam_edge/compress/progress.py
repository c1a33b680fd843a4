"""The job's JSONL log and progress bar (ETA, losses); silent on every DDP rank but 0.

Example:
    >>> import tempfile, pathlib
    >>> log = JobLog(pathlib.Path(tempfile.mkdtemp()) / "log.jsonl", quiet=True)
    >>> log.write({"event": "start"}); log.close()
"""

from __future__ import annotations

import json
from pathlib import Path


#: the losses shown beside the bar (the log keeps every value)
LABELS = {"loss": "loss", "embed": "emb", "inter": "inter", "mask": "mask", "iou": "iou"}


class JobLog:
    """JSONL records in ``path`` + a rich progress bar on stderr (``enabled=False``: neither)."""

    def __init__(self, path: Path, quiet: bool, enabled: bool = True):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.path, self.enabled = path, enabled
        console = Console(stderr=True, quiet=quiet or not enabled)
        self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeRemainingColumn(), TextColumn("{task.fields[info]}"), console=console,
                            disable=quiet or not enabled)
        self.bar.start()
        self.task = self.bar.add_task("distil", total=None, info="")

    def write(self, record: dict) -> None:
        if self.enabled:
            with open(self.path, "a") as f:
                f.write(json.dumps(record, default=str) + "\n")

    def step(self, phase: int, step: int, steps: int, n_phases: int, losses: dict) -> None:
        info = " ".join(f"{LABELS[k]} {float(v):.5f}" for k, v in losses.items() if k in LABELS)
        self.bar.update(self.task, description=f"phase {phase + 1}/{n_phases}", total=steps,
                        completed=step, info=info)
        self.write({"event": "step", "phase": phase, "step": step,
                    **{k: round(float(v), 7) for k, v in losses.items()}})

    def close(self) -> None:
        self.bar.stop()
