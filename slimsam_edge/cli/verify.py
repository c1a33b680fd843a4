"""``slimsam-edge verify BUNDLE``: hashes, then the bundle's reference I/O through a runtime (torch-free)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ..errors import AccuracyGateError
from .common import emit_json, handle_errors, progress_bar
from .options import Backend, JsonOpt, Precision, ThreadsOpt


@handle_errors
def verify(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder written by `slimsam-edge export` (or built on this device).")],
    backend: Annotated[Optional[Backend], typer.Option("--backend", "-b", help="Runtime to verify; default: the first installed backend of the bundle's target.")] = None,
    precision: Annotated[Optional[Precision], typer.Option("--precision", help="Artifacts to verify: fp32 | fp16 | bf16 | int8 (default fp32).")] = None,
    device: Annotated[Optional[str], typer.Option("--device", help="Runtime device (cpu, cuda, GPU, NPU, ...).")] = None,
    threads: ThreadsOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Check the bundle's hashes, run its reference inputs through a runtime, compare with the fp32
    outputs recorded at export (per graph and encoder -> decoder end to end); exit 2 below the gate."""
    from rich.progress import SpinnerColumn, TextColumn, TimeElapsedColumn

    from ..deploy.verify import verify_bundle

    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with progress_bar(*columns, enabled=not json_out, stderr=True) as update:
        report = verify_bundle(bundle, backend=backend.value if backend else None,
                               precision=precision.value if precision else None,
                               progress=lambda msg: update(0, None, msg), device=device, threads=threads)
    if json_out:
        emit_json(report.to_dict())
    else:
        _print(report)
    if not report.passed:
        raise AccuracyGateError(f"verify {bundle}: below the gate: {'; '.join(report.failures())}; {remedy(report)}",
                                report.to_dict())


def remedy(report: Any) -> str:
    """What to do about a failed verification: rebuild where a failing backend builds its
    artifacts on the device (its converter is an on-device build), else re-export.

    Example:
        >>> from slimsam_edge.deploy.verify import VerifyReport
        >>> remedy(VerifyReport("b"))
        're-export the bundle (or verify another --backend / --precision)'
    """
    from ..runtimes import get_backend

    failing = {c.backend for c in report.checks if not c.passed}
    if any(getattr(get_backend(b).converter, "on_device", False) for b in failing):
        return "run `slimsam-edge build` on this device to rebuild the engines"
    return "re-export the bundle (or verify another --backend / --precision)"


#: short labels of the numbers a check reports besides the judged one
_LABELS = {"mask_iou_min": "min IoU", "iou_predictions_max_diff": "score diff", "rel_error_max": "rel err",
           "cosine_min": "cosine", "mask_iou": "mask IoU",
           "mask_iou_all_tokens": "all tokens"}


def _print(report: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    c = Console()
    pairs = sorted({f"{ch.backend}/{ch.precision}" for ch in report.checks})
    t = Table("check", "cases", "agreement", "gate", "details", "", title=", ".join(pairs) or None)
    for ch in report.checks:
        graph = ch.graph if ch.kind == "graph" else f"end to end -> {ch.graph}"
        judged = "mask_iou" if ch.metric == "mask_iou" else "cosine_min"
        details = ", ".join(f"{_LABELS.get(k, k)} {v:.3g}" for k, v in ch.numbers.items() if k != judged)
        t.add_row(graph, str(ch.cases), f"{_LABELS[judged]} {ch.value:.4f}", f"{ch.threshold:g}", details,
                  "[green]ok[/]" if ch.passed else "[red]FAILED[/]")
    c.print(t)
    for line in report.skipped:
        c.print(f"skipped: {line}")
    if report.passed:
        c.print(f"[bold green]verified[/]: {', '.join(pairs)} agree with the fp32 reference outputs "
                f"({len(report.checks)} checks)")
    else:
        c.print(f"[bold red]FAILED[/]: {len(report.failures())} of {len(report.checks)} checks below the gate")
